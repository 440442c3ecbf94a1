"""Differentially private preprocessing: fills the same :class:`ColumnEncoding` s as
:meth:`TableTransformer.fit`, but every statistic is either declared public in the metadata (schema file)
or released by a DP mechanism from the budget's preprocessing share.

Public (never measured): the column names and kinds, the row count n, and whatever the metadata declares
(``min``/``max``, ``categories``, ``nullable: false``, ``dates_only: true``). Everything else:

* numeric column (continuous, integer, datetime in seconds): bounds from metadata, else
  :func:`approx_bounds` (one call); then one :func:`numeric_histogram` over the bounds with missing values
  as an extra bin (noisy missing rate). The Gaussian-mixture modes are fitted to points drawn from the
  noisy histogram (post-processing: no extra cost, no raw value involved).
* categorical column with declared categories: one :func:`laplace_histogram` over the declared domain
  plus a missing bin; frequencies, rare-category grouping and the missing rate come from these noisy
  counts only (each count plus one noise standard deviation, √2/ε, so that frequencies shrink towards
  uniform when the noise dominates: post-processing).
* categorical column without declared categories: one :func:`stable_categories` call (ε and a share of
  δ); only categories above the noisy threshold are released. Rows holding an unreleased category are
  encoded in an ``OTHER`` slot and generated as missing values (their labels are never known).

The preprocessing ε is split equally over all mechanism calls (sequential composition) and the
preprocessing δ equally over the ``stable_categories`` calls. Every call adds a ledger entry; declared
public statistics are listed in ``ledger.public_statistics``; ``transformer.provenance`` says ``dp`` or
``metadata`` for every statistic (never ``data``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medsyn_core.privacy import PrivacyBudget, PrivacyError, PrivacyLedger
from medsyn_core.privacy.ledger import LedgerEntry
from medsyn_core.privacy.mechanisms import (
    approx_bounds,
    laplace_histogram,
    missing_rate_of_n,
    numeric_histogram,
    stable_categories,
)
from medsyn_tabular.data.schema import SchemaError, TableSchema
from medsyn_tabular.transformers.table import (
    MISSING,
    OTHER,
    ColumnEncoding,
    TableTransformer,
    _category_key,
    _json_value,
    _numeric_values,
)

HISTOGRAM_BINS = 32  # bins of the noisy histogram of a continuous column
MAX_INTEGER_BINS = 64  # integer columns with a range up to this get one bin per value
VGM_POINTS = 2000  # points drawn from the noisy histogram to fit the mixture (a public constant)


def _declared(metadata: dict[str, Any] | None, col) -> dict[str, Any]:
    """The public metadata of one column: the metadata file's entry, completed from the schema."""
    entry = ((metadata or {}).get("columns") or {}).get(col.name) or {}
    meta = dict(entry) if isinstance(entry, dict) else {}
    for key in ("min", "max", "categories"):
        if meta.get(key) is None and getattr(col, key) is not None:
            meta[key] = getattr(col, key)
    return meta


def _to_number(value: Any, kind: str) -> float:
    return pd.Timestamp(value).value / 1e9 if kind == "datetime" else float(value)


def _typed(label: Any, dtype) -> Any:
    """A declared or released category label in the column's type (from the dtype alone, never from
    which values occur): 3, "3" and 3.0 are one code."""
    try:
        if pd.api.types.is_bool_dtype(dtype):
            return {"true": True, "false": False, "1": True, "0": False}.get(str(label).lower(), label)
        if pd.api.types.is_float_dtype(dtype):
            return float(label)
        if pd.api.types.is_integer_dtype(dtype):
            return int(float(label))
    except (TypeError, ValueError):
        return label
    return label if isinstance(label, str) else str(label) if pd.api.types.is_object_dtype(dtype) else label


def _plan_calls(schema: TableSchema, metadata) -> tuple[list[tuple[str, str]], int]:
    """(column, mechanism) for every DP release, in order, and how many need δ (stable categories)."""
    calls = []
    for col in schema.modelled:
        meta = _declared(metadata, col)
        if col.kind in ("continuous", "integer", "datetime"):
            if meta.get("min") is None or meta.get("max") is None:
                calls.append((col.name, "approx-bounds"))
            calls.append((col.name, "numeric-histogram"))
        elif meta.get("categories") is not None:
            calls.append((col.name, "laplace-histogram"))
        else:
            calls.append((col.name, "stable-categories"))
    return calls, sum(1 for _, m in calls if m == "stable-categories")


