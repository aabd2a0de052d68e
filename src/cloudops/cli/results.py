"""How the outcome of promoting images and releases is printed (stderr), and the exit
code it gives: shared by `promote`, `apply` and `rollback`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudops.cli import exit_codes
from cloudops.cli.output import human_bytes, report_error, safe_text, stderr

if TYPE_CHECKING:
    from cloudops.pipeline.promote import ImagePromotion
    from cloudops.release import ReleaseResult


def image_lines(results: list[ImagePromotion]) -> list[str]:
    lines = []
    for r in results:
        name = safe_text(f"{r.repository}:{r.tag}")
        route = safe_text(f"{r.route.source} -> {r.route.destination}")
        digest = safe_text((r.source_digest or "")[:19])
        if r.status == "planned":
            lines.append(f"[cyan]plan[/] {name} {route}: {safe_text(r.action)} {digest}")
        elif r.status == "promoted":
            lines.append(
                f"[green]✓[/] {name} {route}: promoted {digest} "
                f"({human_bytes(r.bytes_uploaded)} moved, verified)"
            )
        elif r.status == "already-promoted":
            lines.append(f"[green]=[/] {name} {route}: already promoted {digest} (nothing written)")
        lines += [f"  [bold yellow]warning:[/] {safe_text(w)}" for w in r.warnings]
    return lines


def report_failures(results: list[ImagePromotion]) -> int:
    """Print each failure with its fix; return the exit code for the run."""
    codes = set()
    for r in results:
        if r.error is not None:
            report_error(r.error, f"{r.repository}:{r.tag} {r.route.source} -> {r.route.destination}: ")
            codes.add(exit_codes.for_error(r.error))
        elif not r.ok:
            codes.add(exit_codes.FAILED)
    if not codes:
        return exit_codes.OK
    if exit_codes.REFUSED in codes:
        return exit_codes.REFUSED
    return codes.pop() if len(codes) == 1 else exit_codes.FAILED


def show_release(result: ReleaseResult) -> int:
    """Per-item outcomes as `promote release` prints them; the exit code: 0, 3 when a part
    was refused (a tag moved while it was copied), else 1 when a part failed."""
    from cloudops.cli.commands.package import describe_package

    for line in image_lines(result.images):
        stderr.print(line)
    codes = {report_failures(result.images)}
    if result.package is not None:
        describe_package(result.package)
        if result.package.error is not None:
            codes.add(exit_codes.for_error(result.package.error))
    describe_current(result)
    hash_note = f" [dim](plan {safe_text(result.plan_hash)})[/]" if result.plan_hash else ""
    verdict = "[green]complete[/]" if result.ok else "[red]FAILED[/] (run again to complete it)"
    stderr.print(f"release {safe_text(result.release)} -> {safe_text(result.account)}: {verdict}{hash_note}")
    if result.ok:
        return exit_codes.OK
    return exit_codes.REFUSED if exit_codes.REFUSED in codes else exit_codes.FAILED


def describe_current(result: ReleaseResult) -> None:
    """The account's current release as the release left it (release_current.py)."""
    if result.current is not None:
        stderr.print(
            f"current release of {safe_text(result.account)}: {safe_text(result.current.release)} "
            f"[dim](plan {safe_text(result.current.short_hash)}, releases/current.json)[/]"
        )
    elif result.current_error is not None:
        stderr.print(f"[red]current release not recorded:[/] {safe_text(str(result.current_error))}")
