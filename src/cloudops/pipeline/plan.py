"""The promotion plan: what promoting a release into one account will do, computed as data
before anything is written (promo-tools' plan, Kargo's freight). Pure: no boto3, no
registry, no filesystem, no clock. The caller gathers the facts (what each account holds,
each account guarded once), passes in the time and who plans, and stores the plan;
``cloudops apply`` reads it back, gathers the facts again and goes ahead only when
:func:`changes_since` finds nothing.

A plan file is hostile input (anyone could have edited it), so :meth:`PromotionPlan.from_json`
validates every field with bounds, checks each status follows from its digests, and
refuses a plan whose content no longer matches its ``plan_hash``.

The hash covers exactly what decides what apply does: the format, the route (release,
accounts and their ids), per image repository, tag, pinned/source/destination digests and
status, and the package's version, sha256s and status. Not the time, who planned, the
checks (they name identities) or byte estimates: the same facts give the same hash, on
any machine, whatever order they were gathered in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from cloudops.errors import InputError
from cloudops.pipeline.records import MAX_BYTES, AccountId, Digest, iso_time_with_zone
from cloudops.refs import ReferenceError, validate_repository, validate_tag
from cloudops.text import human_bytes, plain_text

FORMAT: Final = 1
MAX_IMAGES = 500
MAX_CHECKS = 64
MAX_PLAN_BYTES = 1024 * 1024
"""A plan of MAX_IMAGES images is ~250 KiB of JSON: the reader refuses a larger file unread."""
NEW_PLAN = "make a new plan with `cloudops plan --to ACCOUNT --release FILE`"
PLAN_COLUMNS = ("kind", "name", "what happens", "digest")

ImageStatus = Literal[
    "present", "copy", "refused-tag-move", "refused-missing", "refused-pin-mismatch", "refused-unsigned"
]
PackageStatus = Literal["present", "copy", "refused-missing", "refused-version-conflict"]


def _reference(check: Callable[[str], str], what: str) -> Callable[[str], str]:
    def run(value: str) -> str:
        try:
            return check(value)
        except ReferenceError:
            raise ValueError(f"not a valid {what}") from None  # never echo hostile text

    return run


def inert_text(value: str) -> str:
    if plain_text(value) != value:
        raise ValueError("control characters are not allowed")
    return value


Sha256 = Annotated[str, StringConstraints(pattern=r"^[a-f0-9]{64}$")]  # package.py's bare hex
Repository = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    AfterValidator(_reference(validate_repository, "repository")),
]
Tag = Annotated[str, StringConstraints(max_length=128), AfterValidator(_reference(validate_tag, "tag"))]
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")]
AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(inert_text)]
_Bytes = Annotated[StrictInt, Field(ge=0, le=MAX_BYTES)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanRoute(_Strict):
    release: Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(inert_text)]
    source: AccountName
    source_id: AccountId
    destination: AccountName
    destination_id: AccountId
    purpose: Literal["release", "rollback", "db-reset"] = "release"
    """A rollback plans an earlier release from the destination's own release log
    (release_rollback.py); a db-reset plans `cloudops db reset` of a protected stage
    (db_population.py). It is hashed, so an approval of one is never one of another."""

    def __str__(self) -> str:
        accounts = f"{self.source} ({self.source_id}) -> {self.destination} ({self.destination_id})"
        what = {"rollback": "roll back to release", "db-reset": "reset the database:"}.get(
            self.purpose, "release"
        )
        return f"{what} {self.release}: {accounts}"


# -- facts: what the caller found, before any decision ---------------------------------


@dataclass(frozen=True)
class ImageFacts:
    repository: str
    tag: str
    source: str | None
    """The digest the source account's tag names; None: the tag is not at the source."""
    destination: str | None
    """The digest the destination's tag names; None: the destination lacks the tag."""
    bytes: int = 0
    """What a copy would move (the caller's estimate: blobs the destination lacks)."""
    pinned: str | None = None
    """The digest the release file pins the tag to, if it pins one."""
    signed: bool | None = None
    """Whether a trusted cosign signature names the source digest; None: the destination
    stage does not require one (pipeline.yaml verify:)."""
    signature: str | None = None
    """What the signature check found, in words ("signed by keys/cosign.pub", or what
    was missing or wrong)."""


@dataclass(frozen=True)
class PackageFacts:
    version: str
    source_sha256: str | None
    """None: the version is not in the source account's bucket."""
    source_size: int | None
    destination_sha256: str | None


@dataclass(frozen=True)
class PromotionFacts:
    route: PlanRoute
    images: Sequence[ImageFacts] = ()
    package: PackageFacts | None = None
    checks: Sequence[str] = ()
    """Checks made while gathering, e.g. "stage order build -> qa", one guard per account."""


