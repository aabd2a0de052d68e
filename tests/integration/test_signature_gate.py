"""Signatures made in build travel with the images, and stages listed in verify.required_for
take only signed images: the sandbox (moto + the ECR-like fronts, which serve the referrers
API) and a plain distribution registry (no API: cosign's .sig tag) for a real cosign
signature."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import load_pipeline
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.pipeline.sign_images import Target, sign_images, verify_images
from cloudops.registry import RegistrySession, TransportSettings
from cloudops.release import load_release
from cloudops.release_plan import plan_release
from cloudops.signing.keys import generate_key_pair, load_public_key, parse_private_key
from cloudops.signing.verify import verify_image
from tests.conftest import Registry
from tests.support.images import Pusher
from tests.support.referrers import make_cosign_signature, tag_of
from tests.support.run import cloudops
from tests.support.sandbox import publish

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cosign"
REPO = "ep/cortex"
PASSWORD = b"correct horse battery staple"


@pytest.fixture
def signed_ctx(ctx: PipelineContext, tmp_path: Path) -> PipelineContext:
    """The sandbox's pipeline with a verify: section (preprod and prod) and a key pair."""
    private, public = generate_key_pair(PASSWORD, scrypt_n=1024)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cosign.key").write_bytes(private)
    (tmp_path / "keys" / "cosign.pub").write_bytes(public)
    text = (
        Path(ctx.pipeline.path or "")
        .read_text()
        .replace("config_root: config", f"config_root: {ctx.pipeline.config_dir}")
    )
    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(text + "verify: {keys: [keys/cosign.pub], required_for: [preprod, prod]}\n")
    return PipelineContext(load_pipeline(pipeline_file))


def _key(context: PipelineContext):  # type: ignore[no-untyped-def]
    path = Path(context.pipeline.path or "").parent / "keys" / "cosign.key"
    return parse_private_key(path.read_bytes(), PASSWORD, str(path))


def test_a_signed_image_is_promoted_into_a_gated_stage_with_its_signature(
    signed_ctx: PipelineContext,
) -> None:
    digest = publish(signed_ctx, "build", REPO, "7.0.0")
    [signed] = sign_images(signed_ctx, [Target(REPO, "7.0.0")], _key(signed_ctx))
    assert signed.status == "signed" and signed.digest == digest
    [again] = sign_images(signed_ctx, [Target(REPO, "7.0.0")], _key(signed_ctx))
    assert again.status == "already signed"  # re-running writes nothing

    for stage in ("qa", "preprod"):
        [result] = promote_images(signed_ctx, stage, [ImageSpec(REPO, "7.0.0")])
        assert result.status == "promoted", result.error
        assert [r["digest"] for r in result.referrers] == [signed.signature]  # by the front's API
        assert result.referrers[0]["via"] == "api"
    keys = [load_public_key(Path(signed_ctx.pipeline.verify_key_paths()[0]))]
    [checked] = verify_images(signed_ctx, "preprod", [Target(REPO, "7.0.0")], keys)
    assert checked.verification.ok and checked.verification.state == "signed"


def test_an_unsigned_image_is_refused_at_the_gate_and_nothing_is_written(signed_ctx: PipelineContext) -> None:
    publish(signed_ctx, "build", REPO, "7.1.0")
    [qa] = promote_images(signed_ctx, "qa", [ImageSpec(REPO, "7.1.0")])
    assert qa.status == "promoted"  # qa requires no signature

    [preprod] = promote_images(signed_ctx, "preprod", [ImageSpec(REPO, "7.1.0")])
    assert preprod.status == "refused"
    assert "no valid signature: no cosign signature refers to it" in str(preprod.error)
    assert "'preprod' accepts only signed images" in str(preprod.error)
    [tags] = verify_images(
        signed_ctx,
        "qa",
        [Target(REPO, "7.1.0")],
        [load_public_key(signed_ctx.pipeline.verify_key_paths()[0])],
    )
    assert tags.verification.state == "unsigned"
    assert _preprod_has(signed_ctx, "7.1.0") is False


def test_a_signature_by_another_key_is_invalid_and_refused(signed_ctx: PipelineContext) -> None:
    publish(signed_ctx, "build", REPO, "7.2.0")
    other_private, _ = generate_key_pair(b"other", scrypt_n=1024)
    sign_images(signed_ctx, [Target(REPO, "7.2.0")], parse_private_key(other_private, b"other", "other"))
    promote_images(signed_ctx, "qa", [ImageSpec(REPO, "7.2.0")])

    [preprod] = promote_images(signed_ctx, "preprod", [ImageSpec(REPO, "7.2.0")])

    assert preprod.status == "refused" and "signed by no trusted key" in str(preprod.error)
    [found] = verify_images(
        signed_ctx,
        "qa",
        [Target(REPO, "7.2.0")],
        [load_public_key(signed_ctx.pipeline.verify_key_paths()[0])],
    )
    assert found.verification.state == "invalid"


