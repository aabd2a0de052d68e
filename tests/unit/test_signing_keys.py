"""cosign's key files: real keys from cosign (and sigstore-rs) open, ours round-trip, and
hostile files are refused with a message that names the file and never the secret.

Fixtures and their sources: tests/fixtures/cosign/README.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.signing import keys
from cloudops.signing.keys import (
    COSIGN_PRIVATE_KEY_PEM_TYPE,
    MAX_KEY_FILE_BYTES,
    SIGSTORE_PRIVATE_KEY_PEM_TYPE,
    PublicKey,
    SigningKeyError,
    decrypt_key_envelope,
    encrypt_key_envelope,
    generate_key_pair,
    load_private_key,
    load_public_key,
    parse_private_key,
    parse_public_key,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cosign"
FAST_N = 1024  # scrypt cost for keys the tests make: cosign's N=32768 takes ~0.1 s a key
WRONG = b"Tr0ub4dor&3-not-it"


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(pem_type: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {pem_type}-----\n{lines}\n-----END {pem_type}-----\n".encode()


def _assert_no_secret(error: SigningKeyError, *secrets: bytes) -> None:
    text = f"{error} {error.message} {error.hint} {error.args!r}"
    for secret in secrets:
        assert secret.decode("latin-1") not in text


@pytest.fixture(scope="module")
def fast_pair() -> tuple[bytes, bytes]:
    return generate_key_pair(b"correct horse", scrypt_n=FAST_N)


# --- real keys ---------------------------------------------------------------------------


def test_a_key_made_by_cosign_generate_key_pair_opens_to_its_public_key() -> None:
    private = load_private_key(FIXTURES / "constellation-cosign.key", b"")
    public = load_public_key(FIXTURES / "constellation-cosign.pub")
    assert isinstance(private.curve, ec.SECP256R1)
    assert _spki(private.public_key()) == _spki(public.key)


def test_a_current_cosign_key_in_the_sigstore_pem_type_with_n_65536_opens() -> None:
    private = load_private_key(FIXTURES / "sigstore-rs-cosign-generated.key", b"")
    assert isinstance(private.curve, ec.SECP256R1)


def test_a_key_with_a_password_written_by_sigstore_rs_opens() -> None:
    private = load_private_key(FIXTURES / "sigstore-rs-ecdsa.key", b"123")
    assert isinstance(private.curve, ec.SECP256R1)


def test_a_wrong_password_names_the_file_and_not_the_password() -> None:
    path = FIXTURES / "constellation-cosign.key"
    with pytest.raises(SigningKeyError) as caught:
        load_private_key(path, WRONG)
    assert caught.value.message == f"wrong password for {path}"
    assert caught.value.hint is not None and "$COSIGN_PASSWORD" in caught.value.hint
    assert caught.value.kind == "input" and isinstance(caught.value, InputError)
    _assert_no_secret(caught.value, WRONG)


def test_the_go_securesystemslib_envelope_vector_decrypts() -> None:
    # secure-systems-lab/go-securesystemslib encrypted/encrypted_test.go, TestDecrypt
    # (commit bcb0d9f5a5937da512ba7d00bd518035e68b3763).
    envelope = (
        b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},'
        b'"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
        b'"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
        b'"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}'
    )
    assert decrypt_key_envelope(envelope, b"supersecret", "vector") == b"reallyimportant"


def test_the_go_securesystemslib_unsupported_parameters_vector_is_refused_before_scrypt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same file's TestUnsupportedKDFParameters vector: N=99, r=99, p=99.
    envelope = (
        b'{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},'
        b'"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},'
        b'"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},'
        b'"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}'
    )
    monkeypatch.setattr(keys, "_scrypt", _scrypt_must_not_run)
    with pytest.raises(SigningKeyError, match="unsupported scrypt parameters"):
        decrypt_key_envelope(envelope, b"supersecret", "vector")


def _scrypt_must_not_run(*args: object) -> bytes:
    raise AssertionError("scrypt ran on parameters that should have been refused")


# --- keys we make ------------------------------------------------------------------------


def test_generated_keys_round_trip(fast_pair: tuple[bytes, bytes]) -> None:
    private_pem, public_pem = fast_pair
    assert private_pem.startswith(f"-----BEGIN {SIGSTORE_PRIVATE_KEY_PEM_TYPE}-----\n".encode())
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    private = parse_private_key(private_pem, b"correct horse", "cosign.key")
    public = parse_public_key(public_pem, "cosign.pub")
    assert _spki(private.public_key()) == _spki(public.key)


def test_generated_keys_are_fresh_each_time(fast_pair: tuple[bytes, bytes]) -> None:
    other = generate_key_pair(b"correct horse", scrypt_n=FAST_N)
    assert other[0] != fast_pair[0] and other[1] != fast_pair[1]


def test_the_generated_private_key_has_cosigns_layout() -> None:
    """What cosign generate-key-pair writes: 64-column PEM around go-securesystemslib's JSON,
    scrypt N=32768 r=8 p=1 (the parameters every cosign version opens), 32-byte salt,
    24-byte nonce, keys in Go's order."""
    private_pem, _ = generate_key_pair(b"")
    lines = private_pem.decode().splitlines()
    assert lines[0] == f"-----BEGIN {SIGSTORE_PRIVATE_KEY_PEM_TYPE}-----"
    assert lines[-1] == f"-----END {SIGSTORE_PRIVATE_KEY_PEM_TYPE}-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    raw = base64.b64decode("".join(lines[1:-1]))
    doc = json.loads(raw)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert list(doc["kdf"]) == ["name", "params", "salt"]
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert list(doc["kdf"]["params"]) == ["N", "r", "p"]
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    assert raw == json.dumps(doc, separators=(",", ":")).encode()  # compact, as Go writes it