def image_status(
    pinned: str | None, source: str | None, destination: str | None, signed: bool | None = None
) -> ImageStatus:
    if source is None:
        return "refused-missing"
    if pinned is not None and pinned != source:
        return "refused-pin-mismatch"  # checked before the destination: the release file is wrong
    if signed is False:
        return "refused-unsigned"  # even when present: the stage accepts only signed images
    if destination == source:
        return "present"
    return "copy" if destination is None else "refused-tag-move"


def package_status(source_sha256: str | None, destination_sha256: str | None) -> PackageStatus:
    if source_sha256 is None:
        return "refused-missing"
    if destination_sha256 == source_sha256:
        return "present"
    return "copy" if destination_sha256 is None else "refused-version-conflict"


# -- the plan --------------------------------------------------------------------------


class PlannedImage(_Strict):
    repository: Repository
    tag: Tag
    pinned: Digest | None = None
    source: Digest | None
    destination: Digest | None
    bytes: _Bytes = 0
    signed: bool | None = None
    signature: _Text | None = None
    status: ImageStatus

    @model_validator(mode="after")
    def _status_follows(self) -> PlannedImage:
        # An edited status (refused -> copy) must not survive even with a recomputed hash.
        expected = image_status(self.pinned, self.source, self.destination, self.signed)
        if self.status != expected:
            raise ValueError(f"status {self.status!r} does not follow from its digests ({expected!r} does)")
        return self

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"


class PlannedPackage(_Strict):
    version: Version
    source_sha256: Sha256 | None
    source_size: _Bytes | None
    destination_sha256: Sha256 | None
    status: PackageStatus

    @model_validator(mode="after")
    def _status_follows(self) -> PlannedPackage:
        if (self.source_sha256 is None) != (self.source_size is None):
            raise ValueError("source_sha256 and source_size are given together or not at all")
        expected = package_status(self.source_sha256, self.destination_sha256)
        if self.status != expected:
            raise ValueError(f"status {self.status!r} does not follow from its sha256s ({expected!r} does)")
        return self


_DERIVED = ("ok", "bytes_to_move", "refusals")
"""Written for readers of the file and of `--json`, recomputed (and compared) on reading."""


class PromotionPlan(_Strict):
    format: Literal[1] = FORMAT
    route: PlanRoute
    images: tuple[PlannedImage, ...] = Field(default=(), max_length=MAX_IMAGES)
    package: PlannedPackage | None = None
    checks: tuple[_Text, ...] = Field(default=(), max_length=MAX_CHECKS)
    planned_at: Annotated[str, StringConstraints(max_length=40), AfterValidator(iso_time_with_zone)]
    planned_by: _Text
    plan_hash: Digest

    @model_validator(mode="after")
    def _images_once(self) -> PromotionPlan:
        _each_image_once(self.images)
        return self

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def bytes_to_move(self) -> int:
        images = sum(i.bytes for i in self.images if i.status == "copy")
        if self.package is not None and self.package.status == "copy":
            images += self.package.source_size or 0
        return images

    @property
    def refusals(self) -> list[str]:
        return _refusals(self)

    def content_hash(self) -> str:
        return _hash(self.route, self.images, self.package)

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out.update(ok=self.ok, bytes_to_move=self.bytes_to_move, refusals=self.refusals)
        return out

    @classmethod
    def from_json(cls, document: object) -> PromotionPlan:
        """A plan read back from a file: validated, and refused when edited since it was made."""
        if not isinstance(document, dict):
            raise InputError("not a plan: expected a JSON object", hint=NEW_PLAN)
        if document.get("format") != FORMAT or isinstance(document.get("format"), bool):
            raise InputError(f"not a plan this cloudops reads (it reads format {FORMAT})", hint=NEW_PLAN)
        images = document.get("images")
        if isinstance(images, list) and len(images) > MAX_IMAGES:  # refused before any is validated
            raise InputError(f"the plan lists {len(images)} images, more than {MAX_IMAGES}", hint=NEW_PLAN)
        try:
            plan = cls.model_validate({k: v for k, v in document.items() if k not in _DERIVED})
        except ValidationError as exc:
            raise _invalid("not a valid plan", exc, NEW_PLAN) from None
        if plan.plan_hash != plan.content_hash():
            raise InputError(
                "the plan's content does not match its plan_hash: it was edited after it was made",
                hint=f"never edit a plan; {NEW_PLAN}",
            )
        summary = plan.to_json()  # ok, bytes_to_move, refusals: an edited one is refused too
        if any(
            _canonical_text(document[k]) != _canonical_text(summary[k]) for k in _DERIVED if k in document
        ):
            raise InputError(
                "the plan's ok, bytes_to_move or refusals do not match its content: it was edited",
                hint=f"never edit a plan; {NEW_PLAN}",
            )
        return plan


