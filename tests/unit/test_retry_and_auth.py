from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from cloudops.registry.auth import (
    Credentials,
    DockerConfigKeychain,
    MultiKeychain,
    StaticKeychain,
    parse_challenge,
)
from cloudops.registry.errors import (
    AuthenticationError,
    ManifestBlobUnknownError,
    NotFoundError,
    ServerError,
    TokenExpiredError,
    TooManyRequestsError,
    error_for_status,
    parse_retry_after,
)
from cloudops.registry.retry import RetryPolicy


def _run_flaky(policy: RetryPolicy, errors: list[Exception]) -> tuple[str, int, float]:
    calls = 0

    async def operation() -> str:
        nonlocal calls
        calls += 1
        if errors:
            raise errors.pop(0)
        return "done"

    started = time.monotonic()
    result = asyncio.run(policy.run(operation))
    return result, calls, time.monotonic() - started


def test_retry_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.0)
    result, calls, elapsed = _run_flaky(policy, [TooManyRequestsError("slow down", retry_after=0.3)])
    assert (result, calls) == ("done", 2)
    assert elapsed >= 0.3


def test_a_retry_after_wait_is_never_shorter_and_spread_out() -> None:
    policy = RetryPolicy(base_delay=0.2, max_delay=10.0)
    waits = [policy.delay(1, 1.0) for _ in range(50)]
    assert all(1.0 <= w <= 1.5 for w in waits)
    assert len({round(w, 6) for w in waits}) > 10  # not all at the same moment
    # Throttled again and again: the wait grows past Retry-After with the attempts.
    assert min(policy.delay(6, 1.0) for _ in range(20)) >= 0.2 * 2**5


def test_retry_is_bounded_by_attempts() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.001)
    with pytest.raises(ServerError):
        _run_flaky(policy, [ServerError("500")] * 5)


def test_retry_is_bounded_by_total_time() -> None:
    policy = RetryPolicy(attempts=100, total_seconds=0.2, base_delay=0.0)
    with pytest.raises(TooManyRequestsError):
        _run_flaky(policy, [TooManyRequestsError("x", retry_after=0.15)] * 10)


def test_errors_that_retrying_cannot_fix_are_raised_at_once() -> None:
    policy = RetryPolicy(attempts=5)
    with pytest.raises(NotFoundError):
        _run_flaky(policy, [NotFoundError("gone")])


def test_retry_after_as_http_date() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


def test_error_bodies_keep_registry_codes() -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode()
    error = error_for_status(404, body, what="manifest x:1", host="r.io")
    assert isinstance(error, NotFoundError) and error.has_code("MANIFEST_UNKNOWN")
    expired = error_for_status(
        403,
        json.dumps(
            {
                "errors": [
                    {
                        "code": "DENIED",
                        "message": "Your authorization token has expired. Reauthenticate and try again.",
                    }
                ]
            }
        ).encode(),
        what="x",
        host="r.io",
    )
    assert isinstance(expired, TokenExpiredError)
    assert isinstance(error_for_status(401, b"", what="x", host="r.io"), AuthenticationError)
    assert error_for_status(429, b"", what="x", host="r.io", retry_after="2").retry_after == 2.0


def test_a_manifest_push_that_names_a_blob_the_registry_does_not_hold_is_retried_then_failed() -> None:
    """distribution answers 400 MANIFEST_BLOB_UNKNOWN while another writer re-pushes a blob
    the manifest names: worth a retry, and when retries run out a failure (exit 1), not
    bad input (exit 2)."""
    body = json.dumps(
        {"errors": [{"code": "DIGEST_INVALID"}, {"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown"}]}
    ).encode()
    error = error_for_status(400, body, what="push of manifest x:1", host="r.io")
    assert isinstance(error, ManifestBlobUnknownError) and error.retryable and error.kind == "failed"
    assert RetryPolicy().should_retry(error)
    other = error_for_status(
        400, json.dumps({"errors": [{"code": "MANIFEST_INVALID"}]}).encode(), what="x", host="r.io"
    )
    assert not other.retryable and other.kind == "input"


def test_challenges_parse() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.io/token",service="registry.io",scope="repository:ep/x:pull"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.io/token",
        "service": "registry.io",
        "scope": "repository:ep/x:pull",
    }
    basic = parse_challenge('Basic realm="123.dkr.ecr.us-west-2.amazonaws.com"')
    assert basic is not None and basic.scheme == "basic"


def test_docker_config_and_auth_json(tmp_path: Path) -> None:
    docker = tmp_path / "config.json"
    docker.write_text(
        json.dumps({"auths": {"https://r1.io/v1/": {"auth": base64.b64encode(b"u1:p1").decode()}}})
    )
    containers = tmp_path / "auth.json"
    containers.write_text(json.dumps({"auths": {"r2.io:5000": {"username": "u2", "password": "p:2"}}}))
    keychain = DockerConfigKeychain([containers, docker, tmp_path / "missing.json"])
    assert keychain.resolve("r1.io") == Credentials("u1", "p1")
    assert keychain.resolve("r2.io:5000") == Credentials("u2", "p:2")
    assert keychain.resolve("r3.io") is None


def test_keychains_chain_in_order_and_passwords_stay_out_of_repr() -> None:
    chain = MultiKeychain(
        [
            StaticKeychain({"a.io": Credentials("x", "secret-1")}),
            StaticKeychain({"a.io": Credentials("y", "z")}),
        ]
    )
    found = chain.resolve("a.io")
    assert found == Credentials("x", "secret-1")
    assert "secret-1" not in repr(found)