def test_a_generated_key_opens_under_the_older_cosign_pem_type(fast_pair: tuple[bytes, bytes]) -> None:
    renamed = fast_pair[0].replace(
        SIGSTORE_PRIVATE_KEY_PEM_TYPE.encode(), COSIGN_PRIVATE_KEY_PEM_TYPE.encode()
    )
    assert isinstance(parse_private_key(renamed, b"correct horse", "old.key"), ec.EllipticCurvePrivateKey)


def test_a_generated_key_refuses_a_wrong_password(fast_pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(SigningKeyError, match=r"^wrong password for cosign\.key") as caught:
        parse_private_key(fast_pair[0], WRONG, "cosign.key")
    _assert_no_secret(caught.value, WRONG, b"correct horse")


def test_the_key_id_is_a_short_sha256_of_the_spki() -> None:
    public = load_public_key(FIXTURES / "busybox.pub")
    assert public.key_id == hashlib.sha256(_spki(public.key)).hexdigest()[:16]
    assert public.name == str(FIXTURES / "busybox.pub")
    assert public == PublicKey(public.key, public.name, public.key_id)


# --- hostile and mistaken files ----------------------------------------------------------


def _envelope(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "kdf": {"name": "scrypt", "params": {"N": 1024, "r": 8, "p": 1}, "salt": "c2FsdA=="},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(bytes(24)).decode()},
        "ciphertext": base64.b64encode(bytes(48)).decode(),
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: dict[str, object] = doc
        for parent in parents:
            child = target[parent]
            assert isinstance(child, dict)
            target = child
        if value is None:
            del target[last]
        else:
            target[last] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"kdf__params__N": 1 << 20}, "unsupported scrypt parameters"),
        ({"kdf__params__N": 1 << 40}, "unsupported scrypt parameters"),
        ({"kdf__params__N": 1000}, "unsupported scrypt parameters"),
        ({"kdf__params__N": 1}, "unsupported scrypt parameters"),
        ({"kdf__params__N": True}, "unsupported scrypt parameters"),
        ({"kdf__params__N": "32768"}, "unsupported scrypt parameters"),
        ({"kdf__params__r": 64}, "unsupported scrypt parameters"),
        ({"kdf__params__p": 16}, "unsupported scrypt parameters"),
        ({"kdf__params": None}, "kdf.params is not an object"),
        ({"kdf__name": "argon2id"}, "kdf.name"),
        ({"cipher__name": "aes-gcm"}, "cipher.name"),
        ({"cipher__nonce": base64.b64encode(bytes(12)).decode()}, "nonce is not 24 bytes"),
        ({"cipher__nonce": "not base64!"}, "nonce is not base64"),
        ({"kdf__salt": None}, "salt is missing"),
        ({"kdf__salt": base64.b64encode(bytes(2048)).decode()}, "salt is over"),
        ({"ciphertext": base64.b64encode(bytes(8)).decode()}, "shorter than its authentication tag"),
        ({"ciphertext": 12}, "ciphertext is missing"),
        ({"cipher": ["x"]}, "cipher is not an object"),
    ],
)
def test_hostile_envelopes_are_refused_before_scrypt_runs(
    changes: dict[str, object], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "_scrypt", _scrypt_must_not_run)
    with pytest.raises(SigningKeyError, match=expected) as caught:
        parse_private_key(_pem(SIGSTORE_PRIVATE_KEY_PEM_TYPE, _envelope(**changes)), b"pw", "evil.key")
    assert "evil.key" in caught.value.message


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"[" * 40_000, b"\xff\xfe"])
def test_an_envelope_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(SigningKeyError, match="not a cosign encrypted key"):
        parse_private_key(_pem(COSIGN_PRIVATE_KEY_PEM_TYPE, body), b"", "evil.key")


