"""cosign simple-signing signatures: real signatures made by cosign verify, any changed byte
is refused, hostile payloads are refused cleanly, and the manifests have cosign's shape.

Fixtures and their sources: tests/fixtures/cosign/README.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from cloudops.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Descriptor, ImageManifest, parse_manifest
from cloudops.signing import (
    COSIGN_SIGNATURE_ARTIFACT_TYPE,
    OCI_EMPTY_CONFIG,
    OCI_EMPTY_DATA,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    Payload,
    PublicKey,
    SignatureError,
    SignatureLayer,
    SigningKeyError,
    Verdict,
    check_signature,
    load_public_key,
    make_payload,
    parse_payload,
    parse_public_key,
    sign_payload,
    signature_layers,
    signature_manifest,
    verify_payload,
)
from cloudops.signing.simple_signing import MAX_PAYLOAD_BYTES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cosign"

BUSYBOX_PAYLOAD = (FIXTURES / "busybox.payload.json").read_bytes()
BUSYBOX_SIGNATURE = (FIXTURES / "busybox.signature.b64").read_text()
BUSYBOX_DIGEST = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"
KUBEWARDEN_PAYLOAD = (FIXTURES / "kubewarden.payload.json").read_bytes()
KUBEWARDEN_SIGNATURE = (FIXTURES / "kubewarden.signature.b64").read_text()
KUBEWARDEN_DIGEST = "sha256:5f481572d088dc4023afb35fced9530ced3d9b03bf7299c6f492163cb9f0452e"
OTHER_DIGEST = "sha256:" + "0" * 64


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(payload: bytes, signature: str) -> SignatureLayer:
    return SignatureLayer(_sha256(payload), len(payload), signature)


@pytest.fixture(scope="module")
def busybox_key() -> PublicKey:
    return load_public_key(FIXTURES / "busybox.pub")


@pytest.fixture(scope="module")
def kubewarden_key() -> PublicKey:
    """The public key of the Fulcio certificate cosign signed with (keyless mode)."""
    cert = x509.load_pem_x509_certificate((FIXTURES / "kubewarden.cert.pem").read_bytes())
    pem = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return parse_public_key(pem, "kubewarden.cert.pem")


@pytest.fixture(scope="module")
def unrelated_key() -> PublicKey:
    return load_public_key(FIXTURES / "constellation-cosign.pub")


@pytest.fixture(scope="module")
def own_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public(private: ec.EllipticCurvePrivateKey, name: str = "own") -> PublicKey:
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return parse_public_key(pem, name)


# --- real signatures ---------------------------------------------------------------------


def test_a_real_cosign_signature_verifies(busybox_key: PublicKey, unrelated_key: PublicKey) -> None:
    assert verify_payload([unrelated_key, busybox_key], BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE) == busybox_key
    verdict = check_signature(
        BUSYBOX_PAYLOAD, _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE), BUSYBOX_DIGEST, [busybox_key]
    )
    assert verdict == Verdict(True, f"signed by {busybox_key.name} ({busybox_key.key_id})", busybox_key)


def test_a_real_keyless_cosign_signature_verifies_under_its_certificates_key(
    kubewarden_key: PublicKey,
) -> None:
    # The payload's sha256 is the hash Rekor logged for this signature (README.md).
    assert _sha256(KUBEWARDEN_PAYLOAD).endswith(
        "e7801de935512e22b237c7b57e42ca4d20e2134bdf1b98f976c8f55d9cfe4067"
    )
    layer = _layer(KUBEWARDEN_PAYLOAD, KUBEWARDEN_SIGNATURE)
    assert check_signature(KUBEWARDEN_PAYLOAD, layer, KUBEWARDEN_DIGEST, [kubewarden_key]).ok


def test_make_payload_writes_cosigns_bytes_exactly() -> None:
    assert make_payload("registry-testing.svc.lan/busybox", BUSYBOX_DIGEST) == BUSYBOX_PAYLOAD
    assert (
        make_payload("registry-testing.svc.lan/kubewarden/disallow-service-nodeport", KUBEWARDEN_DIGEST)
        == KUBEWARDEN_PAYLOAD
    )


def test_a_real_payload_parses() -> None:
    assert parse_payload(BUSYBOX_PAYLOAD) == Payload(
        manifest_digest=BUSYBOX_DIGEST,
        docker_reference="registry-testing.svc.lan/busybox",
        type="cosign container image signature",
    )


@given(position=st.integers(0, len(BUSYBOX_PAYLOAD) - 1), flip=st.integers(1, 255))
def test_one_changed_payload_byte_is_refused(busybox_key: PublicKey, position: int, flip: int) -> None:
    changed = bytearray(BUSYBOX_PAYLOAD)
    changed[position] ^= flip
    assert verify_payload([busybox_key], bytes(changed), BUSYBOX_SIGNATURE) is None
    # Fetched bytes that differ from the layer's digest are caught before the signature.
    verdict = check_signature(
        bytes(changed), _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE), BUSYBOX_DIGEST, [busybox_key]
    )
    assert verdict == Verdict(False, "payload does not match its digest", None)
    # A layer that names the changed bytes is still refused: no key signed them.
    verdict = check_signature(
        bytes(changed), _layer(bytes(changed), BUSYBOX_SIGNATURE), BUSYBOX_DIGEST, [busybox_key]
    )
    assert verdict == Verdict(False, "signed by no trusted key", None)


@given(position=st.integers(0, 70), flip=st.integers(1, 255))
def test_one_changed_signature_byte_is_refused(busybox_key: PublicKey, position: int, flip: int) -> None:
    raw = bytearray(base64.b64decode(BUSYBOX_SIGNATURE))
    changed = base64.b64encode(
        bytes(raw[:position]) + bytes([raw[position] ^ flip]) + bytes(raw[position + 1 :])
    )
    assert verify_payload([busybox_key], BUSYBOX_PAYLOAD, changed.decode()) is None


@given(position=st.integers(27, 90), flip=st.integers(1, 255))
def test_one_changed_public_key_byte_is_refused(position: int, flip: int) -> None:
    """Bytes 27.. of the SPKI are the curve point: a changed byte is off the curve (the key
    does not parse) or another key (the signature does not verify)."""
    spki = bytearray(
        load_public_key(FIXTURES / "busybox.pub").key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    spki[position] ^= flip
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(bytes(spki)) + b"\n-----END PUBLIC KEY-----\n"
    try:
        changed = parse_public_key(pem, "changed.pub")
    except SigningKeyError:  # off the curve: the key is refused outright
        return
    assert verify_payload([changed], BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE) is None


def test_a_signature_under_an_untrusted_key_is_refused(unrelated_key: PublicKey) -> None:
    verdict = check_signature(
        BUSYBOX_PAYLOAD, _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE), BUSYBOX_DIGEST, [unrelated_key]
    )
    assert verdict == Verdict(False, "signed by no trusted key", None)
    assert not check_signature(
        BUSYBOX_PAYLOAD, _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE), BUSYBOX_DIGEST, []
    ).ok


def test_a_real_signature_for_another_image_names_both_digests(busybox_key: PublicKey) -> None:
    verdict = check_signature(
        BUSYBOX_PAYLOAD, _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE), OTHER_DIGEST, [busybox_key]
    )
    assert verdict == Verdict(
        False, "payload names sha256:f3cfc9d0dbf9… not sha256:000000000000…", busybox_key
    )


def test_a_real_signature_over_a_payload_that_is_not_an_image_signature_is_refused() -> None:
    # containers/image signature/internal/sigstore_payload_test.go (TestVerifySigstorePayload):
    # "Valid signature of an unacceptable JSON" and "of non-JSON", by signature/fixtures/cosign.pub.
    key = load_public_key(FIXTURES / "containers-image-cosign.pub")
    cases = {
        b"{}": "MEUCIQDkySOBGxastVP0+koTA33NH5hXjwosFau4rxTPN6g48QIgb7eWKkGqfEpHMM3aT4xiqyP/170jEkdF"
        "uciuwN4mux4=",
        b"&": "MEUCIARnnxZQPALBfqkB4aNAYXad79Qs6VehcrgIeZ8p7I2FAiEAzq2HXwXlz1iJeh+ucUR3L0zpjynQk6Rk"
        "0+/gXYp49RU=",
    }
    for payload, signature in cases.items():
        assert verify_payload([key], payload, signature) == key
        verdict = check_signature(payload, _layer(payload, signature), OTHER_DIGEST, [key])
        assert not verdict.ok and verdict.key == key
        assert verdict.reason.startswith("signed, but not a cosign image signature: signature payload ")


# --- our own signatures ------------------------------------------------------------------


def test_sign_then_verify_round_trips(own_key: ec.EllipticCurvePrivateKey, unrelated_key: PublicKey) -> None:
    payload = make_payload("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", OTHER_DIGEST)
    signature = sign_payload(own_key, payload)
    der = base64.b64decode(signature, validate=True)
    assert der[0] == 0x30 and len(der) <= 72  # ASN.1 DER SEQUENCE(r, s)
    mine = _public(own_key)
    assert verify_payload([unrelated_key, mine], payload, signature) == mine
    assert check_signature(payload, _layer(payload, signature), OTHER_DIGEST, [mine]).ok


def test_a_p384_key_does_not_make_cosign_signatures() -> None:
    with pytest.raises(ValueError, match="P-256"):
        sign_payload(ec.generate_private_key(ec.SECP384R1()), b"{}")


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "not base64!",
        "MEUC",
        "=" * 8,
        "A" * 5000,
        BUSYBOX_SIGNATURE + "=",
        BUSYBOX_SIGNATURE[:-4],
        " " + BUSYBOX_SIGNATURE,
    ],
)
def test_bad_signature_text_is_none_not_an_exception(busybox_key: PublicKey, signature: str) -> None:
    assert verify_payload([busybox_key], BUSYBOX_PAYLOAD, signature) is None


@pytest.mark.parametrize(
    ("reference", "digest"),
    [
        ("repo", "sha256:abc"),
        ("repo", "latest"),
        ("", OTHER_DIGEST),
        ('repo"injected', OTHER_DIGEST),
        ("repo\n", OTHER_DIGEST),
        ("a<b>&c", OTHER_DIGEST),
        ("r" * 2000, OTHER_DIGEST),
    ],
)
def test_make_payload_refuses_what_cosign_would_not_write(reference: str, digest: str) -> None:
    with pytest.raises(SignatureError):
        make_payload(reference, digest)


# --- hostile payloads --------------------------------------------------------------------


def _payload_doc(**critical_changes: object) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(BUSYBOX_PAYLOAD)
    doc["critical"].update(critical_changes)
    return doc


def _bytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b" " * (MAX_PAYLOAD_BYTES + 1), "over the 65536 byte limit"),
        (b"not json", "is not JSON"),
        (b"\xff\xfe{}", "is not JSON"),
        (b"[" * 60_000, "nested too deeply"),
        (b"[]", "is not a JSON object"),
        (b"null", "is not a JSON object"),
        (b"{}", "lacks 'critical'"),
        (_bytes({"critical": 1, "optional": None}), "critical is not an object"),
        (_bytes(_payload_doc(type="something else")), "type is 'something else'"),
        (_bytes(_payload_doc(type=7)), "critical.type is not a string"),
        (_bytes(_payload_doc(image={"docker-manifest-digest": "sha256:abcd"})), "which is not a digest"),
        (_bytes(_payload_doc(image={"docker-manifest-digest": 5})), "is not a string"),
        (_bytes(_payload_doc(image={})), "lacks 'docker-manifest-digest'"),
        (_bytes(_payload_doc(identity={"docker-reference": ["x"]})), "is not a string"),
        (_bytes(_payload_doc(extra=1)), "unexpected key 'extra'"),
        (
            _bytes(
                _payload_doc(image={"docker-manifest-digest": OTHER_DIGEST, "Docker-manifest-digest": "x"})
            ),
            "unexpected key 'Docker-manifest-digest'",
        ),
        (_bytes({**_payload_doc(), "optional": 3}), "optional is not an object"),
        (_bytes({**_payload_doc(), "more": {}}), "unexpected key 'more'"),
        (BUSYBOX_PAYLOAD[:-1] + b',"optional":{}}', "names a key twice"),
        (_bytes(_payload_doc(type="\x1b[31mred")), r"type is '\\x1b\[31mred'"),
    ],
)
def test_hostile_payloads_are_refused_cleanly(raw: bytes, expected: str) -> None:
    with pytest.raises(SignatureError, match=expected) as caught:
        parse_payload(raw)
    assert "\x1b" not in str(caught.value)


def test_optional_claims_are_allowed_and_ignored() -> None:
    for optional in ({}, {"creator": "atomic", "timestamp": 1458239713}, None):
        doc = {**_payload_doc(), "optional": optional}
        assert parse_payload(_bytes(doc)).manifest_digest == BUSYBOX_DIGEST
    doc = _payload_doc()
    del doc["optional"]
    assert parse_payload(_bytes(doc)).manifest_digest == BUSYBOX_DIGEST


@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_are_a_payload_or_a_signature_error(raw: bytes) -> None:
    with contextlib.suppress(SignatureError):
        parse_payload(raw)


@given(
    payload=st.binary(max_size=300),
    signature=st.text(max_size=120),
    digest=st.text(max_size=80),
    size=st.integers(-5, 400),
)
def test_check_signature_never_raises(
    busybox_key: PublicKey, payload: bytes, signature: str, digest: str, size: int
) -> None:
    for layer in (
        SignatureLayer(_sha256(payload), len(payload), signature),
        SignatureLayer(digest, size, signature),
    ):
        verdict = check_signature(payload, layer, digest, [busybox_key])
        assert isinstance(verdict, Verdict) and not verdict.ok and verdict.reason


@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20,
    )
)
def test_signed_json_that_is_not_a_cosign_payload_is_refused(
    own_key: ec.EllipticCurvePrivateKey, doc: object
) -> None:
    payload = json.dumps({"critical": doc}).encode()
    signature = sign_payload(own_key, payload)
    verdict = check_signature(payload, _layer(payload, signature), OTHER_DIGEST, [_public(own_key)])
    assert not verdict.ok and verdict.reason.startswith("signed, but not a cosign image signature")


# --- signature manifests -----------------------------------------------------------------


def _legacy_sig_manifest(*layers: dict[str, object]) -> ImageManifest:
    """A ``sha256-<hex>.sig`` manifest as cosign writes it (SIGNATURE_SPEC.md, "OCI Image
    Manifest V1"): an image config and one simple-signing layer per signature."""
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 233,
                "digest": OTHER_DIGEST,
            },
            "layers": list(layers),
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    return manifest


