"""The job's declarative Jenkinsfile (pure).

It declares the same parameters as the job's config.xml (declarative pipelines rewrite the
job's parameters from the Jenkinsfile on each run, so the two must agree), binds the source
account's AWS credentials around the shell step only, archives the JSON result, and fails
the build with cloudops' own message. Every step it uses runs in the Groovy sandbox.
"""

from __future__ import annotations

from cloudops.jenkins.jobs import (
    AWS_CREDENTIALS_TYPE,
    ERROR_FILE,
    RESULT_FILE,
    SOURCE_ENV_PREFIX,
    ChoiceParameter,
    CredentialsParameter,
    JobSpec,
    Parameter,
    StringParameter,
)

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
                        int status = sh(label: '{command}', returnStatus: true, script: '''{script}''')
                        if (status != 0) {{
                            String reason = 'see the log above'
                            if (fileExists('{error}')) {{
                                reason = readFile('{error}').trim()
                            }}
                            error("{command} exited ${{status}}: " + reason)
                        }}
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

BINDING = (
    "[$class: 'AmazonWebServicesCredentialsBinding', credentialsId: params.SOURCE_ACCOUNT_CREDENTIALS, "
    f"accessKeyVariable: '{SOURCE_ENV_PREFIX}_AWS_ACCESS_KEY_ID', "
    f"secretKeyVariable: '{SOURCE_ENV_PREFIX}_AWS_SECRET_ACCESS_KEY']"
)


def groovy_string(value: str) -> str:
    """A single-quoted Groovy string literal: no interpolation, escapes for \\ ' and newlines."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


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


def jenkinsfile(spec: JobSpec, script: str) -> str:
    """The Jenkinsfile of ``spec``, embedding ``script`` (shell.shell_step) verbatim."""
    if "\\" in script or "'''" in script:
        raise ValueError("the shell step cannot be embedded verbatim in a Groovy '''string'''")
    return _TEMPLATE.format(
        name=spec.name,
        title=f"promote {spec.what} from {spec.source} into {spec.account}",
        account=spec.account,
        account_id=spec.account_id,
        parameters="\n".join(f"        {_parameter(p)}" for p in spec.parameters),
        stage=f"Promote {spec.kind} into {spec.account}",
        binding=BINDING,
        command=spec.command,
        script=script,
        error=ERROR_FILE,
        result=RESULT_FILE,
    )
