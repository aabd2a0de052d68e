"""NaCl ``crypto_secretbox`` (XSalsa20-Poly1305) in pure Python, for cosign key files.

cosign encrypts its private keys with go-securesystemslib's ``encrypted`` package, which
seals them with golang.org/x/crypto/nacl/secretbox. The ``cryptography`` library has
Poly1305 but no Salsa20, so the stream cipher lives here. It is slow (pure Python) and
meant for key-sized payloads only: ``open``/``seal`` refuse anything over ``MAX_MESSAGE``.

The box layout is Go's and libsodium's ``crypto_secretbox_easy``: the 16-byte Poly1305
tag, then the ciphertext. Construction (Bernstein, "Cryptography in NaCl", section 7):

    subkey    = HSalsa20(key, nonce[0:16])
    stream    = Salsa20(subkey, nonce[16:24]), block counter from 0
    poly key  = stream[0:32];  ciphertext = message XOR stream[32:]
    tag       = Poly1305(poly key, ciphertext)
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

__all__ = ["KEY_SIZE", "MAX_MESSAGE", "NONCE_SIZE", "OVERHEAD", "SecretBoxError", "open", "seal"]

KEY_SIZE = 32
NONCE_SIZE = 24
OVERHEAD = 16
"""Bytes a sealed box adds to its message (the Poly1305 tag)."""
MAX_MESSAGE = 64 * 1024
"""Pure-Python Salsa20 runs at a few MB/s: keys only, never blobs."""

# "expand 32-byte k", as four little-endian words.
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_MASK = 0xFFFFFFFF


class SecretBoxError(ValueError):
    """The box did not authenticate (wrong key, or altered bytes), or its inputs are malformed.

    Deliberately vague: which of the two happened is not something to tell an attacker."""


def _rounds(state: list[int]) -> list[int]:
    """Twenty Salsa20 rounds (ten double rounds: columns, then rows) over 16 words."""
    x = list(state)

    def quarter(a: int, b: int, c: int, d: int) -> None:
        t = (x[a] + x[d]) & _MASK
        x[b] ^= ((t << 7) | (t >> 25)) & _MASK
        t = (x[b] + x[a]) & _MASK
        x[c] ^= ((t << 9) | (t >> 23)) & _MASK
        t = (x[c] + x[b]) & _MASK
        x[d] ^= ((t << 13) | (t >> 19)) & _MASK
        t = (x[d] + x[c]) & _MASK
        x[a] ^= ((t << 18) | (t >> 14)) & _MASK

    for _ in range(10):
        quarter(0, 4, 8, 12)
        quarter(5, 9, 13, 1)
        quarter(10, 14, 2, 6)
        quarter(15, 3, 7, 11)
        quarter(0, 1, 2, 3)
        quarter(5, 6, 7, 4)
        quarter(10, 11, 8, 9)
        quarter(15, 12, 13, 14)
    return x


def _initial_state(key: bytes, sixteen: bytes) -> list[int]:
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [
        _SIGMA[0], k[0], k[1], k[2],
        k[3], _SIGMA[1], n[0], n[1],
        n[2], n[3], _SIGMA[2], k[4],
        k[5], k[6], k[7], _SIGMA[3],
    ]  # fmt: skip


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """HSalsa20: derive the XSalsa20 subkey from the key and the nonce's first 16 bytes."""
    x = _rounds(_initial_state(key, nonce16))
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    """``length`` bytes of Salsa20 keystream for an 8-byte nonce, block counter from 0."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        state = _initial_state(key, nonce8 + struct.pack("<Q", counter))
        mixed = _rounds(state)
        out += struct.pack("<16I", *((m + s) & _MASK for m, s in zip(mixed, state, strict=True)))
        counter += 1
    return bytes(out[:length])


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(len(data), "little")


def _check(key: bytes, nonce: bytes, box_size: int) -> None:
    if len(key) != KEY_SIZE:
        raise SecretBoxError(f"secretbox key must be {KEY_SIZE} bytes")
    if len(nonce) != NONCE_SIZE:
        raise SecretBoxError(f"secretbox nonce must be {NONCE_SIZE} bytes")
    if box_size > MAX_MESSAGE + OVERHEAD:
        raise SecretBoxError(f"secretbox payload over {MAX_MESSAGE} bytes")


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    return salsa20_stream(hsalsa20(key, nonce[:16]), nonce[16:], 32 + length)


def seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
    """Encrypt and authenticate ``message``: returns tag || ciphertext (Go's secretbox.Seal).

    Never seal two messages under one (key, nonce) pair."""
    _check(key, nonce, len(message) + OVERHEAD)
    stream = _keystream(key, nonce, len(message))
    ciphertext = _xor(message, stream[32:])
    return Poly1305.generate_tag(stream[:32], ciphertext) + ciphertext


def open(box: bytes, nonce: bytes, key: bytes) -> bytes:
    """Check the tag and decrypt a box from ``seal`` (Go's secretbox.Open).

    Raises SecretBoxError when the box does not authenticate under this key and nonce."""
    _check(key, nonce, len(box))
    if len(box) < OVERHEAD:
        raise SecretBoxError("secretbox is shorter than its tag")
    tag, ciphertext = box[:OVERHEAD], box[OVERHEAD:]
    stream = _keystream(key, nonce, len(ciphertext))
    try:
        Poly1305.verify_tag(stream[:32], ciphertext, tag)  # constant-time comparison
    except InvalidSignature:
        raise SecretBoxError("secretbox did not authenticate") from None
    return _xor(ciphertext, stream[32:])
