"""A clean setup for the sandbox's accounts beyond ECR and S3: each account's own config
tree next to the sandbox's pipeline.yaml (pipeline.config_dir), and the source
repositories in their one hosting account. With these, the demo's audit is clean.

    <config_dir>/<account>/AWS/Config/author.env   the authoring environment
    <config_dir>/<account>/AWS/Config/live.env     the live environment

Every value names the account's own hosts, and every secret is fresh random, so no two
accounts share one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from cloudops.aws.codecommit import CodeCommitRepositories
from cloudops.config.tree import CONFIG_SUBDIR
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import Pipeline


def db_host(account: str, environment: str = "live") -> str:
    suffix = "" if environment == "live" else f"-{environment}"
    return f"{account}{suffix}-db.{account}.ep.internal"


def env_text(account: str, environment: str) -> str:
    """One environment's settings for ``account`` (environment: "live" or "author")."""
    name = account if environment == "live" else f"{account}-{environment}"
    host = db_host(account, environment)
    services = f"{account}.ep.internal"
    return "\n".join(
        [
            f"# {environment} environment of account {account}: written by the cloudops sandbox.",
            "# Unique to this account; never copied to another (config is not promoted).",
            f"EP_COMMERCE_ENVNAME={name}",
            f"EP_DB_HOSTNAME={host}",
            "EP_DB_PORT=3306",
            f"EP_DB_USER=ep_{account.replace('-', '_')}",
            f'EP_DB_PASS="{secrets.token_urlsafe(18)}"',
            f"EP_DB_NAME=commerce_{account.replace('-', '_')}",
            f"EP_DB_URL=jdbc:mysql://{host}:3306/commerce_{account.replace('-', '_')}?useSSL=true",
            f"EP_JMS_URL=failover:(tcp://jms.{services}:61616)",
            f"EP_SEARCH_MASTER_URL=http://search-master.{services}:8082/search",
            f"EP_SMTP_HOST=smtp.{services}",
            "EP_SMTP_PORT=587",
            f"EP_SMTP_USER=ep-mailer-{account}",
            f"EP_SMTP_PASS='{secrets.token_urlsafe(18)}'",
            "",
        ]
    )


def write_config(pipeline: Pipeline, *, overwrite: bool) -> list[Path]:
    """Write author.env and live.env for every account; the files written. Without
    ``overwrite`` an account whose files exist is left as it is (a user may be trying
    something out); with it the account's folder is replaced whole, links and all."""
    written: list[Path] = []
    for account in pipeline.accounts:
        root = pipeline.config_dir / account
        folder = root / CONFIG_SUBDIR
        files = {name: folder / f"{name}.env" for name in ("author", "live")}
        if overwrite:
            _remove(root)
        elif all(p.is_file() for p in files.values()):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for environment, path in files.items():
            if path.is_file() and not overwrite:
                continue
            # Secrets inside: readable by the owner only, from the moment it exists.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(env_text(account, environment))
            written.append(path)
    return written


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def create_source_repositories(context: PipelineContext) -> list[str]:
    """The pipeline's source repositories in their hosting account (only there)."""
    sources = context.pipeline.source_repositories
    if sources is None:
        return []
    repos = CodeCommitRepositories(context.session(sources.account))
    return [name for name in sources.names if repos.create(name, f"{name}: the one copy (cloudops sandbox)")]


def seed(context: PipelineContext, *, overwrite: bool = True) -> None:
    write_config(context.pipeline, overwrite=overwrite)
    create_source_repositories(context)
