"""Secrets in config are masked in every form (issue 12, section 5): secret-named keys
whole, and passwords inside any key's value (URL user info, ?password=, &pwd=, JDBC
;password=, Oracle's user/pw@host) in part, keeping the host readable. A secret shared by
two accounts is a finding even inside a URL, and no output path prints it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloudops.cli.main import cli
from cloudops.config import check_config, diff_accounts
from cloudops.config.hosts import hosts_in
from cloudops.config.secrets import embedded_secrets, is_secret_key, shown
from cloudops.pipeline.model import load_pipeline

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# (value, the secret that must not be shown, what must stay readable)
EMBEDDED = [
    ("jdbc:mysql://ep:Pw-Url-1x@qa-db.internal:3306/commerce", "Pw-Url-1x", "@qa-db.internal:3306/commerce"),
    (
        "jdbc:mysql://ep:p@ss/w0rd@qa-db.internal:3306/x",
        "ss/w0rd",
        "jdbc:mysql://ep:****@qa-db.internal:3306/x",
    ),
    ("failover:(tcp://u:JmsPw1@a.jms:61616,tcp://u:JmsPw2@b.jms:61616)", "JmsPw", "@b.jms:61616)"),
    ("jdbc:mysql://qa-db.internal:3306/x?user=ep&password=QueryPw9&useSSL=true", "QueryPw9", "&useSSL=true"),
    ("mysql://qa-db.internal/x?useSSL=true&pwd=AmpPwd7", "AmpPwd7", "qa-db.internal/x?useSSL=true&pwd=****"),
    (
        "jdbc:sqlserver://qa-db.internal:1433;user=ep;password=JdbcProp5;encrypt=true",
        "JdbcProp5",
        ";encrypt=true",
    ),
    (
        "jdbc:oracle:thin:scott/OraclePw3@//qa-db.internal:1521/svc",
        "OraclePw3",
        "scott/****@//qa-db.internal",
    ),
    ("jdbc:oracle:thin:scott/OraclePw4@qa-db.internal:1521:ORCL", "OraclePw4", "@qa-db.internal:1521:ORCL"),
    ("redis://:RedisTok8@qa-redis.internal:6379", "RedisTok8", "@qa-redis.internal:6379"),
    ("-----BEGIN PRIVATE KEY-----\nMIIPemBody\n-----END PRIVATE KEY-----", "MIIPemBody", "****"),
]


@pytest.mark.parametrize(("value", "secret", "kept"), EMBEDDED)
def test_a_secret_inside_any_value_is_masked_and_the_rest_kept(value: str, secret: str, kept: str) -> None:
    masked = shown("EP_SOME_URL", value)
    assert masked is not None and secret not in masked and "****" in masked
    assert kept in masked
    assert any(secret in found for found in embedded_secrets(value))


@pytest.mark.parametrize(
    "value",
    [
        "jdbc:mysql://qa-db.internal:3306/commerce?useSSL=true",
        "failover:(tcp://a.jms:61616,tcp://b.jms:61616)",
        "http://search-master.qa.internal:8082/search",
        "arn:aws:iam::222222222222:role/jms",
        "s3://ep-cloudops-111111111111/deployment-package/x.zip",
    ],
)
def test_values_without_secrets_are_shown_as_they_are(value: str) -> None:
    assert shown("EP_X_URL", value) == value and embedded_secrets(value) == []


@pytest.mark.parametrize(
    "key",
    [
        "EP_DB_PASS",
        "ep_db_pwd",
        "Smtp_Password",
        "X_SECRET",
        "api_token",
        "EP_SSL_KEY",
        "X_Auth",
        "AUTHORIZATION",
        "AWS_CREDENTIALS",
        "EP_AUTH_HEADER",
    ],
)
def test_secret_keys_in_any_case(key: str) -> None:
    assert is_secret_key(key)
    assert shown(key, "a-long-secret-value") == "a-****"


def test_author_is_not_auth() -> None:
    # Elastic Path's authoring environment: EP_AUTHOR_* are ordinary settings.
    assert not is_secret_key("EP_AUTHOR_DB_URL") and not is_secret_key("EP_DB_HOSTNAME")


def test_a_password_with_an_at_sign_is_never_taken_for_a_host() -> None:
    assert hosts_in("EP_DB_URL", "jdbc:mysql://ep:p@leaky-part@qa-db.internal:3306/x") == {"qa-db.internal"}


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "config-clean"
    shutil.copytree(FIXTURES / "config-clean", target, symlinks=True)
    return target / "pipeline.yaml"


def _append(pipeline_file: Path, account: str, text: str) -> None:
    live = pipeline_file.parent / "config" / account / "AWS" / "Config" / "live.env"
    with live.open("a") as handle:
        handle.write(text)


QA_DB_PASS = "qa-live-pw-91c2"  # the fixture's qa EP_DB_PASS
URL_SECRETS = ["Shared-Jms-Pw-42", QA_DB_PASS, "Shared-Query-Pw-17", "Shared-Oracle-Pw-5"]


def _leaky_urls(tmp_path: Path) -> Path:
    """qa and prod share secrets only inside URLs (and one with qa's EP_DB_PASS)."""
    pipeline_file = _copy(tmp_path)
    for account in ("qa", "prod"):
        _append(
            pipeline_file,
            account,
            f"EP_JMS_BROKER_URL=failover:(tcp://ep:Shared-Jms-Pw-42@{account}-jms.example.internal:61616)\n"
            f"EP_REPORT_DB_URL=jdbc:mysql://{account}-report.example.internal/r?user=r&password=Shared-Query-Pw-17\n"
            f"EP_LEGACY_DB_URL=jdbc:oracle:thin:ep/Shared-Oracle-Pw-5@//{account}-ora.example.internal:1521/s\n",
        )
    _append(
        pipeline_file,
        "prod",
        f"EP_ADMIN_DB_URL=jdbc:mysql://admin:{QA_DB_PASS}@prod-admin.example.internal/a\n",
    )
    return pipeline_file


def test_a_secret_shared_inside_urls_is_a_finding_without_the_secret(tmp_path: Path) -> None:
    pipeline_file = _leaky_urls(tmp_path)
    report = check_config(load_pipeline(pipeline_file))
    shared = {f.key: f for f in report.findings if f.kind == "shared-secret"}
    assert set(shared) == {"EP_JMS_BROKER_URL", "EP_REPORT_DB_URL", "EP_LEGACY_DB_URL", "EP_ADMIN_DB_URL"}
    assert all(f.account == "prod" and f.severity == "error" for f in shared.values())
    assert "same secret as EP_DB_PASS of account qa" in shared["EP_ADMIN_DB_URL"].message
    text = json.dumps(report.as_dict())
    for secret in URL_SECRETS:
        assert secret not in text


def test_diff_shows_the_host_not_the_password_and_flags_a_shared_one(tmp_path: Path) -> None:
    pipeline_file = _leaky_urls(tmp_path)
    diff = diff_accounts(load_pipeline(pipeline_file), "qa", "prod")
    live = next(f for f in diff.files if f.file == "AWS/Config/live.env")
    keys = {k.key: k for k in live.changed}
    assert keys["EP_JMS_BROKER_URL"].a == "failover:(tcp://ep:****@qa-jms.example.internal:61616)"
    assert keys["EP_JMS_BROKER_URL"].b == "failover:(tcp://ep:****@prod-jms.example.internal:61616)"
    assert keys["EP_ADMIN_DB_URL"].b == "jdbc:mysql://admin:****@prod-admin.example.internal/a"
    text = json.dumps(diff.as_dict())
    for secret in URL_SECRETS:
        assert secret not in text


def test_the_same_url_with_the_same_password_is_shown_as_a_shared_secret(tmp_path: Path) -> None:
    pipeline_file = _copy(tmp_path)
    for account in ("qa", "prod"):
        _append(pipeline_file, account, "EP_CACHE_URL=redis://:Same-Redis-Tok@cache.example.internal:6379\n")
    live = next(
        f
        for f in diff_accounts(load_pipeline(pipeline_file), "qa", "prod").files
        if f.file == "AWS/Config/live.env"
    )
    [cache] = [k for k in live.changed if k.key == "EP_CACHE_URL"]
    assert (cache.status, cache.a) == ("same", "redis://:****@cache.example.internal:6379")


def _cloudops(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_outputs_carry_no_url_secret(tmp_path: Path) -> None:
    pipeline = str(_leaky_urls(tmp_path))
    runs = [
        _cloudops("config", "check", "--json", "--pipeline", pipeline),
        _cloudops("config", "check", "--pipeline", pipeline),
        _cloudops("config", "diff", "qa", "prod", "--json", "--pipeline", pipeline),
        _cloudops("config", "diff", "qa", "prod", "--pipeline", pipeline),
    ]
    assert [r.exit_code for r in runs] == [4, 4, 0, 0]
    assert "prod-jms.example.internal" in runs[2].stdout
    for run in runs:
        for secret in URL_SECRETS:
            assert secret not in run.stdout + run.stderr
