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

from dataclasses import asdict, dataclass, field
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


@dataclass
class ColumnRelease:
    """The DP statistics of one column, as released by one site (or summed over several sites).

    Numeric columns: ``bounds`` (lower, upper) used for the histogram, ``edges`` (bins+1,), noisy ``counts``
    (bins,) and the noisy ``missing`` count. Categorical columns: ``categories`` (labels as declared, or as
    released by :func:`stable_categories`), their noisy ``counts`` and the noisy ``missing`` count;
    ``released_total`` is the sum of the released counts of undeclared categories (for the suppressed-mass
    estimate from the public n). Every number is the output of a DP mechanism or public, so a release may
    leave its site and releases of disjoint tables may be added (:func:`combine_releases`).
    """

    name: str
    kind: str
    counts: list[float]
    missing: float
    bounds: tuple[float, float] | None = None
    edges: list[float] | None = None
    unit_bins: bool = False
    categories: list[Any] | None = None
    declared_categories: bool = False
    released_total: float | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    sites: int = 1  # how many sites' independent noise the counts hold (sets the noise floor)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bounds": list(self.bounds) if self.bounds is not None else None,
                "categories": None if self.categories is None else [_json_value(c) for c in self.categories]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnRelease:
        data = dict(data)
        if data.get("bounds") is not None:
            data["bounds"] = (float(data["bounds"][0]), float(data["bounds"][1]))
        return cls(**data)


def plan_epsilon(schema: TableSchema, metadata: dict[str, Any] | None, epsilon_preprocessing: float,
                 delta_preprocessing: float) -> tuple[float, float, int]:
    """(ε per mechanism call, δ per stable-categories call, number of calls) of the preprocessing: the
    share is split equally over the calls, from the declared schema and metadata alone (so every site of a
    federation computes the same plan)."""
    calls, n_stable = _plan_calls(schema, metadata)
    return (epsilon_preprocessing / max(1, len(calls)),
            delta_preprocessing / n_stable if n_stable else 0.0, len(calls))


def undeclared_bounds(schema: TableSchema, metadata: dict[str, Any] | None) -> list[str]:
    """Numeric columns whose range is not declared (their bounds must be released under DP)."""
    return [c.name for c in schema.modelled if c.kind in ("continuous", "integer", "datetime")
            and (_declared(metadata, c).get("min") is None or _declared(metadata, c).get("max") is None)]


def release_bounds(df: pd.DataFrame, schema: TableSchema, metadata: dict[str, Any] | None, eps_call: float,
                   ledger: PrivacyLedger, unit_rows: int = 1) -> dict[str, tuple[float, float]]:
    """ε-DP (lower, upper) of every numeric column without declared bounds (:func:`approx_bounds`, one
    ledger entry each); a federation takes the union of its sites' ranges (post-processing)."""
    out = {}
    for col in schema.modelled:
        if col.name not in undeclared_bounds(schema, metadata):
            continue
        try:
            out[col.name] = approx_bounds(_numeric_values(df[col.name], col.kind), eps_call, unit_rows)
        except PrivacyError as exc:
            raise PrivacyError(
                f"Column {col.name!r}: not enough rows to estimate its range privately with "
                f"ε = {eps_call:.3g} per statistic. Declare its bounds (min and max) as public "
                "metadata in a schema file (--metadata), or raise ε.") from exc
        _record(ledger, eps_call, unit_rows, col.name, "approx-bounds", "bounds", bins="public powers of two")
    return out


def _record(ledger: PrivacyLedger, eps_call: float, unit_rows: int, column: str, mechanism: str,
            statistic: str, delta: float = 0.0, **details) -> None:
    ledger.add(LedgerEntry("preprocessing", mechanism, f"{column}: {statistic}", epsilon=eps_call,
                           delta=delta, details={"sensitivity": unit_rows, "noise": "discrete laplace",
                                                 "laplace_scale": unit_rows / eps_call, **details}))


