"""The copy engine: plan what the destination lacks (pure), then execute it."""

from cloudops.copy.engine import CopyEngine, CopyProgress, CopyReport, ImageResult
from cloudops.copy.plan import CopyPlan, CopyRequest, plan_copy

__all__ = [
    "CopyEngine",
    "CopyPlan",
    "CopyProgress",
    "CopyReport",
    "CopyRequest",
    "ImageResult",
    "plan_copy",
]
