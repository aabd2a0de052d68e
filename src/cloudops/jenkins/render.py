"""Render a destination account's Jenkins jobs and write them out, one directory per job:

    OUT/cloudops-promote-image-into-qa/
        Jenkinsfile         declarative pipeline, embedding the shell step verbatim
        promote-image.sh    the shell step alone (the text the Jenkinsfile runs)
        job.yaml            jenkins-job-builder definition (includes the Jenkinsfile)
        config.xml          what jenkins-job-builder renders from job.yaml
    OUT/cloudops-promote-package-into-qa/ ...
    OUT/cloudops-promote-release-into-qa/ ...

A release job into a stage that requires an approval has three shell steps, so three
scripts instead of promote-release.sh: plan-release.sh, approve-release.sh, apply-release.sh.

Everything is rendered before the first file is written: a failure leaves OUT untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloudops.errors import InputError
from cloudops.jenkins.jenkinsfile import jenkinsfile
from cloudops.jenkins.jjb import JENKINSFILE, config_xml, job_yaml
from cloudops.jenkins.jobs import JobSpec, job_specs
from cloudops.jenkins.shell import ShellStep, shell_steps
from cloudops.pipeline.model import Pipeline


@dataclass(frozen=True)
class RenderedJob:
    spec: JobSpec
    steps: tuple[ShellStep, ...]
    """The job's sh steps in the order it runs them: one, or plan, approve and apply."""
    jenkinsfile: str
    job_yaml: str
    config_xml: str

    @property
    def script(self) -> str:
        """The shell step of a job that has one (all but a release job into a stage that
        requires an approval)."""
        if len(self.steps) != 1:
            raise ValueError(f"{self.spec.name} has {len(self.steps)} shell steps: see steps")
        return self.steps[0].script

    def files(self) -> dict[str, str]:
        """File name -> content, inside the job's directory."""
        return {
            JENKINSFILE: self.jenkinsfile,
            **{step.file: step.script for step in self.steps},
            "job.yaml": self.job_yaml,
            "config.xml": self.config_xml,
        }


def render_account(pipeline: Pipeline, account: str) -> list[RenderedJob]:
    """Every job of destination ``account``; refused (exit 3) for the build account, and
    (exit 2) when its release job could never apply (jobs.approval_gate)."""
    rendered = []
    for spec in job_specs(pipeline, account):
        steps = shell_steps(spec)
        pipeline_script = jenkinsfile(spec, steps)
        definition = job_yaml(spec)
        rendered.append(
            RenderedJob(spec, steps, pipeline_script, definition, config_xml(definition, pipeline_script))
        )
    return rendered


def write_rendered(jobs: list[RenderedJob], out: Path) -> dict[str, list[Path]]:
    """Write each job into OUT/<job name>/; returns job name -> files written.

    Each file is written to a fresh temp file made by mkstemp in the job's directory
    (a random name, created O_EXCL with mode 0600: nothing an attacker pre-placed there,
    a symlink included, is opened), then renamed over the final name. The rename replaces
    whatever is at the final path, a symlink too, without following it. A job directory
    that is a symlink, or not a directory, is refused: it would send the files elsewhere."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    written: dict[str, list[Path]] = {}
    try:
        for job in jobs:
            directory = out / job.spec.name
            if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
                raise InputError(
                    f"{directory} is a symlink or not a directory: cloudops writes a job only into "
                    "its own directory",
                    hint="remove it, or choose another --out",
                )
            directory.mkdir(parents=True, exist_ok=True)
            paths = []
            for name, content in job.files().items():
                path = directory / name
                _write_atomically(path, content, 0o755 if name.endswith(".sh") else 0o644)
                paths.append(path)
            written[job.spec.name] = paths
    except OSError as exc:
        raise InputError(
            f"cannot write the jobs under {out}: {exc.strerror or type(exc).__name__}",
            hint="choose a directory you can write with --out",
        ) from None
    return written


def _write_atomically(path: Path, content: str, mode: int) -> None:
    """A reader never sees half a file, and no name is written through but our own."""
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
