"""Running the library and the CLI the way users do."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence

from cloudops.copy import CopyEngine, CopyReport, CopyRequest
from cloudops.refs import parse_reference
from cloudops.registry import RegistrySession, TransportSettings
from cloudops.registry.auth import Keychain
from cloudops.registry.retry import RetryPolicy


def copy_images(
    pairs: Sequence[tuple[str, str]],
    insecure: Iterable[str],
    *,
    keychain: Keychain | None = None,
    allow_tag_move: bool = True,
    concurrency: int = 8,
    retry: RetryPolicy | None = None,
) -> CopyReport:
    requests = [CopyRequest(parse_reference(s), parse_reference(d)) for s, d in pairs]

    async def go() -> CopyReport:
        settings = TransportSettings.build(insecure, retry=retry or RetryPolicy())
        async with RegistrySession(keychain, settings) as pool:
            engine = CopyEngine(pool, concurrency=concurrency)
            return await engine.copy(requests, allow_tag_move=allow_tag_move)

    return asyncio.run(go())


def cloudops(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CLOUDOPS_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "cloudops", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"cloudops {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """One clear message, the documented exit code, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interruptible(args: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
    """A cloudops process that Ctrl-C (SIGINT) reaches, however the test runner was
    started: a shell without job control starts a background command with SIGINT ignored
    (POSIX), its children inherit that, and Python then never installs its handler. A
    suite run as `make test &` would otherwise see cloudops ignore the interrupt."""
    return subprocess.Popen(list(args), preexec_fn=_sigint_default, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]
