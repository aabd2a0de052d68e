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
from cloudops.config import check_config, diff_accounts, secrets
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

# Forms an independent review found shown in clear (value, exactly as shown, the secrets
# found in it to compare between accounts). Hosts stay readable; no character of a
# password is shown, not even the part after a ";" or "," inside it.
FORMS = [
    # the MySQL Go driver's DSN: user:PW@tcp(host)/db, user:PW@unix(/socket)/db
    ("ep:Go-Dsn-Pw1@tcp(qa-db.internal:3306)/x", "ep:****@tcp(qa-db.internal:3306)/x", ["Go-Dsn-Pw1"]),
    (
        "ep:Go-Unix-Pw2@unix(/var/run/mysqld/mysqld.sock)/x?parseTime=true",
        "ep:****@unix(/var/run/mysqld/mysqld.sock)/x?parseTime=true",
        ["Go-Unix-Pw2"],
    ),
    ("ops@corp:Go-At-Pw3@tcp(qa-db.internal)/x", "ops@corp:****@tcp(qa-db.internal)/x", ["Go-At-Pw3"]),
    ("ep:Go@Pw/4@tcp(qa-db.internal)/x", "ep:****@tcp(qa-db.internal)/x", ["Go@Pw/4"]),
    # a user name holding "@": the user info runs to the last "@" before the host
    (
        "smtp://mailer@example.com:Smtp-Pw5@qa-smtp.internal:587",
        "smtp://mailer@example.com:****@qa-smtp.internal:587",
        ["Smtp-Pw5"],
    ),
    # ",", ";", "(", ")" and a space inside a URL's password
    ("mysql://ep:Hun,ter-6@qa-db.internal/x", "mysql://ep:****@qa-db.internal/x", ["Hun,ter-6"]),
    ("mysql://ep:Hun;ter-7@qa-db.internal/x", "mysql://ep:****@qa-db.internal/x", ["Hun;ter-7"]),
    ("mysql://ep:Hun(ter)-8@qa-db.internal/x", "mysql://ep:****@qa-db.internal/x", ["Hun(ter)-8"]),
    ("mysql://ep:Hun ter-9@qa-db.internal/x", "mysql://ep:****@qa-db.internal/x", ["Hun ter-9"]),
    # MySQL Connector/J's address-equals form: (password=PW)
    (
        "jdbc:mysql://address=(host=qa-db.internal)(user=ep)(password=Paren-Pw10)/x",
        "jdbc:mysql://address=(host=qa-db.internal)(user=ep)(password=****)/x",
        ["Paren-Pw10"],
    ),
    # JDBC braced values: masked to the closing brace ("}}" is a brace inside)
    (
        "jdbc:sqlserver://qa-db.internal;password={Brace-Pw;22};encrypt=true",
        "jdbc:sqlserver://qa-db.internal;password=****;encrypt=true",
        ["{Brace-Pw;22}"],
    ),
    (
        "jdbc:sqlserver://qa-db.internal;password={Brace}}Pw;12}",
        "jdbc:sqlserver://qa-db.internal;password=****",
        ["{Brace}}Pw;12}"],
    ),
    # parameter names follow the key rule: pw, db_pw, creds
    (
        "mysql://qa-db.internal/x?user=ep&pw=Short-Pw11",
        "mysql://qa-db.internal/x?user=ep&pw=****",
        ["Short-Pw11"],
    ),
    ("user=ep db_pw=Bare-Pw12 host=qa-db.internal", "user=ep db_pw=**** host=qa-db.internal", ["Bare-Pw12"]),
    # Azure SQL: user=name@server is no user info; the port is no password
    (
        "jdbc:sqlserver://qa.database.windows.net:1433;database=x;user=ep@qa;password=Az@re-Pw13",
        "jdbc:sqlserver://qa.database.windows.net:1433;database=x;user=ep@qa;password=****",
        ["Az@re-Pw13"],
    ),
    # a URL that has its user info is not run into the next word of a list
    (
        "-Dx=http://u:Opt-Pw14@qa-a.internal -Dy=ops@example.com",
        "-Dx=http://u:****@qa-a.internal -Dy=ops@example.com",
        ["Opt-Pw14"],
    ),
]


