"""cosign's key files: the public key PEM and the password-encrypted private key.

``cosign generate-key-pair`` writes two files (sigstore/cosign pkg/cosign/keys.go):

* ``cosign.pub``: a PEM "PUBLIC KEY" block, DER SubjectPublicKeyInfo, ECDSA P-256.
* ``cosign.key``: a PEM "ENCRYPTED SIGSTORE PRIVATE KEY" block (older cosign wrote
  "ENCRYPTED COSIGN PRIVATE KEY"; both are read) whose body is the JSON envelope of
  go-securesystemslib's ``encrypted`` package::

      {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
       "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},"ciphertext":"<base64>"}

  The password goes through scrypt (32-byte key) and the PKCS#8 DER private key is sealed
  in a NaCl secretbox (see ``secretbox.py``).

Every file is read bounded and parsed as hostile: a key file can come from anywhere, and
its scrypt parameters decide how much memory and CPU opening it costs. No message ever
carries the password or key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from cloudops.errors import InputError
from cloudops.signing import secretbox

__all__ = [
    "COSIGN_PRIVATE_KEY_PEM_TYPE",
    "COSIGN_SCRYPT_N",
    "MAX_KEY_FILE_BYTES",
    "MAX_SCRYPT_N",
    "SIGSTORE_PRIVATE_KEY_PEM_TYPE",
    "PublicKey",
    "SigningKeyError",
    "decrypt_key_envelope",
    "encrypt_key_envelope",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "parse_private_key",
    "parse_public_key",
]

SIGSTORE_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
"""What cosign writes today (keys.go: SigstorePrivateKeyPemType)."""
COSIGN_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
"""What cosign wrote before; still read by cosign and here."""
PUBLIC_KEY_PEM_TYPE = "PUBLIC KEY"

MAX_KEY_FILE_BYTES = 64 * 1024
"""A P-256 key file is well under 1 KiB; anything near this is not a key."""

COSIGN_SCRYPT_N = 32768
"""The scrypt cost we write. go-securesystemslib calls N=32768 "Legacy"; newer releases write
65536 ("Standard") by default, but older cosign refuses any N but 32768
(``CheckParams``), so 32768 is the one every cosign opens."""
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_N = 1 << 17
"""The largest N go-securesystemslib writes ("OWASP", 131072: 128 MiB of memory at r=8).
A hostile file asking for more is refused before scrypt runs."""

_KDF_NAME = "scrypt"
_CIPHER_NAME = "nacl/secretbox"
_SALT_SIZE = 32
_MAX_SALT = 1024
_PASSWORD_HINT = (
    "set $COSIGN_PASSWORD to the password the key was generated with (empty if it has none); "
    "a damaged key file fails the same way"
)

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----\r?\n")


class SigningKeyError(InputError):
    """A key file that cannot be used: missing, unreadable, not a key, the wrong kind of key,
    or a wrong password. The message names the file and the fix, never the secret."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A trusted verification key and where it came from."""

    key: ec.EllipticCurvePublicKey
    name: str
    """Where the key came from (a path, or a label), for messages and reports."""
    key_id: str
    """First 16 hex digits of the sha256 of the DER SubjectPublicKeyInfo: a short fingerprint."""