def build_plan(facts: PromotionFacts, *, planned_at: datetime, planned_by: str) -> PromotionPlan:
    """Decide every image's and the package's fate. Times and identities are passed in:
    the plan stays pure and its hash ignores them."""
    if planned_at.tzinfo is None:
        raise ValueError("planned_at must carry a time zone")
    images, package = _decide(facts)
    try:
        return PromotionPlan(
            route=facts.route,
            images=images,
            package=package,
            checks=tuple(dict.fromkeys(facts.checks)),  # one guard per account, however many items
            planned_at=planned_at.isoformat(timespec="seconds"),
            planned_by=planned_by,
            plan_hash=_hash(facts.route, images, package),
        )
    except ValidationError as exc:
        raise _invalid("the facts gathered do not make a valid plan", exc, None) from None


def changes_since(plan: PromotionPlan, fresh: PromotionFacts) -> list[str]:
    """What differs between the plan and facts gathered again (empty: the world is as planned).
    Byte estimates, times and identities are not changes; any digest is."""
    images, package = _decide(fresh)
    changes: list[str] = []
    if fresh.route != plan.route:
        changes.append(f"the route is now {fresh.route} (the plan is for {plan.route})")
    src, dst = plan.route.source, plan.route.destination
    old_images = {i.name: i for i in plan.images}
    new_images = {i.name: i for i in images}
    for name in sorted(old_images.keys() | new_images.keys()):
        old, new = old_images.get(name), new_images.get(name)
        if old is None or new is None:
            now, plan_has = ("now lists", "does not") if old is None else ("no longer lists", "has it")
            changes.append(f"the release {now} {name} (the plan {plan_has})")
            continue
        if new.pinned != old.pinned:
            pins = f"now pins {name} to {_short(new.pinned)}" if new.pinned else f"no longer pins {name}"
            changes.append(f"the release file {pins} (the plan has {_short(old.pinned)})")
        if new.source != old.source:
            changes.append(_source_change(name, src, old.source, new.source, "now names"))
        if new.destination != old.destination:
            changes.append(_destination_change(name, dst, old.destination, new.destination))
        if new.signed != old.signed:
            changes.append(
                f"the signature check of {name} now says: {new.signature} (the plan has {old.signature})"
            )
    old_pkg, new_pkg = plan.package, package
    old_version = old_pkg.version if old_pkg else "none"
    new_version = new_pkg.version if new_pkg else "none"
    if old_version != new_version:
        changes.append(f"the release now names package {new_version} (the plan has {old_version})")
    elif old_pkg is not None and new_pkg is not None:
        name = f"package {new_pkg.version}"
        if new_pkg.source_sha256 != old_pkg.source_sha256:
            sums = old_pkg.source_sha256, new_pkg.source_sha256
            changes.append(_source_change(name, src, *sums, "now has"))
        if new_pkg.destination_sha256 != old_pkg.destination_sha256:
            changes.append(
                _destination_change(name, dst, old_pkg.destination_sha256, new_pkg.destination_sha256)
            )
    return changes


def plan_rows(plan: PromotionPlan) -> list[tuple[str, ...]]:
    """One row per image and the package, for a table with PLAN_COLUMNS."""
    source = plan.route.source
    rows: list[tuple[str, ...]] = []
    image_actions = {
        "present": "already there",
        "refused-tag-move": "refused: tag would move",
        "refused-missing": f"refused: missing at {source}",
        "refused-pin-mismatch": "refused: not the pinned digest",
        "refused-unsigned": "refused: no valid signature",
    }
    for i in plan.images:
        action = image_actions.get(i.status) or f"copy {human_bytes(i.bytes)}"
        if i.signed:
            action += ", signed"
        rows.append(("image", i.name, action, _short(i.source or i.pinned, none="-")))
    if (p := plan.package) is not None:
        package_actions = {
            "present": "already there",
            "refused-missing": f"refused: missing at {source}",
            "refused-version-conflict": "refused: version exists with other content",
        }
        action = package_actions.get(p.status) or f"copy {human_bytes(p.source_size or 0)}"
        rows.append(("package", p.version, action, _short(p.source_sha256, none="-")))
    return rows


# -- helpers ---------------------------------------------------------------------------


