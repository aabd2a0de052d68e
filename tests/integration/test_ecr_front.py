"""The sandbox's ECR-like front against the real processes: moto in server mode, Debian's
docker-registry behind the front, skopeo and the AWS CLI v2 as peers. Each test proves one
ECR rule from ECR-NOTES.md by exact status codes, error codes and digests."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from cloudops.oci import ACCEPT_MANIFESTS, OCI_MANIFEST
from cloudops.sandbox import world
from cloudops.sandbox.ecr_front import EXPIRED_MESSAGE
from cloudops.sandbox.processes import listening_socket, wait_for_http
from tests.support.sandbox import assumed_keys

QA = world.ACCOUNTS["qa"]
BUILD = world.ACCOUNTS["build"]
MiB = 1024 * 1024


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[world.SandboxState]:
    root = tmp_path_factory.mktemp("ecr-front-world")
    state = world.up(root, detach=False)
    try:
        yield state
    finally:
        world.down(root)


@dataclass
class Account:
    account_id: str
    front: str  # host:port of the ECR-like front
    backend: str  # URL of the plain registry behind it
    credentials: dict[str, str]  # assumed-role keys acting in this account on moto
    ecr: Any  # boto3 ECR client as this account
    password: str  # the registry password from GetAuthorizationToken

    @property
    def base(self) -> str:
        return f"http://{self.front}"

    def client(self) -> httpx.Client:
        return httpx.Client(auth=httpx.BasicAuth("AWS", self.password), timeout=60)


def _account(state: world.SandboxState, name: str) -> Account:
    account_id = world.ACCOUNTS[name]
    env = assumed_keys(state, name)
    keys = {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": env["AWS_SESSION_TOKEN"],
    }
    ecr = boto3.client(
        "ecr",
        endpoint_url=state.moto_url,
        region_name=world.REGION,
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
        aws_session_token=keys["aws_session_token"],
    )
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return Account(account_id, state.registries[name], state.backends[name], keys, ecr, password)


@pytest.fixture(scope="module")
def qa(sandbox: world.SandboxState) -> Account:
    return _account(sandbox, "qa")


@pytest.fixture(scope="module")
def build(sandbox: world.SandboxState) -> Account:
    return _account(sandbox, "build")


def _alive(pid: int) -> bool:
    """Running (a zombie has exited: whoever adopted it reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _repo(prefix: str) -> str:
    return f"test/{prefix}-{uuid.uuid4().hex[:8]}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _errors(response: httpx.Response) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = response.json()["errors"]
    return errors


def _with_query(location: str, **params: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return location + ("&" if "?" in location else "?") + extra


def _push_blob(client: httpx.Client, base: str, name: str, data: bytes) -> str:
    digest = _digest(data)
    started = client.post(f"{base}/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    done = client.put(
        _with_query(started.headers["Location"], digest=digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest


def _layer(seed: bytes) -> tuple[bytes, bytes]:
    """A real gzipped tar layer holding one file, and its uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(seed)
        tar.addfile(info, io.BytesIO(seed))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


@dataclass
class Image:
    manifest: bytes
    blobs: dict[str, bytes]  # digest -> bytes

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


def _image(seed: bytes | None = None) -> Image:
    layer, tar = _layer(seed or uuid.uuid4().bytes)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return Image(manifest, {_digest(config): config, _digest(layer): layer})


def _push_image(client: httpx.Client, base: str, name: str, image: Image, ref: str) -> httpx.Response:
    for data in image.blobs.values():
        _push_blob(client, base, name, data)
    return client.put(
        f"{base}/v2/{name}/manifests/{ref}", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    )


def _oci_layout(path: Path, image: Image, tag: str) -> Path:
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest, data in [*image.blobs.items(), (image.digest, image.manifest)]:
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return path


def _skopeo_push(
    layout: Path, tag: str, account: Account, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"AWS:{account.password}",
            *extra,
            f"oci:{layout}:{tag}",
            f"docker://{account.front}/{name}:{tag}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _aws_cli(state: world.SandboxState, account: Account, tmp: Path, *args: str) -> Any:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "AWS_CONFIG_FILE": str(tmp / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-credentials"),
        "AWS_ACCESS_KEY_ID": account.credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": account.credentials["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": account.credentials["aws_session_token"],
        "AWS_DEFAULT_REGION": world.REGION,
    }
    done = subprocess.run(
        ["/usr/bin/aws", "--endpoint-url", state.moto_url, "--output", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- auth ---------------------------------------------------------------------------------------
def test_moto_token_is_the_fixed_per_account_password(qa: Account, build: Account) -> None:
    # What the front validates against: moto's token never changes (ECR-NOTES.md).
    assert qa.password == f"{QA}-auth-token"
    assert build.password == f"{BUILD}-auth-token"


def test_requests_without_valid_credentials_get_ecrs_basic_challenge(qa: Account, build: Account) -> None:
    challenge = f'Basic realm="{qa.front}",service="ecr.amazonaws.com"'
    with httpx.Client(timeout=10) as anonymous:
        for method, path in [
            ("GET", "/v2/"),
            ("HEAD", "/v2/ep/cortex/manifests/1.0"),
            ("POST", "/v2/x/blobs/uploads/"),
        ]:
            answer = anonymous.request(method, qa.base + path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == challenge
            if method != "HEAD":
                assert _errors(answer)[0]["code"] == "UNAUTHORIZED"
    # Another account's token, a wrong user and a bearer token are all refused.
    for auth in [("AWS", build.password), ("admin", qa.password)]:
        with httpx.Client(auth=auth, timeout=10) as wrong:
            assert wrong.get(qa.base + "/v2/").status_code == 401
    bearer = httpx.get(qa.base + "/v2/", headers={"Authorization": f"Bearer {qa.password}"})
    assert bearer.status_code == 401
    with qa.client() as client:
        answer = client.get(qa.base + "/v2/")
        assert answer.status_code == 200
        assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# -- repositories must exist in ECR -----------------------------------------------------------------
def test_push_to_a_repository_not_created_in_ecr_is_name_unknown(
    qa: Account, build: Account, tmp_path: Path
) -> None:
    name = _repo("missing")
    expected = f"The repository with name '{name}' does not exist in the registry with id '{QA}'"
    with qa.client() as client:
        for method, path in [
            ("POST", f"/v2/{name}/blobs/uploads/"),
            ("GET", f"/v2/{name}/manifests/latest"),
            ("GET", f"/v2/{name}/tags/list"),
        ]:
            answer = client.request(method, qa.base + path)
            assert answer.status_code == 404
            assert _errors(answer) == [{"code": "NAME_UNKNOWN", "message": expected}]

    # A repository created in ANOTHER account (build) does not exist in qa's registry.
    build.ecr.create_repository(repositoryName=name)
    image = _image()
    layout = _oci_layout(tmp_path / "layout", image, "1.0")
    pushed = _skopeo_push(layout, "1.0", qa, name)
    assert pushed.returncode != 0
    assert f"registry with id '{QA}'" in pushed.stderr, pushed.stderr
    with httpx.Client(timeout=10) as plain:  # nothing reached the backend
        assert plain.get(f"{qa.backend}/v2/{name}/tags/list").status_code == 404


def test_push_after_create_repository_is_seen_by_the_aws_cli(
    sandbox: world.SandboxState, qa: Account, tmp_path: Path
) -> None:
    name = _repo("created")
    qa.ecr.create_repository(repositoryName=name)
    image = _image()
    layout = _oci_layout(tmp_path / "layout", image, "1.0")
    digest_file = tmp_path / "digest"

    pushed = _skopeo_push(layout, "1.0", qa, name, "--digestfile", str(digest_file))

    assert pushed.returncode == 0, pushed.stderr
    assert digest_file.read_text().strip() == image.digest
    listed = _aws_cli(sandbox, qa, tmp_path, "ecr", "describe-images", "--repository-name", name)
    assert [(d["imageDigest"], d.get("imageTags")) for d in listed["imageDetails"]] == [
        (image.digest, ["1.0"])
    ]
    assert listed["imageDetails"][0]["registryId"] == QA
    # And the bytes read back through the front are the bytes pushed.
    with qa.client() as client:
        got = client.get(f"{qa.base}/v2/{name}/manifests/1.0", headers={"Accept": ACCEPT_MANIFESTS})
        assert got.status_code == 200
        assert got.content == image.manifest
        assert got.headers["Docker-Content-Digest"] == image.digest


def test_manifest_pushed_by_digest_is_registered_untagged(qa: Account) -> None:
    name = _repo("bydigest")
    qa.ecr.create_repository(repositoryName=name)
    image = _image()
    with qa.client() as client:
        first = _push_image(client, qa.base, name, image, image.digest)
        again = _push_image(client, qa.base, name, image, image.digest)  # moto: "already exists"
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert first.headers["Docker-Content-Digest"] == image.digest
    assert first.headers["Location"].startswith(f"{qa.base}/v2/{name}/manifests/")
    details = qa.ecr.describe_images(repositoryName=name)["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(image.digest, None)]


# -- tag immutability ---------------------------------------------------------------------------
def test_immutable_repository_refuses_the_same_tag_even_with_the_same_digest(
    qa: Account, tmp_path: Path
) -> None:
    name = _repo("immutable")
    qa.ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    image = _image()
    refused = {
        "code": "TAG_INVALID",
        "message": f"The image tag '1.0' already exists in the '{name}' repository and cannot be "
        "overwritten because the repository is immutable.",
    }
    with qa.client() as client:
        assert _push_image(client, qa.base, name, image, "1.0").status_code == 201
        same = _push_image(client, qa.base, name, image, "1.0")
        assert same.status_code == 400
        assert _errors(same) == [refused]
        other = _push_image(client, qa.base, name, _image(), "1.0")
        assert other.status_code == 400 and _errors(other) == [refused]
        # By digest and under a new tag the same image is accepted.
        assert _push_image(client, qa.base, name, image, image.digest).status_code == 201
        assert _push_image(client, qa.base, name, image, "1.1").status_code == 201
        current = client.head(f"{qa.base}/v2/{name}/manifests/1.0", headers={"Accept": ACCEPT_MANIFESTS})
        assert current.headers["Docker-Content-Digest"] == image.digest

    layout = _oci_layout(tmp_path / "layout", image, "1.0")
    again = _skopeo_push(layout, "1.0", qa, name)
    assert again.returncode != 0
    assert "cannot be overwritten because the repository is immutable" in again.stderr, again.stderr
    details = qa.ecr.describe_images(repositoryName=name)["imageDetails"]
    assert [(d["imageDigest"], sorted(d.get("imageTags", []))) for d in details] == [
        (image.digest, ["1.0", "1.1"])
    ]


def test_mutable_repository_accepts_the_same_tag_again_and_moves_tags(qa: Account) -> None:
    name = _repo("mutable")
    qa.ecr.create_repository(repositoryName=name)
    first, second = _image(), _image()
    with qa.client() as client:
        assert _push_image(client, qa.base, name, first, "latest").status_code == 201
        assert _push_image(client, qa.base, name, first, "latest").status_code == 201
        assert _push_image(client, qa.base, name, second, "latest").status_code == 201
        head = client.head(f"{qa.base}/v2/{name}/manifests/latest", headers={"Accept": ACCEPT_MANIFESTS})
    assert head.headers["Docker-Content-Digest"] == second.digest
    tagged = {
        d["imageDigest"]: d.get("imageTags")
        for d in qa.ecr.describe_images(repositoryName=name)["imageDetails"]
    }
    assert tagged[second.digest] == ["latest"]


# -- token expiry (emulated) -------------------------------------------------------------------------
def test_expired_token_is_403_denied_until_reauthentication(sandbox: world.SandboxState, qa: Account) -> None:
    name = _repo("expiry")
    qa.ecr.create_repository(repositoryName=name)
    world.expire_token(sandbox, "qa", count=2)
    with qa.client() as client:
        # Unauthenticated requests stay 401 and do not use up the expiry.
        assert httpx.get(qa.base + "/v2/").status_code == 401
        for path in ["/v2/", f"/v2/{name}/tags/list"]:
            denied = client.get(qa.base + path)
            assert denied.status_code == 403
            assert _errors(denied) == [{"code": "DENIED", "message": EXPIRED_MESSAGE}]
        assert client.get(qa.base + "/v2/").status_code == 200
        assert client.post(f"{qa.base}/v2/{name}/blobs/uploads/").status_code == 202
    # Only the named account's front is affected.
    world.expire_token(sandbox, world.ACCOUNTS["qa"], count=1)
    build = _account(sandbox, "build")
    with build.client() as client:
        assert client.get(build.base + "/v2/").status_code == 200
    with qa.client() as client:
        assert client.get(qa.base + "/v2/").status_code == 403
        assert client.get(qa.base + "/v2/").status_code == 200


# -- blob mounting -----------------------------------------------------------------------------
def test_mount_parameters_are_ignored_by_default(qa: Account) -> None:
    source, target = _repo("mount-src"), _repo("mount-dst")
    qa.ecr.create_repository(repositoryName=source)
    qa.ecr.create_repository(repositoryName=target)
    image = _image()
    with qa.client() as client:
        assert _push_image(client, qa.base, source, image, "1.0").status_code == 201
        blob = next(iter(image.blobs))
        answer = client.post(f"{qa.base}/v2/{target}/blobs/uploads/", params={"mount": blob, "from": source})
        assert answer.status_code == 202, answer.text
        location = answer.headers["Location"]
        assert location.startswith(f"{qa.base}/v2/{target}/blobs/uploads/")
        assert "mount=" not in location
        # The upload that started instead completes normally.
        done = client.put(_with_query(location, digest=blob), content=image.blobs[blob])
        assert done.status_code == 201
    # The plain registry behind it WOULD have mounted: the 202 is the front's doing.
    other = _repo("mount-dst2")
    with httpx.Client(timeout=10) as plain:
        mounted = plain.post(
            f"{qa.backend}/v2/{other}/blobs/uploads/", params={"mount": blob, "from": source}
        )
        assert mounted.status_code == 201


def test_mount_passes_through_when_blob_mounting_is_enabled(
    sandbox: world.SandboxState, qa: Account, tmp_path: Path
) -> None:
    listener = listening_socket()  # owned from the start; the front serves on it
    port = listener.getsockname()[1]
    config = tmp_path / "front.json"
    config.write_text(
        json.dumps(
            {
                "moto_url": sandbox.moto_url,
                "region": world.REGION,
                "blob_mounting": True,
                "accounts": [{"account_id": QA, "listen_port": port, "backend": qa.backend}],
            }
        )
    )
    log = (tmp_path / "front.log").open("wb")
    with listener:
        front = subprocess.Popen(
            [
                *(sys.executable, "-m", "cloudops.sandbox.ecr_front", "--config", str(config)),
                f"--listen-fd={QA}={listener.fileno()}",
            ],
            stdout=log,
            stderr=log,
            pass_fds=[listener.fileno()],
        )
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/_sandbox/health",
            process=front,
            identify=lambda status, _headers, body: status == 200 and json.loads(body)["account_id"] == QA,
        )
        base = f"http://127.0.0.1:{port}"
        source, target = _repo("mount-src"), _repo("mount-dst")
        qa.ecr.create_repository(repositoryName=source)
        qa.ecr.create_repository(repositoryName=target)
        image = _image()
        with qa.client() as client:
            assert _push_image(client, base, source, image, "1.0").status_code == 201
            blob = next(iter(image.blobs))
            mounted = client.post(
                f"{base}/v2/{target}/blobs/uploads/", params={"mount": blob, "from": source}
            )
            assert mounted.status_code == 201, mounted.text
            assert mounted.headers["Docker-Content-Digest"] == blob
            # A source that is not an ECR repository of this account is never mounted from.
            nowhere = client.post(
                f"{base}/v2/{target}/blobs/uploads/", params={"mount": blob, "from": "not/in-ecr"}
            )
            assert nowhere.status_code == 202
    finally:
        front.terminate()
        front.wait(timeout=10)
        log.close()


# -- streaming ---------------------------------------------------------------------------------
def test_large_blobs_stream_through_chunked_and_with_content_length(qa: Account) -> None:
    name = _repo("large")
    qa.ecr.create_repository(repositoryName=name)
    chunked_data = os.urandom(20 * MiB)
    sized_data = os.urandom(20 * MiB + 17)

    def pieces() -> Iterator[bytes]:
        for offset in range(0, len(chunked_data), MiB):
            yield chunked_data[offset : offset + MiB]

    with qa.client() as client:
        # POST, one chunked PATCH streaming everything, PUT ?digest= (what cloudops does).
        started = client.post(f"{qa.base}/v2/{name}/blobs/uploads/")
        assert started.status_code == 202
        assert started.headers["Location"].startswith(f"{qa.base}/")
        patched = client.patch(
            started.headers["Location"],
            content=pieces(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert patched.status_code == 201, patched.text  # ECR: 201, not the spec's 202
        assert patched.headers["Range"] == f"0-{len(chunked_data) - 1}"
        done = client.put(_with_query(patched.headers["Location"], digest=_digest(chunked_data)))
        assert done.status_code == 201, done.text
        # POST then PUT with a Content-Length body.
        sized = _push_blob(client, qa.base, name, sized_data)

        for digest, data in [(_digest(chunked_data), chunked_data), (sized, sized_data)]:
            head = client.head(f"{qa.base}/v2/{name}/blobs/{digest}")
            assert head.status_code == 200
            assert head.headers["Content-Length"] == str(len(data))
            assert head.headers["Docker-Content-Digest"] == digest
            hasher, size = hashlib.sha256(), 0
            # ECR sends blob reads to S3 (a 307): follow it, as clients do.
            with client.stream("GET", f"{qa.base}/v2/{name}/blobs/{digest}", follow_redirects=True) as got:
                assert got.status_code == 200
                assert got.headers["Content-Length"] == str(len(data))
                for chunk in got.iter_raw():
                    hasher.update(chunk)
                    size += len(chunk)
            assert (size, "sha256:" + hasher.hexdigest()) == (len(data), digest)


def test_head_of_a_manifest_keeps_length_and_digest(qa: Account) -> None:
    name = _repo("head")
    qa.ecr.create_repository(repositoryName=name)
    image = _image()
    with qa.client() as client:
        assert _push_image(client, qa.base, name, image, "1.0").status_code == 201
        head = client.head(f"{qa.base}/v2/{name}/manifests/1.0", headers={"Accept": ACCEPT_MANIFESTS})
        missing = client.head(f"{qa.base}/v2/{name}/manifests/nope", headers={"Accept": ACCEPT_MANIFESTS})
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(image.manifest))
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert head.headers["Content-Type"] == OCI_MANIFEST
    assert head.content == b""
    assert missing.status_code == 404


# -- blob reads: 307 to a presigned URL on another port (ECR serves layers from S3) ------------
def _stats(account: Account) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{account.base}/_sandbox/stats", timeout=10).json()
    return stats


def _admin(account: Account, what: str) -> None:
    answer = httpx.post(f"{account.base}/_sandbox/{what}", timeout=10)
    assert answer.status_code == 200, answer.text


def _s3_code(response: httpx.Response) -> str:
    match = re.search(r"<Code>([^<]*)</Code>", response.text)
    assert match is not None, response.text
    return match.group(1)


def test_blob_get_is_a_307_to_a_presigned_url_on_another_port(qa: Account) -> None:
    name = _repo("redirect")
    qa.ecr.create_repository(repositoryName=name)
    image = _image()
    digest, data = next(iter(image.blobs.items()))
    before = _stats(qa)
    with qa.client() as client:
        assert _push_image(client, qa.base, name, image, "1.0").status_code == 201
        got = client.get(f"{qa.base}/v2/{name}/blobs/{digest}")
        # HEAD is answered by the registry itself, and a missing blob is not redirected.
        head = client.head(f"{qa.base}/v2/{name}/blobs/{digest}")
        missing = client.get(f"{qa.base}/v2/{name}/blobs/{_digest(b'never pushed')}")
    assert got.status_code == 307, got.text
    assert (head.status_code, head.headers["Content-Length"], "Location" in head.headers) == (
        200,
        str(len(data)),
        False,
    )
    assert missing.status_code == 404
    assert _errors(missing)[0]["code"] == "BLOB_UNKNOWN"

    location = httpx.URL(got.headers["Location"])
    front_host, _, front_port = qa.front.rpartition(":")
    assert (location.scheme, location.host) == ("http", front_host)
    assert location.port is not None and location.port != int(front_port)
    assert {"X-Amz-Signature", "X-Amz-Expires", "X-Amz-Date", "X-Amz-Algorithm"} <= set(location.params)
    assert _stats(qa)["blob_host"] == f"http://{location.host}:{location.port}"

    # Like S3: no credentials needed, and none accepted alongside the signature.
    plain = httpx.get(location, timeout=30)
    assert (plain.status_code, plain.content) == (200, data)
    assert "Docker-Content-Digest" not in plain.headers
    ranged = httpx.get(location, headers={"Range": "bytes=1-4"}, timeout=30)
    assert (ranged.status_code, ranged.content) == (206, data[1:5])
    with_auth = httpx.get(location, auth=("AWS", qa.password), timeout=30)
    assert (with_auth.status_code, _s3_code(with_auth)) == (400, "InvalidArgument")
    assert "Only one auth mechanism allowed" in with_auth.text

    # A forged signature, another object under the same signature, another method: refused.
    signature = location.params["X-Amz-Signature"]
    forged = location.copy_set_param("X-Amz-Signature", ("0" if signature[0] != "0" else "1") + signature[1:])
    other_blob = location.copy_with(path=location.path.replace(digest, image.digest))
    longer = location.copy_set_param("X-Amz-Expires", "999999")
    for url in (forged, other_blob, longer):
        refused = httpx.get(url, timeout=30)
        assert (refused.status_code, _s3_code(refused)) == (403, "SignatureDoesNotMatch"), url
    assert httpx.head(location, timeout=30).status_code == 403
    assert httpx.get(location.copy_with(query=None), timeout=30).status_code == 403

    after = _stats(qa)
    assert after["redirected"] - before["redirected"] == 1
    assert after["blob_served"] - before["blob_served"] == 2
    assert after["blob_refused_auth"] - before["blob_refused_auth"] == 1


def test_presigned_blob_urls_expire(qa: Account) -> None:
    name = _repo("expires")
    qa.ecr.create_repository(repositoryName=name)
    data = os.urandom(1000)
    with qa.client() as client:
        digest = _push_blob(client, qa.base, name, data)
        _admin(qa, "presign-expiry?seconds=1")
        try:
            location = client.get(f"{qa.base}/v2/{name}/blobs/{digest}").headers["Location"]
        finally:
            _admin(qa, "presign-expiry?seconds=300")
        assert httpx.URL(location).params["X-Amz-Expires"] == "1"
        time.sleep(2.2)
        expired = httpx.get(location, timeout=30)
        assert (expired.status_code, _s3_code(expired)) == (403, "AccessDenied")
        assert "Request has expired" in expired.text
        # A fresh redirect works again.
        fresh = client.get(f"{qa.base}/v2/{name}/blobs/{digest}", follow_redirects=True)
    assert (fresh.status_code, fresh.content) == (200, data)


def test_skopeo_reads_blobs_through_the_redirect_without_credentials(qa: Account, tmp_path: Path) -> None:
    name = _repo("skopeo-read")
    qa.ecr.create_repository(repositoryName=name)
    image = _image()
    with qa.client() as client:
        assert _push_image(client, qa.base, name, image, "1.0").status_code == 201
    before = _stats(qa)
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"AWS:{qa.password}",
            f"docker://{qa.front}/{name}:1.0",
            f"oci:{tmp_path / 'out'}:1.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for digest, data in image.blobs.items():
        assert (tmp_path / "out/blobs/sha256" / digest.removeprefix("sha256:")).read_bytes() == data
    after = _stats(qa)
    assert after["redirected"] - before["redirected"] == len(image.blobs)
    assert after["blob_served"] - before["blob_served"] == len(image.blobs)
    assert after["blob_refused"] == before["blob_refused"]


# -- uploads: PATCH answers 201, and only one PATCH per upload ---------------------------------------
def test_patch_answers_201_and_a_second_patch_on_the_upload_is_refused(qa: Account) -> None:
    name = _repo("patch")
    qa.ecr.create_repository(repositoryName=name)
    first, second = os.urandom(3000), os.urandom(2000)
    before = _stats(qa)
    with qa.client() as client:
        started = client.post(f"{qa.base}/v2/{name}/blobs/uploads/")
        assert started.status_code == 202
        patched = client.patch(started.headers["Location"], content=first)
        assert patched.status_code == 201, patched.text
        assert patched.headers["Range"] == f"0-{len(first) - 1}"
        assert patched.headers["Location"].startswith(f"{qa.base}/v2/{name}/blobs/uploads/")
        # The next chunk, at the Location the PATCH answered or the original one: refused.
        for location in (patched.headers["Location"], started.headers["Location"]):
            again = client.patch(location, content=second)
            assert again.status_code == 400, again.text
            [error] = _errors(again)
            assert error["code"] == "BLOB_UPLOAD_INVALID" and "one PATCH per blob upload" in error["message"]
        # The upload still completes with what its one PATCH carried.
        done = client.put(_with_query(patched.headers["Location"], digest=_digest(first)))
        assert done.status_code == 201, done.text
        got = client.get(f"{qa.base}/v2/{name}/blobs/{_digest(first)}", follow_redirects=True)
        assert got.content == first
        # Another upload has its own one PATCH.
        other = client.post(f"{qa.base}/v2/{name}/blobs/uploads/")
        assert client.patch(other.headers["Location"], content=second).status_code == 201
    assert _stats(qa)["patch_refused"] - before["patch_refused"] == 2


# -- throttling: 429 TOOMANYREQUESTS with Retry-After above the account's request rate -----------
def test_requests_above_the_rate_are_429_with_retry_after(qa: Account, build: Account) -> None:
    before = _stats(qa)
    _admin(qa, "throttle?rate=2")
    try:
        with qa.client() as client:
            answers = [client.get(f"{qa.base}/v2/") for _ in range(6)]
            with build.client() as other:
                assert all(other.get(f"{build.base}/v2/").status_code == 200 for _ in range(6))
            throttled = [a for a in answers if a.status_code == 429]
            assert [a.status_code for a in answers[:2]] == [200, 200]
            assert len(throttled) >= 3
            for answer in throttled:
                assert _errors(answer) == [{"code": "TOOMANYREQUESTS", "message": "Rate exceeded"}]
                assert int(answer.headers["Retry-After"]) >= 1
            # Unauthenticated requests are not counted (ECR throttles per account).
            assert httpx.get(f"{qa.base}/v2/", timeout=10).status_code == 401
            time.sleep(int(throttled[-1].headers["Retry-After"]))
            assert client.get(f"{qa.base}/v2/").status_code == 200
    finally:
        _admin(qa, "throttle?rate=0")
    with qa.client() as client:
        assert all(client.get(f"{qa.base}/v2/").status_code == 200 for _ in range(10))
    assert _stats(qa)["throttled"] - before["throttled"] == len(throttled)


# -- the world's lifecycle ---------------------------------------------------------------------
def test_up_is_idempotent_reset_empties_and_down_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "world"
    # As `cloudops sandbox up` does: start the world from a process that then exits.
    starter = "import sys, pathlib; from cloudops.sandbox import world; world.up(pathlib.Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", starter, str(root)], check=True, timeout=60)
    state = world.load(root)
    assert state is not None
    try:
        assert all(_alive(pid) for pid in state.pids.values())
        for pid in state.pids.values():
            assert os.getsid(pid) == pid  # detached: own session, survived its parent
        assert world.up(root, detach=True) == state  # idempotent: same processes
        assert world.env_exports(state) == {
            "AWS_ENDPOINT_URL": state.moto_url,
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "AWS_DEFAULT_REGION": "us-west-2",
            "CLOUDOPS_PIPELINE": str(root.resolve() / "pipeline.yaml"),
            "CLOUDOPS_SANDBOX": str(root.resolve()),
        }
        pipeline = state.pipeline.read_text()
        assert pipeline.startswith("# Written by `cloudops sandbox up`")
        import yaml

        doc = yaml.safe_load(pipeline)
        assert doc["stages"] == ["build", "qa", "preprod", "prod"]
        assert doc["accounts"]["prod"]["account_id"] == "444444444444"
        assert doc["accounts"]["build"]["builds_images"] is True
        assert doc["endpoints"]["registries"] == state.registries
        assert doc["endpoints"]["aws"] == state.moto_url

        prod = _account(state, "prod")
        name = _repo("reset")
        prod.ecr.create_repository(repositoryName=name)
        image = _image()
        with prod.client() as client:
            assert _push_image(client, prod.base, name, image, "1.0").status_code == 201

        world.reset(state)

        with prod.client() as client:  # the repository is gone from ECR, the front sees it at once
            gone = client.get(f"{prod.base}/v2/{name}/manifests/1.0")
            assert gone.status_code == 404 and _errors(gone)[0]["code"] == "NAME_UNKNOWN"
        prod = _account(state, "prod")  # keys from before the reset act in no account
        prod.ecr.create_repository(repositoryName=name)
        with prod.client() as client:  # ... and the registry's storage is empty
            empty = client.get(f"{prod.base}/v2/{name}/manifests/1.0", headers={"Accept": ACCEPT_MANIFESTS})
            assert empty.status_code == 404 and _errors(empty)[0]["code"] == "MANIFEST_UNKNOWN"
            assert _push_image(client, prod.base, name, image, "1.0").status_code == 201

        # Someone resets moto behind the front's back: its cached assumed-role keys now act
        # in moto's default account, and it must notice rather than answer NAME_UNKNOWN.
        httpx.post(f"{state.moto_url}/moto-api/reset").raise_for_status()
        prod = _account(state, "prod")
        fresh = _repo("after-reset")
        prod.ecr.create_repository(repositoryName=fresh)
        with prod.client() as client:
            assert _push_image(client, prod.base, fresh, image, "2.0").status_code == 201
        listed = prod.ecr.describe_images(repositoryName=fresh)["imageDetails"]
        assert [(d["imageDigest"], d.get("imageTags")) for d in listed] == [(image.digest, ["2.0"])]
    finally:
        stopped = world.down(root)
    assert sorted(stopped) == sorted(state.pids)
    assert [pid for pid in state.pids.values() if _alive(pid)] == []
    assert world.load(root) is None
    assert world.down(root) == []


def test_down_only_stops_the_recorded_processes(tmp_path: Path) -> None:
    # A recorded pid that now belongs to another program is left alone.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root = tmp_path / "stale"
        root.mkdir()
        stale = world.SandboxState(
            root=root,
            moto_url="http://127.0.0.1:1",
            registries={},
            backends={},
            pids={"moto": bystander.pid},
            pipeline=root / "pipeline.yaml",
        )
        (root / "state.json").write_text(stale.to_json())
        assert world.down(root) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
