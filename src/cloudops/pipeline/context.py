"""Everything a pipeline command needs, built once from pipeline.yaml: the accounts'
sessions, registry hosts and transport settings, and the ECR token keychain."""

from __future__ import annotations

from cloudops.aws.account import AccountCredentials
from cloudops.aws.ecr import EcrTokenKeychain
from cloudops.aws.guard import require_registry_of
from cloudops.aws.s3_stream import TransferSettings
from cloudops.aws.sessions import AccountSession, SessionFactory
from cloudops.pipeline.model import Pipeline
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.session import TransportSettings


class PipelineContext:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        credential_overrides: dict[str, AccountCredentials] | None = None,
        retry: RetryPolicy | None = None,
        transfer: TransferSettings | None = None,
        referrers: bool = True,
    ):
        self.pipeline = pipeline
        self.sessions = SessionFactory(
            pipeline.accounts, endpoint_url=pipeline.endpoints.aws, overrides=credential_overrides
        )
        self.retry = retry or RetryPolicy()
        self.transfer = transfer or TransferSettings()
        """Multipart sizes and workers of package transfers (every path: publish, promote, apply)."""
        self.referrers = referrers
        """Carry signatures, SBOMs and attestations with every image promoted (--no-referrers: off)."""

    def session(self, account: str) -> AccountSession:
        self.pipeline.account(account)  # a clear error for an unknown name
        return self.sessions.session(account)

    def registry_host(self, account: str) -> str:
        return self.pipeline.registry_host(account)

    def checked_registry_host(self, account: str) -> str:
        """The account's registry host, refused unless it belongs to the account."""
        host = self.registry_host(account)
        require_registry_of(host, self.session(account), mapped=account in self.pipeline.endpoints.registries)
        return host

    def transport_settings(self) -> TransportSettings:
        insecure = (
            [self.registry_host(name) for name in self.pipeline.accounts]
            if self.pipeline.endpoints.insecure_registries
            else []
        )
        return TransportSettings.build(insecure, retry=self.retry)

    def keychain(self, *accounts: str) -> EcrTokenKeychain:
        return EcrTokenKeychain({self.registry_host(a): self.session(a) for a in accounts})
