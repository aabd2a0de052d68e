"""NaCl secretbox (XSalsa20-Poly1305), the cipher inside cosign's encrypted key files."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.signing import secretbox
from cloudops.signing.secretbox import SecretBoxError

# libsodium's secretbox vector (the one from Bernstein's "Cryptography in NaCl", section 10).
# Inputs: https://github.com/jedisct1/libsodium test/default/secretbox_easy.c
# (commit 0e559b94d543b6e688dbf2a81afc01f9794a3b65); expected mac || ciphertext:
# test/default/secretbox_easy.exp (commit 0f1f8a6ea67620f3a9aa28619dae4257a3c24269).
# crypto_secretbox_easy's layout is Go's secretbox.Seal's: tag first, then ciphertext.
FIRSTKEY = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
MESSAGE = bytes.fromhex(
    "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc"
    "e5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb31"
    "0e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde"
    "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f93776384864"
    "5e0705"
)
EXPECTED_BOX = bytes.fromhex(
    "f3ffc7703f9400e52a7dfb4b3d3305d9"  # Poly1305 tag
    "8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a"
    "c0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738"
    "b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da"
    "99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74"
    "e355a5"
)


def test_seal_matches_the_libsodium_vector() -> None:
    assert len(MESSAGE) == 131
    assert secretbox.seal(MESSAGE, NONCE, FIRSTKEY) == EXPECTED_BOX


def test_open_recovers_the_libsodium_vector_message() -> None:
    assert secretbox.open(EXPECTED_BOX, NONCE, FIRSTKEY) == MESSAGE


@given(position=st.integers(0, len(EXPECTED_BOX) - 1), flip=st.integers(1, 255))
def test_any_altered_byte_of_the_box_is_refused(position: int, flip: int) -> None:
    box = bytearray(EXPECTED_BOX)
    box[position] ^= flip
    with pytest.raises(SecretBoxError):
        secretbox.open(bytes(box), NONCE, FIRSTKEY)


@given(position=st.integers(0, 31), flip=st.integers(1, 255))
def test_another_key_does_not_open_the_box(position: int, flip: int) -> None:
    key = bytearray(FIRSTKEY)
    key[position] ^= flip
    with pytest.raises(SecretBoxError):
        secretbox.open(EXPECTED_BOX, NONCE, bytes(key))


def test_another_nonce_does_not_open_the_box() -> None:
    with pytest.raises(SecretBoxError):
        secretbox.open(EXPECTED_BOX, bytes(reversed(NONCE)), FIRSTKEY)


def test_a_truncated_or_extended_box_is_refused() -> None:
    for box in (EXPECTED_BOX[:-1], EXPECTED_BOX + b"\x00", EXPECTED_BOX[:15], b""):
        with pytest.raises(SecretBoxError):
            secretbox.open(box, NONCE, FIRSTKEY)


@given(
    message=st.binary(max_size=300),
    nonce=st.binary(min_size=24, max_size=24),
    key=st.binary(min_size=32, max_size=32),
)
def test_seal_then_open_round_trips(message: bytes, nonce: bytes, key: bytes) -> None:
    box = secretbox.seal(message, nonce, key)
    assert len(box) == len(message) + secretbox.OVERHEAD
    assert secretbox.open(box, nonce, key) == message


def test_an_empty_message_still_carries_a_tag() -> None:
    box = secretbox.seal(b"", NONCE, FIRSTKEY)
    assert len(box) == secretbox.OVERHEAD
    assert secretbox.open(box, NONCE, FIRSTKEY) == b""


@pytest.mark.parametrize(
    ("key", "nonce"), [(FIRSTKEY[:31], NONCE), (FIRSTKEY + b"\x00", NONCE), (FIRSTKEY, NONCE[:23])]
)
def test_wrong_key_or_nonce_sizes_are_refused(key: bytes, nonce: bytes) -> None:
    with pytest.raises(SecretBoxError):
        secretbox.seal(b"x", nonce, key)
    with pytest.raises(SecretBoxError):
        secretbox.open(EXPECTED_BOX, nonce, key)


def test_payloads_bigger_than_a_key_file_are_refused() -> None:
    with pytest.raises(SecretBoxError, match="over"):
        secretbox.seal(bytes(secretbox.MAX_MESSAGE + 1), NONCE, FIRSTKEY)
    with pytest.raises(SecretBoxError, match="over"):
        secretbox.open(bytes(secretbox.MAX_MESSAGE + secretbox.OVERHEAD + 1), NONCE, FIRSTKEY)
