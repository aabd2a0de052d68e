"""The job's shell steps (pure): the very text the Jenkinsfile embeds in each `sh` step,
also written alone (promote-<kind>.sh) so it can be read, and run, outside Jenkins.

The step runs `cloudops promote` with the agent's own AWS credentials for the destination
and the source account's keys only through $SOURCE_AWS_* (the credentials binding), so no
secret is ever on a command line or in the log. Parameters reach it as environment
variables and are only ever expanded inside double quotes, as single arguments.

The release job into a stage that requires an approval has three steps instead of one,
each written alone too: plan-release.sh (`cloudops plan --out`), approve-release.sh
(`cloudops approve` of that plan, run after Jenkins' input step, with the approver's keys
from $CLOUDOPS_APPROVER_AWS_* and who answered the input in $CLOUDOPS_APPROVED_BY) and
apply-release.sh (`cloudops apply` of that plan). There is no single script that promotes
such a release: the approval is a separate step by someone else, outside any one script.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudops.jenkins.jobs import (
    APPROVAL_FILE,
    APPROVED_BY_ENV,
    APPROVER_ENV_PREFIX,
    ERROR_FILE,
    OUTPUT_FILE,
    PLAN_FILE,
    PLAN_HASH_ENV,
    PLAN_HASH_FILE,
    RESULT_FILE,
    SOURCE_ENV_PREFIX,
    TAG_PATTERN,
    JobSpec,
)

# What every shell step starts with: strict bash, the workspace, and fail() writing the
# one-line reason Jenkins shows.
_START = """\
set -euo pipefail
export LC_ALL=C
cd "${{WORKSPACE:?is not set: run this as the shell step of the Jenkins job}}"
"""
_FAIL = """
# Refusals of this step read like cloudops' own: one line, into the build's failure reason.
fail() {{
  echo "error: $2" | tee "$message" >&2
  exit "$1"
}}

command -v cloudops >/dev/null || fail 2 "cloudops is not on the agent's PATH: install it on the agent"
"""

_HEADER = (
    """\
#!/usr/bin/env bash
# Shell step of the Jenkins job {name}: {command} --to {account}.
# Rendered by `cloudops jenkins render --account {account}` from pipeline.yaml; render again
# rather than edit. The agent's own AWS credentials act for {account} ({account_id}) and
# cloudops refuses them otherwise; the source account's keys come only from the AWS
# credentials binding, as ${prefix}_AWS_ACCESS_KEY_ID and ${prefix}_AWS_SECRET_ACCESS_KEY.
"""
    + _START
    + """result={result}
message={error}
output={output}
rm -f "$result" "$message" "$output"
"""
    + _FAIL
    + """
# The AWS credentials binding always names the session token of temporary (role)
# credentials AWS_SESSION_TOKEN, whatever names its key variables get (aws-credentials
# plugin). Temporary source keys cannot work without it: it is theirs, not the agent's.
if [[ ${{{prefix}_AWS_ACCESS_KEY_ID:-}} == ASIA* && -z ${{{prefix}_AWS_SESSION_TOKEN:-}} ]] &&
  [[ -n ${{AWS_SESSION_TOKEN:-}} ]]; then
  export {prefix}_AWS_SESSION_TOKEN="$AWS_SESSION_TOKEN"
  unset AWS_SESSION_TOKEN
fi
"""
)

_IMAGE = """
tag_grammar='{tag_pattern}'
tag_rule="1-128 letters, digits, _ . - not starting with . or -"
[[ ${{IMAGE_TAG:-}} =~ $tag_grammar ]] || fail 2 "IMAGE_TAG '${{IMAGE_TAG:-}}' is not a tag: $tag_rule"
case "${{ECR_REPOSITORY:-}}" in
  {choices}) ;;
  *) fail 2 "ECR_REPOSITORY '${{ECR_REPOSITORY:-}}' is not one of the pipeline's images: {images}" ;;
esac
args=(promote image --to {account} --repository="$ECR_REPOSITORY" --tag="$IMAGE_TAG")
"""

_PACKAGE = """
args=(promote package --to {account})
if [[ -n ${{PACKAGE_VERSION:-}} ]]; then
  args+=(--version="$PACKAGE_VERSION")
fi
"""

_RELEASE = """
release_file=${{RELEASE_FILE:-}}
case "/$release_file/" in
  //|//*|*/../*) fail 2 "RELEASE_FILE '$release_file' must be a path inside the workspace, relative to it" ;;
esac
[[ -f $release_file ]] || fail 2 "RELEASE_FILE '$release_file' is not a file in the workspace ($WORKSPACE)"
args=(promote release --to {account} --release="$release_file")
"""

_RUN = """
args+=(--source-credentials-env {prefix} --json)
status=0
cloudops "${{args[@]}}" >"$result" 2>"$output" || status=$?
cat "$output" >&2
if [[ $status -ne 0 ]]; then
  grep -E '^(error:|internal error:|  fix:)' "$output" >"$message" || tail -n 5 "$output" >"$message"
  [[ -s $result ]] || rm -f "$result"
  exit "$status"
