"""Streamlit rendering of a :class:`medsyn_core.report.Report` (for the app's pages only; engines never
import this module). Used by the Evaluation page and, after sampling, by the Tabular page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medsyn_core.report import Report, _fmt, verdict


def _metric_rows(section) -> pd.DataFrame:
    rows = []
    for m in section.metrics:
        rows.append({"metric": m.label, "value": m.formatted(), "verdict": verdict(m.good),
                     "compare with": (f"{_fmt(m.reference)} ({m.reference_label})"
                                      if m.reference is not None else ""),
                     "what it means": m.explanation})
    return pd.DataFrame(rows)


def _table_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    # Mixed-type object columns trip Arrow; show them as text.
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].map(_fmt)
    return frame


def render_report(report: Report, key: str = "report") -> None:
    """The header (model, data source, ε, date, version), the headline and every failed check first, then
    each section: summary, metrics with their verdicts in words, tables, figures, and download buttons for
    the JSON and the self-contained HTML file."""
    header = report.header()
    st.markdown("  \n".join(f"**{k}:** {v}" for k, v in header.items()))
    problems = report.problems()
    if problems:
        st.warning(report.headline() + "\n\n" + "\n".join(f"- {p}" for p in problems))
    else:
        st.success(report.headline())
    with st.expander("What was compared", expanded=False):
        st.table(pd.DataFrame({"": [str(v) for v in report.inputs.values()]},
                              index=[str(k) for k in report.inputs]))
    for section in report.sections:
        st.subheader(section.title)
        if section.summary:
            st.markdown(section.summary)
        if section.metrics:
            st.dataframe(_metric_rows(section), hide_index=True, width="stretch")
        for table in section.tables:
            with st.expander(table.title):
                if table.rows:
                    st.dataframe(_table_frame(table.rows), hide_index=True, width="stretch")
                if table.caption:
                    st.caption(table.caption)
        for fig in section.figures:
            st.image(fig.png_bytes, caption=f"{fig.title}. {fig.caption}")
    left, right = st.columns(2)
    left.download_button("Download JSON", report.to_json(), file_name="evaluation_report.json",
                         mime="application/json", key=f"{key}_json")
    right.download_button("Download HTML", report.to_html(), file_name="evaluation_report.html",
                          mime="text/html", key=f"{key}_html")