def _key_id(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SigningKeyError(
            f"{what} {path} does not exist",
            hint="check the path (cosign generate-key-pair writes cosign.key and cosign.pub)",
        ) from None
    except IsADirectoryError:
        raise SigningKeyError(f"{what} {path} is a directory", hint="give the path of the key file") from None
    except PermissionError:
        raise SigningKeyError(
            f"cannot read {what} {path}: permission denied", hint="make the file readable by this user"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SigningKeyError(f"cannot read {what} {path}: {reason}", hint="check the path") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise SigningKeyError(
            f"{what} {path} is over {MAX_KEY_FILE_BYTES} bytes: not a key file",
            hint="give the cosign key file itself",
        )
    return data


def _first_pem_block(data: bytes) -> tuple[str, bytes] | None:
    """The first PEM block's type and decoded body (Go's pem.Decode also takes the first).
    None when there is no block, it never ends, or its body is not base64. Linear time: only
    the first BEGIN line is tried (a file of BEGIN lines must not cost a quadratic search)."""
    begin = _PEM_BEGIN.search(data)
    if begin is None:
        return None
    end = data.find(b"-----END " + begin[1] + b"-----", begin.end())
    if end < 0:
        return None
    body = b"".join(data[begin.end() : end].split())
    try:
        return begin[1].decode("ascii"), base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _describe_pem(pem_type: str) -> str:
    if pem_type == "CERTIFICATE":
        return "a certificate"
    if pem_type.endswith("PRIVATE KEY"):
        return "a private key"
    if pem_type == PUBLIC_KEY_PEM_TYPE:
        return "a public key"
    return f"a PEM {pem_type!r} block"


def _algorithm(key: object) -> str:
    names: tuple[tuple[type, str], ...] = (
        (rsa.RSAPublicKey, "RSA"),
        (rsa.RSAPrivateKey, "RSA"),
        (dsa.DSAPublicKey, "DSA"),
        (dsa.DSAPrivateKey, "DSA"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed25519.Ed25519PrivateKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (ed448.Ed448PrivateKey, "Ed448"),
        (x25519.X25519PublicKey, "X25519"),
        (x25519.X25519PrivateKey, "X25519"),
        (x448.X448PublicKey, "X448"),
        (x448.X448PrivateKey, "X448"),
    )
    for kind, name in names:
        if isinstance(key, kind):
            return name
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__


_P256_ONLY = "cloudops signs and verifies with ECDSA P-256 keys only (cosign's default key type)"


def parse_public_key(pem: bytes, name: str) -> PublicKey:
    """An ECDSA P-256 public key from PEM "PUBLIC KEY" bytes (``cosign.pub``).

    ``name`` says where the bytes came from; every error names it."""
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise SigningKeyError(f"public key {name} is over {MAX_KEY_FILE_BYTES} bytes: not a key file")
    block = _first_pem_block(pem)
    if block is None:
        raise SigningKeyError(
            f"{name} is not a PEM public key",
            hint="expected the cosign.pub that cosign generate-key-pair writes (-----BEGIN PUBLIC KEY-----)",
        )
    pem_type, der = block
    if pem_type != PUBLIC_KEY_PEM_TYPE:
        raise SigningKeyError(
            f"{name} holds {_describe_pem(pem_type)}, not a public key",
            hint="give the public key (cosign.pub); `cosign public-key --key cosign.key` prints it",
        )
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"{name} holds a malformed public key", hint="export the key again with cosign public-key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{name} is an {_algorithm(key)} public key", hint=_P256_ONLY)
    return PublicKey(key=key, name=name, key_id=_key_id(key))


def load_public_key(path: Path) -> PublicKey:
    """Read ``cosign.pub`` (bounded) and parse it; the key is named by its path."""
    return parse_public_key(_read_bounded(path, "public key"), str(path))


def _b64_field(doc: dict[str, Any], key: str, where: str, name: str) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _bad_envelope(name, f"{where}.{key} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_envelope(name, f"{where}.{key} is not base64") from None


def _bad_envelope(name: str, what: str) -> SigningKeyError:
    return SigningKeyError(
        f"{name} is not a cosign encrypted key: {what}",
        hint="generate the key with cosign generate-key-pair, or import it with cosign import-key-pair",
    )


def _object(value: Any, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad_envelope(name, f"{where} is not an object")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scrypt(n: object, r: object, p: object, name: str) -> tuple[int, int, int]:
    if (
        _is_int(n)
        and _is_int(r)
        and _is_int(p)
        and 2 <= n <= MAX_SCRYPT_N
        and n & (n - 1) == 0
        and (r, p) == (SCRYPT_R, SCRYPT_P)
    ):
        return n, r, p
    raise SigningKeyError(
        f"{name} asks for unsupported scrypt parameters (N={str(n)[:20]}, r={str(r)[:20]}, p={str(p)[:20]})",
        hint=f"cosign writes N=32768, 65536 or 131072 with r=8, p=1 (at most N={MAX_SCRYPT_N} is "
        "opened, to bound memory); generate the key again with cosign generate-key-pair",
    )


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL needs about 128*r*(N+p) bytes; hashlib's default cap (32 MiB) is below cosign's N.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=secretbox.KEY_SIZE)


def decrypt_key_envelope(envelope: bytes, password: bytes, name: str) -> bytes:
    """Open go-securesystemslib's ``encrypted`` JSON envelope: the plaintext bytes.

    Raises SigningKeyError naming ``name`` when the envelope is malformed, its scrypt
    parameters are out of bounds, or the password does not open it."""
    try:
        doc = json.loads(envelope)
    except (ValueError, RecursionError):
        raise _bad_envelope(name, "its body is not JSON") from None
    doc = _object(doc, "the envelope", name)
    kdf = _object(doc.get("kdf"), "kdf", name)
    cipher = _object(doc.get("cipher"), "cipher", name)
    if kdf.get("name") != _KDF_NAME:
        raise _bad_envelope(name, f"kdf.name is not {_KDF_NAME!r}")
    if cipher.get("name") != _CIPHER_NAME:
        raise _bad_envelope(name, f"cipher.name is not {_CIPHER_NAME!r}")
    params = _object(kdf.get("params"), "kdf.params", name)
    n, r, p = _check_scrypt(params.get("N"), params.get("r"), params.get("p"), name)
    salt = _b64_field(kdf, "salt", "kdf", name)
    nonce = _b64_field(cipher, "nonce", "cipher", name)
    ciphertext = _b64_field(doc, "ciphertext", "the envelope", name)
    if len(salt) > _MAX_SALT:
        raise _bad_envelope(name, f"kdf.salt is over {_MAX_SALT} bytes")
    if len(nonce) != secretbox.NONCE_SIZE:
        raise _bad_envelope(name, f"cipher.nonce is not {secretbox.NONCE_SIZE} bytes")
    if len(ciphertext) < secretbox.OVERHEAD:
        raise _bad_envelope(name, "ciphertext is shorter than its authentication tag")
    box_key = _scrypt(password, salt, n, r, p)
    try:
        return secretbox.open(ciphertext, nonce, box_key)
    except secretbox.SecretBoxError:
        raise SigningKeyError(f"wrong password for {name}", hint=_PASSWORD_HINT) from None


def encrypt_key_envelope(plaintext: bytes, password: bytes, *, scrypt_n: int = COSIGN_SCRYPT_N) -> bytes:
    """Seal ``plaintext`` in go-securesystemslib's ``encrypted`` envelope, byte for byte the
    JSON Go writes (same key order, compact, standard padded base64).

    Lower ``scrypt_n`` only for tests: cosign itself opens only N in {32768, 65536, 131072}."""
    n, r, p = _check_scrypt(scrypt_n, SCRYPT_R, SCRYPT_P, "the requested key")
    salt = os.urandom(_SALT_SIZE)
    nonce = os.urandom(secretbox.NONCE_SIZE)
    box = secretbox.seal(plaintext, nonce, _scrypt(password, salt, n, r, p))

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    doc = {
        "kdf": {"name": _KDF_NAME, "params": {"N": n, "r": r, "p": p}, "salt": b64(salt)},
        "cipher": {"name": _CIPHER_NAME, "nonce": b64(nonce)},
        "ciphertext": b64(box),
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _pem(pem_type: str, body: bytes) -> bytes:
    """Go's pem.EncodeToMemory: 64-column base64 lines, trailing newline."""
    text = base64.b64encode(body).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return ("\n".join([f"-----BEGIN {pem_type}-----", *lines, f"-----END {pem_type}-----"]) + "\n").encode()


def parse_private_key(pem: bytes, password: bytes, name: str) -> ec.EllipticCurvePrivateKey:
    """The ECDSA P-256 private key in a cosign encrypted key file's bytes.

    Raises SigningKeyError (naming ``name``, never the password) when the bytes are not a
    cosign key, the password is wrong, or the key is not P-256."""
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise SigningKeyError(f"private key {name} is over {MAX_KEY_FILE_BYTES} bytes: not a key file")
    block = _first_pem_block(pem)
    if block is None:
        raise SigningKeyError(
            f"{name} is not a PEM private key",
            hint=f"expected the cosign.key that cosign generate-key-pair writes "
            f"(-----BEGIN {SIGSTORE_PRIVATE_KEY_PEM_TYPE}-----)",
        )
    pem_type, body = block
    if pem_type in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        raise SigningKeyError(
            f"{name} is a plain {pem_type} file, not a cosign encrypted key",
            hint=f"convert it with `cosign import-key-pair --key {name}` and use the cosign.key it writes",
        )
    if pem_type not in (SIGSTORE_PRIVATE_KEY_PEM_TYPE, COSIGN_PRIVATE_KEY_PEM_TYPE):
        raise SigningKeyError(
            f"{name} holds {_describe_pem(pem_type)}, not a cosign private key",
            hint="give the cosign.key that cosign generate-key-pair writes",
        )
    der = decrypt_key_envelope(body, password, name)
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"{name} opened, but does not hold a PKCS#8 private key",
            hint="generate the key again with cosign generate-key-pair",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{name} holds an {_algorithm(key)} private key", hint=_P256_ONLY)
    return key


def load_private_key(path: Path, password: bytes) -> ec.EllipticCurvePrivateKey:
    """Read a cosign encrypted key file (bounded) and open it with ``password``."""
    return parse_private_key(_read_bounded(path, "private key"), password, str(path))


def generate_key_pair(password: bytes, *, scrypt_n: int = COSIGN_SCRYPT_N) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as (private PEM, public PEM), the two files
    ``cosign generate-key-pair`` writes: "ENCRYPTED SIGSTORE PRIVATE KEY" around the
    encrypted PKCS#8 key, and "PUBLIC KEY" around the SubjectPublicKeyInfo.

    ``scrypt_n`` below the default is for tests only (cosign will not open such a key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_pem = _pem(SIGSTORE_PRIVATE_KEY_PEM_TYPE, encrypt_key_envelope(der, password, scrypt_n=scrypt_n))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
