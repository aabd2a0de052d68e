"""One self-contained HTML page: the status matrix, colour-coded, and the promotion
history as a timeline per account (pure: values in, text out).

Self-contained because it is archived as a Jenkins build artifact and opened years later,
often offline and under a Content-Security-Policy that blocks scripts: inline CSS only,
no script, no external font, image or stylesheet, system fonts. Every piece of text that
came from outside (tags, repository names, error messages, ARNs) goes through
html.escape, attributes included, after its control characters are made visible
(cloudops.text.plain_text: no raw ESC, NUL or bidi override reaches the page).

The timeline of an account shows the records read from that account's own bucket, newest
first by their key's date. A record that claims another account, or a time in the future,
is listed under "findings" in the timeline of the bucket it was read from, never as the
account it names; records that are not valid records are listed with their keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from cloudops import __version__
from cloudops.pipeline.history import HistoryRead
from cloudops.pipeline.records import ReadRecord
from cloudops.report.collect import CurrentSeen
from cloudops.report.model import (
    MARKS,
    SIGNATURE_STATES,
    Artifact,
    Cell,
    Mark,
    Row,
    SignatureState,
    StatusMatrix,
    short_digest,
)
from cloudops.text import plain_text

TIMELINE_LIMIT = 200
"""Records shown per account, newest first; older ones are counted, not listed."""
FINDINGS_LIMIT = 20
"""Suspect and unreadable records listed per account; the rest are counted."""

LEGEND: dict[Mark, str] = {
    "same": "holds the newest content of the stage before",
    "behind": "the stage before has newer tags not promoted here yet",
    "drift": "a tag names another digest than upstream: must never happen",
    "missing": "nothing here",
    "unreachable": "could not be read (the reason is in the cell)",
    "source": "first stage: where images are built",
    "unknown": "no stage before it could be read",
}

SIGNATURE_LEGEND: dict[SignatureState, str] = {
    "signed": "a signature over this digest verifies under a key of pipeline.yaml's verify.keys",
    "unsigned": "no cosign signature refers to it",
    "invalid": "signatures refer to it, none verifies under the pipeline's keys",
    "unchecked": "its registry could not be read (hover for the reason)",
}

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; background: #fafafa; color: #202124;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 0 0 8px; }
code, .digest, time { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
.meta { color: #5f6368; margin: 0 0 12px; }
.summary span { display: inline-block; margin: 0 6px 6px 0; padding: 3px 10px; border-radius: 12px;
  border: 1px solid #dadce0; background: #fff; }
table { border-collapse: collapse; background: #fff; }
table.matrix { width: 100%; table-layout: fixed; }
.matrix th, .matrix td { border: 1px solid #dadce0; padding: 8px 10px; vertical-align: top;
  text-align: left; }
.matrix thead th { background: #f1f3f4; }
.matrix thead th small { display: block; color: #5f6368; font-weight: normal; }
.matrix tbody th { width: 16%; background: #f8f9fa; overflow-wrap: anywhere; }
.mark { font-weight: 700; text-transform: uppercase; letter-spacing: .04em; font-size: 12px; }
.tags { list-style: none; margin: 4px 0 0; padding: 0; }
.tags li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.digest { color: #5f6368; }
.detail { margin: 6px 0 0; font-size: 12.5px; overflow-wrap: anywhere; }
.more { color: #5f6368; font-size: 12px; }
.cur { font-size: 11px; padding: 0 4px; border-radius: 3px; background: #1a73e8; color: #fff; }
td.mark-same { background: #e6f4ea; } td.mark-same .mark { color: #137333; }
td.mark-source { background: #e8f0fe; } td.mark-source .mark { color: #1967d2; }
td.mark-behind { background: #fef7e0; } td.mark-behind .mark { color: #b06000; }
td.mark-missing { background: #f1f3f4; } td.mark-missing .mark { color: #5f6368; }
td.mark-unknown { background: #f1f3f4; } td.mark-unknown .mark { color: #5f6368; }
td.mark-drift { background: #fce8e6; outline: 3px solid #d93025; outline-offset: -3px; }
td.mark-drift .mark { color: #fff; background: #d93025; display: inline-block; padding: 1px 6px;
  border-radius: 3px; }
td.mark-unreachable { color: #3c4043;
  background: repeating-linear-gradient(135deg, #e8eaed 0 8px, #f8f9fa 8px 16px); }
td.mark-unreachable .mark { color: #3c4043; }
.drift { color: #a50e0e; font-weight: 600; }
.sig { font-size: 11px; padding: 0 4px; border-radius: 3px; border: 1px solid transparent; }
.sig-signed { color: #137333; border-color: #137333; }
.sig-unsigned { color: #b06000; border-color: #b06000; }
.sig-invalid { color: #fff; background: #d93025; }
.sig-unchecked { color: #5f6368; border-color: #9aa0a6; }
.legend { margin: 10px 0 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 6px 14px;
  font-size: 12.5px; color: #3c4043; }
.legend b { display: inline-block; padding: 0 6px; border-radius: 3px; margin-right: 4px; }
.accounts td, .accounts th { border: 1px solid #dadce0; padding: 6px 10px; text-align: left;
  white-space: nowrap; }
.accounts td:last-child { white-space: normal; }
.accounts .bad, th small.bad { color: #a50e0e; }
.timelines { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 16px; }
.timeline { background: #fff; border: 1px solid #dadce0; border-radius: 6px; padding: 12px 14px;
  min-width: 0; }
.timeline ol { list-style: none; margin: 0; padding: 0 0 0 14px; border-left: 2px solid #dadce0; }
.timeline li { position: relative; margin: 0 0 10px; padding-left: 8px; overflow-wrap: anywhere; }
.timeline li::before { content: ""; position: absolute; left: -21px; top: 5px; width: 10px; height: 10px;
  border-radius: 50%; background: #9aa0a6; border: 2px solid #fff; }
.timeline li.r-promoted::before { background: #1e8e3e; }
.timeline li.r-already-promoted::before { background: #9aa0a6; }
.timeline li.r-refused::before { background: #f9ab00; }
.timeline li.r-failed::before { background: #d93025; }
.result { font-size: 11.5px; font-weight: 700; text-transform: uppercase; }
.r-promoted .result { color: #137333; } .r-already-promoted .result { color: #5f6368; }
.r-refused .result { color: #b06000; } .r-failed .result { color: #a50e0e; }
.r-approved .result, .r-rolled-back .result { color: #137333; } .r-rejected .result { color: #b06000; }
.error { color: #a50e0e; font-size: 12.5px; }
.empty { color: #5f6368; }
footer { margin-top: 30px; color: #5f6368; font-size: 12px; }
@media print { body { background: #fff; } td.mark-drift { outline-color: #000; } }
"""


