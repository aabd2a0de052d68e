"""Stage rules, pure: where a promotion into an account may come from."""

from __future__ import annotations

from dataclasses import dataclass

from cloudops.errors import RefusedError
from cloudops.pipeline.model import Pipeline


class StageRuleError(RefusedError):
    """A promotion the pipeline's stage order does not allow."""


@dataclass(frozen=True)
class Route:
    source: str
    destination: str


def promotion_route(pipeline: Pipeline, to: str, source: str | None = None) -> Route:
    """The source defaults to the stage before ``to``. The build account never pulls;
    skipping a stage is refused unless the pipeline sets allow_stage_skip."""
    pipeline.account(to)
    if to == pipeline.build_account:
        raise StageRuleError(
            f"{to!r} is the build account: images are built there and never promoted into it",
            hint=f"promote into a later stage: {', '.join(pipeline.stages[1:])}",
        )
    previous = pipeline.previous_stage(to)
    assert previous is not None  # only the first stage has none, and that is the build account
    chosen = source or previous
    pipeline.account(chosen)
    stages = pipeline.stages
    if stages.index(chosen) >= stages.index(to):
        raise StageRuleError(
            f"cannot promote from {chosen!r} into {to!r}: promotions go forward ({' -> '.join(stages)})",
            hint=f"promote into {to!r} from {previous!r}",
        )
    if chosen != previous and not pipeline.allow_stage_skip:
        skipped = stages[stages.index(chosen) + 1 : stages.index(to)]
        raise StageRuleError(
            f"promoting from {chosen!r} into {to!r} skips {', '.join(skipped)}",
            hint=f"promote through every stage in order (from {previous!r}), or set allow_stage_skip: true "
            "in pipeline.yaml",
        )
    return Route(chosen, to)


def require_outside_release_approval(pipeline: Pipeline, to: str, what: str) -> None:
    """Refuse a promotion of single images or a package into a stage that takes releases
    only after an approval (pipeline.yaml approvals:): promoting parts one by one would
    pass around the approval. Releases pass it in release_gates.py."""
    if pipeline.approval(to).required:
        raise StageRuleError(
            f"{to!r} requires an approval for what is promoted into it: {what} alone is not promoted there",
            hint=f"promote a release: `cloudops plan --to {to} --release FILE --out PLAN.json`, "
            "`cloudops approve PLAN.json` (an approver), `cloudops apply PLAN.json` (docs/releases.md)",
        )
