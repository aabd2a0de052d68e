"""Release files and the result of promoting one. A release file names image tags
(optionally pinned to digests) and a package version; release_plan.py plans and promotes
it: every image and the package into one account, then one release record. A part that
fails leaves what is already there intact, the release is reported failed, and a re-run
completes it (each part is idempotent).

    release: "2026.11"
    images:
      - {repository: ep/cortex, tag: 8.5.0}
      - {repository: ep/search, tag: 8.5.0, digest: "sha256:..."}   # pinned
    package: {version: 8.5.0}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from cloudops.errors import CloudopsError, InputError
from cloudops.package import PackageResult
from cloudops.pipeline.promote import ImagePromotion
from cloudops.pipeline.yamlload import YamlBoundsError, YamlValueError, compose_and_load, read_bounded
from cloudops.refs import ReferenceError, validate_digest, validate_repository, validate_tag

if TYPE_CHECKING:
    from cloudops.release_current import CurrentRelease


class ReleaseImage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    repository: str
    tag: str
    digest: str | None = None


class ReleasePackage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    release: str
    images: list[ReleaseImage] = []
    package: ReleasePackage | None = None


def load_release(path: Path) -> Release:
    try:
        _, data = compose_and_load(read_bounded(path))
    except FileNotFoundError:
        raise InputError(f"release file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read release file {path}: {type(exc).__name__}") from None
    except YamlBoundsError as exc:
        raise InputError(
            f"{path}: refused: {exc}", hint="a release file lists a few images and a version"
        ) from None
    except YamlValueError as exc:
        raise InputError(f"{path}: {exc}", hint="quote it if it is meant as text") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise InputError(f"{path}{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError:
        raise InputError(f"{path}: not valid YAML") from None
    if isinstance(data, dict) and data.get("release") is not None:
        data["release"] = str(data["release"])
    try:
        release = Release.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(
            f"{path}: {where}: {first['msg']}",
            hint="a release file has release:, images: [{repository, tag, digest?}], package: {version}",
        ) from None
    try:
        for image in release.images:
            validate_repository(image.repository)
            validate_tag(image.tag)
            if image.digest:
                validate_digest(image.digest)
    except ReferenceError as exc:
        raise InputError(f"{path}: {exc.message}", hint=exc.hint) from None
    if not release.images and release.package is None:
        raise InputError(f"{path}: the release names no images and no package")
    return release


@dataclass
class ReleaseResult:
    release: str
    account: str
    images: list[ImagePromotion] = field(default_factory=list)
    package: PackageResult | None = None
    seconds: float = 0.0
    dry_run: bool = False
    plan_hash: str | None = None
    """The plan executed (release_plan.py); None for a dry run."""
    current: CurrentRelease | None = None
    """What releases/current.json now says (release_current.py), once written and read back."""
    current_error: CloudopsError | None = None
    """Why current.json could not be written or verified: the release then failed."""

    @property
    def parts_ok(self) -> bool:
        """Every image and the package promoted or already there."""
        package_ok = self.package is None or self.package.ok
        return all(i.ok for i in self.images) and package_ok

    @property
    def ok(self) -> bool:
        return self.parts_ok and self.current_error is None

    def as_dict(self) -> dict[str, object]:
        return {
            "release": self.release,
            "account": self.account,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "images": [i.as_dict() for i in self.images],
            "package": self.package.as_dict() if self.package is not None else None,
            "seconds": round(self.seconds, 3),
            "plan_hash": self.plan_hash,
            "current_release": {
                "written": self.current is not None,
                "error": str(self.current_error) if self.current_error else None,
            },
        }


__all__ = ["CloudopsError", "Release", "ReleaseResult", "load_release"]