def release_statistics(df: pd.DataFrame, schema: TableSchema, metadata: dict[str, Any] | None,
                       eps_call: float, delta_call: float, ledger: PrivacyLedger, unit_rows: int = 1,
                       bounds: dict[str, tuple[float, float]] | None = None) -> list[ColumnRelease]:
    """Every DP statistic of ``df`` the encoding needs, one :class:`ColumnRelease` per modelled column.

    Numeric ranges come from the metadata, else from ``bounds`` (e.g. the union of the sites' released
    ranges in a federation; already paid for), else from :func:`approx_bounds` here. Each mechanism call
    spends ``eps_call`` (and ``delta_call`` for undeclared categories) and adds a ledger entry."""
    out = []
    for col in schema.modelled:
        meta = _declared(metadata, col)
        s = df[col.name]
        nullable = meta.get("nullable", True) is not False
        prov: dict[str, str] = {}
        if not nullable and s.isna().any():
            raise SchemaError(f"Column {col.name!r} is declared 'nullable: false' but has missing values. "
                              "Remove that setting from the metadata file or fill the missing cells.")
        if col.kind in ("continuous", "integer", "datetime"):
            x = _numeric_values(s, col.kind)
            lo = None if meta.get("min") is None else _to_number(meta["min"], col.kind)
            hi = None if meta.get("max") is None else _to_number(meta["max"], col.kind)
            if lo is None or hi is None:
                if bounds is not None and col.name in bounds:
                    dp_lo, dp_hi = bounds[col.name]
                else:
                    dp_lo, dp_hi = release_bounds(df, TableSchema([col]), metadata, eps_call, ledger,
                                                  unit_rows)[col.name]
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
            _record(ledger, eps_call, unit_rows, col.name, "numeric-histogram", "histogram and missing rate",
                    bins=len(counts) + 1)
            release = ColumnRelease(col.name, col.kind, counts.tolist(), float(missing_count),
                                    bounds=(float(lo), float(hi)), edges=edges.tolist(), unit_bins=unit_bins,
                                    provenance=prov)
        else:
            missing = s.isna().to_numpy()
            if meta.get("categories") is not None:
                declared_cats = list(meta["categories"])
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
                _record(ledger, eps_call, unit_rows, col.name, "laplace-histogram",
                        "category counts and missing rate", bins=len(declared_cats) + 1)
                ledger.public_statistics.append(f"{col.name}: categories")
                prov["categories"] = "metadata"
                release = ColumnRelease(col.name, col.kind, noisy[:-1].tolist(),
                                        float(noisy[-1]) if nullable else 0.0, categories=declared_cats,
                                        declared_categories=True, provenance=prov)
            else:
                tokens = np.asarray([MISSING if m else _token(v) for v, m in
                                     zip(s.astype(object).to_numpy(), missing, strict=True)], dtype=object)
                released = stable_categories(tokens, eps_call, delta_call, unit_rows)
                _record(ledger, eps_call, unit_rows, col.name, "stable-categories",
                        "category set, counts and missing rate", delta=delta_call,
                        threshold=released.threshold)
                counts_of = dict(zip(released.categories, released.noisy_counts.tolist(), strict=True))
                missing_noisy = float(counts_of.pop(MISSING, 0.0)) if nullable else 0.0
                prov["categories"] = "dp"
                release = ColumnRelease(col.name, col.kind, list(counts_of.values()), missing_noisy,
                                        categories=list(counts_of), declared_categories=False,
                                        released_total=float(released.noisy_counts.sum()), provenance=prov)
        if not nullable:
            ledger.public_statistics.append(f"{col.name}: never missing")
        out.append(release)
    return out


def combine_releases(releases_by_site: list[list[ColumnRelease]]) -> list[ColumnRelease]:
    """The sum of several sites' releases of the same columns (post-processing of DP outputs).

    Counts over the same bins or declared categories add up; released undeclared categories are the
    union (a category a site did not release counts 0 there); numeric bounds must be equal (the sites
    used shared bounds)."""
    if not releases_by_site:
        raise ValueError("No site released any statistic.")
    first = releases_by_site[0]
    out = []
    for i, base in enumerate(first):
        parts = [site[i] for site in releases_by_site]
        if any(p.name != base.name for p in parts):
            raise ValueError("The sites released statistics of different columns; use one metadata file.")
        total = ColumnRelease.from_dict(base.to_dict())
        total.sites = sum(p.sites for p in parts)
        total.missing = float(sum(p.missing for p in parts))
        if base.categories is None or base.declared_categories:
            if any(len(p.counts) != len(base.counts) or p.bounds != base.bounds for p in parts):
                raise ValueError(f"Column {base.name!r}: the sites used different bins; use shared bounds.")
            total.counts = np.sum([np.asarray(p.counts, float) for p in parts], axis=0).tolist()
        else:
            merged: dict[str, float] = {}
            labels: dict[str, Any] = {}
            for p in parts:
                for label, count in zip(p.categories or [], p.counts, strict=True):
                    merged[str(label)] = merged.get(str(label), 0.0) + float(count)
                    labels.setdefault(str(label), label)
            total.categories = [labels[k] for k in merged]
            total.counts = list(merged.values())
            total.released_total = float(sum(p.released_total or 0.0 for p in parts))
        out.append(total)
    return out


