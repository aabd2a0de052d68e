"""`cloudops status`: which version is in which account, and is anything out of line.

collect.py   reads every account (I/O): ECR DescribeImages, the package store, history
matrix.py    computes the marks (pure)
model.py     the values, and their JSON shape
html.py      one self-contained HTML page (pure)
"""

from cloudops.report.collect import History, StatusReport, read_status
from cloudops.report.html import render_html
from cloudops.report.matrix import compute_matrix, newest_first, version_key
from cloudops.report.model import Artifact, Cell, Holding, Observation, Row, StatusMatrix

__all__ = [
    "Artifact",
    "Cell",
    "History",
    "Holding",
    "Observation",
    "Row",
    "StatusMatrix",
    "StatusReport",
    "compute_matrix",
    "newest_first",
    "read_status",
    "render_html",
    "version_key",
]
