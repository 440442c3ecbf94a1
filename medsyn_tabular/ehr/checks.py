"""Checks of an EHR dataset, real or synthetic: referential integrity, time order, real identifiers.

* :func:`integrity`: every foreign key resolves (visit -> patient, event -> patient, event -> visit, and
  an event's patient is its visit's patient), keys are unique, and the time rules hold: birth before
  every visit and event, start <= stop, and death after everything (compared by day where a column holds
  dates only, as a date of death does, and by year against a year of birth).
* :func:`real_identifiers_in`: how many values of the real data's identifiers (keys, references to other
  tables, and every column the PHI rules drop: names, SSN, addresses...) appear as a whole cell or JSON
  string in synthetic output. The result names columns and counts, never the values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medsyn_tabular.ehr.codecs import code_key
from medsyn_tabular.ehr.dataset import EHRDataset


@dataclass
class IntegrityResult:
    """Shares in [0, 1] (1 = everything holds) and the per-check rows behind them."""

    referential_integrity: float
    time_order: float
    duplicate_keys: int
    references: list[dict] = field(default_factory=list)
    time_rules: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.referential_integrity == 1.0 and self.time_order == 1.0 and self.duplicate_keys == 0


def _keys(values: pd.Series) -> pd.Series:
    return values.map(code_key)


def _day(values: pd.Series) -> pd.Series:
    return values.dt.floor("D")


def integrity(data: EHRDataset) -> IntegrityResult:
    """Referential integrity and time order of ``data`` (see the module docstring)."""
    s = data.schema
    pname, pspec = s.patients
    vname, vspec = s.visits
    P, V = data.table(pname), data.table(vname)
    refs, rules = [], []
    pkeys = _keys(P[pspec.key])
    dup = int(pkeys.duplicated().sum() + pkeys.isna().sum())
    vkeys = _keys(V[vspec.key]) if vspec.key else pd.Series(dtype=object)
    dup += int(vkeys.duplicated().sum() + vkeys.isna().sum()) if vspec.key else 0
    known_p = set(pkeys.dropna())

    def ref(table: str, column: str, values: pd.Series, known: set) -> None:
        resolved = int(values.isin(known).sum())
        refs.append({"table": table, "column": column, "references": int(len(values)), "resolved": resolved})

    vp = _keys(V[vspec.patient])
    ref(vname, vspec.patient, vp, known_p)
    birth = data.times(pname, pspec.birth)
    birth_format = pspec.times.get(pspec.birth)
    birth_day_only = birth_format == "date"
    birth_year_only = birth_format == "year"  # a year of birth: compared by year
    birth_of = pd.Series(birth.to_numpy(), index=pkeys.to_numpy())
    birth_of = birth_of[~birth_of.index.duplicated()]
    death_of = None
    if pspec.death:
        death_of = pd.Series(data.times(pname, pspec.death).to_numpy(), index=pkeys.to_numpy())
        death_of = death_of[~death_of.index.duplicated()]

    def rule(name: str, ok: pd.Series) -> None:
        rules.append({"rule": name, "rows": int(len(ok)), "violations": int((~ok).sum())})

    def after_birth(table: str, column: str, times: pd.Series, patients: pd.Series, day_only: bool) -> None:
        b = patients.map(birth_of)
        t = times
        if birth_year_only:
            b, t = b.dt.year, t.dt.year
        elif day_only or birth_day_only:
            b, t = _day(b), _day(t)
        rule(f"{table}.{column} on or after birth", t.isna() | b.isna() | (t >= b))

    def before_death(table: str, column: str, times: pd.Series, patients: pd.Series) -> None:
        if death_of is None:
            return
        d = patients.map(death_of)
        rule(f"{table}.{column} on or before death", d.isna() | times.isna() | (_day(times) <= _day(d)))

    def ordered(table: str, start: str, stop: str, a: pd.Series, b: pd.Series, day_only: bool) -> None:
        if day_only:
            a, b = _day(a), _day(b)
        rule(f"{table}: {start} <= {stop}", a.isna() | b.isna() | (a <= b))

    v_start = data.times(vname, vspec.start)
    v_day = vspec.times.get(vspec.start) in ("date", "year")
    after_birth(vname, vspec.start, v_start, vp, v_day)
    before_death(vname, vspec.start, v_start, vp)
    if vspec.stop:
        v_stop = data.times(vname, vspec.stop)
        ordered(vname, vspec.start, vspec.stop, v_start, v_stop,
                v_day or vspec.times.get(vspec.stop) in ("date", "year"))
        before_death(vname, vspec.stop, v_stop, vp)
    visit_patient = pd.Series(vp.to_numpy(), index=vkeys.to_numpy()) if vspec.key else None
    if visit_patient is not None:
        visit_patient = visit_patient[~visit_patient.index.duplicated()]
    for name, spec in s.events:
        E = data.table(name)
        ep = _keys(E[spec.patient])
        ref(name, spec.patient, ep, known_p)
        if spec.key:
            dup += int(_keys(E[spec.key]).duplicated().sum())
        if spec.visit and visit_patient is not None:
            ev = _keys(E[spec.visit])
            ref(name, spec.visit, ev, set(visit_patient.index))
            same = ev.map(visit_patient)
            refs.append({"table": name, "column": f"{spec.patient} = patient of its {spec.visit}",
                         "references": int(len(ev)), "resolved": int((same == ep).sum())})
        start = data.times(name, spec.start)
        day = spec.times.get(spec.start) in ("date", "year")
        after_birth(name, spec.start, start, ep, day)
        before_death(name, spec.start, start, ep)
        if spec.stop:
            stop = data.times(name, spec.stop)
            ordered(name, spec.start, spec.stop, start, stop, day or spec.times.get(spec.stop) == "date")
            before_death(name, spec.stop, stop, ep)
    if death_of is not None:
        d = data.times(pname, pspec.death)
        before = (birth.dt.year <= d.dt.year) if birth_year_only else (_day(birth) <= _day(d))
        rule(f"{pname}: birth <= death", d.isna() | before)
    total_refs = sum(r["references"] for r in refs)
    share_refs = sum(r["resolved"] for r in refs) / total_refs if total_refs else 1.0
    total_rows = sum(r["rows"] for r in rules)
    share_time = 1.0 - sum(r["violations"] for r in rules) / total_rows if total_rows else 1.0
    for r in refs:
        r["share"] = r["resolved"] / r["references"] if r["references"] else 1.0
    return IntegrityResult(float(share_refs), float(share_time), dup, refs, rules)


_SPLIT = re.compile(r'[\n\r,;\t"]|\\"')


def real_identifiers(real: EHRDataset) -> dict[str, set[str]]:
    """``'table.column' -> values`` of everything identifying in the real data: keys and foreign keys,
    columns not modelled because they are identifiers, and every column its PHI rules drop. Values
    shorter than 4 characters (a 'M', a state code) are left out: they identify nobody."""
    out: dict[str, set[str]] = {}
    for name, spec in real.schema.tables.items():
        if name not in real.tables:
            continue
        df = real.tables[name]
        cols = [c for c in (spec.key, spec.patient, spec.visit) if c]
        cols += [c for c, a in spec.phi.items() if a == "drop"]
        cols += [c for c, why in spec.notes.items() if "identifier" in why or "PHI" in why]
        for col in dict.fromkeys(cols):
            if col in df.columns:
                values = {str(v).strip() for v in df[col].dropna().map(code_key) if v is not None}
                values = {v for v in values if len(v) >= 4}
                if values:
                    out[f"{name}.{col}"] = values
    return out


def real_identifiers_in(real: EHRDataset, texts: Iterable[str]) -> dict[str, int]:
    """``'table.column' -> number of its real values`` found as a whole cell (CSV) or string (JSON) in
    ``texts``; an empty dict means none was found."""
    cells: set[str] = set()
    for text in texts:
        cells.update(part.strip() for part in _SPLIT.split(text) if part.strip())
        cells.update(m.group(1) for m in re.finditer(r'urn:uuid:([0-9a-fA-F-]{36})', text))
    found = {}
    for column, values in real_identifiers(real).items():
        hits = len(values & cells)
        if hits:
            found[column] = hits
    return found


def dataset_texts(data: EHRDataset) -> list[str]:
    """The tables of ``data`` as the CSV text they are written as (for :func:`real_identifiers_in`)."""
    from medsyn_core.csv_export import to_csv_text

    return [to_csv_text(df) for df in data.tables.values()]


def visits_per_patient(data: EHRDataset) -> np.ndarray:
    """Visits of each patient (patients without visits count 0)."""
    pname, pspec = data.schema.patients
    vname, vspec = data.schema.visits
    counts = _keys(data.table(vname)[vspec.patient]).value_counts()
    return _keys(data.table(pname)[pspec.key]).map(counts).fillna(0).to_numpy(dtype=float)


def inter_visit_gaps_days(data: EHRDataset) -> np.ndarray:
    """Days between consecutive visit starts of each patient (pooled)."""
    vname, vspec = data.schema.visits
    frame = pd.DataFrame({"p": _keys(data.table(vname)[vspec.patient]), "t": data.times(vname, vspec.start)})
    frame = frame.dropna().sort_values(["p", "t"], kind="stable")
    gaps = frame.groupby("p")["t"].diff().dropna()
    return (gaps.dt.total_seconds() / 86400).to_numpy()
