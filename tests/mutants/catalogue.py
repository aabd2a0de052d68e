"""The mutants: one named break of each promise the README and docs/ make.

Each mutant is a list of exact text replacements in files under src/. The text to replace
must occur exactly once in its file, or the runner refuses to start: a refactor can never
turn a mutant silently into a no-op. ``tests`` are pytest node ids or file paths relative
to the repository root, run in the order given with ``-x``; a path may be a glob (for
test files that other work adds), and a mutant whose globs match nothing is reported as
"no tests" (not killed). Keep each list to the few tests that should kill the mutant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


def _m(name: str, promise: str, tests: tuple[str, ...], *edits: tuple[str, str, str]) -> Mutant:
    return Mutant(name, promise, tuple(Edit(f, o, n) for f, o, n in edits), tests)


STAGES = "src/cloudops/pipeline/stages.py"
GUARD = "src/cloudops/aws/guard.py"
PROMOTE = "src/cloudops/pipeline/promote.py"
PACKAGE = "src/cloudops/package.py"
PACKAGE_ARCHIVE = "src/cloudops/package_archive.py"
HISTORY = "src/cloudops/pipeline/history.py"
MODEL = "src/cloudops/pipeline/model.py"
OWNER = "src/cloudops/aws/s3_owner.py"
S3 = "src/cloudops/aws/s3.py"
S3_STREAM = "src/cloudops/aws/s3_stream.py"
ENGINE = "src/cloudops/copy/engine.py"
PLAN = "src/cloudops/copy/plan.py"
RELAY = "src/cloudops/copy/relay.py"
CLIENT = "src/cloudops/registry/client.py"
TRUST = "src/cloudops/registry/trust.py"
TRANSPORT = "src/cloudops/registry/transport.py"
HTTP = "src/cloudops/registry/http.py"
REGISTRY_ERRORS = "src/cloudops/registry/errors.py"
PROXIES = "tests/integration/test_proxies.py"
PLAN_MODULE = "src/cloudops/pipeline/plan.py"
RELEASE_PLAN = "src/cloudops/release_plan.py"
RELEASE_GATES = "src/cloudops/release_gates.py"
GATES_IT = "tests/integration/test_release_gates.py"
ECR = "src/cloudops/aws/ecr.py"
RECORDS = "src/cloudops/pipeline/records.py"
TEXT = "src/cloudops/text.py"
REFERRERS = "src/cloudops/referrers.py"
COPY_REFERRERS = "src/cloudops/copy/referrers.py"
SIMPLE_SIGNING = "src/cloudops/signing/simple_signing.py"
SIGNATURE_GATE = "src/cloudops/pipeline/signatures.py"
SIGN_IMAGES = "src/cloudops/pipeline/sign_images.py"
REFERRERS_IT = "tests/integration/test_referrers_copy.py"
GATE_IT = "tests/integration/test_signature_gate.py"
DB = "src/cloudops/db_population.py"
DBTOOL = "src/cloudops/dbtool/database.py"
DB_IT = "tests/integration/test_database.py"
OUTPUT = "src/cloudops/cli/output.py"
SECRETS = "src/cloudops/config/secrets.py"
YAMLLOAD = "src/cloudops/pipeline/yamlload.py"

# Test files other work adds (issue 18); globbed, so their exact names do not matter.
CORRUPT_BLOBS = "tests/integration/test_corrupt*.py"
READBACKS = "tests/integration/test_*read*back*.py"
MEMORY = "tests/integration/test_memory*.py"
HOST_GUARD = "tests/integration/test_registry_host*.py"
E2E_SECRETS = "tests/e2e/test_secrets.py"

# The guard's lookup without its check (the ARN stays real, so records are unchanged).
CALLER = '__import__("cloudops.aws.guard", fromlist=["caller_account"]).caller_account'

PROMOTION = "tests/integration/test_promotion.py"
PKG = "tests/integration/test_package.py"
BUCKET_OWNER = "tests/integration/test_bucket_owner.py"
GUARD_SURVIVORS = "tests/integration/test_guard_survivors.py"
HISTORY_TRUST = "tests/integration/test_history_trust.py"
CRED_RULE = "tests/unit/test_credential_rule.py"
CRED_BOUNDS = "tests/integration/test_credential_boundaries.py"
ZIP = "tests/unit/test_zip_safety.py"
HOSTILE = "tests/unit/test_hostile_input.py"
PIPE_TRUST = "tests/unit/test_pipeline_trust.py"
MASKING = "tests/unit/test_secret_masking.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- guard rails: stage order -----------------------------------------------------------
    _m(
        "stage-order-backwards",
        "promotions go forward through the stages",
        ("tests/unit/test_pipeline_model.py::test_stage_rules",),
        (
            STAGES,
            "    if stages.index(chosen) >= stages.index(to):",
            "    if stages.index(chosen) >= stages.index(to) and False:",
        ),
    ),
    _m(
        "stage-skip",
        "no stage is skipped unless allow_stage_skip",
        (f"{PROMOTION}::test_stage_skipping_is_refused",),
        (
            STAGES,
            "    if chosen != previous and not pipeline.allow_stage_skip:",
            "    if chosen != previous and not pipeline.allow_stage_skip and False:",
        ),
    ),
    # -- guard rails: the account guard --------------------------------------------------------
    _m(
        "account-guard",
        "credentials act in the account they are used for (STS identity), exit 3",
        # CLI only: killing this proves the subprocesses run the scratch copy.
        (f"{PROMOTION}::test_guard_refuses_credentials_of_another_account",),
        (GUARD, "    if actual != expected:", "    if actual != expected and False:"),
    ),
    _m(
        "account-guard-image-destination",
        "an image promotion checks the destination's credentials before writing its ECR",
        (f"{PROMOTION}::test_guard_refuses_credentials_of_another_account",),
        (
            PROMOTE,
            '    arn = require_account(destination, purpose=f"promote into {route.destination!r}")',
            f"    arn = {CALLER}(destination)[1]",
        ),
    ),
    _m(
        "account-guard-image-source",
        "an image promotion checks the source's credentials before reading",
        (
            f"{GUARD_SURVIVORS}::test_image_promotion_refuses_source_credentials_of_another_account",
            f"{GUARD_SURVIVORS}::test_image_promotion_refuses_a_pipeline_whose_build_credentials_act_in_another_account",
        ),
        (
            PROMOTE,
            '    require_account(context.session(route.source), purpose=f"read from {route.source!r}")',
            "    pass  # mutant: source credentials unchecked",
        ),
    ),
    _m(
        "account-guard-package-destination",
        "a package promotion checks the destination's credentials before writing S3",
        (f"{GUARD_SURVIVORS}::test_package_promotion_refuses_destination_credentials_of_another_account",),
        (
            PACKAGE,
            '    arn = require_account(destination.session, purpose=f"promote the package into {to!r}")',
            f"    arn = {CALLER}(destination.session)[1]",
        ),
    ),
    _m(
        "account-guard-history",
        "history is read only with credentials that act in that account",
        ("tests/integration/test_status.py::test_history_reads_no_account_whose_credentials_act_in_another",),
        (
            HISTORY,
            '            require_account(session, purpose=f"read the promotion history of account {name!r}")',
            "            pass  # mutant: history read with any credentials",
        ),
    ),
    # -- guard rails: registry hosts -------------------------------------------------------------
    _m(
        "registry-host-foreign-ecr",
        "an ECR host written to carries the account's own id and region, exit 3",
        (HOST_GUARD,),
        (
            GUARD,
            "    if ecr.account_id != session.account.account_id or ecr.region != session.account.region:",
            "    if False:  # mutant: any ECR host accepted",
        ),
    ),
    _m(
        "pipeline-foreign-ecr-host",
        "pipeline.yaml may not map an account to another account's ECR host, exit 2",
        (f"{PIPE_TRUST}::test_an_ecr_host_of_another_account_is_refused",),
        (
            MODEL,
            "        if mapped and ecr is not None and (ecr.account_id, ecr.region) != own:",
            "        if False:  # mutant",
        ),
    ),
    # -- guard rails: S3 bucket owner (issue 12) ----------------------------------------------
    _m(
        "s3-owner-refusal",
        "a bucket another account owns is a guard refusal (exit 3), nothing read or written",
        (BUCKET_OWNER,),
        (
            OWNER,
            "        if code in _DENIED:\n            raise buckets.refusal(bucket) from None",
            "        if code in _DENIED:\n            return True",
        ),
    ),
    _m(
        "s3-owner-first-touch",
        "every S3 client checks a bucket's owner before its first call on it",
        (BUCKET_OWNER,),
        (OWNER, "        check_owner(owned, buckets, str(bucket))", "        pass  # mutant"),
    ),
    _m(
        "s3-owner-param",
        "every S3 call carries ExpectedBucketOwner=<the account id>",
        (f"{BUCKET_OWNER}::test_every_s3_request_on_an_accounts_bucket_carries_that_accounts_id",),
        (
            OWNER,
            "            params.setdefault(OWNER_PARAM, buckets.account_id)",
            "            pass  # mutant",
        ),
    ),
    # -- guard rails: tags never move, immutability ---------------------------------------------
    _m(
        "tag-moves-promote",
        "tags never move: a promotion onto a tag naming another digest is refused, exit 3",
        (f"{PROMOTION}::test_tags_never_move",),
        (
            PROMOTE,
            "                if current is None:\n",
            "                if current is None or current.digest != head.digest:\n",
        ),
        (
            PROMOTE,
            "report = await engine.copy(requests, allow_tag_move=False)",
            "report = await engine.copy(requests)",
        ),
    ),
    _m(
        "tag-moves-copy-plan",
        "the copy engine refuses to move a tag unless allowed",
        (
            "tests/unit/test_plan.py",
            "tests/integration/test_copy.py::test_tag_move_is_refused_when_not_allowed",
        ),
        (
            PLAN,
            "and not up_to_date and not self._allow_tag_move:",
            "and not up_to_date and not self._allow_tag_move and False:",
        ),
    ),
    _m(
        "ecr-mutable",
        "`init` makes every repository tag-immutable (and fixes one that is not)",
        (
            "tests/integration/test_repository_settings.py::"
            "test_init_applies_every_setting_and_a_second_run_changes_nothing",
            "tests/integration/test_repository_settings.py::"
            "test_drift_is_reported_by_audit_and_dry_run_and_corrected_by_init",
            PROMOTION,
        ),
        (
            ECR,
            '            "imageTagMutability": self.tag_mutability,',
            '            "imageTagMutability": "MUTABLE",',
        ),
        (ECR, "    if state.tag_mutability != desired.tag_mutability:", "    if False:  # mutant"),
    ),
    _m(
        "settings-drift-unseen",
        "a repository setting that drifted from pipeline.yaml is reported and corrected (scan on push)",
        (
            "tests/integration/test_repository_settings.py::"
            "test_drift_is_reported_by_audit_and_dry_run_and_corrected_by_init",
        ),
        (ECR, "    if state.scan_on_push != desired.scan_on_push:", "    if False:  # mutant"),
    ),
    _m(
        "package-version-overwrite-publish",
        "a package version is immutable: other bytes under it are refused, exit 3",
        (f"{PKG}::TestBadInput::test_version_is_immutable",),
        (PACKAGE, "        if existing.sha256 != package.sha256:", "        if False:  # mutant"),
    ),
    _m(
        "package-version-overwrite-promote",
        "a promotion never replaces a destination's package version that has other content",
        (f"{GUARD_SURVIVORS}::test_promotion_never_replaces_a_destination_version_with_other_content",),
        (
            PACKAGE,
            "    if present is not None and present.sha256 != source.sha256:",
            "    if False:  # mutant",
        ),
    ),
    # -- verifications: blobs ---------------------------------------------------------------------
    _m(
        "blob-sha256",
        "cloudops' own sha256 of every blob's bytes (a corrupt blob is never committed)",
        (
            CORRUPT_BLOBS,
            "tests/integration/test_faults_copy.py::test_corrupt_blob_served_by_the_source_is_refused",
        ),
        (ENGINE, "        if actual != self._transfer.digest:", "        if False:  # mutant"),
    ),
    _m(
        "blob-size",
        "a blob is exactly its declared size (reading stops past it)",
        (CORRUPT_BLOBS,),
        (ENGINE, "        if self._received > self._transfer.size:", "        if False:  # mutant"),
        (ENGINE, "        if self._received != self._transfer.size:", "        if False:  # mutant"),
    ),
    _m(
        "blob-hold-back",
        "the last chunk of a blob upload is sent only after size and sha256 passed",
        (CORRUPT_BLOBS,),
        (
            RELAY,
            "                if pending is not None:\n"
            "                    yield pending\n"
            "                    self._advanced(len(pending))\n"
            "                pending = item\n",
            "                yield item  # mutant: nothing held back\n"
            "                self._advanced(len(item))\n",
        ),
    ),
    _m(
        "tag-read-back",
        "after a copy the tag is read back and must name the source digest",
        (READBACKS,),
        (ENGINE, "            await self._verify(dst, plan)\n", "            pass  # mutant: no read-back\n"),
    ),
    _m(
        "blob-redirect-keeps-auth",
        "a redirected blob read goes to another host without the Authorization header",
        (
            f"{CRED_BOUNDS}::test_a_blob_get_of_a_copy_redirected_to_another_host_carries_no_credentials",
            "tests/integration/test_ecr_front.py",
        ),
        (
            TRANSPORT,
            '                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}',
            "                pass  # mutant",
        ),
    ),
    # -- verifications: the deployment package ---------------------------------------------------
    _m(
        "package-sha256",
        "cloudops' own SHA-256 of the package stream must equal the recorded one before commit",
        (f"{PKG}::test_source_whose_bytes_do_not_match_their_checksum_is_refused",),
        (S3_STREAM, "    if expected is not None and actual != expected:", "    if False:  # mutant"),
    ),
    _m(
        "package-read-back",
        "the new package object is read back and hashed before current.json moves",
        (READBACKS,),
        (PACKAGE, "    if actual != sha256 or got != size:", "    if False:  # mutant"),
    ),
    # -- secrets ------------------------------------------------------------------------------------
    _m(
        "secret-in-guard-error",
        "AWS credentials are never printed (the account guard's error path)",
        (E2E_SECRETS,),
        (
            GUARD,
            '            f"belong to account {actual}",',
            '            f"belong to account {actual} (key {session.session.get_credentials().secret_key} "\n'
            '            f"token {session.session.get_credentials().token})",',
        ),
    ),
    _m(
        "secret-key-unmasked",
        "values of secret-named config keys are never printed",
        (
            MASKING,
            "tests/unit/test_config_check.py::test_cli_check_and_diff_never_print_a_secret",
            E2E_SECRETS,
        ),
        (SECRETS, "        return mask(value)", "        return value"),
    ),
    _m(
        "secret-url-password",
        "the password inside a URL is masked (the host kept)",
        (MASKING,),
        (
            SECRETS,
            "_EMBEDDED = (_URL_PASSWORD, _PARAM_SECRET, _SLASH_PASSWORD)",
            "_EMBEDDED = (_PARAM_SECRET, _SLASH_PASSWORD)",
        ),
    ),
    _m(
        "secret-pem-block",
        "PEM private key blocks are masked in any value",
        (MASKING,),
        (SECRETS, "    value = _PEM_PRIVATE.sub(MASK, value)", "    pass  # mutant"),
    ),
    # -- memory bound ---------------------------------------------------------------------------
    _m(
        "memory-blob-buffered",
        "a blob moves in a few 1 MiB buffers, never whole in memory",
        (MEMORY,),
        (RELAY, "queue.Queue(maxsize=BUFFERS)", "queue.Queue()  # mutant: unbounded"),
        (
            RELAY,
            "        self._reader.start()\n",
            "        self._reader.start()\n        self._reader.join()  # mutant: all read first\n",
        ),
    ),
    _m(
        "memory-package-whole",
        "a package moves in parts (about workers x part size in memory), never whole",
        (MEMORY, f"{PKG}::test_large_package_goes_multipart_and_verifies"),
        (S3_STREAM, "    if size < settings.multipart_threshold:", "    if True:  # mutant"),
    ),
    _m(
        "memory-package-read-ahead",
        "at most `workers` package parts are in memory at once",
        (MEMORY,),
        (
            S3_STREAM,
            "    slots = threading.BoundedSemaphore(settings.workers)",
            "    slots = threading.Semaphore(1 << 20)  # mutant: reads run ahead of the uploads",
        ),
    ),
    _m(
        "memory-manifest-read-whole",
        "a manifest over 4 MiB is refused before being read whole",
        (
            "tests/integration/test_faults_copy.py::test_manifest_over_four_mib_is_refused_before_being_read_whole",
        ),
        (
            CLIENT,
            "if missing_ok else (200,),\n            max_body=MAX_MANIFEST_BYTES,\n",
            "if missing_ok else (200,),\n            max_body=1 << 40,  # mutant: read whole\n",
        ),
        (
            CLIENT,
            "        if response.truncated or declared > MAX_MANIFEST_BYTES:",
            "        if False:  # mutant",
        ),
    ),
    # -- history ----------------------------------------------------------------------------------
    _m(
        "history-overwrite",
        "the promotion log is append-only: a record never overwrites another (If-None-Match)",
        ("tests/integration/test_history_daily.py::test_a_record_is_never_written_over_another",),
        (
            S3,
            '                ContentType="application/json",\n                IfNoneMatch="*",\n',
            '                ContentType="application/json",\n',
        ),
    ),
    _m(
        "history-daily-overwrite",
        "a daily history object is never overwritten",
        ("tests/integration/test_history_daily.py::test_compaction_never_writes_over_a_daily_object",),
        (
            S3,
            '                ContentType="application/x-ndjson",\n                IfNoneMatch="*",\n',
            '                ContentType="application/x-ndjson",\n',
        ),
    ),
    _m(
        "record-attribution",
        "a record is its bucket's account's; one claiming another account is a finding",
        (f"{HISTORY_TRUST}::test_a_record_in_qa_claiming_prod_is_qas_with_a_finding",),
        (
            RECORDS,
            "    if record.destination_account != account or record.destination_account_id != account_id:",
            "    if False:  # mutant",
        ),
    ),
    _m(
        "record-bytes-unbounded",
        "record fields are validated with bounds (bytes 0..2^53)",
        (f"{HISTORY_TRUST}::test_invalid_and_oversized_records_are_listed_unreadable",),
        (
            RECORDS,
            "    bytes: Annotated[StrictInt, Field(ge=0, le=MAX_BYTES)] = 0",
            "    bytes: int = 0  # mutant",
        ),
    ),
    _m(
        "record-size-bound",
        "a record body over 64 KiB is refused, also when the object grew after it was listed",
        (f"{HISTORY_TRUST}::test_a_record_that_grew_after_it_was_listed_is_refused_by_what_was_read",),
        (RECORDS, "    if len(body) > MAX_RECORD_BYTES:", "    if False:  # mutant"),
    ),
    _m(
        "record-listed-size",
        "a history object listed over 64 KiB is refused unread",
        (f"{HISTORY_TRUST}::test_invalid_and_oversized_records_are_listed_unreadable",),
        (HISTORY, "        elif stored.size > MAX_RECORD_BYTES:", "        elif False:  # mutant"),
    ),
    _m(
        "record-read-whole",
        "at most 64 KiB + 1 bytes of a history object are ever read",
        (f"{HISTORY_TRUST}::test_an_object_that_grew_past_the_bound_is_never_read_whole",),
        # read_record and the daily objects both read through stream_history_object:
        # the mutant drops its Range and its byte budget.
        (S3, '                Range=f"bytes=0-{max_bytes}",\n', ""),
        (
            S3,
            "                left = max_bytes + 1\n",
            "                left = 1 << 62  # mutant: read whole\n",
        ),
    ),
    _m(
        "record-future-dated",
        "a record claiming a future time is a finding",
        (HISTORY_TRUST,),
        (RECORDS, "    if record.moment > now + CLOCK_SKEW:", "    if False:  # mutant"),
    ),
    # -- where credentials go (issue 12) ---------------------------------------------------------
    _m(
        "credentials-other-host",
        "registry credentials go only to the registry's own host",
        (CRED_RULE, CRED_BOUNDS),
        (
            TRUST,
            '    if purpose == "registry" and not target.same_host(registry_host):',
            "    if False:  # mutant",
        ),
    ),
    _m(
        "credentials-plain-http",
        "plain HTTP only to a host named with --insecure-registry",
        (CRED_RULE, CRED_BOUNDS),
        (
            TRUST,
            '    if target.scheme == "http" and not any(target.same_host(h) for h in insecure_hosts):',
            "    if False:  # mutant",
        ),
    ),
    _m(
        "credentials-location-unchecked",
        "every registry URL (upload Location, Link) passes the credential rule before a request",
        (CRED_RULE, CRED_BOUNDS),
        (
            TRANSPORT,
            '        self.check_target(url, what=what, purpose="registry")',
            "        pass  # mutant",
        ),
    ),
    _m(
        "credentials-realm-unchecked",
        "a bearer token realm passes the credential rule before a request",
        (CRED_RULE, CRED_BOUNDS),
        (
            TRANSPORT,
            '        self.check_target(realm, what="its bearer token realm", purpose="token")',
            "        pass  # mutant",
        ),
    ),
    # -- the registry's HTTP: proxies and expired tokens (issue 13) ------------------------------
    _m(
        "proxy-ignored",
        "registry traffic goes through the proxy HTTPS_PROXY / HTTP_PROXY name",
        (f"{PROXIES}::test_plain_http_registries_are_reached_through_http_proxy",),
        (HTTP, "        proxy = proxy_for(parts.scheme, parts.netloc)\n", "        proxy = None  # mutant\n"),
    ),
    _m(
        "no-proxy-ignored",
        "NO_PROXY sends a registry's traffic around the proxy",
        (f"{PROXIES}::test_no_proxy_bypasses_the_proxy",),
        (HTTP, "        if proxy_bypass(netloc):\n", "        if False:  # mutant\n"),
    ),
    _m(
        "proxy-credentials-printed",
        "a proxy is named by scheme, host and port: its credentials are never printed",
        (f"{PROXIES}::test_wrong_proxy_credentials_fail_cleanly_without_printing_them",),
        (HTTP, '    url = f"{parts.scheme}://{parts.hostname}:{port}"\n', "    url = raw  # mutant\n"),
    ),
    _m(
        "expired-token-not-refreshed",
        "an expired registry token (ECR's 403) is dropped and fetched again mid-run",
        ("tests/integration/test_promotion.py::test_expired_registry_token_mid_run_is_refreshed",),
        (REGISTRY_ERRORS, "    if isinstance(error, TokenExpiredError):\n        return True\n", ""),
        (
            REGISTRY_ERRORS,
            "    return error.status == 403 and credentials_sent and not error.codes\n",
            "    return False  # mutant\n",
        ),
    ),
    _m(
        "manifest-blob-unknown-not-retried",
        "a manifest push answered 400 MANIFEST_BLOB_UNKNOWN (another writer re-pushing a blob) is retried",
        (
            "tests/integration/test_faults_copy.py::"
            "test_copy_survives_bounded_faults_with_identical_digests[400-manifest-blob-unknown-on-push]",
            "tests/unit/test_retry_and_auth.py::"
            "test_a_manifest_push_that_names_a_blob_the_registry_does_not_hold_is_retried_then_failed",
        ),
        (
            REGISTRY_ERRORS,
            '    the user\'s input."""\n\n    retryable = True\n',
            '    the user\'s input."""\n',
        ),
    ),
    # -- releases: plan, then apply (issue 14) ---------------------------------------------------
    _m(
        "apply-despite-changes",
        "apply refuses a plan when the world changed since it was made",
        (
            "tests/integration/test_release_plan.py::"
            "test_a_source_tag_repointed_after_planning_is_refused_and_nothing_written",
        ),
        (RELEASE_PLAN, "    if changes:\n", "    if False:  # mutant\n"),
    ),
    _m(
        "plan-hash-unchecked",
        "a plan file whose content does not match its hash is refused",
        ("tests/unit/test_promotion_plan.py::test_a_hand_edited_plan_is_refused",),
        (PLAN_MODULE, "        if plan.plan_hash != plan.content_hash():\n", "        if False:  # mutant\n"),
    ),
    _m(
        "current-after-failed-release",
        "a release that failed never moves the account's current.json",
        (
            "tests/integration/test_release_current.py::"
            "test_a_failed_release_or_a_dry_run_never_moves_current_json",
        ),
        (RELEASE_PLAN, "    elif result.parts_ok:\n", "    elif True:  # mutant\n"),
    ),
    # -- releases: approvals and rejections (issue 14) --------------------------------------------
    _m(
        "apply-without-approval",
        "a stage that requires an approval takes no plan without one",
        (f"{GATES_IT}::test_prod_takes_a_plan_only_with_an_approval_of_exactly_that_plan",),
        (
            RELEASE_GATES,
            '    if not rule.required and plan.route.purpose != "db-reset":',
            "    if True:  # mutant",
        ),
    ),
    _m(
        "approval-of-another-plan",
        "an approval counts for exactly the plan hash it names",
        (f"{GATES_IT}::test_prod_takes_a_plan_only_with_an_approval_of_exactly_that_plan",),
        (
            RELEASE_GATES,
            "        elif approval.plan_hash != plan.plan_hash or approval.account_id != store.account_id:\n",
            "        elif False:  # mutant\n",
        ),
    ),
    _m(
        "approve-by-anyone",
        "only an identity the stage's approvers admit can approve",
        (f"{GATES_IT}::test_prod_takes_a_plan_only_with_an_approval_of_exactly_that_plan",),
        (RELEASE_GATES, "    if not rule.admits(arn):\n", "    if False:  # mutant\n"),
    ),
    _m(
        "self-approval",
        "the one who applies may not be the only approver unless the pipeline allows it",
        (f"{GATES_IT}::test_an_approval_only_by_who_applies_is_refused_unless_the_pipeline_allows_it",),
        (RELEASE_GATES, "    if not others and not rule.allow_self_approval:\n", "    if False:  # mutant\n"),
    ),
    _m(
        "rejection-ignored",
        "a release rejected in an account is not promoted from or into it",
        (f"{GATES_IT}::test_a_rejected_release_is_refused_from_the_account_and_a_broken_marker_refuses_too",),
        (
            RELEASE_GATES,
            "        found = read_rejection(release_store_for(context, account), route.release)\n",
            "        found = None  # mutant\n",
        ),
    ),
    _m(
        "rejection-marker-fails-open",
        "a rejection marker that cannot be read refuses the release",
        (f"{GATES_IT}::test_a_rejected_release_is_refused_from_the_account_and_a_broken_marker_refuses_too",),
        (
            RELEASE_GATES,
            "    if value is None or value.release != release or value.account_id != store.account_id:\n",
            "    if False:  # mutant\n",
        ),
    ),
    _m(
        "release-lock-skipped",
        "two releases into one account never interleave: apply holds the account's release lock",
        (
            "tests/integration/test_release_lock.py::"
            "test_a_release_into_an_account_another_run_holds_is_refused_then_a_dead_holder_is_taken_over",
        ),
        (
            RELEASE_PLAN,
            "    with release_lock(context, route.destination):\n",
            "    with contextlib.nullcontext():\n",
        ),
    ),
    _m(
        "package-pointer-despite-failed-images",
        "a release whose images failed leaves the account's package pointer where it was",
        (f"{PKG}::test_release_promotes_images_and_package_and_a_failed_part_completes_on_rerun",),
        (RELEASE_PLAN, "move_current=images_ok", "move_current=True"),
    ),
    _m(
        "backfill-squatter-skipped",
        "a backfill refuses (never silently skips) a tag the account holds with another digest",
        (
            "tests/unit/test_backfill.py::"
            "test_a_tag_naming_another_digest_at_the_destination_is_refused_and_kept_in_the_batch",
            "tests/integration/test_backfill.py::test_a_squatting_tag_is_refused_and_the_others_still_land",
        ),
        (
            "src/cloudops/pipeline/backfill.py",
            "        elif there == image.digest:\n",
            "        elif True:  # mutant\n",
        ),
    ),
    _m(
        "lifecycle-lower-priority-expires",
        "an image a higher-priority lifecycle rule selected is never expired by a lower one (as ECR)",
        ("tests/unit/test_lifecycle.py::test_documented_examples",),
        (
            "src/cloudops/lifecycle.py",
            "            if image.digest not in claimed:\n",
            "            if True:  # mutant\n",
        ),
    ),
    _m(
        "lifecycle-in-use-unflagged",
        "a lifecycle rule that would expire what a current or kept release uses is flagged",
        ("tests/integration/test_lifecycle_preview.py::test_preview_marks_what_a_release_uses_and_exits_4",),
        (
            "src/cloudops/lifecycle_preview.py",
            "ExpiringImage(repository, e.expiry, tuple(uses.get((repository, e.expiry.image.digest), ())))",
            "ExpiringImage(repository, e.expiry, ())",
        ),
    ),
    _m(
        "package-bytes-not-planned",
        "a release copies exactly the package bytes its plan names, whatever the source holds by then",
        (
            "tests/integration/test_release_midway.py::test_a_package_whose_source_bytes_are_not_the_planned_ones_is_never_copied",
        ),
        (
            PACKAGE,
            "    if expected_sha256 is not None and source.sha256 != expected_sha256:\n",
            "    if False:  # mutant\n",
        ),
    ),
    _m(
        "rejection-midway-ignored",
        "a release rejected while it was copied moves neither the package pointer nor current.json",
        (
            "tests/integration/test_release_midway.py::test_a_release_rejected_while_it_was_copied_moves_neither_the_pointer_nor_current_json",
        ),
        (
            RELEASE_PLAN,
            "    rejected = _rejected_meanwhile(context, plan)\n",
            "    rejected = None  # mutant\n",
        ),
    ),
    _m(
        "single-image-past-approval",
        "a stage that requires approvals takes no single image around them",
        (
            "tests/integration/test_promotion.py::test_a_single_image_into_a_stage_that_requires_approvals_is_refused",
        ),
        (
            PROMOTE,
            '        require_outside_release_approval(pipeline, route.destination, "an image")\n',
            "        pass  # mutant\n",
        ),
    ),
    # -- nothing read can drive the terminal (issue 12) -------------------------------------------
    _m(
        "terminal-control-chars",
        "control characters read from outside print as visible escapes",
        (
            "tests/unit/test_terminal_text.py",
            f"{HISTORY_TRUST}::test_record_fields_cannot_drive_the_terminal",
        ),
        (TEXT, "    return _UNPRINTABLE.sub(_visible, str(value))", "    return str(value)  # mutant"),
    ),
    _m(
        "terminal-markup",
        "rich markup read from outside prints as typed",
        (
            "tests/unit/test_terminal_text.py",
            f"{HISTORY_TRUST}::test_record_fields_cannot_drive_the_terminal",
        ),
        (OUTPUT, "    return escape(text)\n", "    return text  # mutant: markup not escaped\n"),
    ),
    # -- hostile zips (issue 12) -----------------------------------------------------------------
    _m(
        "zip-absolute-name",
        "a member with an absolute name is refused",
        (ZIP,),
        (
            PACKAGE_ARCHIVE,
            '        if name.startswith(("/", "\\\\")) or _DRIVE.match(name):',
            "        if False:  # mutant",
        ),
    ),
    _m(
        "zip-dotdot-name",
        "a member with a '..' segment is refused",
        (ZIP,),
        (PACKAGE_ARCHIVE, '        if ".." in parts:', "        if False:  # mutant"),
    ),
    _m(
        "zip-symlink",
        "a symlink member is refused",
        (ZIP,),
        (
            PACKAGE_ARCHIVE,
            "        if stat.S_ISLNK(info.external_attr >> 16):",
            "        if False:  # mutant",
        ),
    ),
    _m(
        "zip-bomb-counted",
        "a member inflating over 100:1 is refused as counted while read, not trusted from the header",
        (f"{ZIP}::test_bytes_are_counted_while_read_not_taken_from_the_header", ZIP),
        (
            PACKAGE_ARCHIVE,
            "                    if produced > RATIO_FLOOR"
            " and produced > MAX_RATIO * max(info.compress_size, 1):",
            "                    if False:  # mutant",
        ),
    ),
    _m(
        "zip-bomb-declared",
        "a member declaring over 100:1 is refused before a byte is read",
        (ZIP,),
        (
            PACKAGE_ARCHIVE,
            "        if info.file_size > RATIO_FLOOR"
            " and info.file_size > MAX_RATIO * max(info.compress_size, 1):",
            "        if False:  # mutant",
        ),
    ),
    # -- hostile YAML (issue 12) -------------------------------------------------------------------
    _m(
        "yaml-alias-bound",
        "alias expansion in pipeline.yaml and release files is bounded, exit 2",
        (
            f"{HOSTILE}::test_billion_laughs_is_refused_quickly_and_small",
            f"{HOSTILE}::test_cli_refuses_a_billion_laughs_pipeline_with_exit_2",
        ),
        (YAMLLOAD, "        if self._expanded > self._limit:", "        if False:  # mutant"),
    ),
    _m(
        "yaml-alias-loop",
        "a recursive alias is refused",
        (f"{HOSTILE}::test_billion_laughs_in_process_is_a_pipeline_error",),
        (YAMLLOAD, "        if any(target is node for node in self._open):", "        if False:  # mutant"),
    ),
    # -- pipeline.yaml load rules (issue 12) ---------------------------------------------------------
    _m(
        "shared-bucket",
        "two accounts may not share a bucket, exit 2",
        (PIPE_TRUST,),
        (
            MODEL,
            "        other = buckets.setdefault(bucket, name)\n        if other != name:",
            "        other = buckets.setdefault(bucket, name)\n        if False:  # mutant",
        ),
    ),
    _m(
        "shared-registry-host",
        "two accounts may not share a registry host, exit 2",
        (PIPE_TRUST,),
        (
            MODEL,
            "        other = hosts.setdefault(key, name)\n        if other != name:",
            "        other = hosts.setdefault(key, name)\n        if False:  # mutant",
        ),
    ),
    _m(
        "insecure-ecr",
        "insecure_registries never covers a real ECR host, exit 2",
        (PIPE_TRUST,),
        (
            MODEL,
            "        if pipeline.endpoints.insecure_registries and is_aws_registry_host(host):",
            "        if False:  # mutant",
        ),
    ),
    _m(
        "referrers-after-tag",
        "a tag is never written before every referrer of its image is in",
        (f"{REFERRERS_IT}::test_no_tag_is_written_before_every_referrer_is_in",),
        (
            # The early referrer pushes are no longer awaited before the tag.
            ENGINE,
            "            pushed = await early if early is not None else 0\n"
            "            if pushed is None:\n"
            "                pushed = await self._push_referrers_after_subject(dst, plan)\n"
            "            result.manifests_pushed += pushed\n",
            "            pass  # mutant\n",
        ),
    ),
    _m(
        "early-referrer-refusal-dropped",
        "a referrer the registry refused before its subject goes in after it, before the tag",
        (
            f"{REFERRERS_IT}::test_referrers_go_in_before_their_subject_and_after_it_where_the_registry_wants_that",
        ),
        (
            ENGINE,
            "            return await self._push_referrers(dst, plan, retry=NO_RETRY)\n"
            "        except RegistryError:\n"
            "            return None\n",
            "            return await self._push_referrers(dst, plan, retry=NO_RETRY)\n"
            "        except RegistryError:\n"
            "            return len(plan.referrer_pushes)  # mutant\n",
        ),
    ),
    _m(
        "referrers-rewritten-for-present-image",
        "an image already at the destination gets none of its referrers written or uploaded again",
        (f"{REFERRERS_IT}::test_an_image_already_there_under_another_name_gets_no_referrer_written_again",),
        (
            ENGINE,
            "        image_absent = image.digest not in state.present_manifests\n",
            "        image_absent = True  # mutant\n",
        ),
    ),
    _m(
        "fallback-index-loses-entries",
        "updating the referrers tag schema's index keeps every referrer already listed",
        (f"{REFERRERS_IT}::test_the_destinations_own_referrers_stay_in_its_index",),
        (REFERRERS, '        kept = list(doc.get("manifests") or [])', "        kept = []  # mutant"),
    ),
    _m(
        "referrer-subject-unchecked",
        "a listed referrer whose subject is another manifest is not carried as the image's",
        (f"{REFERRERS_IT}::test_an_index_entry_whose_subject_is_another_manifest_is_reported_not_copied",),
        (
            COPY_REFERRERS,
            "            elif manifest.subject is None or manifest.subject.digest != subject:",
            "            elif False:  # mutant",
        ),
    ),
    _m(
        "signature-gate-off",
        "a stage in verify.required_for takes only images with a valid signature",
        (
            f"{GATE_IT}::test_an_unsigned_image_is_refused_at_the_gate_and_nothing_is_written",
            f"{GATE_IT}::test_a_signature_by_another_key_is_invalid_and_refused",
        ),
        (SIGNATURE_GATE, "        if not pipeline.requires_signature(stage):", "        if True:  # mutant"),
    ),
    _m(
        "plan-ignores-signature",
        "a release plan refuses an unsigned image before anything is written",
        (f"{GATE_IT}::test_a_release_plan_refuses_an_unsigned_image_before_anything_is_written",),
        (PLAN_MODULE, "    if signed is False:\n", "    if False:  # mutant\n"),
    ),
    _m(
        "signature-any-digest",
        "a signature counts only for the exact digest its payload names",
        ("tests/unit/test_signing_simple.py",),
        (SIMPLE_SIGNING, "    if claimed.manifest_digest != expected_digest:", "    if False:  # mutant"),
    ),
    _m(
        "signature-unverified",
        "a signature counts only when it verifies under a trusted key",
        (
            "tests/unit/test_signing_simple.py",
            f"{GATE_IT}::test_a_signature_made_by_the_real_cosign_verifies_from_its_sig_tag",
        ),
        (
            SIMPLE_SIGNING,
            '    if key is None:\n        return Verdict(False, "signed by no trusted key", None)',
            "    if key is None:\n        key = keys[0]  # mutant",
        ),
    ),
    _m(
        "sign-outside-build",
        "signatures are written in the build account only, exit 3",
        (f"{GATE_IT}::test_sign_and_verify_commands",),
        (SIGN_IMAGES, "    if account is not None and account != build:", "    if False:  # mutant"),
    ),
    _m(
        "db-host-rule-off",
        "a database host another account's config names is refused before connecting, exit 3",
        (f"{DB_IT}::test_a_config_pointing_at_another_accounts_database_is_refused_before_connecting",),
        (DB, "                if settings.host in named:", "                if False:  # mutant"),
    ),
    _m(
        "db-reset-unprotected",
        "`db reset` is refused in protected stages, exit 3",
        (f"{DB_IT}::test_reset_is_refused_in_protected_stages_and_allowed_elsewhere",),
        (DB, "    if account in pipeline.protected_databases():", "    if False:  # mutant"),
    ),
    _m(
        "db-reset-unapproved",
        "a protected stage's database is reset only with an approved reset plan",
        (f"{DB_IT}::test_a_protected_stage_is_reset_only_with_an_approved_reset_plan",),
        (DB, "    require_approval(context, plan, arn)\n", "    pass  # mutant\n"),
    ),
    _m(
        "db-package-unverified",
        "the package's tool runs only when the package matches its SHA-256",
        (f"{DB_IT}::test_the_package_is_verified_before_its_tool_runs",),
        (DB, "    if sha256 != stored.sha256 or size != stored.size:", "    if False:  # mutant"),
    ),
    _m(
        "db-unlocked",
        "two runs against one database are serialized (the lock in the account's bucket)",
        (f"{DB_IT}::test_two_runs_against_one_database_are_serialized",),
        (DB, '    if command == "plan":\n        yield\n', "    if True:  # mutant\n        yield\n"),
    ),
    _m(
        "db-checksum-ignored",
        "an applied change set whose checksum changed is refused, nothing applied",
        (f"{DB_IT}::test_a_tampered_applied_change_set_is_refused_and_nothing_is_applied",),
        (
            DBTOOL,
            "    if the_plan.changed:\n        raise ChecksumsChanged",
            "    if False:\n        raise ChecksumsChanged",
        ),
    ),
    _m(
        "db-password-printed",
        "no database password in any output",
        (f"{DB_IT}::test_no_database_password_in_any_output_or_record",),
        (
            DB,
            '        return f"{self.user}@{self.host}:{self.port}/{self.name}"',
            '        return f"{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"',
        ),
    ),
)
