"""No secret ever appears in output, history records or the HTML report: every command
runs with credentials and tokens set to recognisable values, at every verbosity, on
success and on failure."""

from __future__ import annotations

import json
from pathlib import Path

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


def _secrets(sandbox: world.SandboxState) -> list[str]:
    """Every secret the runs below can see, the moto-issued ones included."""
    found = [*SENTINELS.values(), REGISTRY_PASSWORD]
    for account in ("build", "qa"):
        keys = assumed_keys(sandbox, account)
        found += [keys["AWS_SECRET_ACCESS_KEY"], keys["AWS_SESSION_TOKEN"]]
    found.append("-auth-token")  # moto's ECR registry password is "<account>-auth-token"
    return found


def _assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked into {where}"


def test_no_command_prints_or_records_a_secret(
    sandbox: world.SandboxState, tmp_path: Path, make_registry
) -> None:  # type: ignore[no-untyped-def]
    world.reset(sandbox)
    ctx = context_for(sandbox.pipeline)
    init_all(ctx)
    publish(ctx, "build", "ep/cortex", "1.0")
    secrets = _secrets(sandbox)
    env = {
        **SENTINELS,
        "AWS_ACCESS_KEY_ID": "AKIASENTINELKEYID01",
        "SOURCE_AWS_ACCESS_KEY_ID": "AKIASENTINELSOURCE1",
        "CLOUDOPS_SRC_CREDS": f"builder:{REGISTRY_PASSWORD}",
        "CLOUDOPS_DEST_CREDS": f"promoter:{REGISTRY_PASSWORD}",
    }
    broken = tmp_path / "broken-pipeline.yaml"
    broken.write_text(
        sandbox.pipeline.read_text()
        .replace('role/cloudops"}}\n  qa', 'role/cloudops"}}\n  qa', 1)
        .replace("arn:aws:iam::222222222222:role/cloudops", "arn:aws:iam::333333333333:role/cloudops")
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
        (["promote", "package", "--to", "qa"], env),
        (["init", "qa"], env),
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
    runs.append(cloudops("audit", "--json", env=env))

    assert {r.returncode for r in runs} & {0} and {r.returncode for r in runs} - {0}  # successes and failures
    for run in runs:
        _assert_clean(run.stdout + run.stderr, secrets, f"the output of {run.args[3:6]}")
        assert "Traceback" not in run.stderr
    records = json.loads(cloudops("history", "--json", env=env).stdout)["records"]
    assert records, "the promotions above should have been recorded"
    _assert_clean(json.dumps(records), secrets, "history records")
    if html.exists():
        _assert_clean(html.read_text(), secrets, "the HTML report")


# Secrets inside URLs, in keys that are not named like secrets (issue 12, section 5).
URL_SECRETS = {
    "EP_JMS_BROKER_URL": "failover:(tcp://ep:SentinelJmsUserInfo42@{a}-jms.ep.internal:61616)",
    "EP_REPORT_DB_URL": "jdbc:mysql://{a}-report.ep.internal/r?user=r&password=SentinelQueryPassword17",
    "EP_ARCHIVE_DB_URL": "mysql://{a}-archive.ep.internal/x?useSSL=true&pwd=SentinelAmpPwd23",
    "EP_MSSQL_URL": "jdbc:sqlserver://{a}-mssql.ep.internal:1433;user=ep;password=SentinelJdbcProp5;encrypt=true",
    "EP_LEGACY_DB_URL": "jdbc:oracle:thin:ep/SentinelOraclePw8@//{a}-ora.ep.internal:1521/svc",
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