fi
rm -f "$output"
"""

_BODY = {"image": _IMAGE, "package": _PACKAGE, "release": _RELEASE}


def shell_step(spec: JobSpec) -> str:
    """The one shell step of a job that promotes in one step (every job but a release job
    into a stage that requires an approval: see :func:`shell_steps`)."""
    if spec.approval is not None:
        raise ValueError(f"{spec.name} plans, approves and applies in three steps: see shell_steps")
    values = {
        "name": spec.name,
        "command": spec.command,
        "account": spec.account,
        "account_id": spec.account_id,
        "prefix": SOURCE_ENV_PREFIX,
        "result": RESULT_FILE,
        "error": ERROR_FILE,
        "output": OUTPUT_FILE,
        "tag_pattern": TAG_PATTERN,
        # Repository names are [a-z0-9._/-] (refs.validate_repository): safe as case patterns.
        "choices": "|".join(spec.images),
        "images": " ".join(spec.images),
    }
    return _verbatim((_HEADER + _BODY[spec.kind] + _RUN).format(**values))


def _verbatim(text: str) -> str:
    # The Jenkinsfile embeds this text verbatim in a Groovy '''string''', where a backslash
    # would be an escape and ''' its end: keep both out, whatever the templates become.
    assert "\\" not in text and "'''" not in text, "the shell step must embed verbatim in Groovy"
    return text


# --- a release job into a stage that requires an approval: plan, approve, apply -------------

_STEP_HEADER = (
    """\
#!/usr/bin/env bash
# Shell step {number} of 3 of the Jenkins job {name}:
# {command}, which {what}.
# Rendered by `cloudops jenkins render --account {account}` from pipeline.yaml; render again
# rather than edit. {account} requires an approval of each release's plan: the job plans,
# waits for its input step, approves that plan, then applies exactly that plan.
# {credentials}
"""
    + _START
    + """plan={plan}
plan_hash_file={plan_hash}
approval={approval}
result={result}
message={error}
output={output}
rm -f {stale} "$message" "$output"
"""
    + _FAIL
)

_SESSION_TOKEN = """
# The AWS credentials binding always names the session token of temporary (role)
# credentials AWS_SESSION_TOKEN, whatever names its key variables get (aws-credentials
# plugin). Temporary {whose} keys cannot work without it: it is theirs, not the agent's.
if [[ ${{{prefix}_AWS_ACCESS_KEY_ID:-}} == ASIA* && -z ${{{prefix}_AWS_SESSION_TOKEN:-}} ]] &&
  [[ -n ${{AWS_SESSION_TOKEN:-}} ]]; then
  export {prefix}_AWS_SESSION_TOKEN="$AWS_SESSION_TOKEN"
  unset AWS_SESSION_TOKEN
fi
"""

_PLAN_HASH_OF = """
# The plan file's hash: its "plan_hash" line (the file is JSON, indented by cloudops).
plan_hash_of() {
  grep -oE '"plan_hash": "sha256:[0-9a-f]{64}"' "$1" | grep -oE 'sha256:[0-9a-f]{64}'
}
"""

_NEEDS_PLAN = """
[[ -f $plan ]] || fail 2 "no plan $plan in the workspace: the job's plan step writes it"
"""

_PLAN = """
release_file=${{RELEASE_FILE:-}}
case "/$release_file/" in
  //|//*|*/../*) fail 2 "RELEASE_FILE '$release_file' must be a path inside the workspace, relative to it" ;;
esac
[[ -f $release_file ]] || fail 2 "RELEASE_FILE '$release_file' is not a file in the workspace ($WORKSPACE)"
args=(plan --to {account} --release="$release_file" --out="$plan" --source-credentials-env {prefix})
status=0
cloudops "${{args[@]}}" >"$output" 2>&1 || status=$?
cat "$output" >&2
if [[ $status -ne 0 ]]; then
  grep -E '^(error:|internal error:|refused:|  fix:)' "$output" >"$message" || tail -n 5 "$output" >"$message"
  exit "$status"
fi
rm -f "$output"
# The hash the input step shows, and the only one the approve step approves.
plan_hash=$(plan_hash_of "$plan") || fail 1 "$plan holds no plan hash"
[[ $plan_hash =~ ^sha256:[0-9a-f]{{64}}$ ]] || fail 1 "$plan holds more than one plan hash"
echo "$plan_hash" >"$plan_hash_file"
"""

_APPROVE = """
[[ ${{{approved_by}:-}} == jenkins:?* ]] ||
  fail 2 "{approved_by} is not set: it is jenkins:<who answered the job's input step>"
