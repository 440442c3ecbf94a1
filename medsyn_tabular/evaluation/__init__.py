"""Evaluation engine for synthetic tables: fidelity, utility, privacy and fairness in one report.

``evaluate_tabular(real, synthetic, target=..., holdout=...)`` returns a :class:`medsyn_core.report.Report`
(JSON / self-contained HTML). Engines never import Streamlit; the Evaluation page and the CLI call this.
"""

from medsyn_tabular.evaluation.columns import infer_column_kinds, prepare_tables, read_table_csv
from medsyn_tabular.evaluation.report import evaluate_tabular

__all__ = ["evaluate_tabular", "infer_column_kinds", "prepare_tables", "read_table_csv"]