def test_an_envelope_that_opens_to_something_not_pkcs8_is_refused() -> None:
    envelope = encrypt_key_envelope(b"not a private key", b"pw", scrypt_n=FAST_N)
    with pytest.raises(SigningKeyError, match="does not hold a PKCS#8 private key"):
        parse_private_key(_pem(SIGSTORE_PRIVATE_KEY_PEM_TYPE, envelope), b"pw", "odd.key")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA private key"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519 private key"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ECDSA secp384r1 private key"),
    ],
)
def test_a_cosign_key_of_another_type_is_refused(make: object, expected: str) -> None:
    assert callable(make)
    der = make().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    envelope = encrypt_key_envelope(der, b"", scrypt_n=FAST_N)
    with pytest.raises(SigningKeyError, match=expected) as caught:
        parse_private_key(_pem(SIGSTORE_PRIVATE_KEY_PEM_TYPE, envelope), b"", "other.key")
    assert caught.value.hint is not None and "P-256" in caught.value.hint


def test_an_unencrypted_private_key_is_refused_with_the_import_command() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningKeyError, match="plain PRIVATE KEY file") as caught:
        parse_private_key(pem, b"", "plain.pem")
    assert caught.value.hint is not None and "cosign import-key-pair --key plain.pem" in caught.value.hint


def test_a_public_key_given_as_the_private_key_is_refused() -> None:
    with pytest.raises(SigningKeyError, match=r"holds a public key, not a cosign private key"):
        load_private_key(FIXTURES / "busybox.pub", b"")


def test_a_private_key_given_as_the_public_key_is_refused() -> None:
    with pytest.raises(SigningKeyError, match=r"holds a private key, not a public key"):
        load_public_key(FIXTURES / "constellation-cosign.key")


def test_a_certificate_given_as_the_public_key_is_refused() -> None:
    with pytest.raises(SigningKeyError, match=r"kubewarden\.cert\.pem holds a certificate, not a public key"):
        load_public_key(FIXTURES / "kubewarden.cert.pem")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "is an RSA public key"),
        (ed25519.Ed25519PrivateKey.generate, "is an Ed25519 public key"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "is an ECDSA secp384r1 public key"),
    ],
)
def test_public_keys_other_than_p256_are_refused(make: object, expected: str) -> None:
    assert callable(make)
    pem = (
        make()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match=expected) as caught:
        parse_public_key(pem, "other.pub")
    assert caught.value.message.startswith("other.pub ")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not a PEM public key"),
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "malformed public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n", "not a PEM public key"),
        (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "holds a PEM 'FOO' block"),
        (b"-----BEGIN A-----\n" * 3000, "not a PEM public key"),  # once a quadratic search
    ],
)
def test_things_that_are_not_public_keys_are_refused(data: bytes, expected: str) -> None:
    with pytest.raises(SigningKeyError, match=expected):
        parse_public_key(data, "x.pub")


def test_a_public_key_after_other_text_is_found() -> None:
    text = b"# trusted release key\n" + (FIXTURES / "busybox.pub").read_bytes()
    assert parse_public_key(text, "annotated.pub").key_id == load_public_key(FIXTURES / "busybox.pub").key_id


def test_missing_unreadable_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match=r"public key .*missing\.pub does not exist"):
        load_public_key(tmp_path / "missing.pub")
    with pytest.raises(SigningKeyError, match=r"private key .* is a directory"):
        load_private_key(tmp_path, b"")
    big = tmp_path / "big.pub"
    big.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * MAX_KEY_FILE_BYTES)
    with pytest.raises(SigningKeyError, match="not a key file"):
        load_public_key(big)
    with pytest.raises(SigningKeyError, match="not a key file"):
        load_private_key(big, b"")
    with pytest.raises(SigningKeyError, match="not a key file"):
        parse_public_key(big.read_bytes(), "big")


@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_are_a_key_or_a_signing_key_error(data: bytes) -> None:
    for attempt in (
        lambda: parse_public_key(data, "fuzz.pub"),
        lambda: parse_private_key(data, b"", "fuzz.key"),
    ):
        with contextlib.suppress(SigningKeyError):
            attempt()


@given(
    pem_type=st.sampled_from(
        [SIGSTORE_PRIVATE_KEY_PEM_TYPE, COSIGN_PRIVATE_KEY_PEM_TYPE, "PUBLIC KEY", "PRIVATE KEY"]
    ),
    body=st.binary(max_size=512),
)
def test_arbitrary_pem_bodies_are_refused_cleanly(pem_type: str, body: bytes) -> None:
    with pytest.raises(SigningKeyError):
        parse_private_key(_pem(pem_type, body), b"", "fuzz.key")
    if pem_type != "PUBLIC KEY":
        with pytest.raises(SigningKeyError):
            parse_public_key(_pem(pem_type, body), "fuzz.pub")
