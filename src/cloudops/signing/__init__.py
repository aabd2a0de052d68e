"""cosign-compatible image signatures, the pure half: key files, payloads, verification.

``keys`` reads and writes cosign's key files (cosign.pub, and cosign.key encrypted with
scrypt + NaCl secretbox); ``simple_signing`` makes, signs, checks and packages cosign's
"simple signing" payloads (sigstore/cosign specs/SIGNATURE_SPEC.md). No network I/O here:
fetching and pushing signature manifests belongs to the registry layer.
"""

from cloudops.signing.keys import (
    PublicKey,
    SigningKeyError,
    generate_key_pair,
    load_private_key,
    load_public_key,
    parse_private_key,
    parse_public_key,
)
from cloudops.signing.simple_signing import (
    COSIGN_SIGNATURE_ARTIFACT_TYPE,
    OCI_EMPTY_CONFIG,
    OCI_EMPTY_DATA,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    Payload,
    SignatureError,
    SignatureLayer,
    Verdict,
    check_signature,
    make_payload,
    parse_payload,
    sign_payload,
    signature_layers,
    signature_manifest,
    verify_payload,
)

__all__ = [
    "COSIGN_SIGNATURE_ARTIFACT_TYPE",
    "OCI_EMPTY_CONFIG",
    "OCI_EMPTY_DATA",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "Payload",
    "PublicKey",
    "SignatureError",
    "SignatureLayer",
    "SigningKeyError",
    "Verdict",
    "check_signature",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "make_payload",
    "parse_payload",
    "parse_private_key",
    "parse_public_key",
    "sign_payload",
    "signature_layers",
    "signature_manifest",
    "verify_payload",
]