def test_signature_layers_of_a_legacy_sig_manifest() -> None:
    manifest = _legacy_sig_manifest(
        {
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": len(BUSYBOX_PAYLOAD),
            "digest": _sha256(BUSYBOX_PAYLOAD),
            "annotations": {SIGNATURE_ANNOTATION: BUSYBOX_SIGNATURE, "dev.sigstore.cosign/bundle": "{}"},
        },
        {
            "mediaType": "application/vnd.dsse.envelope.v1+json",
            "size": 10,
            "digest": OTHER_DIGEST,
            "annotations": {SIGNATURE_ANNOTATION: "MEUC"},
        },
        {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "size": 10, "digest": OTHER_DIGEST},
        {
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": 3,
            "digest": OTHER_DIGEST,
            "annotations": {SIGNATURE_ANNOTATION: "second"},
        },
    )
    assert signature_layers(manifest) == (
        _layer(BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE),
        SignatureLayer(OTHER_DIGEST, 3, "second"),
    )


def test_the_oci_empty_config_is_the_image_spec_one() -> None:
    expected = Descriptor(
        "application/vnd.oci.empty.v1+json",
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        2,
    )
    assert expected == OCI_EMPTY_CONFIG
    assert OCI_EMPTY_DATA == b"{}" and _sha256(OCI_EMPTY_DATA) == OCI_EMPTY_CONFIG.digest


