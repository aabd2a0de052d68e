"""`cloudops promote image` against the ECR-like front's ECR paths (issue 13): blob reads
redirected (307) to a presigned URL on the front's blob host, which refuses credentials as
S3 does; throttling (429 TOOMANYREQUESTS with Retry-After) above a request rate."""

from __future__ import annotations

import json
from typing import Any

import httpx

from cloudops.sandbox import world
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import publish, registry_digest


def _front(sandbox: world.SandboxState, account: str) -> str:
    return f"http://{sandbox.registries[account]}"


def _stats(sandbox: world.SandboxState, account: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{_front(sandbox, account)}/_sandbox/stats", timeout=10).json()
    return stats


def _throttle(sandbox: world.SandboxState, account: str, rate: float) -> None:
    # world.reset (the ctx fixture) switches it off again for the next test.
    answer = httpx.post(f"{_front(sandbox, account)}/_sandbox/throttle?rate={rate}", timeout=10)
    assert answer.status_code == 200, answer.text


def _promote(repository: str, tag: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cloudops(
        "promote", "image", "--to", "qa", "--repository", repository, "--tag", tag, "--json", env=env
    )


def test_promotion_reads_blobs_through_the_redirect_without_credentials(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    digest = publish(ctx, "build", "ep/cortex", "1.0")
    result = _promote("ep/cortex", "1.0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["status"] == "promoted"
    assert registry_digest(ctx, "qa", "ep/cortex", "1.0") == digest

    source = _stats(sandbox, "build")
    # Every blob came from the blob host (the S3 stand-in), and no request reached it with
    # the registry's Authorization (it would have been refused: 400 InvalidArgument).
    assert source["redirected"] > 0 and source["blob_served"] == source["redirected"]
    assert (source["blob_refused"], source["blob_refused_auth"]) == (0, 0)


def test_promotion_under_a_low_request_rate_backs_off_and_completes(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    digest = publish(ctx, "build", "ep/search", "2.0")
    # 3 requests per second per account: the promotion's first burst (manifest and blob
    # HEADs, upload POSTs) meets 429s. Retries wait at least Retry-After, spread out: when
    # they all waited exactly Retry-After, every blob retried at once and a 429 on a blob's
    # PUT restarted the blob with a new POST, for ever (RetryPolicy.delay).
    for account in ("build", "qa"):
        _throttle(sandbox, account, 3)
    result = _promote("ep/search", "2.0", env={"CLOUDOPS_RETRY_ATTEMPTS": "10"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["status"] == "promoted"
    throttled = _stats(sandbox, "build")["throttled"] + _stats(sandbox, "qa")["throttled"]
    assert throttled > 0, "the promotion never met a 429: the rate is too high to prove anything"
    for account in ("build", "qa"):
        _throttle(sandbox, account, 0)  # the checks below must not meet the limit
    assert registry_digest(ctx, "qa", "ep/search", "2.0") == digest


def test_promotion_exits_1_when_throttling_outlasts_the_retries(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/batch", "3.0")
    # One request per 10 s: the second is answered 429 with Retry-After 10, longer than the
    # time left for retries.
    _throttle(sandbox, "build", 0.1)
    result = _promote("ep/batch", "3.0", env={"CLOUDOPS_RETRY_ATTEMPTS": "2", "CLOUDOPS_RETRY_SECONDS": "2"})
    assert_clean_failure(result, 1, "429 TOOMANYREQUESTS")
    assert _stats(sandbox, "build")["throttled"] > 0
    assert registry_digest(ctx, "qa", "ep/batch", "3.0") is None
