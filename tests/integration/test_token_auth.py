"""The bearer-token flow against `docker-registry` configured with `auth: token` and a
real token server (tests/support/token_server.py): tokens asked per scope with Basic
credentials, sent on every request including the blob bytes' worker threads, and
refreshed when the registry refuses one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from cloudops.sandbox.processes import ServerProcess, start_registry
from tests.support.images import Pusher, TestImage, make_image, make_index, random_layer
from tests.support.run import assert_clean_failure, cloudops
from tests.support.token_server import BearerAuth, TokenServer, token_server

USER, PASSWORD = "ci-robot", "tok3n-pass-never-printed"
MiB = 1024 * 1024


class World(NamedTuple):
    tokens: TokenServer
    src: ServerProcess
    dst: ServerProcess
    image: TestImage

    def host(self, server: ServerProcess) -> str:
        return server.url.split("://", 1)[1]

    def pusher(self, server: ServerProcess) -> Pusher:
        pusher = Pusher(server.url)
        pusher.client.auth = BearerAuth(USER, PASSWORD)
        return pusher


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with token_server(tmp_path / "tokens", {USER: PASSWORD}) as tokens:
        src = start_registry(tmp_path / "src", auth_section=tokens.registry_config())
        dst = start_registry(tmp_path / "dst", auth_section=tokens.registry_config())
        try:
            amd = make_image([random_layer(3 * MiB), random_layer(100 * 1024)], oci=True, arch="amd64")
            arm = make_image([random_layer(2 * MiB), random_layer(100 * 1024)], oci=True, arch="arm64")
            image = make_index([(amd, "amd64"), (arm, "arm64")], oci=True)
            world = World(tokens, src, dst, image)
            world.pusher(src).push("ep/cortex", "7", image)
            tokens.issued = 0
            tokens.scopes_asked.clear()
            yield world
        finally:
            src.stop()
            dst.stop()


def _copy(world: World, password: str = PASSWORD) -> object:
    src, dst = world.host(world.src), world.host(world.dst)
    return cloudops(
        "copy",
        "--json",
        "-q",
        f"{src}/ep/cortex:7",
        f"{dst}/ep/cortex:7",
        "--insecure-registry",
        src,
        "--insecure-registry",
        dst,
        # The realm is plain HTTP on another port: credentials go there only when the user
        # names it (registry/trust.py; test_credential_boundaries.py has the refusal).
        "--insecure-registry",
        world.tokens.url.split("://", 1)[1],
        env={"CLOUDOPS_SRC_CREDS": f"{USER}:{password}", "CLOUDOPS_DEST_CREDS": f"{USER}:{password}"},
    )


def _assert_copied(world: World) -> None:
    reader = world.pusher(world.dst)
    assert reader.manifest_digest("ep/cortex", "7") == world.image.digest
    assert all(reader.blob_exists("ep/cortex", b.digest) for b in world.image.all_blobs())


def test_copy_between_token_auth_registries_keeps_the_digest(world: World) -> None:
    result = _copy(world)
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    # Tokens per scope, each asked once: pull on the source, pull+push on the destination.
    assert "repository:ep/cortex:pull" in world.tokens.scopes_asked
    assert "repository:ep/cortex:pull,push" in world.tokens.scopes_asked
    assert world.tokens.issued <= 4, "tokens asked per request instead of per scope"
    _assert_copied(world)


def test_a_token_the_registry_refuses_is_replaced_and_the_copy_completes(world: World) -> None:
    world.tokens.expired_next = 1  # the registry answers 401 to the first token
    result = _copy(world)
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    assert world.tokens.expired_next == 0 and world.tokens.issued == 4  # one asked again
    _assert_copied(world)


def test_wrong_password_is_refused_by_the_token_service_with_one_line(world: World) -> None:
    wrong = "not-the-" + PASSWORD
    result = _copy(world, password=wrong)
    assert_clean_failure(result, 2, "token service", "refused the credentials")  # type: ignore[arg-type]
    assert wrong not in result.stderr + result.stdout  # type: ignore[attr-defined]
    assert world.pusher(world.dst).manifest_digest("ep/cortex", "7") is None