class _Decided(_Strict):
    # One model for all the facts, so that an error names where it is (images.3.source).
    images: tuple[PlannedImage, ...] = Field(max_length=MAX_IMAGES)
    package: PlannedPackage | None

    @model_validator(mode="after")
    def _images_once(self) -> _Decided:
        _each_image_once(self.images)
        return self


def _each_image_once(images: Sequence[PlannedImage]) -> None:
    names = [i.name for i in images]
    if len(set(names)) != len(names):
        raise ValueError("an image is listed twice")


def _decide(facts: PromotionFacts) -> tuple[tuple[PlannedImage, ...], PlannedPackage | None]:
    """The facts with their statuses, validated; images sorted so that the file reads the
    same whatever order they were gathered in."""
    p = facts.package
    try:
        decided = _Decided.model_validate(
            {
                "images": [
                    dict(asdict(i), status=image_status(i.pinned, i.source, i.destination, i.signed))
                    for i in facts.images
                ],
                "package": None
                if p is None
                else dict(asdict(p), status=package_status(p.source_sha256, p.destination_sha256)),
            }
        )
    except ValidationError as exc:
        raise _invalid("the facts gathered do not make a valid plan", exc, None) from None
    return tuple(sorted(decided.images, key=lambda i: (i.repository, i.tag))), decided.package


def _hash(route: PlanRoute, images: Sequence[PlannedImage], package: PlannedPackage | None) -> str:
    content = {
        "format": FORMAT,
        # A release's route is hashed as before rollbacks existed (plans made then still apply).
        "route": route.model_dump(mode="json", exclude=({"purpose"} if route.purpose == "release" else None)),
        "images": sorted(
            # Signature fields only where a stage requires them: plans made before they
            # existed keep their hashes.
            (
                i.model_dump(
                    mode="json", exclude={"bytes", "signed", "signature"} if i.signed is None else {"bytes"}
                )
                for i in images
            ),
            key=lambda i: (i["repository"], i["tag"]),
        ),
        "package": None if package is None else package.model_dump(mode="json", exclude={"source_size"}),
    }
    return "sha256:" + hashlib.sha256(_canonical_text(content).encode()).hexdigest()


def _canonical_text(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _refusals(plan: PromotionPlan) -> list[str]:
    src, dst = plan.route.source, plan.route.destination
    out: list[str] = []
    for i in plan.images:
        if i.status == "refused-missing":
            out.append(
                f"{i.name} does not exist in {src}: only images present there can be promoted; fix the tag"
            )
        elif i.status == "refused-pin-mismatch":
            out.append(
                f"{i.name} in {src} is {_short(i.source)}, not the pinned {_short(i.pinned)}: "
                "fix the digest in the release file"
            )
        elif i.status == "refused-unsigned":
            out.append(
                f"{i.name} in {src} ({_short(i.source)}) has no valid signature: {i.signature}; "
                f"{dst} accepts only signed images: sign it in the build account (`cloudops sign`) "
                "and promote it again so the signature travels with it"
            )
        elif i.status == "refused-tag-move":
            out.append(
                f"{i.name} in {dst} already names {_short(i.destination)}, not {_short(i.source)} "
                f"from {src}: tags never move; build and promote a new tag"
            )
    p = plan.package
    if p is not None and p.status == "refused-missing":
        out.append(
            f"package {p.version} is not in {src}'s bucket: publish it (`cloudops package publish`) "
            f"or promote it into {src} first"
        )
    elif p is not None and p.status == "refused-version-conflict":
        out.append(
            f"package {p.version} in {dst} is {_short(p.destination_sha256)}, not "
            f"{_short(p.source_sha256)} from {src}: versions never change; publish a new version"
        )
    return out


def _source_change(name: str, source: str, old: str | None, new: str | None, verb: str) -> str:
    now = f"{verb} {_short(new)}" if new else "no longer exists"
    return f"{name} at {source} {now} (the plan has {_short(old)})"


def _destination_change(name: str, destination: str, old: str | None, new: str | None) -> str:
    now = f"now holds {name} as {_short(new)}" if new else f"no longer holds {name}"
    return f"{destination} {now} (the plan expected {_short(old)})"


def _invalid(what: str, exc: ValidationError, hint: str | None) -> InputError:
    """Which fields are wrong and how, never their values (a plan file is hostile text)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "plan"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {message.removeprefix('Value error, ')}")
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return InputError(f"{what}: " + "; ".join(problems) + more, hint=hint)


def _short(digest: str | None, *, none: str = "none") -> str:
    if digest is None:
        return none
    # Image digests carry "sha256:", package sums (package.py's) are bare hex: shown alike.
    return f"sha256:{digest.removeprefix('sha256:')[:12]}…"