[[ ${{{plan_hash_env}:-}} =~ ^sha256:[0-9a-f]{{64}}$ ]] ||
  fail 2 "{plan_hash_env} is not set: it is the plan hash the job's input step showed"
shown=$(plan_hash_of "$plan") || shown=
[[ $shown == "${plan_hash_env}" ]] ||
  fail 3 "$plan is not the plan the input step showed (${plan_hash_env}): nothing approved"
args=(approve "$plan"{credentials_env} --note="${approved_by}" --json)
status=0
cloudops "${{args[@]}}" >"$approval" 2>"$output" || status=$?
cat "$output" >&2
if [[ $status -ne 0 ]]; then
  grep -E '^(error:|internal error:|  fix:)' "$output" >"$message" || tail -n 5 "$output" >"$message"
  [[ -s $approval ]] || rm -f "$approval"
  exit "$status"
fi
rm -f "$output"
"""

_APPLY = """
args=(apply "$plan")"""


@dataclass(frozen=True)
class ShellStep:
    """One `sh` step of a job: the file it is also written to, the command it runs (its
    label in Jenkins), and its text."""

    file: str
    command: str
    script: str


def shell_steps(spec: JobSpec) -> tuple[ShellStep, ...]:
    """Every `sh` step of ``spec``, in the order the job runs them."""
    gate = spec.approval
    if gate is None:
        return (ShellStep(spec.script_name, spec.command, shell_step(spec)),)
    values = {
        "name": spec.name,
        "account": spec.account,
        "account_id": spec.account_id,
        "prefix": SOURCE_ENV_PREFIX,
        "plan": PLAN_FILE,
        "plan_hash": PLAN_HASH_FILE,
        "approval": APPROVAL_FILE,
        "result": RESULT_FILE,
        "error": ERROR_FILE,
        "output": OUTPUT_FILE,
        "approved_by": APPROVED_BY_ENV,
        "plan_hash_env": PLAN_HASH_ENV,
    }
    agent = (
        f"The agent's own AWS credentials act for {spec.account} ({spec.account_id}) and cloudops\n"
        "# refuses them otherwise; "
    )
    source = (
        f"{agent}the source account's keys come only from the AWS credentials\n"
        f"# binding, as ${SOURCE_ENV_PREFIX}_AWS_ACCESS_KEY_ID and "
        f"${SOURCE_ENV_PREFIX}_AWS_SECRET_ACCESS_KEY."
    )
    if gate.credentials_id is not None:
        approver = (
            f"{agent}the approver's keys come only from the AWS credentials\n"
            f"# binding, as ${APPROVER_ENV_PREFIX}_AWS_ACCESS_KEY_ID and "
            f"${APPROVER_ENV_PREFIX}_AWS_SECRET_ACCESS_KEY."
        )
        approver_env = f" --credentials-env {APPROVER_ENV_PREFIX}"
    else:
        approver = (
            f"{agent}it approves with them: approvals.{spec.account}.allow_self_approval\n"
            "# lets the identity that applies a plan approve it."
        )
        approver_env = ""

    def step(number: int, command: str, what: str, credentials: str, stale: str, body: str) -> str:
        header = _STEP_HEADER.format(
            **values, number=number, command=command, what=what, credentials=credentials, stale=stale
        )
        return _verbatim(header + body)

    source_token = _SESSION_TOKEN.format(whose="source", prefix=SOURCE_ENV_PREFIX)
    plan = step(
        1,
        "cloudops plan",
        f"writes {PLAN_FILE} and its hash",
        source,
        # A new build starts from nothing: no plan, hash, approval or result of an earlier one.
        '"$plan" "$plan_hash_file" "$approval" "$result"',
        source_token + _PLAN_HASH_OF + _PLAN.format(**values),
    )
    approver_token = (
        _SESSION_TOKEN.format(whose="approver", prefix=APPROVER_ENV_PREFIX) if gate.credentials_id else ""
    )
    approve = step(
        2,
        "cloudops approve",
        f"approves {PLAN_FILE} once the input step is answered",
        approver,
        '"$approval"',
        approver_token
        + _PLAN_HASH_OF
        + _NEEDS_PLAN
        + _APPROVE.format(**values, credentials_env=approver_env),
    )
    apply = step(
        3,
        "cloudops apply",
        f"applies {PLAN_FILE}",
        source,
        '"$result"',
        source_token + _NEEDS_PLAN + _APPLY + _RUN.format(prefix=SOURCE_ENV_PREFIX),
    )
    return (
        ShellStep("plan-release.sh", "cloudops plan", plan),
        ShellStep("approve-release.sh", "cloudops approve", approve),
        ShellStep("apply-release.sh", "cloudops apply", apply),
    )
