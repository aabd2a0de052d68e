"""Shared fixtures: real distribution registries on free loopback ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, settings

from cloudops.sandbox import world
from cloudops.sandbox.processes import ServerProcess, start_registry
from tests.support.sandbox import context_for, init_all, running_sandbox

# CI machines are small and busy: judge properties by examples, never by wall time.
# "ci" (the default, and what `make test` names) is derandomized: the same examples on
# every run, seeded from each test, and no example database, so a red `make test` is red
# again on the next run and on any machine. "random" (`make soak`) draws new examples each
# run, more of them, and prints how to reproduce a failure.
_PATIENT = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, **_PATIENT)
settings.register_profile("random", derandomize=False, max_examples=500, print_blob=True, **_PATIENT)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))  # --hypothesis-profile wins

PROXY_VARIABLES = tuple(
    name for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY") for name in (base, base.lower())
)


@pytest.fixture(autouse=True, scope="session")
def _no_inherited_proxy() -> Iterator[None]:
    """A CI machine's proxy must not carry the tests' loopback traffic (registries, moto,
    the CLI they start): the proxy tests set their own variables."""
    saved = {name: os.environ.pop(name) for name in PROXY_VARIABLES if name in os.environ}
    yield
    os.environ.update(saved)


@dataclass
class Registry:
    process: ServerProcess
    root: Path
    auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def host(self) -> str:
        return self.process.url.split("://", 1)[1]


@pytest.fixture
def make_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    started: list[Registry] = []

    def make(*, auth: tuple[str, str] | None = None, tls: tuple[Path, Path] | None = None) -> Registry:
        """A fresh registry; with ``tls`` (certificate, key) it serves HTTPS."""
        root = tmp_path_factory.mktemp("registry")
        htpasswd = None
        if auth is not None:
            htpasswd = root / "htpasswd"
            hashed = bcrypt.hashpw(auth[1].encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd.write_text(f"{auth[0]}:{hashed}\n")
        registry = Registry(start_registry(root, htpasswd=htpasswd, tls=tls), root, auth)
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.process.stop()
        shutil.rmtree(registry.root, ignore_errors=True)


@pytest.fixture
def registry(make_registry) -> Registry:  # type: ignore[no-untyped-def]
    return make_registry()


@pytest.fixture
def registry2(make_registry) -> Registry:  # type: ignore[no-untyped-def]
    return make_registry()


# --- the sandbox world (moto server + ECR-like registries), one per test module ------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[world.SandboxState]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as state:
        yield state


@pytest.fixture
def ctx(sandbox: world.SandboxState):  # type: ignore[no-untyped-def]
    """A clean world (moto reset, registries emptied) with every account initialized.
    Built after the reset: keys assumed before it would act in moto's default account."""
    world.reset(sandbox)
    context = context_for(sandbox.pipeline)
    init_all(context)
    return context