def test_signature_manifest_has_cosigns_referrer_shape_byte_for_byte() -> None:
    subject = Descriptor(DOCKER_MANIFEST, BUSYBOX_DIGEST, 528)
    raw, config = signature_manifest(subject, BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE)
    assert config == b"{}"
    # Key order of go-containerregistry's v1.Manifest / v1.Descriptor plus cosign's
    # referrerManifest.ArtifactType (sigstore/cosign pkg/oci/remote/write.go, WriteReferrer).
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        '"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,'
        '"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",'
        '"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"},'
        '"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":248,'
        f'"digest":"{_sha256(BUSYBOX_PAYLOAD)}",'
        f'"annotations":{{"dev.cosignproject.cosign/signature":"{BUSYBOX_SIGNATURE}"}}}}],'
        '"subject":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,'
        f'"digest":"{BUSYBOX_DIGEST}"}},'
        '"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}'
    )
    assert raw.decode() == expected
    assert signature_manifest(subject, BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE) == (raw, config)  # deterministic


def test_a_referrer_manifest_reads_back_and_its_signature_checks(busybox_key: PublicKey) -> None:
    subject = Descriptor(OCI_INDEX, BUSYBOX_DIGEST, 1024)
    raw, _ = signature_manifest(subject, BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE)
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    assert manifest.artifact_type == COSIGN_SIGNATURE_ARTIFACT_TYPE
    assert manifest.subject == Descriptor(OCI_INDEX, BUSYBOX_DIGEST, 1024)
    assert (manifest.config.media_type, manifest.config.digest, manifest.config.size) == (
        OCI_EMPTY_CONFIG.media_type,
        OCI_EMPTY_CONFIG.digest,
        OCI_EMPTY_CONFIG.size,
    )
    (layer,) = signature_layers(manifest)
    assert check_signature(BUSYBOX_PAYLOAD, layer, BUSYBOX_DIGEST, [busybox_key]).ok


@pytest.mark.parametrize(
    ("subject", "payload", "signature"),
    [
        (
            Descriptor("application/vnd.oci.image.layer.v1.tar", BUSYBOX_DIGEST, 1),
            BUSYBOX_PAYLOAD,
            BUSYBOX_SIGNATURE,
        ),
        (Descriptor(OCI_MANIFEST, "sha256:nothex", 1), BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE),
        (Descriptor(OCI_MANIFEST, BUSYBOX_DIGEST, -1), BUSYBOX_PAYLOAD, BUSYBOX_SIGNATURE),
        (Descriptor(OCI_MANIFEST, BUSYBOX_DIGEST, 1), b"", BUSYBOX_SIGNATURE),
        (Descriptor(OCI_MANIFEST, BUSYBOX_DIGEST, 1), BUSYBOX_PAYLOAD, "not base64!"),
    ],
)
def test_signature_manifest_refuses_bad_inputs(subject: Descriptor, payload: bytes, signature: str) -> None:
    with pytest.raises(SignatureError):
        signature_manifest(subject, payload, signature)