def render_html(
    matrix: StatusMatrix,
    history: HistoryRead | None = None,
    *,
    title: str = "cloudops status",
    current: Mapping[str, CurrentSeen] | None = None,
) -> str:
    """The page. ``history`` is what read_history found: records attributed to the bucket
    they were read from, never to the account they claim (none: no timelines)."""
    history = history or HistoryRead()
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Belt and braces for archived copies: nothing may be fetched, nothing may run.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">read {_e(matrix.read_at.isoformat(timespec="seconds"))} in '
        f"{matrix.seconds:.1f} s &middot; {_e(matrix.ordering)}</p>",
        _summary(matrix),
        "</header>",
        "<section><h2>What is where</h2>",
        _matrix(matrix),
        _legend(),
        _signature_legend(matrix),
        "</section>",
        _accounts(matrix, current),
        _timelines(matrix, history),
        f"<footer>cloudops {_e(__version__)}</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(text: object) -> str:
    return escape(plain_text(text), quote=True)


def _summary(matrix: StatusMatrix) -> str:
    counts = matrix.counts()
    chips = [
        f'<span data-mark="{mark}" style="{_LEGEND_STYLE[mark]}">{counts[mark]} {mark}</span>'
        for mark in MARKS
        if counts[mark] or mark in ("drift", "behind", "unreachable")
    ]
    return f'<div class="summary">{"".join(chips)}</div>'


def _matrix(matrix: StatusMatrix) -> str:
    head = "".join(
        f'<th scope="col">{_e(stage)}<small>{_e(matrix.accounts[stage].account_id)}</small>'
        + ("" if matrix.accounts[stage].reachable else '<small class="bad">account not readable</small>')
        + "</th>"
        for stage in matrix.stages
    )
    rows = "\n".join(_row(matrix, row) for row in matrix.rows)
    return (
        '<table class="matrix"><thead><tr><th scope="col">repository</th>'
        f"{head}</tr></thead><tbody>\n{rows}\n</tbody></table>"
    )


def _row(matrix: StatusMatrix, row: Row) -> str:
    cells = "".join(_cell(matrix, row, cell) for cell in row.cells)
    return f'<tr data-row="{_e(row.name)}"><th scope="row">{_e(row.name)}</th>{cells}</tr>'