def _points_from_histogram(edges: np.ndarray, counts: np.ndarray, unit_bins: bool,
                           rng: np.random.Generator) -> np.ndarray:
    """``VGM_POINTS`` values drawn from a noisy histogram: bin ∝ count, uniform inside the bin (its centre
    for one-value bins)."""
    total = counts.sum()
    p = counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))
    b = rng.choice(len(counts), size=VGM_POINTS, p=p)
    if unit_bins:
        return (edges[b] + edges[b + 1]) / 2
    return rng.uniform(edges[b], edges[b + 1])


def fit_private(transformer: TableTransformer, df: pd.DataFrame, schema: TableSchema,
                metadata: dict[str, Any] | None, budget: PrivacyBudget, ledger: PrivacyLedger,
                unit_rows: int = 1) -> TableTransformer:
    """Fill ``transformer`` with DP statistics of ``df`` (see the module docstring); returns it.

    ``schema`` and ``metadata`` are the declared ones (kinds, bounds, categories, nullability: never read
    from ``df``); ``unit_rows`` is the most rows one privacy unit (a patient) holds, the L1 sensitivity of
    every count. Each column's decoded dtype comes from its declared kind and the declared or DP-released
    categories, never from ``df``'s dtypes (which flip when one row with a missing value is added)."""
    calls, n_stable = _plan_calls(schema, metadata)
    eps_call = budget.epsilon_preprocessing / max(1, len(calls))
    delta_call = budget.delta_preprocessing / n_stable if n_stable else 0.0
    post_rng = np.random.default_rng(transformer.seed)  # post-processing only; noise has its own RNG
    transformer.columns, transformer.provenance = [], {}

    def record(column: str, mechanism: str, statistic: str, delta: float = 0.0, **details) -> None:
        ledger.add(LedgerEntry("preprocessing", mechanism, f"{column}: {statistic}", epsilon=eps_call,
                               delta=delta, details={"sensitivity": unit_rows, "noise": "discrete laplace",
                                                     "laplace_scale": unit_rows / eps_call, **details}))

    for col in schema.modelled:
        meta = _declared(metadata, col)
        s = df[col.name]
        nullable = meta.get("nullable", True) is not False
        enc = ColumnEncoding(name=col.name, kind=col.kind, dtype=declared_dtype(col.kind, nullable))
        prov: dict[str, str] = {}
        if not nullable and s.isna().any():
            raise SchemaError(f"Column {col.name!r} is declared 'nullable: false' but has missing values. "
                              "Remove that setting from the metadata file or fill the missing cells.")
        if enc.is_numeric:
            x = _numeric_values(s, col.kind)
            lo = None if meta.get("min") is None else _to_number(meta["min"], col.kind)
            hi = None if meta.get("max") is None else _to_number(meta["max"], col.kind)
            if lo is None or hi is None:
                try:
                    dp_lo, dp_hi = approx_bounds(x, eps_call, unit_rows)
                except PrivacyError as exc:
                    raise PrivacyError(
                        f"Column {col.name!r}: not enough rows to estimate its range privately with "
                        f"ε = {eps_call:.3g} per statistic. Declare its bounds (min and max) as public "
                        "metadata in a schema file (--metadata), or raise ε.") from exc
                record(col.name, "approx-bounds", "bounds", bins="public powers of two")
                lo, hi = (dp_lo if lo is None else lo), (dp_hi if hi is None else hi)
                prov["bounds"] = "dp" if "min" not in meta and "max" not in meta else "metadata+dp"
            else:
                ledger.public_statistics.append(f"{col.name}: bounds")
                prov["bounds"] = "metadata"
            cap = meta.get("phi_max")  # a PHI rule (e.g. age90) caps the range whatever its source
            if cap is not None:
                hi = min(hi, float(cap))
                lo = min(lo, hi - 1.0) if lo >= hi else lo
                prov["bounds"] += "+phi"
            if not hi > lo:
                raise SchemaError(f"Column {col.name!r}: declared min ({lo}) must be below max ({hi}).")
            unit_bins = col.kind == "integer" and float(lo).is_integer() and float(hi).is_integer() \
                and hi - lo + 1 <= MAX_INTEGER_BINS
            if unit_bins:
                edges, counts, missing_count = numeric_histogram(x, lo - 0.5, hi + 0.5, int(hi - lo + 1),
                                                                 eps_call, unit_rows)
            else:
                edges, counts, missing_count = numeric_histogram(x, lo, hi, HISTOGRAM_BINS, eps_call,
                                                                 unit_rows)
            record(col.name, "numeric-histogram", "histogram and missing rate", bins=len(counts) + 1)
            enc.low, enc.high = float(lo), float(hi)
            # missingness is estimated inside the column's own histogram (one more bin)
            enc.missing_rate = missing_rate_of_n(missing_count, len(df), unit_rows / eps_call) \
                if nullable else 0.0
            # the network learns missingness from the real rows (under DP-SGD); the slot exists unless the
            # metadata says the column is never missing (whether it is must not be read from the data)
            enc.has_missing_slot = nullable
            prov["missing_rate"] = "dp" if nullable else "metadata"
            enc.datetime_dates_only = bool(meta.get("dates_only", False)) if col.kind == "datetime" else False
            transformer._fit_modes(enc, _points_from_histogram(edges, counts, unit_bins, post_rng))
            prov["modes"] = "dp"
        else:
            missing = s.isna().to_numpy()
            if meta.get("categories") is not None:
                declared_cats = list(meta["categories"])
                enc.dtype = declared_dtype(col.kind, nullable, declared_cats)
                keys = s.dropna().map(_category_key)
                position = {_category_key(c): i for i, c in enumerate(declared_cats)}
                unknown = sorted(set(keys) - set(position))
                if unknown:
                    raise SchemaError(f"Column {col.name!r} holds values not in its declared categories: "
                                      f"{len(unknown)} value(s). Add them to the metadata file or fix the "
                                      "data.")
                counts = np.bincount(keys.map(position).to_numpy(dtype=int), minlength=len(declared_cats))
                noisy = np.clip(laplace_histogram(np.append(counts, missing.sum()), eps_call, unit_rows),
                                0, None).astype(float)
                record(col.name, "laplace-histogram", "category counts and missing rate",
                       bins=len(declared_cats) + 1)
                cats = [_typed(c, enc.dtype) for c in declared_cats]
                ledger.public_statistics.append(f"{col.name}: categories")
                prov["categories"] = "metadata"
                cat_noisy, suppressed = noisy[:-1], None
                missing_noisy = float(noisy[-1]) if nullable else 0.0
            else:
                tokens = np.asarray([MISSING if m else _token(v) for v, m in
                                     zip(s.astype(object).to_numpy(), missing, strict=True)], dtype=object)
                released = stable_categories(tokens, eps_call, delta_call, unit_rows)
                record(col.name, "stable-categories", "category set, counts and missing rate",
                       delta=delta_call, threshold=released.threshold)
                counts_of = dict(zip(released.categories, released.noisy_counts, strict=True))
                missing_noisy = float(counts_of.pop(MISSING, 0.0)) if nullable else 0.0
                if not counts_of:
                    raise PrivacyError(
                        f"Column {col.name!r}: no category is frequent enough to be released at ε = "
                        f"{eps_call:.3g} per statistic (noisy threshold {released.threshold:.0f} rows). "
                        "Declare its categories as public metadata in a schema file (--metadata), or "
                        "raise ε.")
                # the labels' type is read from the released labels (post-processing), not from df
                enc.dtype = declared_dtype(col.kind, nullable, list(counts_of))
                cats = [_typed(c, enc.dtype) for c in counts_of]
                cat_noisy = np.asarray(list(counts_of.values()), dtype=float)
                suppressed = released.suppressed(len(df))  # n is public
                prov["categories"] = "dp"
            # post-processing: one noise standard deviation (√2·k/ε) added to every released count shrinks
            # the frequencies towards uniform when the noise dominates (small n or ε), instead of letting
            # a clipped-to-zero count remove a category from the conditional vector
            cat_noisy = cat_noisy + np.sqrt(2.0) * unit_rows / eps_call
            total = cat_noisy.sum() + missing_noisy + (suppressed or 0.0)
            freq = cat_noisy / total
            rare = freq < transformer.rare_fraction
            if rare.sum() < 2:
                rare[:] = False
            enc.slots = [_json_value(v) for v, r in zip(cats, rare, strict=True) if not r]
            enc.slot_freq = freq[~rare].tolist()
            other_freq = float(freq[rare].sum() + (suppressed or 0.0) / total)
            if rare.any():
                enc.other_values = [_json_value(v) for v, r in zip(cats, rare, strict=True) if r]
                enc.other_freq = (freq[rare] / freq[rare].sum()).tolist() if freq[rare].sum() > 0 else \
                    [1.0 / rare.sum()] * int(rare.sum())
                prov["rare_grouping"] = "dp"
            if rare.any() or suppressed is not None:  # unreleased labels need a slot too
                enc.slots.append(OTHER)
                enc.slot_freq.append(other_freq)
            # the rate from the missing bin and the public n (never shrunk towards uniform: a complete
            # column stays complete unless its noisy missing count stands above the noise)
            enc.missing_rate = missing_rate_of_n(missing_noisy, len(df), unit_rows / eps_call) \
                if nullable else 0.0
            if nullable:
                enc.has_missing_slot = True
                enc.slots.append(MISSING)
                enc.slot_freq.append(enc.missing_rate)
            prov["missing_rate"] = "dp" if nullable else "metadata"
            prov["frequencies"] = "dp"
        if not nullable:
            ledger.public_statistics.append(f"{col.name}: never missing")
        transformer.columns.append(enc)
        transformer.provenance[col.name] = prov
    return transformer._finish_fit()


