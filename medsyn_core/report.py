"""The evaluation report shared by the tabular and imaging engines.

A :class:`Report` is a list of :class:`Section` objects (fidelity, utility, privacy, fairness, imaging
metrics …), each holding :class:`Metric` numbers with a one-line plain-language explanation, tables and
figures (PNG). It exports to JSON (numbers only plus base64 figures) and to one self-contained HTML file
(no external CSS, JavaScript or images). Engines build sections; the app and the CLI only render them.

Every report carries its **context** (:attr:`Report.context`, made by :func:`model_context`): which model
(name, kind, version), trained on which data source (and the hash prefix of the file), its privacy
(ε, δ and the protected unit, or "DP: off"), the evaluation date and the MedSyn version, so that a report
read later, or forwarded, still says what it is about. Verdicts are words ("good", "below the bar"),
never emoji (which render as empty boxes without an emoji font); :meth:`Report.problems` lists every
failed check, and :meth:`Report.headline` says "No problems found" only when there is none.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medsyn_core import __version__
from medsyn_core.files import atomic_write_text


@dataclass
class Metric:
    """One number with what it means.

    ``good`` is True/False when the value passes/fails the threshold stated in ``explanation`` and None
    when it is informational. ``reference`` is the number to compare against (e.g. train-on-real score or
    the real-vs-real floor), with ``reference_label`` saying what it is.
    """

    key: str
    label: str
    value: float | int | str | None
    explanation: str
    unit: str = ""
    good: bool | None = None
    reference: float | None = None
    reference_label: str = ""

    def formatted(self) -> str:
        return _fmt(self.value) + (f" {self.unit}" if self.unit and self.value is not None else "")


@dataclass
class Table:
    """Rows of a small table (list of dicts with the same keys)."""

    key: str
    title: str
    rows: list[dict[str, Any]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG figure, stored base64-encoded so that JSON and HTML stay self-contained."""

    key: str
    title: str
    png_base64: str
    caption: str = ""

    @classmethod
    def from_matplotlib(cls, key: str, title: str, fig, caption: str = "", dpi: int = 110) -> Figure:
        """Render a matplotlib figure to PNG and close it."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return cls(key, title, base64.b64encode(buf.getvalue()).decode("ascii"), caption)

    @property
    def png_bytes(self) -> bytes:
        return base64.b64decode(self.png_base64)


@dataclass
class Section:
    """A group of results, e.g. ``fidelity``; ``summary`` states plainly what is good or bad."""

    key: str
    title: str
    summary: str = ""
    metrics: list[Metric] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def metric(self, key: str) -> Metric:
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(f"section {self.key!r} has no metric {key!r}")


@dataclass
class Report:
    """An evaluation report: what was compared (``inputs``), sections of results and plain warnings."""

    title: str
    kind: str  # 'tabular' or 'imaging'
    inputs: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    medsyn_version: str = __version__
    context: dict[str, Any] = field(default_factory=dict)

    def header(self) -> dict[str, str]:
        """The report's header lines: its context, the date and the MedSyn version (label -> text)."""
        lines = {CONTEXT_LABELS.get(k, k): _fmt(v) for k, v in self.context.items() if v not in (None, "")}
        lines["evaluated"] = self.created_at.replace("T", " ")
        lines["MedSyn version"] = self.medsyn_version
        return lines

    def problems(self) -> list[str]:
        """Every check that failed: the warnings, then each metric below its bar (by label)."""
        failed = [f"{m.label}: {m.formatted()}, below the bar" + (
            f" (compare with {_fmt(m.reference)}, {m.reference_label})" if m.reference is not None else "")
            for s in self.sections for m in s.metrics if m.good is False]
        return list(self.warnings) + failed

    def headline(self) -> str:
        """One sentence: 'No problems found by the checks below.' or how many checks failed."""
        bad = sum(1 for s in self.sections for m in s.metrics if m.good is False)
        if not bad and not self.warnings:
            return "No problems found by the checks below."
        parts = []
        if bad:
            parts.append(f"{bad} metric{'s' * (bad != 1)} below {'their' if bad != 1 else 'its'} bar")
        if self.warnings:
            parts.append(f"{len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}")
        return "Problems found: " + " and ".join(parts) + "; see below."

    def add(self, section: Section) -> Section:
        if any(s.key == section.key for s in self.sections):
            raise ValueError(f"the report already has a section {section.key!r}")
        self.sections.append(section)
        return section

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"the report has no section {key!r}")

    # -- export -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        sections = [
            Section(
                key=s["key"], title=s["title"], summary=s.get("summary", ""),
                metrics=[Metric(**m) for m in s.get("metrics", [])],
                tables=[Table(**t) for t in s.get("tables", [])],
                figures=[Figure(**f) for f in s.get("figures", [])],
            )
            for s in data.get("sections", [])
        ]
        return cls(title=data["title"], kind=data["kind"], inputs=data.get("inputs", {}),
                   sections=sections, warnings=list(data.get("warnings", [])),
                   created_at=data.get("created_at", ""),
                   medsyn_version=data.get("medsyn_version", ""), context=dict(data.get("context") or {}))

    def to_html(self) -> str:
        return _render_html(self)

    def save(self, path: str | Path) -> Path:
        """Write the report as ``.json`` or ``.html`` (chosen by the suffix), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            return atomic_write_text(path, self.to_json() + "\n")
        if suffix in (".html", ".htm"):
            return atomic_write_text(path, self.to_html())
        raise ValueError(f"Cannot save a report as {path.name!r}: use a .json or .html file name.")


#: Readable labels of the context keys (see :func:`model_context`).
CONTEXT_LABELS = {"model": "model", "kind": "model kind", "version": "model version (trained)",
                  "data_source": "trained on", "data_hash": "data file (SHA-256 prefix)",
                  "privacy": "differential privacy", "privacy_unit": "protected unit",
                  "holdout": "holdout", "compared_with": "compared with"}


def verdict(good: bool | None) -> str:
    """The word for a metric's verdict: 'good', 'below the bar' or '' (informational)."""
    return "" if good is None else ("good" if good else "below the bar")


