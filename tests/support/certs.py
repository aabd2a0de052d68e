"""Self-signed certificates for the tests' TLS registry and token signer."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


def self_signed(
    common_name: str, key: CertificateIssuerPrivateKeyTypes, *, ip: str | None = None
) -> x509.Certificate:
    """A CA certificate for ``key``, valid from a little before now for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def write_self_signed(directory: Path, common_name: str = "cloudops-test-registry") -> tuple[Path, Path]:
    """A fresh key and its self-signed certificate for 127.0.0.1, written as PEM files in
    ``directory`` (cert.pem, key.pem): what a TLS registry of a test serves, and so also
    the --ca-bundle that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(common_name, key, ip="127.0.0.1")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
