"""The job's shell step (pure): the very text the Jenkinsfile embeds in its `sh` step,
also written alone as promote-<kind>.sh so it can be read, and run, outside Jenkins.

The step runs `cloudops promote` with the agent's own AWS credentials for the destination
and the source account's keys only through $SOURCE_AWS_* (the credentials binding), so no
secret is ever on a command line or in the log. Parameters reach it as environment
variables and are only ever expanded inside double quotes, as single arguments.
"""

from __future__ import annotations

from cloudops.jenkins.jobs import (
    ERROR_FILE,
    OUTPUT_FILE,
    RESULT_FILE,
    SOURCE_ENV_PREFIX,
    TAG_PATTERN,
    JobSpec,
)

_HEADER = """\
#!/usr/bin/env bash
# Shell step of the Jenkins job {name}: {command} --to {account}.
# Rendered by `cloudops jenkins render --account {account}` from pipeline.yaml; render again
# rather than edit. The agent's own AWS credentials act for {account} ({account_id}) and
# cloudops refuses them otherwise; the source account's keys come only from the AWS
# credentials binding, as ${prefix}_AWS_ACCESS_KEY_ID and ${prefix}_AWS_SECRET_ACCESS_KEY.
set -euo pipefail
export LC_ALL=C
cd "${{WORKSPACE:?is not set: run this as the shell step of the Jenkins job}}"
result={result}
message={error}
output={output}
rm -f "$result" "$message" "$output"

# Refusals of this step read like cloudops' own: one line, into the build's failure reason.
fail() {{
  echo "error: $2" | tee "$message" >&2
  exit "$1"
}}

command -v cloudops >/dev/null || fail 2 "cloudops is not on the agent's PATH: install it on the agent"

# The AWS credentials binding always names the session token of temporary (role)
# credentials AWS_SESSION_TOKEN, whatever names its key variables get (aws-credentials
# plugin). Temporary source keys cannot work without it: it is theirs, not the agent's.
if [[ ${{{prefix}_AWS_ACCESS_KEY_ID:-}} == ASIA* && -z ${{{prefix}_AWS_SESSION_TOKEN:-}} ]] &&
  [[ -n ${{AWS_SESSION_TOKEN:-}} ]]; then
  export {prefix}_AWS_SESSION_TOKEN="$AWS_SESSION_TOKEN"
  unset AWS_SESSION_TOKEN
fi
"""

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
    text = (_HEADER + _BODY[spec.kind] + _RUN).format(**values)
    # The Jenkinsfile embeds this text verbatim in a Groovy '''string''', where a backslash
    # would be an escape and ''' its end: keep both out, whatever the templates become.
    assert "\\" not in text and "'''" not in text, "the shell step must embed verbatim in Groovy"
    return text
