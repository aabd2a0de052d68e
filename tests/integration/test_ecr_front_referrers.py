"""The ECR-like front's OCI 1.1 referrers API (distribution 2.8 behind it has none), against
the real processes: moto in server mode, docker-registry behind the front. Images and
referrers are pushed with plain httpx (tests/support/images.py), never with cloudops' client;
the lists must come from moto's ECR, so a flush or a restarted front loses nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudops.sandbox import world
from cloudops.sandbox.ecr_front import referrer_of
from cloudops.sandbox.processes import listening_socket, wait_for_http
from tests.integration.test_ecr_front import Account, _account
from tests.support.images import OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Blob, Pusher, make_image, random_layer

SBOM_TYPE = "application/vnd.example.sbom.v1+json"  # a '+': query encoding matters
SIGNATURE_CONFIG = "application/vnd.example.signature.config.v1+json"
EMPTY = Blob(b"{}", "application/vnd.oci.empty.v1+json")
REFERRERS_TYPE = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def qa(sandbox: world.SandboxState) -> Account:
    return _account(sandbox, "qa")


@pytest.fixture(scope="module")
def build(sandbox: world.SandboxState) -> Account:
    return _account(sandbox, "build")


# -- helpers ------------------------------------------------------------------------------------
def _repo(prefix: str) -> str:
    return f"test/{prefix}-{uuid.uuid4().hex[:8]}"


def _pusher(account: Account, base: str | None = None) -> Pusher:
    return Pusher(base or account.base, auth=("AWS", account.password))


def _subject_image(pusher: Pusher, name: str, tag: str) -> tuple[bytes, str]:
    """Push an ordinary image; its manifest bytes and digest."""
    image = make_image([random_layer(1500, oci=True)], oci=True, label=tag)
    pusher.push(name, tag, image)
    return image.manifest, image.digest


def _subject(manifest: bytes, digest: str) -> dict[str, object]:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)}


def _artifact(
    subject: dict[str, object], payload: bytes, annotations: dict[str, str] | None = None
) -> tuple[bytes, list[Blob]]:
    """An OCI 1.1 artifact (artifactType, empty config) referring to ``subject``."""
    blob = Blob(payload, "application/spdx+json")
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": EMPTY.descriptor(),
        "layers": [blob.descriptor()],
        "subject": subject,
    }
    if annotations is not None:
        doc["annotations"] = annotations
    return json.dumps(doc, indent=2).encode(), [EMPTY, blob]


def _signature(subject: dict[str, object]) -> tuple[bytes, list[Blob]]:
    """An image manifest with no artifactType: its config's media type is its type."""
    config = Blob(json.dumps({"signed": uuid.uuid4().hex}).encode(), SIGNATURE_CONFIG)
    layer = Blob(os.urandom(300), OCI_LAYER)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "subject": subject,
    }
    return json.dumps(doc).encode(), [config, layer]