def test_a_release_plan_refuses_an_unsigned_image_before_anything_is_written(
    signed_ctx: PipelineContext, tmp_path: Path
) -> None:
    for tag in ("7.3.0",):
        publish(signed_ctx, "build", REPO, tag)
        publish(signed_ctx, "build", "ep/search", tag)
    sign_images(signed_ctx, [Target(REPO, "7.3.0")], _key(signed_ctx))  # ep/search left unsigned
    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        'release: "7.3.0"\nimages:\n'
        '  - {repository: ep/cortex, tag: "7.3.0"}\n'
        '  - {repository: ep/search, tag: "7.3.0"}\n'
    )
    promote_images(signed_ctx, "qa", [ImageSpec(REPO, "7.3.0"), ImageSpec("ep/search", "7.3.0")])

    plan, _ = plan_release(signed_ctx, "preprod", load_release(release_file))

    by_name = {i.name: i for i in plan.images}
    assert by_name["ep/cortex:7.3.0"].status == "copy" and by_name["ep/cortex:7.3.0"].signed is True
    assert by_name["ep/search:7.3.0"].status == "refused-unsigned"
    assert not plan.ok and any("ep/search:7.3.0" in r and "no valid signature" in r for r in plan.refusals)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    applied = cloudops("apply", str(plan_file), "--pipeline", str(signed_ctx.pipeline.path))
    assert applied.returncode == 3, applied.stderr
    assert _preprod_has(signed_ctx, "7.3.0", REPO) is False  # not even the signed one


def test_sign_and_verify_commands(signed_ctx: PipelineContext, tmp_path: Path) -> None:
    publish(signed_ctx, "build", REPO, "7.4.0")
    pipeline = str(signed_ctx.pipeline.path)
    key = str(Path(pipeline).parent / "keys" / "cosign.key")
    password = PASSWORD.decode()

    refused = cloudops(
        "sign",
        f"{REPO}:7.4.0",
        "--key",
        key,
        "--account",
        "qa",
        "--pipeline",
        pipeline,
        env={"COSIGN_PASSWORD": password},
    )
    assert refused.returncode == 3 and "build account only" in refused.stderr
    missing = cloudops("sign", f"{REPO}:7.4.0", "--key", key, "--pipeline", pipeline)
    wrong = cloudops(
        "sign",
        f"{REPO}:7.4.0",
        "--key",
        key,
        "--pipeline",
        pipeline,
        env={"COSIGN_PASSWORD": "not-it-at-all"},
    )
    assert (
        wrong.returncode == 2
        and "not-it-at-all" not in wrong.stderr + wrong.stdout
        and "Traceback" not in wrong.stderr
    )
    assert missing.returncode == 2

    unsigned = cloudops("verify", f"{REPO}:7.4.0", "--pipeline", pipeline, "--json")
    assert unsigned.returncode == 3 and json.loads(unsigned.stdout)["images"][0]["state"] == "unsigned"
    done = cloudops(
        "sign",
        f"{REPO}:7.4.0",
        "--key",
        key,
        "--pipeline",
        pipeline,
        "--json",
        env={"COSIGN_PASSWORD": password},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"][0]["status"] == "signed"
    ok = cloudops("verify", f"{REPO}:7.4.0", "--pipeline", pipeline)
    assert ok.returncode == 0 and "signed" in ok.stderr


def _preprod_has(context: PipelineContext, tag: str, repository: str = REPO) -> bool:
    async def look() -> bool:
        async with RegistrySession(context.keychain("preprod"), context.transport_settings()) as pool:
            return (
                await pool.reader(context.registry_host("preprod")).head_manifest(repository, tag) is not None
            )

    return asyncio.run(look())


# -- a real cosign signature, through a registry ---------------------------------------------

# sigstore/sigstore-rs src/cosign/signature_layers.rs (tests/fixtures/cosign/README.md): a
# signature cosign made of busybox sha256:f3cfc9d0…, its payload and public key.
BUSYBOX = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"


@pytest.mark.parametrize("tamper", [None, "payload", "signature"])
def test_a_signature_made_by_the_real_cosign_verifies_from_its_sig_tag(
    registry: Registry, tamper: str | None
) -> None:
    payload = (FIXTURES / "busybox.payload.json").read_bytes().strip()
    signature = (FIXTURES / "busybox.signature.b64").read_text().strip()
    if tamper == "payload":
        payload = payload.replace(b"registry-testing", b"registry-tasting")  # one byte changed
    elif tamper == "signature":
        signature = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    Pusher(registry.url).push(
        "library/busybox", tag_of(BUSYBOX, "sig"), make_cosign_signature(payload, signature)
    )
    keys = [load_public_key(FIXTURES / "busybox.pub")]

    async def check():  # type: ignore[no-untyped-def]
        async with RegistrySession(None, TransportSettings.build([registry.host])) as pool:
            return await verify_image(pool.reader(registry.host), "library/busybox", BUSYBOX, keys)

    verdict = asyncio.run(check())
    assert verdict.ok is (tamper is None), verdict.reason
    assert verdict.state == ("signed" if tamper is None else "invalid")
