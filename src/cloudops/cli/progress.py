"""Progress on stderr: a byte bar on a terminal, one line per image in a log (Jenkins)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from cloudops.cli.output import human_bytes, safe_text, stderr, stderr_console
from cloudops.copy.engine import BlobOutcome, ImageResult
from cloudops.copy.plan import BlobKey, CopyPlan

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class CopyProgressDisplay:
    def __init__(self, label: str = "copy", *, quiet: bool = False):
        self._label = label
        self._quiet = quiet
        self._live = not quiet and stderr.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = 0
        self._sent: dict[BlobKey, int] = {}

    def __enter__(self) -> CopyProgressDisplay:
        if self._live:
            # Imported only for a live terminal: Jenkins logs and --json never draw a bar.
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, plan: CopyPlan) -> None:
        """Called once per image as it is planned: the bar's total grows with each."""
        if self._progress is None:
            return
        self._total += plan.bytes_to_move
        if self._task is None:
            self._task = self._progress.add_task(safe_text(self._label), total=self._total or 1)
        else:
            self._progress.update(self._task, total=self._total or 1)

    def blob_advanced(self, key: BlobKey, nbytes: int) -> None:
        self._sent[key] = self._sent.get(key, 0) + nbytes
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, nbytes)

    def blob_restarted(self, key: BlobKey) -> None:
        sent = self._sent.pop(key, 0)
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, -sent)

    def blob_finished(self, key: BlobKey, outcome: BlobOutcome) -> None:
        return None

    def image_finished(self, result: ImageResult) -> None:
        if self._quiet:
            return
        dest = safe_text(result.request.destination)
        digest = safe_text((result.digest or "")[:19])
        if result.status == "up-to-date":
            line = f"[green]=[/] {dest} already at {digest} (nothing written)"
        elif result.status == "copied":
            line = (
                f"[green]✓[/] {dest} {digest}: {result.blobs_uploaded} uploaded "
                f"({human_bytes(result.bytes_uploaded)}), {result.blobs_mounted} mounted, "
                f"{result.blobs_skipped} already there"
            )
        else:
            return  # failures are reported by the command, with their fix
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            stderr.print(line)
