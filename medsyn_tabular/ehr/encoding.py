"""From related tables to per-patient token tensors (and back): what the EHR generator learns from.

Each patient is three levels of tokens (:mod:`~medsyn_tabular.ehr.codecs`):

* **patient** ``pv`` (P,): the patient table's modelled columns, the year of birth, the number of visits,
  whether and when (after the last visit) the patient died;
* **visits** ``vt`` (T, S): per visit, in time order, the gap since the previous visit (for the first: the
  age at that visit), the age in years (an input, derived), the visit's class and code, its duration, its
  other modelled columns, and how many rows of each event table it holds;
* **event rows** ``rows[table]`` (R, 2 + Q): the visit it belongs to, its code, its start relative to the
  visit's start, its duration, its value and its other modelled columns.

Keys are never encoded (they are regenerated), descriptions and ``by_code`` columns are looked up from the
code (so they always agree with it), and only the year of birth and intervals are learned of the dates.

Without differential privacy, vocabularies, lookups, the range of birth years and the end date come from
the data (:meth:`EHREncoder.fit`); with it they must all be declared (:meth:`EHREncoder.fit` with
``private=True`` reads nothing from the rows and refuses undeclared ones). Values outside a declared
vocabulary become ``<other>``: learned from, never generated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsyn_core.privacy import PrivacyError
from medsyn_tabular.data.schema import SchemaError
from medsyn_tabular.ehr.codecs import (
    YEAR_SECONDS,
    AgeCodec,
    Codec,
    CountCodec,
    MixedCodec,
    TimeCodec,
    ValueCodec,
    VocabCodec,
    YearCodec,
    code_key,
)
from medsyn_tabular.ehr.dataset import EHRDataset, format_times, parse_times
from medsyn_tabular.ehr.schema import EHRSchema, TableSpec

NS = 1e9
#: Without DP, a free-text label (an observation's text VALUE) is generated only if this many patients have
#: it: a label of one patient (an address, a name typed into a form) identifies them.
MIN_PATIENTS_PER_TEXT = 2


@dataclass
class Var:
    """One token variable: its name, codec, and whether the network predicts it (False: derived input)."""

    name: str
    codec: Codec
    head: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "codec": self.codec.to_dict(), "head": self.head}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Var:
        return cls(data["name"], Codec.from_dict(data["codec"]), data["head"])


@dataclass
class EncodedEHR:
    """Per-patient token arrays (int64; -1 = padding or not applicable) and, without DP, counts for the
    card."""

    pv: np.ndarray  # (N, P)
    vt: np.ndarray  # (N, T, S)
    nv: np.ndarray  # (N,) visits per patient
    rows: dict[str, np.ndarray]  # table -> (N, R, 2 + Q): visit index, code, row variables
    nr: dict[str, np.ndarray]  # table -> (N,) rows per patient
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.pv.shape[0])

    def arrays(self) -> list[np.ndarray]:
        """The arrays in the order the network's forward takes them."""
        out = [self.pv, self.vt, self.nv]
        for name in self.rows:
            out += [self.rows[name], self.nr[name]]
        return out


def _mode_by(keys: pd.Series, values: pd.Series) -> dict[str, Any]:
    """The most frequent non-missing value of ``values`` per key (ties: the first in sort order)."""
    frame = pd.DataFrame({"k": keys, "v": values}).dropna()
    if frame.empty:
        return {}
    counts = frame.groupby(["k", "v"], sort=True).size().reset_index(name="n")
    best = counts.sort_values(["k", "n"], ascending=[True, False], kind="stable").drop_duplicates("k")
    return dict(zip(best["k"], best["v"], strict=True))


def load_vocabulary(path: str | Path, code_column: str) -> dict[str, dict[str, dict[str, Any]]]:
    """A declared vocabulary: ``{code column: {code: {looked-up column: value}}}``.

    CSV: the first column holds the codes of ``code_column``, the others their looked-up columns (e.g.
    CODE, DESCRIPTION, UNITS). YAML/JSON: the mapping above (a code may map to a plain description)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such vocabulary file: {path}")
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        from medsyn_tabular.data.io import read_table

        df = read_table(path)
        first = df.columns[0]
        lookups = {code_key(row[first]): {c: row[c] for c in df.columns[1:] if pd.notna(row[c])}
                   for row in df.to_dict("records")}
        return {code_column: lookups}
    import json

    import yaml

    text = path.read_text(encoding="utf-8-sig")
    data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise SchemaError(f"{path.name}: a vocabulary maps a code column to its codes.")
    out = {}
    for column, codes in data.items():
        if not isinstance(codes, dict):
            raise SchemaError(f"{path.name}: the codes of {column!r} must be a mapping code -> lookups.")
        out[str(column)] = {code_key(c): (v if isinstance(v, dict) else {"DESCRIPTION": v})
                            for c, v in codes.items()}
    return out


def _apply_phi(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The table's zip3 and age90 actions applied to its modelled columns (drop: never modelled)."""
    from medsyn_tabular.data.phi import PhiFinding, apply_phi

    plan = [PhiFinding(c, "declared", "schema", a) for c, a in spec.phi.items()
            if a in ("zip3", "age90") and c in df.columns]
    return apply_phi(df, plan, count_cells=False)[0] if plan else df


