"""cosign "simple signing" image signatures: the payload, its signature, and the manifest
that carries them. Pure: no I/O, no clock, no randomness but ECDSA's own.

Spec: sigstore/cosign specs/SIGNATURE_SPEC.md. A signature is a layer of a signature
manifest: the layer blob is the payload (a small JSON naming the image's manifest digest),
the layer's ``dev.cosignproject.cosign/signature`` annotation is the base64 ASN.1 DER
ECDSA P-256 / SHA-256 signature over those exact bytes. cosign finds that manifest at the
tag ``sha256-<hex>.sig`` (legacy) or through the OCI 1.1 referrers API; the layers look the
same either way.

Everything read here (payloads, annotations) comes from a registry and is hostile:
parsing is bounded and strict, and ``check_signature`` answers with a verdict, never an
exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cloudops.errors import InputError
from cloudops.oci import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, OCI_MANIFEST, Descriptor, ImageManifest
from cloudops.oci import sha256_digest as _sha256_digest
from cloudops.refs import ReferenceError, validate_digest
from cloudops.signing.keys import PublicKey
from cloudops.text import json_without_duplicate_keys, plain_text

__all__ = [
    "COSIGN_SIGNATURE_ARTIFACT_TYPE",
    "MAX_PAYLOAD_BYTES",
    "OCI_EMPTY_CONFIG",
    "OCI_EMPTY_DATA",
    "OCI_EMPTY_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "SIMPLE_SIGNING_TYPE",
    "Payload",
    "SignatureError",
    "SignatureLayer",
    "Verdict",
    "check_signature",
    "make_payload",
    "parse_payload",
    "sign_payload",
    "signature_layers",
    "signature_manifest",
    "verify_payload",
]

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
"""The artifactType of a signature referrer (cosign's ociexperimental.ArtifactType("sig"))."""
SIMPLE_SIGNING_TYPE = "cosign container image signature"

OCI_EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DATA = b"{}"
OCI_EMPTY_CONFIG = Descriptor(OCI_EMPTY_MEDIA_TYPE, _sha256_digest(OCI_EMPTY_DATA), len(OCI_EMPTY_DATA))
"""The OCI 1.1 empty descriptor (image-spec manifest.md, "Guidance for an Empty Descriptor")."""

MAX_PAYLOAD_BYTES = 64 * 1024
"""cosign's payloads are ~250 bytes (a few KiB with optional claims)."""
_MAX_SIGNATURE_CHARS = 4096
"""A P-256 DER signature is at most 72 bytes (96 base64 characters)."""

# What a docker-reference may hold for make_payload: printable ASCII without the characters
# Go's encoding/json would escape differently from Python's (", \, <, >, &), so the bytes
# are the ones cosign writes.
_REFERENCE_CHARS = re.compile(r"[!#-%'-;=?-\[\]-~]{1,1024}")


class SignatureError(InputError):
    """A simple-signing payload that is not a cosign image signature, or input that cannot
    become one."""


@dataclass(frozen=True, slots=True)
class Payload:
    """What a simple-signing payload claims: which image manifest was signed."""

    manifest_digest: str
    docker_reference: str
    type: str


@dataclass(frozen=True, slots=True)
class SignatureLayer:
    """One signature in a signature manifest: the payload blob's descriptor and the signature."""

    payload_digest: str
    payload_size: int
    signature: str
    """Base64 of the ASN.1 DER ECDSA signature (the annotation's value, unchecked)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of check_signature. ``key`` is the trusted key whose signature verified,
    also when a later check failed (signed, but for another image)."""

    ok: bool
    reason: str
    key: PublicKey | None


def _go_json(value: object) -> str:
    """Compact JSON in the key order given (Go's encoding/json order for cosign's structs)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def make_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """The simple-signing payload cosign signs, byte for byte (sigstore/sigstore
    pkg/signature/payload: Cosign.MarshalJSON, with no optional claims)::

        {"critical":{"identity":{"docker-reference":"<ref>"},"image":{"docker-manifest-digest":
        "<digest>"},"type":"cosign container image signature"},"optional":null}

    cosign 2 writes the repository (``registry/name``, no tag) as the docker-reference."""
    try:
        validate_digest(manifest_digest)
    except ReferenceError as exc:
        raise SignatureError(exc.message, hint=exc.hint) from None
    if not _REFERENCE_CHARS.fullmatch(docker_reference):
        raise SignatureError(
            f"docker reference {_quoted(docker_reference, 200)} cannot go in a signature payload",
            hint="give the image's repository, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
        )
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": None,
    }
    return _go_json(doc).encode("utf-8")


def _quoted(text: str, limit: int = 80) -> str:
    """Registry text for a message: cut short, quoted, control characters made visible."""
    return "'" + plain_text(text[:limit]) + "'"


def _payload_error(what: str) -> SignatureError:
    return SignatureError(
        f"signature payload {what}",
        hint="the registry holds a signature that is not a cosign simple-signing payload",
    )


def _exact_object(value: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _payload_error(f"{where} is not an object")
    missing = sorted(keys - value.keys())
    if missing:
        raise _payload_error(f"{where} lacks {missing[0]!r}")
    extra = sorted(value.keys() - keys)
    if extra:
        # containers/image refuses these too: a case-variant key ("Docker-manifest-digest")
        # that Go's case-insensitive decoder would read must not mean a second digest.
        raise _payload_error(f"{where} has an unexpected key {_quoted(extra[0])}")
    return value


def parse_payload(raw: bytes) -> Payload:
    """Parse a simple-signing payload read from a registry (hostile): bounded, a JSON object
    of exactly cosign's shape, ``critical.type`` "cosign container image signature", and a
    valid manifest digest. ``optional`` may be absent, null or any object (ignored).

    Raises SignatureError. This does not check any signature: do that first."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise _payload_error(f"is {len(raw)} bytes, over the {MAX_PAYLOAD_BYTES} byte limit")
    try:
        doc = json_without_duplicate_keys(raw)
    except RecursionError:
        raise _payload_error("is nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or a key named twice
        raise _payload_error("is not JSON (or names a key twice)") from None
    if not isinstance(doc, dict):
        raise _payload_error("is not a JSON object")
    top_keys = frozenset({"critical", "optional"} if "optional" in doc else {"critical"})
    doc = _exact_object(doc, top_keys, "the payload")
    optional = doc.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise _payload_error("optional is not an object")
    critical = _exact_object(doc["critical"], frozenset({"identity", "image", "type"}), "critical")
    identity = _exact_object(critical["identity"], frozenset({"docker-reference"}), "critical.identity")
    image = _exact_object(critical["image"], frozenset({"docker-manifest-digest"}), "critical.image")
    kind = critical["type"]
    if not isinstance(kind, str):
        raise _payload_error("critical.type is not a string")
    if kind != SIMPLE_SIGNING_TYPE:
        raise _payload_error(f"type is {_quoted(kind)}, not {SIMPLE_SIGNING_TYPE!r}")
    reference = identity["docker-reference"]
    if not isinstance(reference, str):
        raise _payload_error("critical.identity.docker-reference is not a string")
    digest = image["docker-manifest-digest"]
    if not isinstance(digest, str):
        raise _payload_error("critical.image.docker-manifest-digest is not a string")
    try:
        validate_digest(digest)
    except ReferenceError:
        raise _payload_error(f"names {_quoted(digest)}, which is not a digest") from None
    return Payload(manifest_digest=digest, docker_reference=reference, type=kind)


def sign_payload(private_key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    """The annotation value cosign stores: base64 of the ASN.1 DER ECDSA P-256 / SHA-256
    signature over the payload bytes."""
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError(f"cosign signatures use ECDSA P-256, not {private_key.curve.name}")
    return base64.b64encode(private_key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def _decode_signature(signature_b64: str) -> bytes | None:
    if not isinstance(signature_b64, str) or not 0 < len(signature_b64) <= _MAX_SIGNATURE_CHARS:
        return None
    try:
        return base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_payload(keys: Sequence[PublicKey], payload: bytes, signature_b64: str) -> PublicKey | None:
    """The first of ``keys`` under which ``signature_b64`` verifies over ``payload``; None
    when none does, the base64 is bad, or the signature is malformed. Never raises."""
    signature = _decode_signature(signature_b64)
    if signature is None:
        return None
    for key in keys:
        try:
            key.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError):
            continue
        return key
    return None


def signature_layers(manifest: ImageManifest) -> tuple[SignatureLayer, ...]:
    """The signatures a cosign signature manifest carries: its simple-signing layers that
    have a signature annotation, in order. The same for a legacy ``.sig`` tag manifest and
    an OCI 1.1 referrer; other layers (attestations, bundles) are not signatures."""
    found = []
    for layer in manifest.layers:
        signature = layer.annotation(SIGNATURE_ANNOTATION)
        if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE and signature is not None:
            found.append(SignatureLayer(layer.digest, layer.size, signature))
    return tuple(found)


def _short(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return plain_text(f"{algorithm[:16]}:{hex_part[:12]}…" if hex_part else digest[:24])


def check_signature(
    payload: bytes, layer: SignatureLayer, expected_digest: str, keys: Sequence[PublicKey]
) -> Verdict:
    """Whether ``layer`` is a valid cosign signature of the image ``expected_digest``:

    1. ``payload`` (the layer's blob as fetched) is the blob the layer names (size and sha256);
    2. the signature verifies over it under one of ``keys``;
    3. it is a simple-signing payload whose docker-manifest-digest is ``expected_digest``.

    The docker-reference is not checked (SIGNATURE_SPEC.md: it "is ignored"), so a
    signature still holds after the image is copied to another registry. Never raises."""
    if len(payload) != layer.payload_size or _sha256_digest(payload) != layer.payload_digest:
        return Verdict(False, "payload does not match its digest", None)
    key = verify_payload(keys, payload, layer.signature)
    if key is None:
        return Verdict(False, "signed by no trusted key", None)
    try:
        claimed = parse_payload(payload)
    except SignatureError as exc:
        return Verdict(False, f"signed, but not a cosign image signature: {exc.message}", key)
    if claimed.manifest_digest != expected_digest:
        return Verdict(
            False, f"payload names {_short(claimed.manifest_digest)} not {_short(expected_digest)}", key
        )
    return Verdict(True, f"signed by {plain_text(key.name)} ({key.key_id})", key)


def signature_manifest(subject: Descriptor, payload: bytes, signature_b64: str) -> tuple[bytes, bytes]:
    """The OCI 1.1 referrer manifest for one signature, and its config blob (b"{}").

    The shape of cosign's ``WriteReferrer`` (pkg/oci/remote/write.go), the referrer writer
    of ``--registry-referrers-mode=oci-1-1``: an OCI image manifest whose artifactType is
    the cosign signature type, the empty config, one simple-signing layer carrying the
    signature annotation, and the signed image as subject. Keys are in the order Go's
    encoding/json writes them (go-containerregistry's v1.Manifest and v1.Descriptor), so
    the same inputs always give the same bytes. cosign's own writer adds an
    ``org.opencontainers.image.created`` annotation; it is left out to stay deterministic
    (no verifier reads it). The caller pushes the payload blob, the config blob, then the
    manifest by digest."""
    if subject.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
        raise SignatureError(
            f"cannot sign a {_quoted(subject.media_type, 100)}",
            hint="the subject must be an image manifest or index",
        )
    try:
        validate_digest(subject.digest)
    except ReferenceError as exc:
        raise SignatureError(exc.message, hint=exc.hint) from None
    if subject.size < 0:
        raise SignatureError("the subject's size is negative")
    if not payload or len(payload) > MAX_PAYLOAD_BYTES:
        raise SignatureError(f"a signature payload must be 1 to {MAX_PAYLOAD_BYTES} bytes")
    if _decode_signature(signature_b64) is None:
        raise SignatureError("the signature is not base64", hint="pass sign_payload's result")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_EMPTY_CONFIG.media_type,
            "size": OCI_EMPTY_CONFIG.size,
            "digest": OCI_EMPTY_CONFIG.digest,
            # cosign's WriteReferrer sets the artifactType on the config descriptor as well.
            "artifactType": COSIGN_SIGNATURE_ARTIFACT_TYPE,
        },
        "layers": [
            {
                "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                "size": len(payload),
                "digest": _sha256_digest(payload),
                "annotations": {SIGNATURE_ANNOTATION: signature_b64},
            }
        ],
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": subject.digest},
        "artifactType": COSIGN_SIGNATURE_ARTIFACT_TYPE,
    }
    return _go_json(manifest).encode("utf-8"), OCI_EMPTY_DATA
