"""What the aws layer needs to know about an account: its id, region, bucket and how to
get its credentials. pipeline.yaml's `accounts:` entries are these models (the pipeline
layer builds on them; this layer never imports the pipeline)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudops.refs import ReferenceError, validate_bucket

ACCOUNT_ID_RE = re.compile(r"^[0-9]{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountCredentials(_Strict):
    """How to get this account's AWS credentials. At most one of profile / env_prefix
    gives the base credentials; role_arn is then assumed from them (or from the default
    chain). Nothing at all means the default chain (environment, instance role)."""

    profile: str | None = None
    env_prefix: str | None = Field(
        default=None,
        description="Static keys from $<PREFIX>_AWS_ACCESS_KEY_ID, "
        "_AWS_SECRET_ACCESS_KEY, _AWS_SESSION_TOKEN",
    )
    role_arn: str | None = None
    external_id: str | None = None
    jenkins_credentials_id: str | None = None

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+", value):
            raise ValueError("role_arn must look like arn:aws:iam::123456789012:role/NAME")
        return value


class Account(_Strict):
    account_id: str
    region: str
    builds_images: bool = False
    bucket: str | None = None
    credentials: AccountCredentials = AccountCredentials()

    @field_validator("account_id", mode="before")
    @classmethod
    def _account_id(cls, value: Any) -> Any:
        if isinstance(value, int):
            raise ValueError("account_id must be quoted (YAML drops leading zeros of numbers)")
        if not isinstance(value, str) or not ACCOUNT_ID_RE.fullmatch(value):
            raise ValueError("account_id must be 12 digits, quoted")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region (e.g. us-west-2)")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_bucket(value)
            except ReferenceError as exc:
                raise ValueError(exc.message) from None
        return value