def _cell(matrix: StatusMatrix, row: Row, cell: Cell) -> str:
    body = [f'<div class="mark">{_e(cell.mark)}</div>']
    reason = cell.reason
    if cell.mark == "unreachable" and reason == matrix.accounts[cell.stage].error:
        reason = "the account could not be read: see Accounts below"  # said once, not per row
    if cell.newest:
        body.append('<ul class="tags">' + "".join(_tag(a) for a in cell.newest) + "</ul>")
        if cell.count > len(cell.newest):
            body.append(f'<div class="more">{cell.count} tags in all</div>')
    for drift in cell.drift[:5]:
        body.append(
            f'<p class="detail drift">{_e(drift.tag)}: {_e(short_digest(drift.digest))} here, '
            f"{_e(short_digest(drift.upstream_digest))} in {_e(drift.upstream_stage)}</p>"
        )
    if len(cell.drift) > 5:
        body.append(f'<p class="detail drift">and {len(cell.drift) - 5} more drifted tags</p>')
    if cell.pending:
        waiting = "waiting" if cell.mark == "missing" else "newer"
        body.append(
            f'<p class="detail">{len(cell.pending)} {waiting} in {_e(cell.compared_with)}: '
            f"{_e(_listing(cell.pending))}</p>"
        )
    if cell.not_upstream:
        body.append(f'<p class="detail">not upstream: {_e(_listing(cell.not_upstream))}</p>')
    if reason:
        body.append(f'<p class="detail">{_e(reason)}</p>')
    signature = f' data-signature="{_e(cell.signature)}"' if cell.signature is not None else ""
    return (
        f'<td class="cell mark-{_e(cell.mark)}" data-row="{_e(row.name)}" data-stage="{_e(cell.stage)}" '
        f'data-mark="{_e(cell.mark)}"{signature}>{"".join(body)}</td>'
    )


def _tag(artifact: Artifact) -> str:
    current = ' <span class="cur">current</span>' if artifact.current else ""
    signed = ""
    if artifact.signature is not None:
        state = artifact.signature.state
        signed = (
            f' <span class="sig sig-{_e(state)}" data-signature="{_e(state)}" '
            f'title="{_e(artifact.signature.reason)}">{_e(state)}</span>'
        )
    return (
        f'<li title="{_e(artifact.digest)}"><code>{_e(artifact.tag)}</code> '
        f'<span class="digest">{_e(artifact.short_digest)}</span>{current}{signed}</li>'
    )


def _listing(tags: Iterable[str], limit: int = 6) -> str:
    items = list(tags)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _legend() -> str:
    items = "".join(
        f'<li><b class="mark-{mark}" style="{_LEGEND_STYLE[mark]}">{mark}</b>{_e(text)}</li>'
        for mark, text in LEGEND.items()
    )
    return f'<ul class="legend">{items}</ul>'


def _signature_legend(matrix: StatusMatrix) -> str:
    """Only when the tags were checked (pipeline.yaml has verify keys)."""
    if not matrix.signature_keys:
        return ""
    counts = matrix.signature_counts()
    items = "".join(
        f'<li><span class="sig sig-{state}">{state}</span> {counts[state]}: '
        f"{_e(SIGNATURE_LEGEND[state])}</li>"
        for state in SIGNATURE_STATES
    )
    keys = ", ".join(_e(k) for k in matrix.signature_keys)
    return f'<ul class="legend signatures"><li>signatures checked against {keys}:</li>{items}</ul>'


_LEGEND_STYLE: dict[Mark, str] = {
    "same": "background:#e6f4ea;color:#137333",
    "behind": "background:#fef7e0;color:#b06000",
    "drift": "background:#d93025;color:#fff",
    "missing": "background:#f1f3f4;color:#5f6368",
    "unreachable": "background:#e8eaed;color:#3c4043",
    "source": "background:#e8f0fe;color:#1967d2",
    "unknown": "background:#f1f3f4;color:#5f6368",
}


