"""The job as a jenkins-job-builder (JJB) definition, and the config.xml JJB renders from it.

The YAML includes the Jenkinsfile next to it verbatim (`!include-raw-verbatim:`), so the
pipeline script has one source and no brace doubling. JJB has no AWS type for credentials
parameters, so that one parameter is given as the XML Jenkins itself stores.
"""

from __future__ import annotations

import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from cloudops.errors import CloudopsError
from cloudops.jenkins.jobs import (
    AWS_CREDENTIALS_TYPE,
    ChoiceParameter,
    CredentialsParameter,
    JobSpec,
    Parameter,
)

JENKINSFILE = "Jenkinsfile"
"""The name the YAML includes the pipeline script by: both files live in one directory."""


class JenkinsRenderError(CloudopsError):
    """jenkins-job-builder could not render a job (a bug in the rendered YAML)."""


class _IncludeVerbatim(str):
    """A file name that dumps as JJB's `!include-raw-verbatim: NAME`."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_include(dumper: yaml.SafeDumper, value: _IncludeVerbatim) -> yaml.ScalarNode:
    return dumper.represent_scalar("!include-raw-verbatim:", str(value))


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # raw XML stays readable as a block
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(_IncludeVerbatim, _represent_include)
_Dumper.add_representer(str, _represent_str)


def _jjb_text(value: str) -> str:
    """JJB formats every string of a job with str.format: braces must be doubled."""
    return value.replace("{", "{{").replace("}", "}}")


def credentials_parameter_xml(parameter: CredentialsParameter) -> str:
    """The parameter as Jenkins stores it, offering only AWS credentials."""
    element = ET.Element(
        "com.cloudbees.plugins.credentials.CredentialsParameterDefinition", {"plugin": "credentials"}
    )
    for tag, text in (
        ("name", parameter.name),
        ("description", parameter.description),
        ("defaultValue", parameter.default),
        ("credentialType", AWS_CREDENTIALS_TYPE),
        ("required", "true"),
    ):
        ET.SubElement(element, tag).text = text
    ET.indent(element)
    return ET.tostring(element, encoding="unicode") + "\n"


def _parameter(parameter: Parameter) -> dict[str, Any]:
    if isinstance(parameter, CredentialsParameter):
        return {"raw": {"xml": _jjb_text(credentials_parameter_xml(parameter))}}
    common = {"name": parameter.name, "description": _jjb_text(parameter.description)}
    if isinstance(parameter, ChoiceParameter):
        return {"choice": {**common, "choices": list(parameter.choices)}}
    return {"string": {**common, "default": _jjb_text(parameter.default), "trim": True}}


def job_yaml(spec: JobSpec) -> str:
    job = {
        "name": spec.name,
        "project-type": "pipeline",
        "description": _jjb_text(spec.description),
        "sandbox": True,
        "parameters": [_parameter(p) for p in spec.parameters],
        "dsl": _IncludeVerbatim(JENKINSFILE),
    }
    header = (
        f"# jenkins-job-builder definition of the Jenkins job {spec.name}.\n"
        f"# Rendered by `cloudops jenkins render --account {spec.account}`; render again rather than edit.\n"
        f"# `jenkins-jobs update job.yaml` creates or updates the job; {JENKINSFILE} must be next to it.\n"
    )
    body = yaml.dump([{"job": job}], Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + body


def config_xml(job_yaml_text: str, jenkinsfile_text: str) -> str:
    """The config.xml jenkins-job-builder renders from the job's YAML, as `jenkins-jobs
    test` would, without reaching any Jenkins."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JJB still imports pkg_resources, which warns
        from jenkins_jobs.config import JJBConfig  # type: ignore[import-untyped]
        from jenkins_jobs.errors import JenkinsJobsException  # type: ignore[import-untyped]
        from jenkins_jobs.loader import load_files  # type: ignore[import-untyped]
        from jenkins_jobs.registry import ModuleRegistry  # type: ignore[import-untyped]
        from jenkins_jobs.roots import Roots  # type: ignore[import-untyped]
        from jenkins_jobs.xml_config import XmlJobGenerator  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="cloudops-jjb-") as tmp:
        root = Path(tmp)
        (root / JENKINSFILE).write_text(jenkinsfile_text)
        (root / "job.yaml").write_text(job_yaml_text)
        # An explicit, empty configuration: never the user's ~/.config/jenkins_jobs or /etc.
        (root / "jenkins_jobs.ini").write_text("[job_builder]\n")
        try:
            config = JJBConfig(str(root / "jenkins_jobs.ini"))
            config.validate()
            roots = Roots(config)
            load_files(config, roots, [root / "job.yaml"])
            registry = ModuleRegistry(config, [])  # no plugin versions: no Jenkins is asked
            registry.set_macros(roots.macros)
            jobs = roots.generate_jobs()
            registry.amend_job_dicts(jobs)
            [xml_job] = XmlJobGenerator(registry).generateXML(jobs)
        except JenkinsJobsException as exc:
            raise JenkinsRenderError(
                f"jenkins-job-builder cannot render the job: {exc}", hint="a bug in cloudops: report it"
            ) from None
        output: bytes = xml_job.output()
    return output.decode("utf-8")
