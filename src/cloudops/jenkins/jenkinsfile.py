"""The job's declarative Jenkinsfile (pure).

It declares the same parameters as the job's config.xml (declarative pipelines rewrite the
job's parameters from the Jenkinsfile on each run, so the two must agree), binds the source
account's AWS credentials around the shell step only, archives the JSON result, and fails
the build with cloudops' own message. Every step it uses runs in the Groovy sandbox.

The release job into a stage that requires an approval has three stages instead: Plan
(`cloudops plan --out`, the plan archived at once), Approve (Jenkins' `input` step, then
`cloudops approve` of that plan with the approver's credentials bound, who answered the
input passed through the environment) and Apply (`cloudops apply` of that plan). Nothing
that varies at run time is ever put into Groovy source or a shell command: the shell steps
are single-quoted constants, and run-time values reach them only as environment variables.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudops.jenkins.jobs import (
    APPROVAL_FILE,
    APPROVED_BY_ENV,
    APPROVER_ENV_PREFIX,
    AWS_CREDENTIALS_TYPE,
    ERROR_FILE,
    PLAN_FILE,
    PLAN_HASH_ENV,
    PLAN_HASH_FILE,
    RESULT_FILE,
    SOURCE_ENV_PREFIX,
    ApprovalGate,
    ChoiceParameter,
    CredentialsParameter,
    JobSpec,
    Parameter,
    StringParameter,
)
from cloudops.jenkins.shell import ShellStep

_TEMPLATE = """\
// Jenkins job {name}: {title}.
// Rendered by `cloudops jenkins render --account {account}` from pipeline.yaml; render again
// rather than edit. Runs with the agent's own AWS credentials, which must belong to account
// {account} ({account_id}): cloudops refuses to write otherwise. The source account's
// credentials are bound for the promotion step only, and never reach a command line.
pipeline {{
    agent any
    options {{
        disableConcurrentBuilds()
        buildDiscarder(logRotator(numToKeepStr: '200'))
        timeout(time: 2, unit: 'HOURS')
    }}
    parameters {{
{parameters}
    }}
    stages {{
        stage('{stage}') {{
            steps {{
                withCredentials([{binding}]) {{
                    script {{
{step}
                    }}
                }}
            }}
        }}
    }}
    post {{
        always {{
            archiveArtifacts(artifacts: '{result}', allowEmptyArchive: true)
        }}
    }}
}}
"""

# The release job into a stage that requires an approval. {plan}, {approve} and {apply}
# are the sh steps with their failure handling (_run_step), indented for where they stand.
_APPROVAL_TEMPLATE = """\
// Jenkins job {name}: {title}.
// Rendered by `cloudops jenkins render --account {account}` from pipeline.yaml; render again
// rather than edit. Runs with the agent's own AWS credentials, which must belong to account
// {account} ({account_id}): cloudops refuses to write otherwise. The source account's
// credentials are bound for the plan and apply steps only, and never reach a command line.
// {account} requires an approval of each release's plan (pipeline.yaml approvals:): the build
// plans, waits for Jenkins' input step, records the approval, then applies exactly the
// approved plan. The approval is recorded {approver}.
// Who answered the input reaches `cloudops approve` only through the environment, never
// through Groovy or shell text.
pipeline {{
    agent any
    options {{
        disableConcurrentBuilds()
        buildDiscarder(logRotator(numToKeepStr: '200'))
        timeout(time: 2, unit: 'HOURS')
    }}
    parameters {{
{parameters}
    }}
    stages {{
        stage('Plan release into {account}') {{
            steps {{
                withCredentials([{binding}]) {{
                    script {{
{plan}
                    }}
                }}
                archiveArtifacts(artifacts: '{plan_file}')
            }}
        }}
        stage('Approve release into {account}') {{
            steps {{
                script {{
                    String planHash = readFile('{plan_hash_file}').trim()
                    def approver = input({input})
                    withEnv(["{approved_by}=jenkins:${{approver}}", "{plan_hash_env}=${{planHash}}"]) {{
{approve}
                    }}
                }}
            }}
        }}
        stage('Apply release into {account}') {{
            steps {{
                withCredentials([{binding}]) {{
                    script {{
{apply}
                    }}
                }}
            }}
        }}
    }}
    post {{
        always {{
            archiveArtifacts(artifacts: '{archived}', allowEmptyArchive: true)
        }}
    }}
}}
"""

BINDING = (
    "[$class: 'AmazonWebServicesCredentialsBinding', credentialsId: params.SOURCE_ACCOUNT_CREDENTIALS, "
    f"accessKeyVariable: '{SOURCE_ENV_PREFIX}_AWS_ACCESS_KEY_ID', "
    f"secretKeyVariable: '{SOURCE_ENV_PREFIX}_AWS_SECRET_ACCESS_KEY']"
)


def groovy_string(value: str) -> str:
    """A single-quoted Groovy string literal: no interpolation, escapes for \\ ' and newlines."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def approver_binding(credentials_id: str) -> str:
    """The approver's AWS credentials, bound around the approve step only."""
    return (
        f"[$class: 'AmazonWebServicesCredentialsBinding', credentialsId: {groovy_string(credentials_id)}, "
        f"accessKeyVariable: '{APPROVER_ENV_PREFIX}_AWS_ACCESS_KEY_ID', "
        f"secretKeyVariable: '{APPROVER_ENV_PREFIX}_AWS_SECRET_ACCESS_KEY']"
    )