def encode_releases(transformer: TableTransformer, schema: TableSchema, metadata: dict[str, Any] | None,
                    releases: list[ColumnRelease], eps_call: float, n_public: int, unit_rows: int = 1
                    ) -> TableTransformer:
    """Fill ``transformer`` from DP releases alone (post-processing: no row is read).

    ``n_public`` is the public number of privacy units (summed over the sites of a federation); the
    noise floor added to every released category count is one noise standard deviation of the sum of
    ``release.sites`` independent discrete Laplace draws (√(2·sites)·k/ε)."""
    post_rng = np.random.default_rng(transformer.seed)  # post-processing only; noise has its own RNG
    transformer.columns, transformer.provenance = [], {}
    by_name = {r.name: r for r in releases}
    for col in schema.modelled:
        meta = _declared(metadata, col)
        rel = by_name[col.name]
        nullable = meta.get("nullable", True) is not False
        enc = ColumnEncoding(name=col.name, kind=col.kind, dtype=declared_dtype(col.kind, nullable))
        prov = dict(rel.provenance)
        # the Laplace scale whose std (√2 · scale) is that of the sum of ``rel.sites`` independent draws
        noise_scale = np.sqrt(rel.sites) * unit_rows / eps_call
        if enc.is_numeric:
            counts, edges = np.asarray(rel.counts, float), np.asarray(rel.edges, float)
            enc.low, enc.high = rel.bounds
            # missingness is estimated inside the column's own histogram (one more bin)
            # (the rate from the missing bin and the public n: the noisy total of the histogram sums every
            # bin's zero-clipped noise, which made rates about 40 % too small)
            enc.missing_rate = missing_rate_of_n(rel.missing, n_public, noise_scale) if nullable else 0.0
            # the network learns missingness from the real rows (under DP-SGD); the slot exists unless the
            # metadata says the column is never missing (whether it is must not be read from the data)
            enc.has_missing_slot = nullable
            prov["missing_rate"] = "dp" if nullable else "metadata"
            enc.datetime_dates_only = bool(meta.get("dates_only", False)) if col.kind == "datetime" else False
            transformer._fit_modes(enc, _points_from_histogram(edges, counts, rel.unit_bins, post_rng))
            prov["modes"] = "dp"
        else:
            cat_noisy = np.asarray(rel.counts, dtype=float)
            missing_noisy = float(rel.missing) if nullable else 0.0
            if rel.declared_categories:
                enc.dtype = declared_dtype(col.kind, nullable, list(rel.categories))
                suppressed = None
            else:
                if not len(cat_noisy):
                    raise PrivacyError(
                        f"Column {col.name!r}: no category is frequent enough to be released at ε = "
                        f"{eps_call:.3g} per statistic. Declare its categories as public metadata in a "
                        "schema file (--metadata), or raise ε.")
                # the labels' type is read from the released labels (post-processing), not from the rows
                enc.dtype = declared_dtype(col.kind, nullable, list(rel.categories))
                suppressed = max(0.0, float(n_public) - float(rel.released_total or 0.0))  # n is public
            cats = [_typed(c, enc.dtype) for c in rel.categories]
            # post-processing: one noise standard deviation (√2·k/ε per site) added to every released
            # count shrinks the frequencies towards uniform when the noise dominates (small n or ε),
            # instead of letting a clipped-to-zero count remove a category from the conditional vector
            cat_noisy = cat_noisy + np.sqrt(2.0 * rel.sites) * unit_rows / eps_call
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
            enc.missing_rate = missing_rate_of_n(missing_noisy, n_public, noise_scale) if nullable else 0.0
            if nullable:
                enc.has_missing_slot = True
                enc.slots.append(MISSING)
                enc.slot_freq.append(enc.missing_rate)
            prov["missing_rate"] = "dp" if nullable else "metadata"
            prov["frequencies"] = "dp"
        transformer.columns.append(enc)
        transformer.provenance[col.name] = prov
    return transformer._finish_fit()


def fit_private(transformer: TableTransformer, df: pd.DataFrame, schema: TableSchema,
                metadata: dict[str, Any] | None, budget: PrivacyBudget, ledger: PrivacyLedger,
                unit_rows: int = 1) -> TableTransformer:
    """Fill ``transformer`` with DP statistics of ``df`` (see the module docstring); returns it.

    ``schema`` and ``metadata`` are the declared ones (kinds, bounds, categories, nullability: never read
    from ``df``); ``unit_rows`` is the most rows one privacy unit (a patient) holds, the L1 sensitivity of
    every count. Each column's decoded dtype comes from its declared kind and the declared or DP-released
    categories, never from ``df``'s dtypes (which flip when one row with a missing value is added).
    The same two steps, :func:`release_statistics` at each site and :func:`encode_releases` of their
    :func:`combine_releases`, give a federation its shared encoding."""
    eps_call, delta_call, _ = plan_epsilon(schema, metadata, budget.epsilon_preprocessing,
                                           budget.delta_preprocessing)
    releases = release_statistics(df, schema, metadata, eps_call, delta_call, ledger, unit_rows)
    return encode_releases(transformer, schema, metadata, releases, eps_call, len(df), unit_rows)


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