def _accounts(matrix: StatusMatrix, current: Mapping[str, CurrentSeen] | None = None) -> str:
    rows = []
    for stage in matrix.stages:
        account = matrix.accounts[stage]
        state = (
            '<td class="ok">read</td>'
            if account.reachable
            else f'<td class="bad">unreachable: {_e(account.error)}</td>'
        )
        release = _current(current.get(stage), account.reachable) if current is not None else ""
        rows.append(
            f'<tr data-account="{_e(stage)}"><th scope="row">{_e(stage)}</th>'
            f"<td><code>{_e(account.account_id)}</code></td><td>{_e(account.region)}</td>{state}{release}</tr>"
        )
    release_head = "<th>current release</th>" if current is not None else ""
    return (
        '<section><h2>Accounts</h2><table class="accounts"><thead><tr><th>stage</th><th>account</th>'
        f"<th>region</th><th>state</th>{release_head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _current(seen: CurrentSeen | None, reachable: bool) -> str:
    """One account's releases/current.json (release_current.py) and whether it matches."""
    if not reachable:
        return "<td></td>"
    if seen is None:
        return '<td class="current-release">none recorded</td>'
    rejected = "".join(
        f'<br><small class="rejected">rejected {_e(r.release)}</small>' for r in seen.rejected[:5]
    )
    if seen.rejected_error:
        rejected += f"<br><small>rejections unreadable: {_e(seen.rejected_error)}</small>"
    if seen.value is None and seen.error is None:
        return f'<td class="current-release">none recorded{rejected}</td>'
    if seen.value is None:
        return f'<td class="bad current-release">unreadable: {_e(seen.error)}{rejected}</td>'
    match, css, flag = "match not known", "", "null"
    if seen.matches is not None:
        match = "matches" if seen.matches else "does not match"
        css, flag = ("ok", "true") if seen.matches else ("bad", "false")
    differences = "".join(f"<br><small>{_e(d)}</small>" for d in seen.differences[:5])
    return (
        f'<td class="{css} current-release" data-matches="{flag}">{_e(seen.value.release)} '
        f"<code>{_e(seen.value.short_hash)}</code> &middot; {match}{differences}{rejected}</td>"
    )


def _timelines(matrix: StatusMatrix, history: HistoryRead) -> str:
    blocks = []
    for stage in matrix.stages:
        items = sorted(history.of(stage), key=lambda r: (r.written, r.key), reverse=True)
        if stage in history.unreadable:
            content = f'<p class="error">history not readable: {_e(history.unreadable[stage])}</p>'
        elif not items:
            content = '<p class="empty">no promotions recorded</p>'
        else:
            entries = "".join(_entry(r) for r in items[:TIMELINE_LIMIT])
            content = f"<ol>{entries}</ol>"
        older = max(0, len(items) - TIMELINE_LIMIT)
        dropped = history.dropped.get(stage)
        older += dropped.older if dropped is not None else 0
        if older:
            content += f'<p class="more">{older} older records not shown</p>'
        content += _findings(stage, history)
        blocks.append(f'<div class="timeline" data-account="{_e(stage)}"><h3>{_e(stage)}</h3>{content}</div>')
    return f'<section><h2>Promotion history</h2><div class="timelines">{"".join(blocks)}</div></section>'


def _findings(stage: str, history: HistoryRead) -> str:
    """What is wrong with this account's bucket: suspect records (as this account's, with
    what they claim), unreadable records by key, keys dated in the future not read."""
    parts = []
    suspect = sorted(history.suspect_of(stage), key=lambda r: (r.written, r.key), reverse=True)
    for read in suspect[:FINDINGS_LIMIT]:
        r = read.record
        parts.append(
            f'<li class="finding" data-key="{_e(read.key)}"><b>{_e(", ".join(read.findings))}</b>: '
            f"<code>{_e(read.key)}</code> claims {_e(r.destination_account)} "
            f"(<code>{_e(r.destination_account_id)}</code>), {_e(r.result)}, dated {_e(r.when)}</li>"
        )
    if len(suspect) > FINDINGS_LIMIT:
        parts.append(f"<li>and {len(suspect) - FINDINGS_LIMIT} more suspect records</li>")
    unreadable = history.unreadable_of(stage)
    for item in unreadable[:FINDINGS_LIMIT]:
        parts.append(
            f'<li class="unreadable" data-key="{_e(item.key)}">unreadable record '
            f"<code>{_e(item.key)}</code>: {_e(item.reason)}</li>"
        )
    if len(unreadable) > FINDINGS_LIMIT:
        parts.append(f"<li>and {len(unreadable) - FINDINGS_LIMIT} more unreadable records</li>")
    dropped = history.dropped.get(stage)
    if dropped is not None and dropped.future:
        parts.append(
            f"<li>{dropped.future} records dated in the future by their key were dropped, not read</li>"
        )
    if not parts:
        return ""
    listing = "".join(parts)
    return f'<div class="error findings" data-account="{_e(stage)}"><b>findings</b><ul>{listing}</ul></div>'


def _entry(read: ReadRecord) -> str:
    record = read.record
    what = (
        f"{record.repository}:{record.tag}"
        if record.kind == "image"
        else f"{record.kind} {record.version or ''}"
    )
    digest = (
        f' <span class="digest">{_e(short_digest(record.source_digest))}</span>'
        if record.source_digest
        else ""
    )
    error = f'<div class="error">{_e(record.error)}</div>' if record.error else ""
    when = record.when.replace("+00:00", "Z")
    return (
        f'<li class="r-{_e(record.result)}" data-key="{_e(read.key)}">'
        f'<time datetime="{_e(record.when)}">{_e(when)}</time> '
        f'<span class="result">{_e(record.result)}</span><br><code>{_e(what)}</code>{digest} '
        f'from {_e(record.source_account)}<div class="more">{_e(record.who)}</div>{error}</li>'
    )