def input_arguments(account: str, gate: ApprovalGate) -> str:
    """The input step's arguments: it returns the id of the Jenkins user who answered
    (submitterParameter, and no other parameter). The message names the plan hash through
    the run-time variable planHash, never through text put into the Groovy source."""
    message = groovy_string(f"Apply this plan of the release into {account}? Plan: ")
    arguments = [f"message: {message} + planHash", f"ok: {groovy_string('Approve')}"]
    if gate.submitters:
        arguments.append(f"submitter: {groovy_string(','.join(gate.submitters))}")
    arguments.append(f"submitterParameter: {groovy_string('APPROVER')}")
    return ", ".join(arguments)


def _run_step(step: ShellStep, indent: str) -> str:
    """The sh step and its failure handling, each line but the embedded script indented."""
    if "\\" in step.script or "'''" in step.script:
        raise ValueError("the shell step cannot be embedded verbatim in a Groovy '''string'''")
    command, error_file = groovy_string(step.command), groovy_string(ERROR_FILE)
    lines = [
        f"int status = sh(label: {command}, returnStatus: true, script: '''" + step.script + "''')",
        "if (status != 0) {",
        "    String reason = 'see the log above'",
        f"    if (fileExists({error_file})) {{",
        f"        reason = readFile({error_file}).trim()",
        "    }",
        f'    error({command} + " exited ${{status}}: " + reason)',
        "}",
    ]
    return "\n".join(indent + line for line in lines)


def _parameter(parameter: Parameter) -> str:
    name, description = groovy_string(parameter.name), groovy_string(parameter.description)
    if isinstance(parameter, CredentialsParameter):
        return (
            f"credentials(name: {name}, credentialType: {groovy_string(AWS_CREDENTIALS_TYPE)}, "
            f"defaultValue: {groovy_string(parameter.default)}, required: true, description: {description})"
        )
    if isinstance(parameter, ChoiceParameter):
        choices = ", ".join(groovy_string(choice) for choice in parameter.choices)
        return f"choice(name: {name}, choices: [{choices}], description: {description})"
    assert isinstance(parameter, StringParameter)
    return (
        f"string(name: {name}, defaultValue: {groovy_string(parameter.default)}, trim: true, "
        f"description: {description})"
    )


def jenkinsfile(spec: JobSpec, steps: Sequence[ShellStep]) -> str:
    """The Jenkinsfile of ``spec``, embedding each of ``steps`` (shell.shell_steps) verbatim."""
    if spec.approval is not None:
        return _approval_jenkinsfile(spec, spec.approval, steps)
    [step] = steps
    return _TEMPLATE.format(
        name=spec.name,
        title=f"promote {spec.what} from {spec.source} into {spec.account}",
        account=spec.account,
        account_id=spec.account_id,
        parameters="\n".join(f"        {_parameter(p)}" for p in spec.parameters),
        stage=f"Promote {spec.kind} into {spec.account}",
        binding=BINDING,
        step=_run_step(step, " " * 24),  # str.format puts it in as it is: its braces are never read
        result=RESULT_FILE,
    )


def _approval_jenkinsfile(spec: JobSpec, gate: ApprovalGate, steps: Sequence[ShellStep]) -> str:
    plan, approve, apply = steps
    deep = " " * 24
    if gate.credentials_id is not None:
        approver = f"with the approver's AWS credentials {gate.credentials_id}"
        approve_block = (
            f"{deep}withCredentials([{approver_binding(gate.credentials_id)}]) {{\n"
            f"{_run_step(approve, deep + '    ')}\n"
            f"{deep}}}"
        )
    else:
        approver = "with the agent's own AWS credentials (allow_self_approval)"
        approve_block = _run_step(approve, deep)
    return _APPROVAL_TEMPLATE.format(
        name=spec.name,
        title=f"promote {spec.what} from {spec.source} into {spec.account}, once approved",
        account=spec.account,
        account_id=spec.account_id,
        approver=approver,
        parameters="\n".join(f"        {_parameter(p)}" for p in spec.parameters),
        binding=BINDING,
        # str.format puts values in as they are: the scripts' braces are never read.
        plan=_run_step(plan, deep),
        approve=approve_block,
        apply=_run_step(apply, deep),
        plan_file=PLAN_FILE,
        plan_hash_file=PLAN_HASH_FILE,
        input=input_arguments(spec.account, gate),
        approved_by=APPROVED_BY_ENV,
        plan_hash_env=PLAN_HASH_ENV,
        archived=",".join((PLAN_FILE, APPROVAL_FILE, RESULT_FILE)),
    )
