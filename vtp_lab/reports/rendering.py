"""How a report renders: the :class:`Report` dataclass, as HTML, Markdown, JSON, text and in a notebook.

A report is frames (``tables``), headline numbers (``headline``) and chart
specifications (Vega-Lite). It renders in a notebook (``_repr_mimebundle_``: HTML and
text), writes a standalone HTML file whose charts are inline SVG (``to_html``: nothing
loads from the network), Markdown (``to_markdown``) and a JSON-ready dict (``to_dict``),
which :meth:`Report.from_dict` reads back.

Example:
    >>> r = Report(kind="quality", title="Q", scope={}, headline={"sessions": 1200}, tables={})
    >>> r.to_markdown().splitlines()[6]
    '| sessions | 1,200 |'
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

import polars as pl

__all__ = ["REPORT_KINDS", "Report", "ReportKind"]

ReportKind = Literal["student", "attendance", "engagement", "performance", "quality", "compliance"]
REPORT_KINDS: Final[tuple[ReportKind, ...]] = get_args(ReportKind)


def _jsonable(value: Any) -> Any:
    """A value as JSON can hold it: dates as ISO text, NaN and infinities as null, containers throughout."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _cell(value: Any) -> str:
    """A table cell's text: a float to the digits its size warrants (1,523 / 83.3 / 0.529), the rest as JSON has it.

    Example:
        >>> [_cell(v) for v in (1523.44, 83.333, 0.5285191018518519, 0.0, 7, None)]
        ['1,523', '83.3', '0.529', '0', '7', '']
    """
    value = _jsonable(value)
    if isinstance(value, float):
        size = abs(value)
        return f"{value:,.0f}" if size >= 100 or size == 0 else f"{value:.1f}" if size >= 1 else f"{value:.3g}"
    return "" if value is None else str(value)


_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222;line-height:1.4}"
    "h1{margin-bottom:.2em}p.scope{color:#555;margin-top:0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;margin:.8em 0;font-size:.92em;display:block;max-width:100%;overflow-x:auto}"
    "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}"
    "table.headline th{width:16em}figure{margin:1em 0}figure svg{max-width:100%;height:auto}"
    "footer{margin-top:2.5em;padding-top:.6em;border-top:1px solid #ddd;color:#666;font-size:.85em}"
    "@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr,figure{break-inside:avoid}"
    "tr:nth-child(even) td{background:none}}"
)
"""The HTML reports' style: readable tables, charts that fit the page, and a print layout (no remote fonts)."""


