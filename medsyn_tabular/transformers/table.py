"""Reversible, vectorised encoding of a table into the matrix CTGAN/TVAE learn from (Xu et al. 2019).

* continuous / integer / datetime columns: mode-specific normalisation. A variational Gaussian mixture
  (sklearn ``BayesianGaussianMixture``, at most 10 modes) is fitted to the values; each value ``x`` is
  encoded as a scalar ``alpha = (x - mu_k) / (4 sigma_k)`` in [-1, 1] (``tanh`` output) plus a one-hot of
  its mode ``k`` drawn from the posterior over modes (``softmax`` output). Datetimes are seconds since
  1970; decoded integers are rounded; decoded values are clipped to the column bounds.
* categorical / boolean columns: one-hot; categories rarer than ``rare_fraction`` are grouped into one
  slot (decoded back to one of them in proportion to their frequency).
* missing values: a column with missing values gets a 2-slot one-hot (present, missing) for numbers or a
  ``missing`` category, so synthetic data has missing values at the learned rate.

**Every statistic taken from the real table is computed in** :meth:`TableTransformer.fit` **only**
(bounds, categories and their frequencies, missing rates, mixture modes, rare-category grouping); bounds
and categories may come from declared public metadata instead (the schema file), and
:attr:`TableTransformer.provenance` records, per column and statistic, ``"data"`` or ``"metadata"``. A
differentially private version replaces this one method.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medsyn_tabular.data.schema import SchemaError, TableSchema, to_naive_datetime

MAX_MODES = 10
MODE_WEIGHT_MIN = 0.005  # mixture modes lighter than this are dropped (as in the CTGAN paper)
VGM_MAX_ROWS = 20_000  # the mixture is fitted on at most this many rows (random subset)
MISSING = "__missing__"
OTHER = "__other__"


@dataclass
class Span:
    """A slice of the encoded matrix and the activation the generator applies to it."""

    start: int
    size: int
    activation: str  # 'tanh' (one scalar) or 'softmax' (one-hot block)


@dataclass
class ColumnEncoding:
    """Fitted encoding of one column (all JSON-serialisable)."""

    name: str
    kind: str
    dtype: str  # pandas dtype of the real column, restored on decode
    # numeric columns
    low: float | None = None
    high: float | None = None
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    # categorical columns: slots of the one-hot (real values, plus OTHER / MISSING)
    slots: list[Any] = field(default_factory=list)
    slot_freq: list[float] = field(default_factory=list)
    other_values: list[Any] = field(default_factory=list)  # categories grouped into OTHER
    other_freq: list[float] = field(default_factory=list)
    missing_rate: float = 0.0
    has_missing_slot: bool = False
    datetime_dates_only: bool = False

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("continuous", "integer", "datetime")

    @property
    def width(self) -> int:
        if self.is_numeric:
            return 1 + len(self.means) + (2 if self.has_missing_slot else 0)
        return len(self.slots)


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _category_key(v: Any) -> str:
    """Comparable text of a category: 3, 3.0 and "3" are the same code."""
    try:
        number = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(number)) if number.is_integer() else str(number)


def _numeric_values(s: pd.Series, kind: str) -> np.ndarray:
    """Column as float64 (datetimes as seconds since 1970); NaN where missing."""
    if kind == "datetime":
        dt = to_naive_datetime(s)
        secs = dt.astype("datetime64[ns]").astype("int64").to_numpy().astype(float) / 1e9
        return np.where(dt.isna().to_numpy(), np.nan, secs)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class TableTransformer:
    """Fit on a table + schema, then ``transform`` rows to a float32 matrix and ``inverse_transform`` back.

    Attributes after :meth:`fit`: ``columns`` (list of :class:`ColumnEncoding`), ``spans`` (list of
    :class:`Span` over the encoded matrix), ``output_dim`` and ``provenance``.
    """

    def __init__(self, rare_fraction: float = 0.005, max_modes: int = MAX_MODES, seed: int = 0):
        self.rare_fraction = rare_fraction
        self.max_modes = max_modes
        self.seed = seed
        self.columns: list[ColumnEncoding] = []
        self.provenance: dict[str, dict[str, str]] = {}

    # -- fitting: the ONE place that reads statistics from the real table --------------------------
    def fit(self, df: pd.DataFrame, schema: TableSchema, metadata: dict[str, Any] | None = None
            ) -> TableTransformer:
        """Learn every per-column statistic from ``df`` (or from ``metadata``/the schema's declared
        bounds and categories). ``metadata`` has the schema-file layout ``{"columns": {name: {...}}}``.
        """
        declared = (metadata or {}).get("columns", {}) or {}
        rng = np.random.default_rng(self.seed)
        self.columns, self.provenance = [], {}
        for col in schema.modelled:
            meta = dict(declared.get(col.name, {}) or {})
            for key in ("min", "max", "categories"):
                if meta.get(key) is None and getattr(col, key) is not None:
                    meta[key] = getattr(col, key)
            s = df[col.name]
            enc = ColumnEncoding(name=col.name, kind=col.kind, dtype=str(s.dtype))
            prov: dict[str, str] = {}
            if enc.is_numeric:
                x = _numeric_values(s, col.kind)
                present = x[~np.isnan(x)]
                if present.size == 0:
                    raise SchemaError(f"Column {col.name!r} has no values; drop it (kind: drop in the schema "
                                      "file) or remove it from the table.")
                enc.missing_rate = float(np.isnan(x).mean())
                enc.has_missing_slot = enc.missing_rate > 0
                prov["missing_rate"] = "data"
                enc.low, prov["bounds"] = float(present.min()), "data"
                enc.high = float(present.max())
                if meta.get("min") is not None or meta.get("max") is not None:
                    lo, hi = meta.get("min"), meta.get("max")
                    if col.kind == "datetime":
                        lo = None if lo is None else pd.Timestamp(lo).value / 1e9
                        hi = None if hi is None else pd.Timestamp(hi).value / 1e9
                    enc.low = float(lo) if lo is not None else enc.low
                    enc.high = float(hi) if hi is not None else enc.high
                    prov["bounds"] = "metadata" if lo is not None and hi is not None else "metadata+data"
                if col.kind == "datetime":
                    enc.datetime_dates_only = bool(np.all(np.mod(present, 86400) == 0))
                fit_x = present if present.size <= VGM_MAX_ROWS else rng.choice(present, VGM_MAX_ROWS, False)
                self._fit_modes(enc, fit_x)
                prov["modes"] = "data"
            else:
                values = s.dropna()
                enc.missing_rate = float(s.isna().mean())
                prov["missing_rate"] = "data"
                counts = values.value_counts()
                if meta.get("categories") is not None:
                    declared_cats = list(meta["categories"])
                    lookup = {_category_key(c): c for c in counts.index}
                    cats = [lookup.get(_category_key(c), c) for c in declared_cats]
                    unknown = sorted({_category_key(v) for v in counts.index}
                                     - {_category_key(c) for c in declared_cats})
                    if unknown:
                        raise SchemaError(f"Column {col.name!r} holds {len(unknown)} distinct value(s) not "
                                          "in its declared categories. Add them to the schema file or fix "
                                          "the data.")
                    counts = counts.reindex(cats, fill_value=0)
                    prov["categories"] = "metadata"
                else:
                    prov["categories"] = "data"
                freq = counts.to_numpy(dtype=float) / max(1, len(s))
                rare = freq < self.rare_fraction
                if rare.sum() < 2:  # grouping one category alone gains nothing
                    rare[:] = False
                enc.slots = [_json_value(v) for v in counts.index[~rare]]
                enc.slot_freq = freq[~rare].tolist()
                if rare.any():
                    enc.other_values = [_json_value(v) for v in counts.index[rare]]
                    enc.other_freq = (freq[rare] / freq[rare].sum()).tolist() if freq[rare].sum() > 0 else \
                        [1.0 / rare.sum()] * int(rare.sum())
                    enc.slots.append(OTHER)
                    enc.slot_freq.append(float(freq[rare].sum()))
                    prov["rare_grouping"] = "data"
                if enc.missing_rate > 0:
                    enc.has_missing_slot = True
                    enc.slots.append(MISSING)
                    enc.slot_freq.append(enc.missing_rate)
                prov["frequencies"] = "data"
            self.columns.append(enc)
            self.provenance[col.name] = prov
        return self._finish_fit()

    def _finish_fit(self) -> TableTransformer:
        """Shared end of :meth:`fit` and the DP fit: refuse an empty model, lay out the spans."""
        if not self.columns:
            raise SchemaError("No column can be modelled: every column is an identifier, free text, empty or "
                              "was removed for PHI. Check the schema (medsyn tabular schema DATA).")
        self._build_spans()
        return self

    def _fit_modes(self, enc: ColumnEncoding, fit_x: np.ndarray) -> None:
        """Fit the variational Gaussian mixture to the 1-D values ``fit_x`` and store its modes in ``enc``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture
        from threadpoolctl import threadpool_limits

        n_modes = int(min(self.max_modes, max(1, np.unique(fit_x).size)))
        vgm = BayesianGaussianMixture(
            n_components=n_modes, weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=self.seed,
            covariance_type="diag",  # identical to 'full' in 1-D, and vectorised
        )
        # one BLAS/OpenMP thread: k-means init of a 1-D mixture is much slower with thread contention
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            vgm.fit(fit_x.reshape(-1, 1))
        keep = vgm.weights_ > MODE_WEIGHT_MIN
        if not keep.any():
            keep = vgm.weights_ == vgm.weights_.max()
        enc.means = vgm.means_.ravel()[keep].tolist()
        floor = 1e-6 * (1 + abs(fit_x).max())
        enc.stds = np.sqrt(vgm.covariances_.ravel()[keep]).clip(min=floor).tolist()
        w = vgm.weights_[keep]
        enc.weights = (w / w.sum()).tolist()

    def _build_spans(self) -> None:
        self.spans: list[Span] = []
        self.column_spans: list[list[Span]] = []
        start = 0
        for enc in self.columns:
            spans = []
            if enc.is_numeric:
                spans.append(Span(start, 1, "tanh"))
                spans.append(Span(start + 1, len(enc.means), "softmax"))
                start += 1 + len(enc.means)
                if enc.has_missing_slot:
                    spans.append(Span(start, 2, "softmax"))
                    start += 2
            else:
                spans.append(Span(start, len(enc.slots), "softmax"))
                start += len(enc.slots)
            self.column_spans.append(spans)
            self.spans.extend(spans)
        self.output_dim = start

    # -- encoding --------------------------------------------------------------------------------
    def _mode_posterior(self, enc: ColumnEncoding, x: np.ndarray) -> np.ndarray:
        """(n, modes) posterior probability of each mixture mode for values ``x`` (n,)."""
        mu, sd, w = np.asarray(enc.means), np.asarray(enc.stds), np.asarray(enc.weights)
        z = (x[:, None] - mu[None, :]) / sd[None, :]
        logp = np.log(w)[None, :] - np.log(sd)[None, :] - 0.5 * z * z
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)

    def transform(self, df: pd.DataFrame, seed: int | None = None) -> np.ndarray:
        """Encode rows of ``df`` to an (n, output_dim) float32 matrix (modes drawn with ``seed``)."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        n = len(df)
        out = np.zeros((n, self.output_dim), dtype=np.float32)
        rows = np.arange(n)
        for enc, spans in zip(self.columns, self.column_spans, strict=True):
            s = df[enc.name]
            if enc.is_numeric:
                x = _numeric_values(s, enc.kind)
                missing = np.isnan(x)
                xf = np.where(missing, enc.means[0], x)
                post = self._mode_posterior(enc, xf)
                u = rng.random(n)[:, None]
                mode = np.minimum((post.cumsum(axis=1) < u).sum(axis=1), post.shape[1] - 1)
                mu, sd = np.asarray(enc.means)[mode], np.asarray(enc.stds)[mode]
                alpha = np.clip((xf - mu) / (4 * sd), -0.99, 0.99)
                out[:, spans[0].start] = np.where(missing, 0.0, alpha)
                out[rows, spans[1].start + mode] = 1.0
                if enc.has_missing_slot:
                    out[rows, spans[2].start + missing.astype(int)] = 1.0
            else:
                out[rows, spans[0].start + self._slot_index(enc, s)] = 1.0
        return out

    def _slot_index(self, enc: ColumnEncoding, s: pd.Series) -> np.ndarray:
        """Slot index (n,) of each value of a categorical column (OTHER for grouped/unseen values)."""
        keys = s.map(lambda v: str(v) if pd.notna(v) else MISSING) if s.dtype == object else \
            s.astype(object).where(s.notna(), MISSING).astype(str)
        lookup = {}
        for i, v in enumerate(enc.slots):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) \
                    and float(v).is_integer():
                lookup[str(float(v))] = lookup[str(int(v))] = i  # 3 and 3.0 are one code
            lookup[str(v)] = i
        other = lookup.get(OTHER, -1)
        idx = keys.map(lookup).to_numpy()
        if OTHER in lookup:
            idx = np.where(pd.isna(idx), other, idx)
        if pd.isna(idx).any():
            n_bad = int(pd.isna(idx).sum())
            raise SchemaError(f"Column {enc.name!r} has {n_bad} cell(s) with values unseen when fitting.")
        return idx.astype(int)

    def slot_of(self, column: str, value: Any) -> tuple[int, int]:
        """(index of the categorical column among ``discrete_columns``, slot) for a condition value."""
        for i, enc in enumerate(self.discrete_columns):
            if enc.name == column:
                keys = [str(v) for v in enc.slots]
                if str(value) in keys:
                    return i, keys.index(str(value))
                if str(value) in {str(v) for v in enc.other_values}:
                    return i, keys.index(OTHER)
                raise KeyError(value)
        raise KeyError(column)

    @property
    def discrete_columns(self) -> list[ColumnEncoding]:
        """Categorical/boolean columns, in order: these drive CTGAN's conditional vector."""
        return [c for c in self.columns if not c.is_numeric]

    def discrete_spans(self) -> list[Span]:
        return [spans[0] for enc, spans in zip(self.columns, self.column_spans, strict=True)
                if not enc.is_numeric]

    # -- decoding --------------------------------------------------------------------------------
    def inverse_transform(self, data: np.ndarray, seed: int = 0) -> pd.DataFrame:
        """Decode an (n, output_dim) matrix (activated generator output) back to a table."""
        rng = np.random.default_rng(seed)
        out: dict[str, Any] = {}
        for enc, spans in zip(self.columns, self.column_spans, strict=True):
            if enc.is_numeric:
                alpha = np.clip(data[:, spans[0].start], -1, 1).astype(np.float64)
                mode = data[:, spans[1].start:spans[1].start + spans[1].size].argmax(axis=1)
                x = alpha * 4 * np.asarray(enc.stds)[mode] + np.asarray(enc.means)[mode]
                x = np.clip(x, enc.low, enc.high)
                missing = np.zeros(len(x), bool)
                if enc.has_missing_slot:
                    missing = data[:, spans[2].start + 1] > data[:, spans[2].start]
                out[enc.name] = self._numeric_to_series(enc, x, missing)
            else:
                slot = data[:, spans[0].start:spans[0].start + spans[0].size].argmax(axis=1)
                values = np.asarray(enc.slots + [None], dtype=object)[:-1][slot]
                # OTHER / MISSING found by slot number, not by comparing every object value
                is_other = slot == (enc.slots.index(OTHER) if OTHER in enc.slots else -1)
                is_missing = slot == (enc.slots.index(MISSING) if MISSING in enc.slots else -1)
                if enc.other_values:
                    pick = rng.choice(len(enc.other_values), size=int(is_other.sum()), p=enc.other_freq)
                    values[is_other] = np.asarray(enc.other_values + [None], dtype=object)[:-1][pick]
                else:  # DP: categories too rare to be released are generated as missing values
                    is_missing = is_missing | is_other
                values[is_missing] = np.nan
                out[enc.name] = self._category_to_series(enc, values, is_missing)
        return pd.DataFrame(out)

    def _numeric_to_series(self, enc: ColumnEncoding, x: np.ndarray, missing: np.ndarray) -> pd.Series:
        if enc.kind == "datetime":
            unit = 86400.0 if enc.datetime_dates_only else 1.0
            secs = np.round(x / unit) * unit
            dt = pd.to_datetime(secs, unit="s")
            return pd.Series(dt).mask(missing)
        if enc.kind == "integer":
            x = np.round(x)
            s = pd.Series(x).mask(missing)
            if missing.any() or enc.dtype in ("Int64", "Int32"):
                return s.astype("Int64")
            return s.astype(enc.dtype if enc.dtype.startswith("int") else "int64")
        s = pd.Series(x).mask(missing)
        return s.astype(enc.dtype) if enc.dtype.startswith("float") else s

    def _category_to_series(self, enc: ColumnEncoding, values: np.ndarray, missing: np.ndarray) -> pd.Series:
        s = pd.Series(values, dtype=object)
        if enc.dtype.startswith(("int", "float", "bool", "Int")):
            try:
                if missing.any():
                    return s.astype("Float64" if enc.dtype.startswith("float") else "Int64") \
                        if not enc.dtype.startswith("bool") else s
                return s.astype(enc.dtype)
            except (TypeError, ValueError):
                return s
        return s

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"rare_fraction": self.rare_fraction, "max_modes": self.max_modes, "seed": self.seed,
                "columns": [asdict(c) for c in self.columns], "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableTransformer:
        tr = cls(data["rare_fraction"], data["max_modes"], data["seed"])
        tr.columns = [ColumnEncoding(**c) for c in data["columns"]]
        tr.provenance = data["provenance"]
        tr._build_spans()
        return tr