@pytest.mark.parametrize(("value", "masked", "found"), FORMS)
def test_review_forms_are_masked_and_found(value: str, masked: str, found: list[str]) -> None:
    assert shown("EP_SOME_URL", value) == masked
    assert embedded_secrets(value) == found


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
        # an "@" in the query or the path is no user info, and a port no password
        "http://qa-search.internal:8082/search?notify=ops@example.com",
        "https://qa-npm.internal:4873/@scope/pkg",
        "jdbc:sqlserver://qa.database.windows.net:1433;database=x;user=ep@qa;encrypt=true",
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
        "EP_DB_PW",
        "SMTP_PW",
        "smtp_pw",
        "EP_SMTPPW",
        "smtpPw",
        "EP_PW_FILE",
        "EP_CREDS",
        "AWS_CREDS_JSON",
        "DB_CRED",
    ],
)
def test_secret_keys_in_any_case(key: str) -> None:
    assert is_secret_key(key)
    # No character of a secret is shown, however long: only that it is there.
    assert shown(key, "a-long-secret-value") == "****"
    assert shown(key, "x") == "****" and shown(key, "") == ""


def test_the_first_versions_alias_is_gone() -> None:
    # url_passwords() was kept "for callers of the first version": there are none.
    assert not hasattr(secrets, "url_passwords")


def test_author_is_not_auth() -> None:
    # Elastic Path's authoring environment: EP_AUTHOR_* are ordinary settings.
    assert not is_secret_key("EP_AUTHOR_DB_URL") and not is_secret_key("EP_DB_HOSTNAME")


@pytest.mark.parametrize(
    "key", ["EP_CMS_PWR", "EP_PWR_LEVEL", "EP_CREDIT_LIMIT", "EP_ACCREDITED", "EP_SCREW_SIZE"]
)
def test_pw_and_creds_count_only_at_the_end_of_a_word(key: str) -> None:
    # PW and CRED(S) are secret as the end of a word part (DB_PW, SMTPPW, EP_CREDS), not
    # inside a longer word (PWR, CREDIT).
    assert not is_secret_key(key)


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
# The review's forms, shared by qa and prod: each a finding, no part of it printed.
REVIEW_FORMS = {
    "EP_GO_DSN": "ep:Shared-Go;Pw-1@tcp({a}-db.example.internal:3306)/x",
    "EP_SMTP_URL": "smtp://mailer@example.com:Shared,Smtp-2@{a}-smtp.example.internal:587",
    "EP_CJ_URL": "jdbc:mysql://address=(host={a}-db.example.internal)(user=ep)(password=Shared-Cj-3)/x",
    "EP_MSSQL_URL": "jdbc:sqlserver://{a}-mssql.example.internal;password={{Shared-Brace;Shared-4}}",
}
URL_SECRETS += ["Shared-Go", ";Pw-1", "Shared,Smtp", "Smtp-2", "Shared-Cj", "Shared-Brace", "Shared-4"]


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
            pipeline_file, account, "".join(f"{k}={v.format(a=account)}\n" for k, v in REVIEW_FORMS.items())
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
    assert set(shared) == {
        "EP_JMS_BROKER_URL",
        "EP_REPORT_DB_URL",
        "EP_LEGACY_DB_URL",
        "EP_ADMIN_DB_URL",
        *REVIEW_FORMS,
    }
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
    assert keys["EP_GO_DSN"].b == "ep:****@tcp(prod-db.example.internal:3306)/x"
    assert keys["EP_SMTP_URL"].a == "smtp://mailer@example.com:****@qa-smtp.example.internal:587"
    assert keys["EP_MSSQL_URL"].b == "jdbc:sqlserver://prod-mssql.example.internal;password=****"
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