@dataclass(frozen=True)
class Report:
    """A report: what it covers, headline numbers, tables, charts.

    Example:
        >>> import json
        >>> tables = {"t": pl.DataFrame({"a": [1]})}
        >>> r = Report(kind="compliance", title="t", scope={}, headline={"rows": 1}, tables=tables)
        >>> Report.from_dict(json.loads(json.dumps(r.to_dict()))).tables["t"].equals(r.tables["t"])
        True
    """

    kind: ReportKind
    title: str
    scope: dict[str, str | None]
    headline: dict[str, Any]
    tables: dict[str, pl.DataFrame]
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = ""
    """Where the data came from (the Lab's store), for the page's footer."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tables as lists of rows).

        Example:
            >>> import json
            >>> json.dumps(Report(kind="quality", title="t", scope={}, headline={}, tables={}).to_dict())[:18]
            '{"kind": "quality"'
        """
        return {
            "kind": self.kind,
            "title": self.title,
            "scope": self.scope,
            "generated_at": self.generated_at.isoformat(),
            "source": self.source,
            "headline": {k: _jsonable(v) for k, v in self.headline.items()},
            "notes": list(self.notes),
            "tables": {
                name: [{k: _jsonable(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
                for name, frame in self.tables.items()
            },
            "charts": _jsonable(self.charts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report back from :meth:`to_dict` (tables as frames again; types as JSON keeps them).

        Example:
            >>> Report.from_dict({"kind": "quality", "title": "t", "scope": {}, "headline": {}, "tables": {}}).kind
            'quality'
        """
        return cls(
            kind=data["kind"],
            title=data["title"],
            scope=data["scope"],
            headline=data["headline"],
            tables={name: pl.DataFrame(rows, infer_schema_length=None) for name, rows in data["tables"].items()},
            charts=data.get("charts", {}),
            notes=tuple(data.get("notes", ())),
            generated_at=datetime.fromisoformat(data["generated_at"]) if "generated_at" in data else datetime.now(UTC),
            source=data.get("source", ""),
        )

    def _headline_rows(self) -> list[tuple[str, str]]:
        def show(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:,.2f}"
            if isinstance(v, int):
                return f"{v:,}"
            return "-" if v is None else str(v)

        return [(k.replace("_", " "), show(v)) for k, v in self.headline.items()]

    def to_markdown(self, *, rows: int = 20) -> str:
        """The report as Markdown: headline, notes and the first ``rows`` of each table.

        Example:
            >>> Report(kind="quality", title="Q", scope={}, headline={"x": 1}, tables={}).to_markdown().splitlines()[0]
            '# Q'
        """
        lines = [f"# {self.title}", ""]
        scope = ", ".join(f"{k} {v}" for k, v in self.scope.items() if v) or "everything stored"
        lines += [f"Scope: {scope}. Generated {self.generated_at:%Y-%m-%d %H:%M} UTC.", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self._headline_rows()]
        for note in self.notes:
            lines += ["", f"- {note}"]
        for name, frame in self.tables.items():
            lines += ["", f"## {name.replace('_', ' ')}", ""]
            head = frame.head(rows)
            lines.append("| " + " | ".join(head.columns) + " |")
            lines.append("|" + "---|" * len(head.columns))
            lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
            if frame.height > rows:
                lines.append(f"\n({frame.height - rows:,} more rows)")
        return "\n".join(lines) + "\n"

    def _html_body(self, *, charts: bool, rows: int = 20) -> str:
        esc = html.escape
        scope = ", ".join(f"{k.removesuffix('_id')} {v}" for k, v in self.scope.items() if v) or "everything stored"
        parts = [f"<h1>{esc(self.title)}</h1>", f"<p class='scope'>{esc(scope)}</p>", "<table class='headline'>"]
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self._headline_rows()]
        parts.append("</table>")
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in self.notes) + "</ul>")
        if charts:
            import vl_convert

            for name, spec in self.charts.items():
                parts.append(
                    f"<h2>{esc(name.replace('_', ' '))}</h2><figure>{vl_convert.vegalite_to_svg(spec)}</figure>"
                )
        for name, frame in self.tables.items():
            head = frame.head(rows)
            parts.append(
                f"<h2>{esc(name.replace('_', ' '))}</h2><table><tr>"
                + "".join(f"<th>{esc(c)}</th>" for c in head.columns)
                + "</tr>"
            )
            parts += ["<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>" for row in head.iter_rows()]
            parts.append("</table>" + (f"<p>({frame.height - rows:,} more rows)</p>" if frame.height > rows else ""))
        return "\n".join(parts)

    def to_html(self, path: str | Path | None = None) -> str:
        """A standalone HTML page (charts as inline SVG, no remote scripts or styles); written to ``path`` if given.

        Example:
            >>> "<script src" in Report(kind="quality", title="Q", scope={}, headline={}, tables={}).to_html()
            False
        """
        page = (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_STYLE}</style></head><body>{self._html_body(charts=True)}{self._footer()}</body></html>"
        )
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _footer(self) -> str:
        """The page's last line: when, from what, and which version of the definitions (``docs/metrics.md``)."""
        from vtp_lab import __version__

        source = f" from {self.source}" if self.source else ""
        return (
            f"<footer>Generated {self.generated_at:%Y-%m-%d %H:%M} UTC{html.escape(source)} by vtp_lab "
            f"{__version__}; the measures follow vtp_lab {__version__}'s definitions (docs/metrics.md, "
            "docs/sessions.md).</footer>"
        )

    def __str__(self) -> str:
        width = max((len(k) for k, _ in self._headline_rows()), default=0)
        lines = [self.title, "=" * len(self.title)] + [f"{k:<{width}}  {v}" for k, v in self._headline_rows()]
        lines += [f"- {n}" for n in self.notes]
        lines += [f"[{name}: {frame.height:,} rows]" for name, frame in self.tables.items()]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self._html_body(charts=False), "text/plain": str(self)}
