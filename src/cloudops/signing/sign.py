"""Writing a cosign signature next to an image, as an OCI 1.1 referrer (what
``cosign sign --registry-referrers-mode=oci-1-1`` writes): the payload and the empty
config as blobs, the signature manifest by digest with the image as its subject, and,
on a registry without the referrers API, an entry in the subject's fallback index."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from cloudops.copy.referrers import add_to_fallback_index
from cloudops.oci import OCI_MANIFEST, Descriptor, parse_manifest, sha256_digest
from cloudops.referrers import index_entry
from cloudops.registry.client import RegistryWriter
from cloudops.signing.simple_signing import make_payload, sign_payload, signature_manifest


async def sign_image(
    writer: RegistryWriter,
    repository: str,
    subject: Descriptor,
    private_key: ec.EllipticCurvePrivateKey,
) -> str:
    """Sign the manifest ``subject`` of ``repository``; the signature manifest's digest."""
    payload = make_payload(f"{writer.host}/{repository}", subject.digest)
    signature = sign_payload(private_key, payload)
    manifest, config = signature_manifest(subject, payload, signature)
    for blob in (config, payload):
        digest = sha256_digest(blob)
        if await writer.blob_size(repository, digest) is None:
            await writer.upload_blob(repository, digest, blob)
    if not await writer.put_referrer(repository, manifest, OCI_MANIFEST, subject.digest):
        entry = index_entry(parse_manifest(manifest, OCI_MANIFEST))
        await add_to_fallback_index(writer, repository, subject.digest, [entry])
    return sha256_digest(manifest)