def _token(value: Any) -> str:
    """Text of a category for the DP category release: numbers by value (3 and 3.0 are one code), text
    as written (so '02139' keeps its leading zero), booleans as 'True'/'False'."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _category_key(value)
    return str(value)


def declared_dtype(kind: str, nullable: bool, categories: list | None = None) -> str:
    """The pandas dtype a column is decoded to, from its declared kind, nullability and category labels
    only (a DP model never takes a dtype from the rows)."""
    if kind == "continuous":
        return "float64"
    if kind == "integer":
        return "Int64" if nullable else "int64"
    if kind == "datetime":
        return "datetime64[ns]"
    labels = [c for c in (categories or []) if c is not None]
    if not labels:
        return "object"
    if all(isinstance(c, (bool, np.bool_)) or str(c).lower() in ("true", "false") for c in labels):
        return "boolean" if nullable else "bool"
    numbers = []
    for c in labels:
        if isinstance(c, (bool, np.bool_)):
            return "object"
        try:
            numbers.append(float(c))
        except (TypeError, ValueError):
            return "object"
    if all(np.isfinite(x) and float(x).is_integer() for x in numbers):
        return "Int64" if nullable else "int64"
    return "float64"


def domain_calls(schema: TableSchema, metadata) -> tuple[list[tuple[str, str]], int]:
    """The DP releases a marginal model's domain needs: bounds of numbers without declared min/max, the
    category set of categorical columns without declared categories (nothing else: the marginals are
    measured by the model). (column, mechanism) in order, and how many need δ."""
    calls = []
    for col in schema.modelled:
        meta = _declared(metadata, col)
        if col.kind in ("continuous", "integer", "datetime"):
            if meta.get("min") is None or meta.get("max") is None:
                calls.append((col.name, "approx-bounds"))
        elif meta.get("categories") is None:
            calls.append((col.name, "stable-categories"))
    return calls, sum(1 for _, m in calls if m == "stable-categories")


def fit_domain_private(transformer: TableTransformer, df: pd.DataFrame, schema: TableSchema,
                       metadata: dict[str, Any] | None, epsilon: float, delta: float, ledger: PrivacyLedger,
                       unit_rows: int = 1) -> TableTransformer:
    """Fill ``transformer`` with the public domain of every column for a marginal-based model (AIM): the
    declared bounds and categories, or DP ones (:func:`domain_calls`, ``epsilon`` split equally over the
    calls, ``delta`` over the category releases). No histogram, frequency or missing rate is released
    here (the model measures its own marginals, missing values included); frequencies are uniform
    placeholders. Numbers get one mode spanning their range (:func:`~medsyn_tabular.models.aim.range_modes`).
    """
    calls, n_stable = domain_calls(schema, metadata)
    eps_call = epsilon / max(1, len(calls))
    delta_call = delta / n_stable if n_stable else 0.0
    transformer.columns, transformer.provenance = [], {}

    def record(column: str, mechanism: str, statistic: str, delta_used: float = 0.0, **details) -> None:
        noise = {"sensitivity": unit_rows, "noise": "discrete laplace", "laplace_scale": unit_rows / eps_call}
        ledger.add(LedgerEntry("preprocessing", mechanism, f"{column}: {statistic}", epsilon=eps_call,
                               delta=delta_used, details={**noise, **details}))

    for col in schema.modelled:
        meta = _declared(metadata, col)
        s = df[col.name]
        nullable = meta.get("nullable", True) is not False
        enc = ColumnEncoding(name=col.name, kind=col.kind, dtype=declared_dtype(col.kind, nullable))
        prov: dict[str, str] = {"frequencies": "none (measured by the model)"}
        if not nullable and s.isna().any():
            raise SchemaError(f"Column {col.name!r} is declared 'nullable: false' but has missing values. "
                              "Remove that setting from the metadata file or fill the missing cells.")
        if enc.is_numeric:
            x = _numeric_values(s, col.kind)
            lo = None if meta.get("min") is None else _to_number(meta["min"], col.kind)
            hi = None if meta.get("max") is None else _to_number(meta["max"], col.kind)
            if lo is None or hi is None:
                try:
                    dp_lo, dp_hi = approx_bounds(x, eps_call, unit_rows)
                except PrivacyError as exc:
                    raise PrivacyError(
                        f"Column {col.name!r}: not enough rows to estimate its range privately with "
                        f"ε = {eps_call:.3g}. Declare its bounds (min and max) in the schema file, or "
                        "raise ε.") from exc
                record(col.name, "approx-bounds", "bounds", bins="public powers of two")
                lo, hi = (dp_lo if lo is None else lo), (dp_hi if hi is None else hi)
                prov["bounds"] = "dp" if "min" not in meta and "max" not in meta else "metadata+dp"
            else:
                ledger.public_statistics.append(f"{col.name}: bounds")
                prov["bounds"] = "metadata"
            cap = meta.get("phi_max")
            if cap is not None:
                hi = min(hi, float(cap))
                lo = min(lo, hi - 1.0) if lo >= hi else lo
                prov["bounds"] += "+phi"
            if not hi > lo:
                raise SchemaError(f"Column {col.name!r}: declared min ({lo}) must be below max ({hi}).")
            enc.low, enc.high = float(lo), float(hi)
            enc.has_missing_slot = nullable
            enc.datetime_dates_only = bool(meta.get("dates_only", False)) if col.kind == "datetime" else False
            enc.means, enc.stds, enc.weights = [(lo + hi) / 2], [(hi - lo) / 8], [1.0]
        else:
            missing = s.isna().to_numpy()
            suppressed = False
            if meta.get("categories") is not None:
                declared_cats = list(meta["categories"])
                enc.dtype = declared_dtype(col.kind, nullable, declared_cats)
                position = {_category_key(c) for c in declared_cats}
                unknown = set(s.dropna().map(_category_key)) - position
                if unknown:
                    raise SchemaError(f"Column {col.name!r} holds values not in its declared categories: "
                                      f"{len(unknown)} value(s). Add them to the metadata file or fix the "
                                      "data.")
                cats = [_typed(c, enc.dtype) for c in declared_cats]
                ledger.public_statistics.append(f"{col.name}: categories")
                prov["categories"] = "metadata"
            else:
                tokens = np.asarray([MISSING if m else _token(v) for v, m in
                                     zip(s.astype(object).to_numpy(), missing, strict=True)], dtype=object)
                released = stable_categories(tokens, eps_call, delta_call, unit_rows)
                record(col.name, "stable-categories", "category set", delta_used=delta_call,
                       threshold=released.threshold)
                labels = [c for c in released.categories if c != MISSING]
                if not labels:
                    raise PrivacyError(
                        f"Column {col.name!r}: no category is frequent enough to be released at ε = "
                        f"{eps_call:.3g}. Declare its categories in the schema file, or raise ε.")
                enc.dtype = declared_dtype(col.kind, nullable, labels)
                cats = [_typed(c, enc.dtype) for c in labels]
                suppressed = True  # rows of unreleased labels need a slot (generated as missing)
                prov["categories"] = "dp"
            enc.slots = [_json_value(v) for v in cats] + ([OTHER] if suppressed else [])
            if nullable:
                enc.has_missing_slot = True
                enc.slots.append(MISSING)
            enc.slot_freq = [1.0 / len(enc.slots)] * len(enc.slots)
        prov["missing_rate"] = "measured by the model" if nullable else "metadata"
        if not nullable:
            ledger.public_statistics.append(f"{col.name}: never missing")
        transformer.columns.append(enc)
        transformer.provenance[col.name] = prov
    return transformer._finish_fit()