def model_context(card: dict[str, Any] | None, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """The context of a report about the model of ``card`` (any card MedSyn wrote): name, kind, version
    (its training time), data source and file hash, ε/δ and unit (or 'off'), holdout; ``extra`` adds or
    overrides entries (e.g. ``compared_with='real holdout of 61 rows'``)."""
    from medsyn_core.model_card import read_card

    context: dict[str, Any] = {}
    if card:
        view = read_card(card)
        privacy = view.privacy
        holdout = card.get("holdout") if isinstance(card.get("holdout"), dict) else None
        context = {
            "model": name or view.name, "kind": view.kind,
            "version": card.get("created") or card.get("trained_at"),
            "data_source": view.data_source, "data_hash": card.get("data_sha256_prefix"),
            "privacy": privacy.label.removeprefix("DP: ") if privacy.enabled else "off (no guarantee)",
            "privacy_unit": privacy.unit if privacy.enabled else None,
            "holdout": (f"{holdout.get('rows_held_out')} real rows kept back from training"
                        + (f", stratified by {holdout['stratify']}" if holdout.get("stratify") else "")
                        if holdout else None),
        }
    context.update(extra)
    return {k: v for k, v in context.items() if v is not None}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None and numpy scalars by Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
color:#1f2933;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #d9e2ec;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #d9e2ec;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f4f8} .good{color:#0b7a3e;font-weight:600} .bad{color:#b42318;font-weight:600}
.warn{background:#fff4e5;border-left:4px solid #f79009;padding:.5em 1em;margin:.4em 0}
.meta{color:#52606d;font-size:.9em} figure{margin:1em 0} img{max-width:100%}
figcaption{color:#52606d;font-size:.9em}
"""


def _render_html(report: Report) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
        f"<p class='meta'>MedSyn {esc(report.medsyn_version)} · {esc(report.created_at)} · "
        f"{esc(report.kind)} report</p>",
        "<table class='header'>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                                           for k, v in report.header().items()) + "</table>",
        f"<p><b>{esc(report.headline())}</b></p>",
    ]
    if report.inputs:
        out.append("<table>")
        for k, v in report.inputs.items():
            out.append(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>")
        out.append("</table>")
    for w in report.warnings:
        out.append(f"<div class='warn'><b>Warning:</b> {esc(w)}</div>")
    for s in report.sections:
        out.append(f"<h2>{esc(s.title)}</h2>")
        if s.summary:
            out.append(f"<p>{esc(s.summary)}</p>")
        if s.metrics:
            out.append("<table><tr><th>metric</th><th>value</th><th>verdict</th><th>compare with</th>"
                       "<th>what it means</th></tr>")
            for m in s.metrics:
                cls = "" if m.good is None else (" class='good'" if m.good else " class='bad'")
                ref = (f"{esc(_fmt(m.reference))} ({esc(m.reference_label)})"
                       if m.reference is not None else "")
                out.append(f"<tr><td>{esc(m.label)}</td><td{cls}>{esc(m.formatted())}</td>"
                           f"<td{cls}>{esc(verdict(m.good))}</td>"
                           f"<td>{ref}</td><td>{esc(m.explanation)}</td></tr>")
            out.append("</table>")
        for t in s.tables:
            out.append(f"<h3>{esc(t.title)}</h3>")
            if t.rows:
                cols = list(t.rows[0].keys())
                out.append("<table><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in cols) + "</tr>")
                for row in t.rows:
                    out.append("<tr>" + "".join(f"<td>{esc(_fmt(row.get(c)))}</td>" for c in cols)
                               + "</tr>")
                out.append("</table>")
            if t.caption:
                out.append(f"<p class='meta'>{esc(t.caption)}</p>")
        for f in s.figures:
            out.append(f"<figure><img alt='{esc(f.title)}' src='data:image/png;base64,{f.png_base64}'>"
                       f"<figcaption><b>{esc(f.title)}</b> {esc(f.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
