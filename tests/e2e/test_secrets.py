"""No secret ever appears in output, history records, rendered Jenkins jobs or the HTML
report: every command runs with credentials and tokens set to recognisable values, at
every verbosity, on success and on failure.

The sandbox's accounts use ``role_arn`` credentials, and moto hands out new random keys and
session tokens on every ``assume_role``: the keys the cloudops processes really hold are
known to no one but them and moto. So the watch list is completed AFTER the runs with every
credential moto has issued (its ``/moto-api/data.json`` model dump), and every output is
also scanned for the SHAPES of AWS credentials: access key ids (AKIA/ASIA + 16), 40-char
secret access keys, session tokens (long base64 runs). A look-alike that is not a secret
must be listed in LOOKALIKES with its reason."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import boto3
import pytest

from cloudops.sandbox import world
from tests.support.images import Pusher, make_image, random_layer
from tests.support.run import cloudops
from tests.support.sandbox import assumed_keys, context_for, init_all, publish

SENTINELS = {
    "AWS_SECRET_ACCESS_KEY": "SentinelSecretKey0123456789abcdefABCDEF",
    "AWS_SESSION_TOKEN": "SentinelSessionToken0123456789",
    "SOURCE_AWS_SECRET_ACCESS_KEY": "SentinelSourceSecret0123456789xyz",
    "SOURCE_AWS_SESSION_TOKEN": "SentinelSourceToken0123456789xyz",
}
REGISTRY_PASSWORD = "SentinelRegistryPassw0rd"

# The shapes of AWS credentials. A secret access key is 40 characters of base64's alphabet
# (moto: letters and digits); mixed case tells it from a hex digest or a git sha.
ACCESS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
SESSION_TOKEN = re.compile(r"[A-Za-z0-9/+=]{100,}")
# Strings of those shapes that are not secrets, each with its reason. (None so far: a new
# one must be added here explicitly, never by loosening the shapes.)
LOOKALIKES: dict[str, str] = {}


def _issued_by_moto(sandbox: world.SandboxState) -> list[dict[str, str]]:
    """Every credential moto has issued since the last reset: the assumed-role keys and
    session tokens the cloudops subprocesses hold, and any IAM access keys."""
    with urllib.request.urlopen(f"{sandbox.moto_url}/moto-api/data.json", timeout=30) as answer:
        data = json.loads(answer.read())
    issued = [
        {
            "session": role.get("session_name", ""),
            "AccessKeyId": role["access_key_id"],
            "SecretAccessKey": role["secret_access_key"],
            "SessionToken": role["session_token"],
        }
        for role in data.get("sts", {}).get("AssumedRole", [])
    ]
    issued += [
        {"session": "", "AccessKeyId": key["access_key_id"], "SecretAccessKey": key["secret_access_key"]}
        for key in data.get("iam", {}).get("AccessKey", [])
        if "secret_access_key" in key
    ]
    return issued


def _secrets(sandbox: world.SandboxState, issued: list[dict[str, str]]) -> list[str]:
    """Every secret the runs below can see: the sentinels, the test's own keys and every
    key and session token moto issued (those of the cloudops subprocesses included)."""
    found = [*SENTINELS.values(), REGISTRY_PASSWORD]
    for account in ("build", "qa"):
        keys = assumed_keys(sandbox, account)
        found += [keys["AWS_SECRET_ACCESS_KEY"], keys["AWS_SESSION_TOKEN"]]
    for creds in issued:
        found += [creds["SecretAccessKey"], creds.get("SessionToken", "")]
    found.append("-auth-token")  # moto's ECR registry password is "<account>-auth-token"
    return [s for s in found if s]


def _assert_clean(text: str, secrets: list[str], where: str) -> None:
    # pytest.fail, not assert: the failure report must not print the secret either.
    for secret in secrets:
        if secret in text:
            pytest.fail(f"a secret ({secret[:4]}...) leaked into {where}")
    for shape, what in (
        (ACCESS_KEY_ID, "an AWS access key id"),
        (SECRET_KEY, "an AWS secret access key"),
        (SESSION_TOKEN, "an AWS session token"),
    ):
        for match in shape.finditer(text):
            if shape is SECRET_KEY and (match.group().lower() == match.group() or match.group().isupper()):
                continue  # one case only: a hex digest or sha, not a secret key
            if match.group() not in LOOKALIKES:
                pytest.fail(f"{what} ({match.group()[:4]}...) in {where}")


def _bucket_texts(sandbox: world.SandboxState) -> dict[str, str]:
    """Every object cloudops wrote into the accounts' buckets, read straight from S3
    (records, daily indexes, locks, current.json), package zips aside."""
    texts: dict[str, str] = {}
    for account, account_id in world.ACCOUNTS.items():
        keys = assumed_keys(sandbox, account)
        s3 = boto3.client(
            "s3",
            endpoint_url=sandbox.moto_url,
            region_name=world.REGION,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=keys["AWS_SESSION_TOKEN"],
        )
        bucket = f"ep-cloudops-{account_id}"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(".zip"):
                    body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    texts[f"s3://{bucket}/{item['Key']}"] = body.decode("utf-8", errors="replace")
    return texts


def test_no_command_prints_or_records_a_secret(
    sandbox: world.SandboxState, tmp_path: Path, make_registry
) -> None:  # type: ignore[no-untyped-def]
    world.reset(sandbox)
    ctx = context_for(sandbox.pipeline)
    init_all(ctx)
    publish(ctx, "build", "ep/cortex", "1.0")
    env = {
        **SENTINELS,
        "AWS_ACCESS_KEY_ID": "AKIASENTINELKEYID01",
        "SOURCE_AWS_ACCESS_KEY_ID": "AKIASENTINELSOURCE1",
        "CLOUDOPS_SRC_CREDS": f"builder:{REGISTRY_PASSWORD}",
        "CLOUDOPS_DEST_CREDS": f"promoter:{REGISTRY_PASSWORD}",
    }
    broken = tmp_path / "broken-pipeline.yaml"  # qa's role acts in preprod: the guard refuses
    broken.write_text(
        sandbox.pipeline.read_text().replace(
            "arn:aws:iam::222222222222:role/cloudops", "arn:aws:iam::333333333333:role/cloudops"
        )
    )
    authed = make_registry(auth=("builder", REGISTRY_PASSWORD))
    plain = make_registry()
    Pusher(authed.url, auth=authed.auth).push("ep/x", "1", make_image([random_layer(1024)]))

    promote = ["promote", "image", "--to", "qa", "--repository", "ep/cortex", "--tag"]
    copy = [
        "copy",
        f"{authed.host}/ep/x:1",
        f"{plain.host}/ep/x:1",
        "--insecure-registry",
        authed.host,
        "--insecure-registry",
        plain.host,
    ]
    wrong_creds = {**env, "CLOUDOPS_SRC_CREDS": "builder:Wrong" + REGISTRY_PASSWORD}
    commands: list[tuple[list[str], dict[str, str]]] = [
        ([*promote, "1.0"], env),
        ([*promote, "nope"], env),
        ([*promote, "1.0", "--pipeline", str(broken)], env),
        # The source's static keys from $SOURCE_*: moto places unknown keys in its default
        # account, so the guard refuses them (the error path with the sentinel keys loaded).
        ([*promote, "1.0", "--source-credentials-env", "SOURCE"], env),
        (["promote", "package", "--to", "qa"], env),
        (["init", "qa"], env),
        (["init", "qa", "--pipeline", str(broken)], env),
        (["history"], env),
        (copy, env),
        (copy, wrong_creds),
    ]
    runs = [
        cloudops(*args, *verbosity, env=run_env)
        for verbosity in ([], ["--json"])
        for args, run_env in commands
    ]
    runs.append(cloudops(*promote, "1.0", "--source-credentials-env", "SOURCE", "-h", env=env))
    html = tmp_path / "status.html"
    runs.append(cloudops("status", "--html", str(html), env=env))
    for mode in ([], ["--json"]):
        runs.append(cloudops("status", *mode, env=env))
        runs.append(cloudops("status", *mode, "--pipeline", str(broken), env=env))
    runs.append(cloudops("audit", "--json", env=env))
    jobs = tmp_path / "jobs"
    for account in ("qa", "prod"):
        runs.append(
            cloudops("jenkins", "render", "--account", account, "--out", str(jobs / account), env=env)
        )
    history = cloudops("history", "--json", env=env)
    runs.append(history)

    codes = [r.returncode for r in runs]
    assert 0 in codes and 3 in codes and {1, 2} & set(codes), codes  # successes, guard refusals, failures
    source_run = runs[3]  # --source-credentials-env SOURCE, human output
    assert source_run.returncode == 3 and "belong to account" in source_run.stderr, source_run.stderr

    # Only now is the watch list complete: moto has issued every subprocess's keys.
    issued = _issued_by_moto(sandbox)
    sessions = {creds["session"] for creds in issued}
    assert {"cloudops-build", "cloudops-qa"} <= sessions, sessions  # the subprocesses' own sessions
    for creds in issued:  # the shapes below would catch each of them, wherever it leaked
        assert ACCESS_KEY_ID.fullmatch(creds["AccessKeyId"]), creds["AccessKeyId"]
        assert SECRET_KEY.fullmatch(creds["SecretAccessKey"])
        assert "SessionToken" not in creds or SESSION_TOKEN.fullmatch(creds["SessionToken"])
    secrets = _secrets(sandbox, issued)
    for run in runs:
        _assert_clean(run.stdout + run.stderr, secrets, f"the output of {run.args[3:]}")
        assert "Traceback" not in run.stderr
    records = json.loads(history.stdout)["records"]
    assert records, "the promotions above should have been recorded"
    _assert_clean(json.dumps(records), secrets, "history records")
    objects = _bucket_texts(sandbox)
    assert any("/history" in key or "record" in key for key in objects), sorted(objects)
    for key, text in objects.items():
        _assert_clean(text, secrets, key)
    rendered = sorted(p for p in jobs.rglob("*") if p.is_file())
    assert len(rendered) >= 8, rendered  # both accounts' jobs were written
    for path in rendered:
        _assert_clean(path.read_text(), secrets, f"the rendered Jenkins file {path.relative_to(jobs)}")
    assert html.is_file(), "status --html wrote no page"
    _assert_clean(html.read_text(), secrets, "the HTML report")


# Secrets inside URLs, in keys that are not named like secrets (issue 12, section 5).
URL_SECRETS = {
    "EP_JMS_BROKER_URL": "failover:(tcp://ep:SentinelJmsUserInfo42@{a}-jms.ep.internal:61616)",
    "EP_REPORT_DB_URL": "jdbc:mysql://{a}-report.ep.internal/r?user=r&password=SentinelQueryPassword17",
    "EP_ARCHIVE_DB_URL": "mysql://{a}-archive.ep.internal/x?useSSL=true&pwd=SentinelAmpPwd23",
    "EP_MSSQL_URL": "jdbc:sqlserver://{a}-mssql.ep.internal:1433;user=ep;password=SentinelJdbcProp5;encrypt=true",
    "EP_LEGACY_DB_URL": "jdbc:oracle:thin:ep/SentinelOraclePw8@//{a}-ora.ep.internal:1521/svc",
    # The review's forms: a Go DSN (tcp and unix), a user name holding "@", ",", ";", "(",
    # ")" and a space inside a password, Connector/J's (password=), a braced JDBC value.
    # "Sentinel" on both sides of every odd character: no part of a password may show.
    "EP_GO_DSN": "ep:Sentinel;Sentinel@tcp({a}-go.ep.internal:3306)/x",
    "EP_GO_SOCKET_DSN": "ep:Sentinel,Sentinel@unix(/run/{a}/mysqld.sock)/x",
    "EP_SMTP_URL": "smtp://mailer@ep.example:Sentinel(Smtp)Sentinel@{a}-smtp.ep.internal:587",
    "EP_SPACE_DB_URL": "mysql://ep:Sentinel Sentinel@{a}-space.ep.internal/x",
    "EP_CJ_DB_URL": "jdbc:mysql://address=(host={a}-cj.ep.internal)(user=ep)(password=SentinelCj)/x",
    "EP_BRACE_MSSQL_URL": "jdbc:sqlserver://{a}-brace.ep.internal;password={{Sentinel;Sentinel22}}",
}


def test_config_outputs_never_show_a_secret_inside_a_url(sandbox: world.SandboxState, tmp_path: Path) -> None:
    from cloudops.config.envfile import read_env_file
    from cloudops.pipeline.model import load_pipeline
    from cloudops.sandbox.config_seed import write_config

    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(sandbox.pipeline.read_text())
    pipeline = load_pipeline(pipeline_file)
    write_config(pipeline, overwrite=True)
    live = {a: pipeline.config_dir / a / "AWS" / "Config" / "live.env" for a in pipeline.accounts}
    qa_db_pass = read_env_file(live["qa"]).values()["EP_DB_PASS"]
    assert qa_db_pass
    for account in ("qa", "prod"):
        with live[account].open("a") as handle:
            handle.writelines(f"{key}={value.format(a=account)}\n" for key, value in URL_SECRETS.items())
    with live["prod"].open("a") as handle:  # qa's database password, inside a prod URL
        handle.write(f"EP_ADMIN_DB_URL=jdbc:mysql://admin:{qa_db_pass}@prod-admin.ep.internal/a\n")
    secrets = [
        v for path in live.values() for k, v in read_env_file(path).values().items() if v and "PASS" in k
    ]
    secrets += ["SentinelJmsUserInfo42", "SentinelQueryPassword17", "SentinelAmpPwd23"]
    secrets += ["SentinelJdbcProp5", "SentinelOraclePw8", "Sentinel"]

    check = cloudops("config", "check", "--json", "--pipeline", str(pipeline_file))
    diff = cloudops("config", "diff", "qa", "prod", "--json", "--pipeline", str(pipeline_file))
    human = [
        cloudops("config", "check", "--pipeline", str(pipeline_file)),
        cloudops("config", "diff", "qa", "prod", "--pipeline", str(pipeline_file)),
    ]
    assert (check.returncode, diff.returncode) == (4, 0), check.stderr + diff.stderr
    for run in [check, diff, *human]:
        _assert_clean(run.stdout + run.stderr, secrets, f"the output of {run.args[3:6]}")
        assert "Traceback" not in run.stderr

    shared = {
        f["key"]
        for f in json.loads(check.stdout)["findings"]
        if f["kind"] == "shared-secret" and f["account"] == "prod"
    }
    assert shared == {*URL_SECRETS, "EP_ADMIN_DB_URL"}
    keys = {k["key"]: k for f in json.loads(diff.stdout)["files"] for k in f["keys"]}
    assert keys["EP_JMS_BROKER_URL"]["b"] == "failover:(tcp://ep:****@prod-jms.ep.internal:61616)"
    assert keys["EP_LEGACY_DB_URL"]["a"] == "jdbc:oracle:thin:ep/****@//qa-ora.ep.internal:1521/svc"
    assert (
        "&password=****" in keys["EP_REPORT_DB_URL"]["a"] and ";password=****;" in keys["EP_MSSQL_URL"]["b"]
    )
    assert keys["EP_ADMIN_DB_URL"]["b"] == "jdbc:mysql://admin:****@prod-admin.ep.internal/a"
    assert keys["EP_GO_DSN"]["b"] == "ep:****@tcp(prod-go.ep.internal:3306)/x"
    assert keys["EP_SMTP_URL"]["a"] == "smtp://mailer@ep.example:****@qa-smtp.ep.internal:587"
    assert keys["EP_SPACE_DB_URL"]["a"] == "mysql://ep:****@qa-space.ep.internal/x"
    assert (
        keys["EP_CJ_DB_URL"]["b"]
        == "jdbc:mysql://address=(host=prod-cj.ep.internal)(user=ep)(password=****)/x"
    )
    assert keys["EP_BRACE_MSSQL_URL"]["b"] == "jdbc:sqlserver://prod-brace.ep.internal;password=****"


@pytest.mark.skipif(
    not any(Path(p, "mariadbd").exists() for p in ("/usr/sbin", "/usr/bin")),
    reason="mariadb-server is not installed",
)
def test_no_database_command_prints_or_records_a_password(
    sandbox: world.SandboxState, tmp_path: Path
) -> None:
    """`cloudops db` (issue 17) writes each account's database password into the tool's
    properties file and nowhere else: not in any output (human and --json, success, tool
    failure, refusal), not in a history record, not in any object of any bucket. The
    passwords come from the accounts' live.env; the AWS credentials are watched as above."""
    from cloudops.config.envfile import read_env_file
    from cloudops.package import publish_package
    from cloudops.sandbox import config_seed
    from cloudops.sandbox.databases import provision_accounts
    from cloudops.sandbox.mariadb import running_mariadb
    from cloudops.sandbox.seed import build_package

    world.reset(sandbox)
    ctx = context_for(sandbox.pipeline)
    init_all(ctx)
    config_seed.seed(ctx)
    server = running_mariadb(sandbox.root)
    assert server is not None, "the sandbox's MariaDB is not running"
    provision_accounts(server, ctx.pipeline.config_dir, world.DB_ADDRESSES)
    package = tmp_path / "package.zip"
    build_package(package, "8.5.0", size=64 * 1024)
    publish_package(ctx, package, "8.5.0")
    live_env = {a: ctx.pipeline.config_dir / a / "AWS" / "Config" / "live.env" for a in world.ACCOUNTS}
    passwords = [read_env_file(path).values()["EP_DB_PASS"] for path in live_env.values()]
    assert all(passwords) and len(set(passwords)) == len(passwords)

    commands = [
        ["db", "plan", "--account", "build"],
        ["db", "update", "--account", "build"],
        ["db", "update", "--account", "build"],  # a no-op rerun
        ["db", "update", "--account", "qa"],  # no package in qa's bucket: a clean failure
        ["db", "reset", "--account", "prod"],  # protected: refused
        ["db", "reset", "--account", "build"],
    ]
    runs = [cloudops(*args, *mode) for mode in ([], ["--json"]) for args in commands]
    # A release plan into qa asks qa's database what the package would apply (the preview).
    publish(ctx, "build", "ep/cortex", "8.5.0")
    release = tmp_path / "release.yaml"
    release.write_text(
        'release: "r"\nimages:\n  - {repository: ep/cortex, tag: "8.5.0"}\npackage: {version: "8.5.0"}\n'
    )
    plans = [cloudops("plan", "--to", "qa", "--release", str(release), *mode) for mode in ([], ["--json"])]
    assert all("would apply 4 change sets" in run.stderr for run in plans), [r.stderr for r in plans]
    runs += plans
    # The database refuses the password the config holds: the failure path prints no password.
    live = live_env["build"]
    wrong = "SentinelWrongDbPassw0rd"
    kept = live.read_text()
    live.write_text(kept.replace(passwords[0], wrong))
    try:
        runs += [cloudops("db", "update", "--account", "build", *mode) for mode in ([], ["--json"])]
    finally:
        live.write_text(kept)
    history = cloudops("history", "--account", "build", "--json")
    runs.append(history)
    expected = [0, 0, 0, 2, 3, 0]  # done, done, no-op, no package (config), refused, done
    codes = [r.returncode for r in runs]
    assert codes == [*expected, *expected, 0, 0, 1, 1, 0], [r.stderr[-300:] for r in runs]
    refused = runs[-3].stderr  # human output: the server's reason, and what to fix where
    assert "Access denied" in refused and "EP_DB_PASS" in refused and "live.env" in refused, refused

    secrets = [*passwords, wrong, *_secrets(sandbox, _issued_by_moto(sandbox))]
    for run in runs:
        _assert_clean(run.stdout + run.stderr, secrets, f"the output of {run.args[3:]}")
        assert "Traceback" not in run.stderr
    records = [r for r in json.loads(history.stdout)["records"] if r.get("kind") == "database"]
    assert records, "the database runs should have been recorded"
    for key, text in _bucket_texts(sandbox).items():
        _assert_clean(text, secrets, key)
