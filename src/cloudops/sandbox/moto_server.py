"""moto in server mode, plus the one S3 rule the sandbox needs that moto lacks: the bucket
owner condition.

Why: moto 5.x accepts ``ExpectedBucketOwner`` (the ``x-amz-expected-bucket-owner`` header)
and ignores it, so a request that names account A as the owner of a bucket that account
B owns succeeds on moto (reads AND writes). Real S3 refuses it, as documented in
https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html:
"If the bucket owner doesn't match the account ID that you specify, the request fails
with an HTTP 403 Access Denied error." Without that rule the tests could never show that
cloudops refuses to write into a bucket another account owns; with it they meet S3's
behaviour before users do, as the ECR-like front (ecr_front.py) does for ECR.

The rule is put in front of moto's WSGI application; everything else is moto's own
``moto.server`` (same arguments). The same holds for ``x-amz-source-expected-bucket-owner``
on the source bucket of a CopyObject / UploadPartCopy. Only the sandbox and the tests run
this module: no library code imports moto.

    python -m cloudops.sandbox.moto_server -H 127.0.0.1 -p PORT [--fd FD]

With ``--fd`` it serves on an inherited socket that is already bound and listening on
PORT (processes.start_moto binds it, so that the port is owned from the start and no other
process can take it between choosing and binding it).
"""

from __future__ import annotations

import argparse
import os
import signal
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import s3_backends
from moto.s3.responses import S3Response
from moto.s3.utils import bucket_name_from_url
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

StartResponse = Callable[..., Any]

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    b"<RequestId>cloudops-sandbox</RequestId><HostId>cloudops-sandbox</HostId></Error>"
)


def bucket_owner(bucket: str) -> str | None:
    """The account id that owns ``bucket`` in moto, or None when no account has it."""
    found = s3_backends.bucket_accounts.get(bucket)
    return found[1] if found else None


def _bucket_of(request: Request) -> str | None:
    """The bucket a request addresses, decided the way moto decides it (virtual-host
    style for a bucket.host name, path style for IPs and localhost)."""
    if S3Response.subdomain_based_buckets(request):
        return bucket_name_from_url(request.url)
    first = request.path.lstrip("/").split("/", 1)[0]
    return first or None


def _copy_source_bucket(header: str) -> str | None:
    source = urllib.parse.unquote(header.split("?", 1)[0]).lstrip("/")
    return source.split("/", 1)[0] or None


def refusal(request: Request) -> str | None:
    """Why S3 would answer 403 to this request under the bucket owner condition, or None."""
    environ = request.environ
    expected = environ.get("HTTP_X_AMZ_EXPECTED_BUCKET_OWNER")
    source_expected = environ.get("HTTP_X_AMZ_SOURCE_EXPECTED_BUCKET_OWNER")
    if not expected and not source_expected:
        return None
    if expected:
        bucket = _bucket_of(request)
        owner = bucket_owner(bucket) if bucket else None
        if owner is not None and owner != expected.strip():
            return f"bucket {bucket} is owned by {owner}, not {expected}"
    if source_expected:
        copy_source = environ.get("HTTP_X_AMZ_COPY_SOURCE", "")
        bucket = _copy_source_bucket(copy_source) if copy_source else None
        owner = bucket_owner(bucket) if bucket else None
        if owner is not None and owner != source_expected.strip():
            return f"source bucket {bucket} is owned by {owner}, not {source_expected}"
    return None


class OwnerCheckingApplication(DomainDispatcherApplication):
    """moto's dispatcher with S3's bucket owner condition in front of it."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ, populate_request=False)  # headers and URL; the body is moto's
        if refusal(request) is not None:
            # Drain the refused request's body, so that the connection stays usable.
            while request.stream.read(1024 * 1024):
                pass
            head = environ.get("REQUEST_METHOD") == "HEAD"
            body = b"" if head else _DENIED
            start_response(
                "403 Forbidden",
                [
                    ("Content-Type", "application/xml"),
                    ("Content-Length", str(len(body))),
                    ("x-amz-request-id", "cloudops-sandbox"),
                ],
            )
            return [body]
        result: Iterable[bytes] = super().__call__(environ, start_response)
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--fd", type=int)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int)
    known, _rest = parser.parse_known_args(argv)
    if known.fd is not None:
        _serve_inherited(known.fd, known.host, known.port)
        return
    # moto.server.main builds its app from this module-level name: hand it ours.
    moto.server.DomainDispatcherApplication = OwnerCheckingApplication  # type: ignore[attr-defined]
    moto.server.main(argv)


def _serve_inherited(fd: int, host: str, port: int | None) -> None:
    """What moto.server.main does (threaded werkzeug, moto's request handler), on a socket
    the parent bound and handed over."""
    port = port or 0
    os.environ.setdefault("MOTO_PORT", str(port))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, moto.server.signal_handler)
    app = OwnerCheckingApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server.main
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler, fd=fd)
    server.serve_forever()


if __name__ == "__main__":
    main()