def _put(
    pusher: Pusher, name: str, manifest: bytes, blobs: list[Blob], ref: str | None = None
) -> httpx.Response:
    """Push ``manifest`` (by digest unless ``ref``) after its blobs: the PUT's answer."""
    for blob in blobs:
        pusher.push_blob(name, blob)
    digest = Blob(manifest, OCI_MANIFEST).digest
    answer = pusher.client.put(
        f"/v2/{name}/manifests/{ref or digest}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == digest
    return answer


def _referrers(pusher: Pusher, name: str, digest: str, **params: str) -> httpx.Response:
    return pusher.client.get(f"/v2/{name}/referrers/{digest}", params=params)


def _listed(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == REFERRERS_TYPE
    index = answer.json()
    assert (index["schemaVersion"], index["mediaType"]) == (2, OCI_INDEX)
    manifests: list[dict[str, Any]] = index["manifests"]
    return manifests


def _errors(answer: httpx.Response) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = answer.json()["errors"]
    return errors


def _stats(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{base}/_sandbox/stats", timeout=10).json()
    return stats


@dataclass
class Pushed:
    """A subject image with two referrers, and an image with a referrer of its own."""

    name: str
    subject: str
    sbom: bytes
    signature: bytes
    other_subject: str
    other_sbom: bytes
    answers: dict[str, httpx.Response]

    def expected(self) -> list[dict[str, Any]]:
        entries = [
            {
                "mediaType": OCI_MANIFEST,
                "digest": Blob(self.sbom, OCI_MANIFEST).digest,
                "size": len(self.sbom),
                "artifactType": SBOM_TYPE,
                "annotations": {"org.opencontainers.image.created": "2026-01-02T03:04:05Z", "kind": "sbom"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": Blob(self.signature, OCI_MANIFEST).digest,
                "size": len(self.signature),
                "artifactType": SIGNATURE_CONFIG,
            },
        ]
        return sorted(entries, key=lambda e: str(e["digest"]))


def _push_referrers(account: Account, name: str, base: str | None = None) -> Pushed:
    account.ecr.create_repository(repositoryName=name)
    pusher = _pusher(account, base)
    with pusher.client:
        manifest, digest = _subject_image(pusher, name, "1.0")
        other_manifest, other_digest = _subject_image(pusher, name, "2.0")
        sbom, sbom_blobs = _artifact(
            _subject(manifest, digest),
            b'{"spdxVersion": "SPDX-2.3"}',
            {"org.opencontainers.image.created": "2026-01-02T03:04:05Z", "kind": "sbom"},
        )
        signature, signature_blobs = _signature(_subject(manifest, digest))
        other_sbom, other_blobs = _artifact(_subject(other_manifest, other_digest), b'{"other": true}')
        answers = {
            "sbom": _put(pusher, name, sbom, sbom_blobs),
            "signature": _put(pusher, name, signature, signature_blobs),
            "other": _put(pusher, name, other_sbom, other_blobs),
        }
    return Pushed(name, digest, sbom, signature, other_digest, other_sbom, answers)


@contextmanager
def _own_front(
    sandbox: world.SandboxState, account: Account, listener: socket.socket, log: Path, **settings: object
) -> Iterator[str]:
    """A front process of our own for ``account`` on ``listener`` (same moto, same backend
    as the sandbox's): its base URL while it runs."""
    port = listener.getsockname()[1]
    config = log.with_suffix(".json")
    config.write_text(
        json.dumps(
            {
                "moto_url": sandbox.moto_url,
                "region": world.REGION,
                **settings,
                "accounts": [
                    {"account_id": account.account_id, "listen_port": port, "backend": account.backend}
                ],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    with log.open("ab") as out:
        front = subprocess.Popen(
            [
                *(sys.executable, "-m", "cloudops.sandbox.ecr_front", "--config", str(config)),
                f"--listen-fd={account.account_id}={listener.fileno()}",
            ],
            stdout=out,
            stderr=out,
            env=env,
            pass_fds=[listener.fileno()],
        )
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/_sandbox/health",
            process=front,
            identify=lambda status, _h, body: (
                status == 200 and json.loads(body)["account_id"] == account.account_id
            ),
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        front.terminate()
        front.wait(timeout=10)


# -- the API --------------------------------------------------------------------------------------
def test_referrers_lists_exactly_the_manifests_whose_subject_is_the_digest(qa: Account) -> None:
    before = _stats(qa.base)
    pushed = _push_referrers(qa, _repo("referrers"))
    # Each referrer PUT names its subject, as registries with the API answer.
    assert pushed.answers["sbom"].headers["OCI-Subject"] == pushed.subject
    assert pushed.answers["signature"].headers["OCI-Subject"] == pushed.subject
    assert pushed.answers["other"].headers["OCI-Subject"] == pushed.other_subject

    with _pusher(qa).client as client:
        answer = client.get(f"/v2/{pushed.name}/referrers/{pushed.subject}")
        other = client.get(f"/v2/{pushed.name}/referrers/{pushed.other_subject}")
        # The referrers themselves have none.
        none = client.get(f"/v2/{pushed.name}/referrers/{Blob(pushed.sbom, OCI_MANIFEST).digest}")
        head = client.head(f"/v2/{pushed.name}/referrers/{pushed.subject}")
    assert _listed(answer) == pushed.expected()
    assert "OCI-Filters-Applied" not in answer.headers
    assert _listed(other) == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": Blob(pushed.other_sbom, OCI_MANIFEST).digest,
            "size": len(pushed.other_sbom),
            "artifactType": SBOM_TYPE,
        }
    ]
    assert _listed(none) == []
    assert (head.status_code, head.content) == (200, b"")
    assert _stats(qa.base)["referrers_served"] - before["referrers_served"] == 4


def test_a_plain_image_push_has_no_oci_subject_and_a_new_referrer_is_listed_at_once(qa: Account) -> None:
    name = _repo("at-once")
    qa.ecr.create_repository(repositoryName=name)
    pusher = _pusher(qa)
    with pusher.client:
        image = make_image([random_layer(800, oci=True)], oci=True)
        for blob in image.blobs:
            pusher.push_blob(name, blob)
        plain = pusher.client.put(
            f"/v2/{name}/manifests/1.0", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert plain.status_code == 201 and "OCI-Subject" not in plain.headers
        assert _listed(_referrers(pusher, name, image.digest)) == []  # now in memory
        signature, blobs = _signature(_subject(image.manifest, image.digest))
        _put(pusher, name, signature, blobs)
        listed = _listed(_referrers(pusher, name, image.digest))
    assert [e["digest"] for e in listed] == [Blob(signature, OCI_MANIFEST).digest]


def test_artifact_type_filter_keeps_that_type_and_says_so(qa: Account) -> None:
    pushed = _push_referrers(qa, _repo("filter"))
    sbom, signature = sorted(pushed.expected(), key=lambda e: e["artifactType"] != SBOM_TYPE)
    with _pusher(qa).client as client:
        url = f"/v2/{pushed.name}/referrers/{pushed.subject}"
        by_sbom = client.get(url, params={"artifactType": SBOM_TYPE})  # '+' sent as %2B
        by_signature = client.get(url, params={"artifactType": SIGNATURE_CONFIG})
        by_nothing = client.get(url, params={"artifactType": "application/vnd.example.none"})
        raw_plus = client.get(f"{url}?artifactType={SBOM_TYPE}")  # '+' left unencoded
    for answer, expected in [
        (by_sbom, [sbom]),
        (by_signature, [signature]),
        (by_nothing, []),
        (raw_plus, [sbom]),
    ]:
        assert _listed(answer) == expected
        assert answer.headers["OCI-Filters-Applied"] == "artifactType"


def test_unknown_subject_is_an_empty_list_and_a_malformed_digest_is_400(qa: Account) -> None:
    name = _repo("unknown")
    qa.ecr.create_repository(repositoryName=name)
    with _pusher(qa).client as client:
        unknown = client.get(f"/v2/{name}/referrers/sha256:{'0' * 64}")
        assert _listed(unknown) == []
        for bad in ["sha256:1234", f"sha256:{'A' * 64}", f"md5:{'0' * 32}", "latest", f"sha256:{'g' * 64}"]:
            refused = client.get(f"/v2/{name}/referrers/{bad}")
            assert refused.status_code == 400, bad
            assert refused.headers["Content-Type"].startswith("application/json")
            [error] = _errors(refused)
            assert error["code"] == "DIGEST_INVALID" and bad in error["message"]
        # The same checks as every /v2/ request come first.
        missing = client.get(f"/v2/test/not-in-ecr/referrers/sha256:{'0' * 64}")
        assert missing.status_code == 404 and _errors(missing)[0]["code"] == "NAME_UNKNOWN"
        assert client.delete(f"/v2/{name}/referrers/sha256:{'0' * 64}").status_code == 405


def test_unauthenticated_or_wrong_account_requests_get_401(qa: Account, build: Account) -> None:
    pushed = _push_referrers(qa, _repo("auth"))
    url = f"{qa.base}/v2/{pushed.name}/referrers/{pushed.subject}"
    anonymous = httpx.get(url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == f'Basic realm="{qa.front}",service="ecr.amazonaws.com"'
    assert _errors(anonymous)[0]["code"] == "UNAUTHORIZED"
    assert httpx.get(url, auth=("AWS", build.password), timeout=10).status_code == 401


def test_lists_are_per_repository_and_per_account(qa: Account, build: Account) -> None:
    name, sibling = _repo("scoped"), _repo("scoped-sibling")
    pushed = _push_referrers(qa, name)
    subject = {"mediaType": OCI_MANIFEST, "digest": pushed.subject, "size": 1}
    # The same subject digest, referred to from another repository of qa and from a
    # repository of the same name in build: neither shows in qa's list for ``name``.
    qa.ecr.create_repository(repositoryName=sibling)
    build.ecr.create_repository(repositoryName=name)
    sibling_sbom, blobs = _artifact(subject, b'{"sibling": 1}')
    build_sbom, build_blobs = _artifact(subject, b'{"build": 1}')
    in_qa_pusher, in_build_pusher = _pusher(qa), _pusher(build)
    with in_qa_pusher.client, in_build_pusher.client:
        _put(in_qa_pusher, sibling, sibling_sbom, blobs)
        _put(in_build_pusher, name, build_sbom, build_blobs)
        in_qa = _listed(_referrers(in_qa_pusher, name, pushed.subject))
        in_sibling = _listed(_referrers(in_qa_pusher, sibling, pushed.subject))
        in_build = _listed(_referrers(in_build_pusher, name, pushed.subject))
    assert in_qa == pushed.expected()
    assert [e["digest"] for e in in_sibling] == [Blob(sibling_sbom, OCI_MANIFEST).digest]
    assert [e["digest"] for e in in_build] == [Blob(build_sbom, OCI_MANIFEST).digest]


# -- ECR is the source of truth -------------------------------------------------------------------
def test_lists_survive_a_flush_rebuilt_from_ecr(qa: Account) -> None:
    pushed = _push_referrers(qa, _repo("flush"))
    with _pusher(qa).client as client:
        before = _listed(client.get(f"/v2/{pushed.name}/referrers/{pushed.subject}"))
        flushed = httpx.post(f"{qa.base}/_sandbox/flush", timeout=10)
        assert flushed.status_code == 200
        assert _stats(qa.base)["referrers_served"] == 0
        after = _listed(client.get(f"/v2/{pushed.name}/referrers/{pushed.subject}"))
        filtered = client.get(
            f"/v2/{pushed.name}/referrers/{pushed.subject}", params={"artifactType": SIGNATURE_CONFIG}
        )
    assert before == after == pushed.expected()
    assert [e["artifactType"] for e in _listed(filtered)] == [SIGNATURE_CONFIG]


def test_a_restarted_front_process_lists_the_same(
    sandbox: world.SandboxState, qa: Account, tmp_path: Path
) -> None:
    pushed = _push_referrers(qa, _repo("restart"))
    listener = listening_socket()  # kept: each front process serves on the same port
    with listener:
        for attempt in range(2):
            with (
                _own_front(sandbox, qa, listener, tmp_path / "front.log") as base,
                _pusher(qa, base).client as client,
            ):
                listed = _listed(client.get(f"/v2/{pushed.name}/referrers/{pushed.subject}"))
                assert listed == pushed.expected(), attempt
                assert _stats(base)["referrers_served"] == 1


def test_referrers_api_off_is_distributions_404_and_no_oci_subject(
    sandbox: world.SandboxState, qa: Account, tmp_path: Path
) -> None:
    name = _repo("api-off")
    listener = listening_socket()
    with listener, _own_front(sandbox, qa, listener, tmp_path / "front.log", referrers_api=False) as base:
        pushed = _push_referrers(qa, name, base)
        assert all("OCI-Subject" not in answer.headers for answer in pushed.answers.values())
        pusher = _pusher(qa, base)
        with pusher.client:
            off = _referrers(pusher, name, pushed.subject)
            assert off.status_code == 404
            # Exactly distribution 2.8's answer (the backend's, not an error of the front's).
            backend = httpx.get(f"{qa.backend}/v2/{name}/referrers/{pushed.subject}", timeout=10)
            assert (off.status_code, off.content) == (backend.status_code, backend.content)
            # Still after authentication and the repository check.
            assert httpx.get(f"{base}/v2/{name}/referrers/{pushed.subject}", timeout=10).status_code == 401
            missing = _referrers(pusher, "test/not-in-ecr", pushed.subject)
            assert _errors(missing)[0]["code"] == "NAME_UNKNOWN"

            # The referrers tag schema, as a client falls back to it: an index tagged
            # sha256-<subject hex> listing the referrers, an ordinary push.
            tag = pushed.subject.replace(":", "-")
            fallback = json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": pushed.expected()}
            )
            put = pusher.client.put(
                f"/v2/{name}/manifests/{tag}", content=fallback, headers={"Content-Type": OCI_INDEX}
            )
            assert put.status_code == 201, put.text
            assert "OCI-Subject" not in put.headers
            got = pusher.client.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_INDEX})
            assert got.json()["manifests"] == pushed.expected()

    # What was pushed with the API off is in ECR: a front with it on lists it.
    with _pusher(qa).client as client:
        assert _listed(client.get(f"/v2/{name}/referrers/{pushed.subject}")) == pushed.expected()


# -- hostile manifests ----------------------------------------------------------------------------
def test_manifests_whose_subject_does_not_parse_are_not_referrers(qa: Account) -> None:
    name = _repo("hostile")
    qa.ecr.create_repository(repositoryName=name)
    pusher = _pusher(qa)
    with pusher.client:
        manifest, digest = _subject_image(pusher, name, "1.0")
        good, good_blobs = _artifact(_subject(manifest, digest), b'{"good": 1}')
        # distribution 2.8 knows neither subject nor artifactType and stores all of these.
        bad_subjects: list[object] = [
            digest,
            {"mediaType": OCI_MANIFEST, "digest": digest.upper(), "size": 1},
            {"mediaType": OCI_MANIFEST, "digest": digest[:-1], "size": 1},
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": "1"},
            {"mediaType": OCI_MANIFEST, "digest": [digest], "size": 1},
        ]
        for bad in bad_subjects:
            raw, blobs = _artifact({}, f'{{"bad": {uuid.uuid4().int}}}'.encode())
            doc = json.loads(raw)
            doc["subject"] = bad
            answer = _put(pusher, name, json.dumps(doc).encode(), blobs)
            assert "OCI-Subject" not in answer.headers, bad
        odd_type = json.loads(good)
        odd_type["artifactType"] = 5
        odd_type["layers"][0]["annotations"] = {"n": str(uuid.uuid4())}
        assert "OCI-Subject" not in _put(pusher, name, json.dumps(odd_type).encode(), good_blobs).headers
        _put(pusher, name, good, good_blobs)
        listed = _listed(_referrers(pusher, name, digest))
        httpx.post(f"{qa.base}/_sandbox/flush", timeout=10).raise_for_status()
        rebuilt = _listed(_referrers(pusher, name, digest))
    assert (
        [e["digest"] for e in listed] == [e["digest"] for e in rebuilt] == [Blob(good, OCI_MANIFEST).digest]
    )


def test_referrer_of_parses_defensively() -> None:
    subject = f"sha256:{'a' * 64}"

    def parsed(doc: object, media_type: str | None = OCI_MANIFEST) -> tuple[str, dict[str, Any]] | None:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return referrer_of(raw, Blob(raw, OCI_MANIFEST).digest, media_type)

    base = {"schemaVersion": 2, "config": {"mediaType": SIGNATURE_CONFIG}, "subject": {"digest": subject}}
    found = parsed(base)
    assert found is not None and found[0] == subject
    assert found[1]["mediaType"] == OCI_MANIFEST and found[1]["artifactType"] == SIGNATURE_CONFIG
    assert "annotations" not in found[1]
    # An index's type is only its own artifactType.
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": {"digest": subject}}
    found = parsed(index, None)
    assert found is not None and "artifactType" not in found[1] and found[1]["mediaType"] == OCI_INDEX
    typed_index, empty_type = (
        parsed({**index, "artifactType": SBOM_TYPE}),
        parsed({**base, "artifactType": ""}),
    )
    assert typed_index is not None and typed_index[1]["artifactType"] == SBOM_TYPE
    assert empty_type is not None and empty_type[1]["artifactType"] == SIGNATURE_CONFIG  # empty: as missing
    # Not referrers, or not parseable: left out.
    for doc in [
        b"not json",
        b"\xff\xfe{",
        b"[" * 100_000 + b"]" * 100_000,
        [base],
        "a string",
        {k: v for k, v in base.items() if k != "subject"},
        {**base, "subject": None},
        {**base, "subject": {"digest": subject, "size": True}},
        {**base, "subject": {"digest": subject, "size": -1}},
        {**base, "subject": {"digest": f"sha256:{'a' * 63}"}},
        {**base, "subject": {"digest": f"SHA256:{'a' * 64}"}},
        {**base, "config": "x"},
        {**base, "config": {"mediaType": 7}},
        {**base, "artifactType": ["x"]},
        {**base, "annotations": ["x"]},
        {**base, "annotations": {"x": 1}},
        {**base, "mediaType": 3},
    ]:
        assert parsed(doc) is None, doc
    assert parsed(base, None) is None  # no mediaType field and none pushed with it
    # The bytes must be those the digest names.
    raw = json.dumps(base).encode()
    assert referrer_of(raw, f"sha256:{'b' * 64}", OCI_MANIFEST) is None
    assert referrer_of(raw, "md5:x", OCI_MANIFEST) is None
