"""Whole-release promotion (a feature over images and the package): a release file names
image tags (optionally pinned to digests) and a package version; promoting it copies every
image and the package into one account, then writes one release record. A part that fails
leaves what is already there intact, the release is reported failed, and a re-run
completes it (each part is idempotent).

    release: "2026.11"
    images:
      - {repository: ep/cortex, tag: 8.5.0}
      - {repository: ep/search, tag: 8.5.0, digest: "sha256:..."}   # pinned
    package: {version: 8.5.0}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from cloudops.aws.guard import require_account
from cloudops.copy.engine import CopyProgress
from cloudops.errors import CloudopsError, InputError
from cloudops.package import PackageResult, promote_package
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImagePromotion, ImageSpec, promote_images
from cloudops.pipeline.records import PromotionRecord
from cloudops.pipeline.stages import promotion_route
from cloudops.pipeline.yamlload import YamlBoundsError, YamlValueError, compose_and_load, read_bounded
from cloudops.refs import ReferenceError, validate_digest, validate_repository, validate_tag


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

    @property
    def ok(self) -> bool:
        package_ok = self.package is None or self.package.ok
        return all(i.ok for i in self.images) and package_ok

    def as_dict(self) -> dict[str, object]:
        return {
            "release": self.release,
            "account": self.account,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "images": [i.as_dict() for i in self.images],
            "package": self.package.as_dict() if self.package is not None else None,
            "seconds": round(self.seconds, 3),
        }


def promote_release(
    context: PipelineContext,
    to: str,
    release_file: Path,
    *,
    source: str | None = None,
    dry_run: bool = False,
    progress: CopyProgress | None = None,
) -> ReleaseResult:
    started = time.monotonic()
    release = load_release(release_file)
    route = promotion_route(context.pipeline, to, source)
    arn = require_account(context.session(to), purpose=f"promote release {release.release} into {to!r}")
    result = ReleaseResult(release.release, to, dry_run=dry_run)
    if release.images:
        specs = [ImageSpec(i.repository, i.tag, i.digest) for i in release.images]
        result.images = promote_images(context, to, specs, source=source, dry_run=dry_run, progress=progress)
    if release.package is not None:
        result.package = promote_package(
            context, to, version=release.package.version, source=source, dry_run=dry_run
        )
    result.seconds = time.monotonic() - started
    if not dry_run:
        failures = [str(i.error) for i in result.images if i.error] + (
            [str(result.package.error)] if result.package is not None and result.package.error else []
        )
        history.append(
            context,
            PromotionRecord.new(
                kind="release",
                who=history.who_am_i(arn),
                source_account=route.source,
                source_account_id=context.pipeline.account(route.source).account_id,
                destination_account=to,
                destination_account_id=context.pipeline.account(to).account_id,
                version=release.release,
                bytes=sum(i.bytes_uploaded for i in result.images)
                + (result.package.bytes_uploaded if result.package is not None else 0),
                seconds=result.seconds,
                result="promoted" if result.ok else "failed",
                error="; ".join(failures)[:2000] or None,
            ),
        )
    return result


__all__ = ["CloudopsError", "Release", "ReleaseResult", "load_release", "promote_release"]