class EHREncoder:
    """Codecs and lookups of every variable (see the module docstring); JSON-serialisable."""

    def __init__(self, schema: EHRSchema):
        self.schema = schema
        self.patient_vars: list[Var] = []
        self.step_vars: list[Var] = []
        self.code_codecs: dict[str, VocabCodec] = {}  # event table -> its code codec
        self.row_vars: dict[str, list[Var]] = {}  # event table -> its row variables
        self.lookups: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}  # table -> code col -> code -> ..
        self.headers: dict[str, list[str]] = {}
        self.files: dict[str, str] = {}
        self.end_date: str | None = None
        self.birth_years: tuple[int, int] | None = None
        self.private = False
        #: most visits per patient and rows per patient of each event table that sampling generates: the
        #: schema's max_visits/max_rows, or without DP the largest real record (set by :meth:`encode`)
        self.caps: dict[str, int] = {}

    # -- fitting: the one place that reads values to build vocabularies (never under DP) ---------------
    def fit(self, data: EHRDataset, private: bool) -> EHREncoder:
        """Build the codecs. ``private``: from the declared schema only (raises PrivacyError listing every
        undeclared vocabulary); otherwise vocabularies and lookups come from the rows."""
        s = self.schema
        self.private = private
        undeclared: list[str] = []
        self.files = {n: data.files.get(n, s.tables[n].file) for n in s.tables if s.tables[n].model}
        self.headers = {n: [str(c) for c in data.tables[n].columns] for n in self.files}
        pname, pspec = s.patients
        vname, vspec = s.visits
        tables = {n: _apply_phi(data.tables[n], s.tables[n]) for n in self.files}
        # without DP, labels are read from the rows: never one that is a real identifier (a name, an
        # address: Synthea's observations answer "What address do you live at?" with the address)
        from medsyn_tabular.ehr.checks import real_identifiers

        banned = set().union(*real_identifiers(data).values()) if not private else set()
        self.withheld_labels = 0

        def allowed(labels: pd.Series, owners: pd.Series | None = None) -> list[str]:
            """Labels by decreasing frequency, without PHI-looking ones and (free text) those of one
            patient only."""
            from medsyn_tabular.data.phi import value_phi_category

            keys = labels.map(code_key)
            counts = keys.value_counts(sort=True)
            ok = [v for v in counts.index if v not in banned and value_phi_category(v) is None]
            if owners is not None:
                pairs = pd.DataFrame({"k": keys, "p": owners.map(code_key)}).dropna()
                spread = pairs.groupby("k")["p"].nunique()
                ok = [v for v in ok if spread.get(v, 0) >= MIN_PATIENTS_PER_TEXT]
            self.withheld_labels += len(counts) - len(ok)
            return sorted(ok, key=lambda v: (-counts[v], v))

        def vocab(table: str, column: str, declared: list | None, series: pd.Series) -> VocabCodec:
            if private:
                if declared is None:
                    undeclared.append(f"{table}.{column}")
                    return VocabCodec([], nullable=True)
                return VocabCodec(declared, nullable=True)
            return VocabCodec(allowed(series), nullable=bool(series.isna().any()))

        def extra_vars(table: str, spec: TableSpec, df: pd.DataFrame) -> list[Var]:
            out = []
            for col, cs in spec.columns.items():
                if cs.kind == "categorical":
                    out.append(Var(f"col:{col}", vocab(table, col, cs.categories, df[col])))
                else:
                    nullable = True if private else bool(df[col].isna().any())
                    out.append(Var(f"col:{col}", ValueCodec(nullable, cs.kind == "integer", cs.min, cs.max)))
            return out

        # patients
        P = tables[pname]
        self.patient_vars = extra_vars(pname, pspec, P)
        if s.birth_years is not None:
            self.birth_years = (int(s.birth_years[0]), int(s.birth_years[1]))
        elif private:
            raise PrivacyError("Differential privacy needs the range of birth years declared as public "
                               "(birth_years: [first, last] in the EHR schema file); reading it from the "
                               "rows would reveal the oldest and youngest patient.")
        else:
            years = data.times(pname, pspec.birth).dt.year.dropna()
            if years.empty:
                raise SchemaError(f"The patient table {pname!r} has no birth dates.")
            self.birth_years = (int(years.min()), int(years.max()))
        self.patient_vars += [Var("birth_year", YearCodec(*self.birth_years)), Var("n_visits", CountCodec())]
        if pspec.death:
            self.patient_vars += [Var("dead", VocabCodec(["alive", "dead"], nullable=False)),
                                  Var("death_gap", TimeCodec())]
        if s.end_date is not None:
            self.end_date = str(pd.Timestamp(s.end_date).date())
        elif private:
            raise PrivacyError("Differential privacy needs the export's end date declared as public "
                               "(end_date: YYYY-MM-DD in the EHR schema file); reading it from the rows "
                               "would reveal the latest visit.")
        else:
            latest = data.times(vname, vspec.start).max()
            self.end_date = str((latest + pd.Timedelta(days=1)).date()) if pd.notna(latest) else None

        # visits
        V = tables[vname]
        self.step_vars = [Var("gap", TimeCodec()), Var("age", AgeCodec(), head=False)]
        if vspec.klass:
            self.step_vars.append(Var("class", vocab(vname, vspec.klass, vspec.categories.get(vspec.klass),
                                                     V[vspec.klass])))
        self._allowed = allowed
        if vspec.code:
            self.step_vars.append(Var("code", self._code_vocab(vname, vspec, V, private, undeclared)))
        if vspec.stop:
            self.step_vars.append(Var("duration", TimeCodec(nullable=True)))
        self.step_vars += extra_vars(vname, vspec, V)
        events = s.events
        self.step_vars += [Var(f"count:{name}", CountCodec()) for name, _ in events]

        # event tables
        self.code_codecs, self.row_vars = {}, {}
        for name, spec in events:
            E = tables[name]
            self.code_codecs[name] = self._code_vocab(name, spec, E, private, undeclared)
            rv = [Var("offset", TimeCodec(signed=True))]
            if spec.stop:
                rv.append(Var("duration", TimeCodec(nullable=True)))
            if spec.value:
                text = spec.categories.get(spec.value)
                if text is None and not private:
                    raw = E[spec.value]
                    is_text = pd.to_numeric(raw, errors="coerce").isna() & raw.notna()
                    text = allowed(raw[is_text], E[spec.patient][is_text])
                rv.append(Var("value", MixedCodec(VocabCodec(text or [], False), ValueCodec(True, False))))
            rv += extra_vars(name, spec, E)
            self.row_vars[name] = rv

        # lookups: descriptions and by-code columns of every code column
        self.lookups = {}
        for name in self.files:
            spec = s.tables[name]
            declared = load_vocabulary(spec.vocabulary, spec.code) if spec.vocabulary else {}
            for code_col in spec.code_columns:
                cols = [d for d, target in spec.describe.items() if target == code_col]
                if code_col == spec.code:
                    cols += spec.by_code
                if not cols:
                    continue
                if private:
                    self.lookups.setdefault(name, {})[code_col] = {
                        k: {c: v for c, v in look.items() if c in cols}
                        for k, look in declared.get(code_col, {}).items()}
                else:
                    keys = tables[name][code_col].map(code_key)
                    per_col = {c: _mode_by(keys, tables[name][c]) for c in cols}
                    codes = sorted(set(keys.dropna()) & set(self._codec_of(name, code_col).values))
                    self.lookups.setdefault(name, {})[code_col] = {
                        k: {c: per_col[c][k] for c in cols if k in per_col[c]} for k in codes}
        if undeclared:
            shown = ", ".join(undeclared[:10]) + (" …" if len(undeclared) > 10 else "")
            raise PrivacyError(
                f"Differential privacy needs every vocabulary declared as public, but {len(undeclared)} "
                f"are not: {shown}. Add 'categories' (or, for a code column, a 'vocabulary' file of the "
                "code system's codes and descriptions) to the EHR schema file; values read from the rows "
                "would reveal rare codes held by single patients (docs/ehr.md).")
        return self

    def _codec_of(self, table: str, column: str) -> VocabCodec:
        """The vocabulary codec of a code column (a table's code, or a categorical column it describes)."""
        spec = self.schema.tables[table]
        if column == spec.code:
            if spec.role == "visits":
                return next(v.codec for v in self.step_vars if v.name == "code")
            return self.code_codecs[table]
        pool = self.patient_vars if spec.role == "patients" else \
            self.step_vars if spec.role == "visits" else self.row_vars[table]
        return next(v.codec for v in pool if v.name == f"col:{column}")

    def _code_vocab(self, table: str, spec: TableSpec, df: pd.DataFrame, private: bool,
                    undeclared: list[str]) -> VocabCodec:
        """The vocabulary of a table's code column: declared categories, the vocabulary file, or (no DP)
        the codes in the rows."""
        declared = spec.categories.get(spec.code)
        if declared is None and spec.vocabulary:
            declared = list(load_vocabulary(spec.vocabulary, spec.code).get(spec.code, {}))
        if private:
            if declared is None:
                undeclared.append(f"{table}.{spec.code}")
                return VocabCodec([], nullable=True)
            return VocabCodec(declared, nullable=False)
        return VocabCodec(self._allowed(df[spec.code]), nullable=False)

    # -- encoding ------------------------------------------------------------------------------------
    def encode(self, data: EHRDataset, rng: np.random.Generator) -> EncodedEHR:
        """Token arrays of every patient of ``data`` (the schema's caps applied: the first
        ``max_visits`` visits, at most ``max_rows`` rows per event table chosen with ``rng``)."""
        s = self.schema
        pname, pspec = s.patients
        vname, vspec = s.visits
        stats: dict[str, Any] = {}
        P = _apply_phi(data.tables[pname], pspec)
        keys = P[pspec.key].map(code_key)
        birth = data.times(pname, pspec.birth)
        keep = keys.notna() & birth.notna() & ~keys.duplicated()
        stats["patients dropped (no key or birth date, or a repeated key)"] = int((~keep).sum())
        P, keys, birth = P[keep].reset_index(drop=True), keys[keep].reset_index(drop=True), \
            birth[keep].reset_index(drop=True)
        n = len(P)
        if n == 0:
            raise SchemaError(f"The patient table {pname!r} has no usable patient (a key and a birth date).")
        index = pd.Series(np.arange(n), index=keys.to_numpy())
        birth_s = birth.astype("int64").to_numpy() / NS

        # visits, in time order, capped
        V = _apply_phi(data.tables[vname], vspec).copy()
        V["_p"] = V[vspec.patient].map(code_key).map(index)
        V["_start"] = data.times(vname, vspec.start)
        V["_stop"] = data.times(vname, vspec.stop) if vspec.stop else pd.NaT
        usable = V["_p"].notna() & V["_start"].notna()
        stats["visits dropped (unknown patient or no start)"] = int((~usable).sum())
        V = V[usable].copy()
        V["_p"] = V["_p"].astype(int)
        V = V.sort_values(["_p", "_start", "_stop"], kind="stable")
        V["_t"] = V.groupby("_p").cumcount()
        stats["visits beyond max_visits"] = int((V["_t"] >= s.max_visits).sum())
        V = V[V["_t"] < s.max_visits].reset_index(drop=True)
        nv = np.bincount(V["_p"].to_numpy(), minlength=n)
        T = max(1, int(nv.max()) if n else 1)
        start_s = V["_start"].astype("int64").to_numpy() / NS
        prev = V.groupby("_p")["_start"].shift(1)
        gap = np.where(prev.notna(), start_s - prev.astype("int64").to_numpy() / NS,
                       start_s - birth_s[V["_p"].to_numpy()])
        age = (start_s - birth_s[V["_p"].to_numpy()]) / YEAR_SECONDS
        visit_key = V[vspec.key].map(code_key) if vspec.key else pd.Series(np.arange(len(V))).astype(str)
        vlookup = pd.DataFrame({"_p": V["_p"], "_t": V["_t"]}).set_axis(visit_key.to_numpy())
        vlookup = vlookup[~vlookup.index.duplicated()]

        # event rows: patient, visit (by key, else the patient's latest visit started before), caps
        rows_out, nr_out, counts = {}, {}, {}
        for name, spec in s.events:
            E = _apply_phi(data.tables[name], spec).copy()
            E["_p"] = E[spec.patient].map(code_key).map(index)
            E["_start"] = data.times(name, spec.start)
            E = E[E["_p"].notna()].copy()
            E["_p"] = E["_p"].astype(int)
            vk = E[spec.visit].map(code_key)
            found = vk.map(vlookup["_p"])
            E["_t"] = vk.map(vlookup["_t"])
            wrong = found.isna() | (found != E["_p"])
            stats[f"{name}: rows attached to a visit by time"] = int(wrong.sum())
            if wrong.any():
                E.loc[wrong, "_t"] = self._nearest_visit(E[wrong], V)
            E = E[E["_t"].notna()].copy()
            E["_t"] = E["_t"].astype(int)
            vstart = start_s[self._visit_row(V, E["_p"].to_numpy(), E["_t"].to_numpy())]
            E["_start"] = E["_start"].fillna(pd.Series(pd.to_datetime(vstart * NS), index=E.index))
            E["_order"] = rng.permutation(len(E))  # which rows beyond max_rows are left out
            E["_rank"] = E.sort_values("_order").groupby("_p").cumcount().reindex(E.index)
            stats[f"{name}: rows beyond max_rows"] = int((E["_rank"] >= s.max_rows).sum())
            E = E[E["_rank"] < s.max_rows].sort_values(["_p", "_t", "_start"], kind="stable")
            E["_r"] = E.groupby("_p").cumcount()
            cols = [E["_t"].to_numpy(), self.code_codecs[name].encode(E[spec.code].to_numpy())]
            e_start = E["_start"].astype("int64").to_numpy() / NS
            vstart = start_s[self._visit_row(V, E["_p"].to_numpy(), E["_t"].to_numpy())]
            for var in self.row_vars[name]:
                if var.name == "offset":
                    cols.append(self._tokens(var, e_start - vstart))
                elif var.name == "duration":
                    stop = data.times(name, spec.stop).reindex(E.index)
                    cols.append(self._tokens(var, np.where(stop.notna(), stop.astype("int64").to_numpy() / NS
                                                          - e_start, np.nan)))
                elif var.name == "value":
                    cols.append(self._tokens(var, E[spec.value].to_numpy()))
                else:
                    cols.append(self._tokens(var, E[var.name[4:]].to_numpy()))
            nr = np.bincount(E["_p"].to_numpy(), minlength=n)
            R = max(1, int(nr.max()) if len(E) else 1)
            arr = np.full((n, R, len(cols)), -1, dtype=np.int64)
            arr[E["_p"].to_numpy(), E["_r"].to_numpy()] = np.stack(cols, axis=1) if len(E) else 0
            rows_out[name], nr_out[name] = arr, nr
            counts[name] = np.zeros((n, T), dtype=np.int64)
            np.add.at(counts[name], (E["_p"].to_numpy(), E["_t"].to_numpy()), 1)
            stats[f"{name}: rows"] = int(len(E))

        # visit tokens
        vt = np.full((n, T, len(self.step_vars)), -1, dtype=np.int64)
        p_idx, t_idx = V["_p"].to_numpy(), V["_t"].to_numpy()
        for j, var in enumerate(self.step_vars):
            if var.name == "gap":
                tok = self._tokens(var, gap)
            elif var.name == "age":
                tok = var.codec.encode(age)
            elif var.name == "class":
                tok = var.codec.encode(V[vspec.klass].to_numpy())
            elif var.name == "code":
                tok = var.codec.encode(V[vspec.code].to_numpy())
            elif var.name == "duration":
                stop_s = V["_stop"].astype("int64").to_numpy() / NS
                tok = self._tokens(var, np.where(V["_stop"].notna(), stop_s - start_s, np.nan))
            elif var.name.startswith("count:"):
                tok = self._tokens(var, counts[var.name[6:]][p_idx, t_idx])
            else:
                tok = self._tokens(var, V[var.name[4:]].to_numpy())
            vt[p_idx, t_idx, j] = tok

        # patient tokens
        pv = np.full((n, len(self.patient_vars)), -1, dtype=np.int64)
        last_start = np.full(n, np.nan)
        if len(V):
            last_start[p_idx] = start_s  # visits are sorted: the last write is the latest start
        for j, var in enumerate(self.patient_vars):
            if var.name == "birth_year":
                pv[:, j] = var.codec.encode(birth.dt.year.to_numpy())
            elif var.name == "n_visits":
                pv[:, j] = self._tokens(var, nv)
            elif var.name == "dead":
                death = data.times(pname, pspec.death)[keep].reset_index(drop=True)
                pv[:, j] = np.where(death.notna(), 3, 2)
            elif var.name == "death_gap":
                death = data.times(pname, pspec.death)[keep].reset_index(drop=True)
                death_s = death.astype("int64").to_numpy() / NS
                reference = np.where(np.isnan(last_start), birth_s, last_start)
                gap = np.where(death.notna(), np.maximum(0, death_s - reference), np.nan)
                pv[:, j] = np.where(death.notna(), self._tokens(var, gap), -1)
            else:
                pv[:, j] = self._tokens(var, P[var.name[4:]].to_numpy())
        stats.update(patients=n, visits=int(len(V)))
        if not self.private:  # sampling never exceeds the longest real record (with DP: the declared caps)
            self.caps = {"visits": int(max(1, nv.max())), **{name: int(max(1, nr.max()))
                                                             for name, nr in nr_out.items()}}
        return EncodedEHR(pv, vt, nv.astype(np.int64), rows_out, nr_out, stats)

    def _tokens(self, var: Var, values) -> np.ndarray:
        """``var``'s tokens of ``values``; without DP a numeric codec also learns its per-bin quantiles."""
        tokens = var.codec.encode(values)
        if not self.private and hasattr(var.codec, "learn"):
            var.codec.learn(values, tokens)
        return tokens

    @staticmethod
    def _visit_row(V: pd.DataFrame, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Row numbers in the sorted visit table of (patient, visit index) pairs."""
        first = np.zeros(int(V["_p"].max()) + 2 if len(V) else 1, dtype=np.int64)
        starts = V.groupby("_p").head(1)
        first[starts["_p"].to_numpy()] = starts.index.to_numpy()
        return first[p] + t

    @staticmethod
    def _nearest_visit(rows: pd.DataFrame, V: pd.DataFrame) -> np.ndarray:
        """For rows without a (matching) visit key: the patient's latest visit started at or before the
        row's start, else the patient's first visit; NaN for a patient without visits."""
        left = rows[["_p", "_start"]].copy()
        left["_i"] = np.arange(len(left))
        left["_start"] = left["_start"].fillna(pd.Timestamp("1900-01-01"))
        left = left.sort_values("_start")
        right = V[["_p", "_start", "_t"]].sort_values("_start")
        merged = pd.merge_asof(left, right, on="_start", by="_p", direction="backward")
        first = V.groupby("_p")["_t"].min()
        t = merged["_t"].fillna(merged["_p"].map(first))
        out = np.full(len(rows), np.nan)
        out[merged["_i"].to_numpy()] = t.to_numpy()
        return out

    # -- decoding ------------------------------------------------------------------------------------
    def decode(self, pv: np.ndarray, vt: np.ndarray, nv: np.ndarray, rows: dict[str, np.ndarray],
               rng: np.random.Generator, gaps: np.ndarray | None = None) -> EHRDataset:
        """Tables in the input layout from sampled tokens: ``pv`` (M, P), ``vt`` (M, T, S), ``nv`` (M,),
        ``rows[table]`` (K, 3 + Q) = patient, visit index, code, row variables; ``gaps`` (M, T): the gaps
        in seconds decoded while sampling (else decoded here). New keys (from ``rng``),
        times from the birth year and the intervals, then the time rules: no event before birth, nothing
        after death (stops are cut there), nothing after the end date (a record whose visits run past it is
        moved earlier as a whole, birth included, down to the first year of birth; visits still beyond it
        are dropped, stops cut, a death after it is not yet known)."""
        s = self.schema
        pname, pspec = s.patients
        vname, vspec = s.visits
        m = len(pv)
        pvar = {v.name: j for j, v in enumerate(self.patient_vars)}
        svar = {v.name: j for j, v in enumerate(self.step_vars)}

        birth_s = self.birth_seconds(pv, rng)

        # visits
        p_idx, t_idx = np.nonzero(np.arange(vt.shape[1])[None, :] < nv[:, None])
        tok = vt[p_idx, t_idx]
        gaps = (self.step_vars[svar["gap"]].codec.decode(tok[:, svar["gap"]], rng) if gaps is None
                else gaps[p_idx, t_idx])
        start_s = np.zeros(len(p_idx))
        if len(p_idx):
            cum = pd.Series(gaps).groupby(p_idx).cumsum().to_numpy()
            start_s = birth_s[p_idx] + cum
        stop_s = np.full(len(p_idx), np.nan)
        if "duration" in svar:
            stop_s = start_s + self.step_vars[svar["duration"]].codec.decode(tok[:, svar["duration"]], rng)

        # death after the last visit's start; stops cut at death
        death_s = np.full(m, np.nan)
        if "dead" in pvar:
            last = np.where(nv > 0, np.nan, birth_s)
            if len(p_idx):
                last_start = pd.Series(start_s).groupby(p_idx).max()
                last[last_start.index.to_numpy()] = last_start.to_numpy()
            gap = self.patient_vars[pvar["death_gap"]].codec.decode(pv[:, pvar["death_gap"]], rng)
            death_s = np.where(pv[:, pvar["dead"]] == 3, last + gap, np.nan)
        end_s = pd.Timestamp(self.end_date).value / NS if self.end_date else np.inf
        if np.isfinite(end_s) and m and len(p_idx):
            # a record whose visits run past the end of the export is moved earlier as a whole, birth
            # included, as far as the first year of birth allows (visits still beyond the end are dropped)
            latest = np.full(m, -np.inf)
            np.maximum.at(latest, p_idx, start_s)
            earliest_birth = pd.Timestamp(f"{self.birth_years[0]:04d}-01-01").value / NS
            over = np.clip(latest - end_s, 0.0, np.maximum(0.0, birth_s - earliest_birth))
            birth_s, death_s = birth_s - over, death_s - over
            start_s, stop_s = start_s - over[p_idx], stop_s - over[p_idx]
        limit = np.fmin(np.where(np.isnan(death_s), np.inf, death_s), end_s)
        visit_ok = start_s <= limit[p_idx] if len(p_idx) else np.zeros(0, bool)
        stop_s = np.where(stop_s > limit[p_idx], np.where(np.isinf(limit[p_idx]), stop_s, limit[p_idx]),
                          stop_s) if len(p_idx) else stop_s
        death_s = np.where(death_s > end_s, np.nan, death_s)  # not yet known at the end of the export

        patient_keys = self._keys(pspec, m, rng)
        visit_keys = self._keys(vspec, len(p_idx), rng)
        out_tables: dict[str, pd.DataFrame] = {}

        # patients table
        cols: dict[str, Any] = {pspec.key: patient_keys}
        cols[pspec.birth] = self._times_out(pspec, pspec.birth, birth_s)
        if pspec.death:
            cols[pspec.death] = self._times_out(pspec, pspec.death, death_s)
        for var in self.patient_vars:
            if var.name.startswith("col:"):
                cols[var.name[4:]] = self._values_out(var, pv[:, pvar[var.name]], rng)
        out_tables[pname] = self._frame(pname, cols, m)

        # visits table
        v_keep = np.flatnonzero(visit_ok)
        cols = {vspec.key: visit_keys[v_keep], vspec.patient: patient_keys[p_idx[v_keep]],
                vspec.start: self._times_out(vspec, vspec.start, start_s[v_keep])}
        if vspec.stop:
            cols[vspec.stop] = self._times_out(vspec, vspec.stop, stop_s[v_keep])
        for var in self.step_vars:
            if var.name == "class":
                cols[vspec.klass] = var.codec.decode(tok[v_keep, svar["class"]])
            elif var.name == "code":
                cols[vspec.code] = var.codec.decode(tok[v_keep, svar["code"]])
            elif var.name.startswith("col:"):
                cols[var.name[4:]] = self._values_out(var, tok[v_keep, svar[var.name]], rng)
        self._looked_up(vname, vspec, cols)
        out_tables[vname] = self._frame(vname, cols, len(v_keep))

        # event tables
        row_of_visit = np.full((m, vt.shape[1]), -1, dtype=np.int64)
        row_of_visit[p_idx, t_idx] = np.arange(len(p_idx))
        for name, spec in s.events:
            r = rows[name]
            vrow = row_of_visit[r[:, 0], r[:, 1]] if len(r) else np.zeros(0, np.int64)
            ok = (vrow >= 0) & visit_ok[np.maximum(vrow, 0)] if len(r) else np.zeros(0, bool)
            r, vrow = r[ok], vrow[ok]
            rvar = {v.name: 3 + j for j, v in enumerate(self.row_vars[name])}
            offset = self.row_vars[name][0].codec.decode(r[:, rvar["offset"]], rng)
            e_start = np.maximum(start_s[vrow] + offset, birth_s[r[:, 0]])
            lim = limit[r[:, 0]]
            keep = e_start <= lim
            r, vrow, e_start, lim = r[keep], vrow[keep], e_start[keep], lim[keep]
            cols = {spec.patient: patient_keys[r[:, 0]], spec.visit: visit_keys[vrow],
                    spec.start: self._times_out(spec, spec.start, e_start),
                    spec.code: self.code_codecs[name].decode(r[:, 2])}
            if spec.key:
                cols[spec.key] = self._keys(spec, len(r), rng)
            for j, var in enumerate(self.row_vars[name]):
                col = 3 + j
                if var.name == "duration":
                    stop = e_start + var.codec.decode(r[:, col], rng)
                    stop = np.where(stop > lim, np.where(np.isinf(lim), stop, lim), stop)
                    cols[spec.stop] = self._times_out(spec, spec.stop, stop)
                elif var.name == "value":
                    cols[spec.value] = _rounded(var.codec.decode(r[:, col], rng))
                elif var.name.startswith("col:"):
                    cols[var.name[4:]] = self._values_out(var, r[:, col], rng)
            self._looked_up(name, spec, cols)
            out_tables[name] = self._frame(name, cols, len(r))
        return EHRDataset(out_tables, self.schema, "synthetic", dict(self.files))

    def birth_seconds(self, pv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Birth times (s since 1970) of sampled patients: the year's first day plus a uniform number of
        whole days (and seconds, for a datetime column)."""
        pspec = self.schema.patients[1]
        j = next(i for i, v in enumerate(self.patient_vars) if v.name == "birth_year")
        years = self.patient_vars[j].codec.decode(pv[:, j], rng)
        year_start = pd.to_datetime(pd.DataFrame({"year": years, "month": 1, "day": 1})).astype("int64")
        birth_s = year_start.to_numpy() / NS + np.floor(rng.random(len(pv)) * 365) * 86400
        if pspec.times.get(pspec.birth) not in ("date", "year"):
            birth_s += np.floor(rng.random(len(pv)) * 86400)
        return birth_s

    def _keys(self, spec: TableSpec, n: int, rng: np.random.Generator) -> np.ndarray:
        """New keys: random UUIDs (version 4, drawn from ``rng``) or 1..n; never a real key."""
        if spec.key_format == "integer":
            return np.arange(1, n + 1, dtype=np.int64)
        raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        return np.asarray([str(uuid.UUID(bytes=bytes(b), version=4)) for b in raw], dtype=object)

    @staticmethod
    def _times_out(spec: TableSpec, column: str, seconds: np.ndarray) -> pd.Series:
        x = np.asarray(seconds, dtype=float)
        x = np.where(np.abs(x) < 9.2e9, x, np.nan)  # beyond datetime64[ns] (1678-2261): nothing to write
        values = pd.to_datetime(pd.Series(x) * NS)
        return format_times(values, spec.times.get(column, "datetime"))

    @staticmethod
    def _values_out(var: Var, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        values = var.codec.decode(tokens, rng)
        if isinstance(var.codec, ValueCodec):
            if var.codec.integer:
                return pd.array(values, dtype="Int64")
            return _rounded(values)
        return values

    def _looked_up(self, name: str, spec: TableSpec, cols: dict[str, Any]) -> None:
        """Fill descriptions and by-code columns from the generated codes."""
        for code_col, lookup in self.lookups.get(name, {}).items():
            if code_col not in cols:
                continue
            wanted = [d for d, target in spec.describe.items() if target == code_col]
            if code_col == spec.code:
                wanted += spec.by_code
            codes = cols[code_col]
            for col in wanted:
                cols[col] = np.asarray([lookup.get(c, {}).get(col) if c is not None else None for c in codes],
                                       dtype=object)

    def _frame(self, name: str, cols: dict[str, Any], n: int) -> pd.DataFrame:
        """The table with the input's columns in the input's order (columns not modelled: empty)."""
        data = {}
        for col in self.headers[name]:
            data[col] = cols[col] if col in cols else np.full(n, np.nan, dtype=object)
        return pd.DataFrame(data)

    # -- persistence ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema.to_dict(),
                "patient_vars": [v.to_dict() for v in self.patient_vars],
                "step_vars": [v.to_dict() for v in self.step_vars],
                "code_codecs": {k: v.to_dict() for k, v in self.code_codecs.items()},
                "row_vars": {k: [v.to_dict() for v in vs] for k, vs in self.row_vars.items()},
                "lookups": self.lookups, "headers": self.headers, "files": self.files,
                "end_date": self.end_date, "birth_years": list(self.birth_years or []), "caps": self.caps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EHREncoder:
        enc = cls(EHRSchema.from_dict(data["schema"]))
        enc.patient_vars = [Var.from_dict(v) for v in data["patient_vars"]]
        enc.step_vars = [Var.from_dict(v) for v in data["step_vars"]]
        enc.code_codecs = {k: Codec.from_dict(v) for k, v in data["code_codecs"].items()}
        enc.row_vars = {k: [Var.from_dict(v) for v in vs] for k, vs in data["row_vars"].items()}
        enc.lookups, enc.headers, enc.files = data["lookups"], data["headers"], data["files"]
        enc.end_date = data["end_date"]
        enc.birth_years = tuple(data["birth_years"]) if data["birth_years"] else None
        enc.caps = dict(data.get("caps") or {})
        return enc


def _rounded(values: np.ndarray) -> np.ndarray:
    """Numbers to 4 significant digits (the bins are 12 % wide: more digits would be noise)."""
    out = np.asarray(values, dtype=object).copy()
    for i, v in enumerate(out):
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and v != 0:
            out[i] = float(f"{float(v):.4g}")
    return out


def parse_birth(values: pd.Series, fmt: str) -> pd.Series:
    return parse_times(values, fmt)
