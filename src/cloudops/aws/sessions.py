"""One boto3 session per account, from that account's credentials in pipeline.yaml:
a named profile, static keys from prefixed environment variables (what Jenkins' AWS
credentials binding injects), an assumed role (optionally with an external id), or the
default chain. Botocore does the retrying of throttled and 5xx AWS calls."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders

from cloudops.aws import s3_owner
from cloudops.aws.account import Account, AccountCredentials
from cloudops.errors import CloudopsError, InputError

BOTO_CONFIG = botocore.config.Config(
    retries={"max_attempts": 5, "mode": "adaptive"},
    connect_timeout=10,
    read_timeout=60,
    # history.py reads records with 16 GETs in flight on one client (clients are thread-safe).
    max_pool_connections=32,
)


class AwsError(CloudopsError):
    """An AWS call failed; the message keeps AWS's error code, never a key."""


def object_missing(exc: Exception) -> bool:
    """Whether a ClientError says the object asked for is not there (a HEAD answers a bare
    404, a GET NoSuchKey): absent, as opposed to unreadable or forbidden."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) in ("404", "NoSuchKey", "NotFound")


def aws_error(exc: Exception, what: str) -> CloudopsError:
    """A user-facing error for a boto3 failure."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return InputError(
            f"no AWS credentials for {what}",
            hint="set the account's credentials in pipeline.yaml (profile, env_prefix, role_arn) "
            "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return InputError(f"{what}: {exc}", hint="create the profile in ~/.aws/config or fix pipeline.yaml")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))[:300]
        kind = "input" if code in _INPUT_CODES else "failed"
        return AwsError(f"{what} failed: {code}: {message}", kind=kind)  # type: ignore[arg-type]
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return AwsError(
            f"{what} failed: cannot reach the AWS endpoint", hint="check the network or endpoints.aws"
        )
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return AwsError(f"{what} failed: {type(exc).__name__}")
    return AwsError(f"{what} failed: {type(exc).__name__}")


_INPUT_CODES = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidParameterValue",
    "ValidationError",
}


@dataclass(frozen=True)
class AccountSession:
    """An account's boto3 session, and the endpoint override every client gets."""

    name: str
    account: Account
    session: boto3.Session
    endpoint_url: str | None = None
    # The buckets proven to be this account's during the run (s3_owner.py).
    owned_buckets: s3_owner.OwnedBuckets = field(init=False, compare=False, repr=False)
    # (account id, ARN) STS named for these credentials, once asked (aws/guard.py): the
    # session's credentials never change, so one run asks STS once per account.
    identity: list[tuple[str, str]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "owned_buckets", s3_owner.OwnedBuckets(self.name, self.account.account_id))
        object.__setattr__(self, "identity", [])

    def client(self, service: str) -> Any:
        session: Any = self.session  # boto3-stubs overloads need a literal service name
        client = session.client(
            service, region_name=self.account.region, endpoint_url=self.endpoint_url, config=BOTO_CONFIG
        )
        if service == "s3":
            # Every S3 call with this account's credentials is held to this account's
            # buckets: ExpectedBucketOwner on each call, a refusal (exit 3) on a foreign one.
            s3_owner.install(client, self.owned_buckets)
        return client


# One model loader for every session of the run: each boto3.Session would otherwise parse
# the S3/STS/ECR service models again (~13 MiB and ~0.5 s per account).
_LOADER = botocore.loaders.create_loader()


def _new_session(**kwargs: Any) -> boto3.Session:
    session = boto3.Session(**kwargs)
    session._session.register_component("data_loader", _LOADER)
    return session


class SessionFactory:
    """Builds and caches one session per account name."""

    def __init__(
        self,
        accounts: dict[str, Account],
        *,
        endpoint_url: str | None = None,
        overrides: dict[str, AccountCredentials] | None = None,
    ):
        self._accounts = accounts
        self._endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._overrides = dict(overrides or {})
        self._sessions: dict[str, AccountSession] = {}
        self._lock = threading.Lock()

    def session(self, name: str) -> AccountSession:
        with self._lock:
            if name not in self._sessions:
                account = self._accounts[name]
                credentials = self._overrides.get(name, account.credentials)
                self._sessions[name] = AccountSession(
                    name, account, self._build(name, account, credentials), self._endpoint
                )
            return self._sessions[name]

    def _build(self, name: str, account: Account, credentials: AccountCredentials) -> boto3.Session:
        what = f"credentials of account {name!r}"
        if credentials.env_prefix:
            base = _session_from_env(credentials.env_prefix, account.region, what)
        elif credentials.profile:
            try:
                base = _new_session(profile_name=credentials.profile, region_name=account.region)
            except botocore.exceptions.BotoCoreError as exc:
                raise aws_error(exc, what) from None
        else:
            base = _new_session(region_name=account.region)
        if not credentials.role_arn:
            return base
        params: dict[str, Any] = {
            "RoleArn": credentials.role_arn,
            "RoleSessionName": f"cloudops-{name}"[:64],
        }
        if credentials.external_id:
            params["ExternalId"] = credentials.external_id
        try:
            sts = base.client("sts", endpoint_url=self._endpoint, config=BOTO_CONFIG)
            answer = sts.assume_role(**params)["Credentials"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"assuming role {credentials.role_arn} for account {name!r}") from None
        return _new_session(
            aws_access_key_id=answer["AccessKeyId"],
            aws_secret_access_key=answer["SecretAccessKey"],
            aws_session_token=answer["SessionToken"],
            region_name=account.region,
        )


def _session_from_env(prefix: str, region: str, what: str) -> boto3.Session:
    key_id = os.environ.get(f"{prefix}_AWS_ACCESS_KEY_ID")
    secret = os.environ.get(f"{prefix}_AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        raise InputError(
            f"{what}: ${prefix}_AWS_ACCESS_KEY_ID and ${prefix}_AWS_SECRET_ACCESS_KEY are not set",
            hint="bind the account's AWS credentials to these variables (Jenkins: AWS credentials "
            "binding with these variable names)",
        )
    return _new_session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=os.environ.get(f"{prefix}_AWS_SESSION_TOKEN") or None,
        region_name=region,
    )
