"""One patient's record as a timeline (for the EHR page's chart): one row per visit and per event row."""

from __future__ import annotations

import pandas as pd

from medsyn_tabular.ehr.codecs import code_key
from medsyn_tabular.ehr.dataset import EHRDataset


def patient_keys(data: EHRDataset) -> list[str]:
    """The patients' keys, in table order."""
    pname, p = data.schema.patients
    return [k for k in data.table(pname)[p.key].map(code_key) if k is not None]


def patient_timeline(data: EHRDataset, patient: str) -> pd.DataFrame:
    """Rows ``start``, ``end`` (datetimes; end may be missing), ``track`` (visits by class, then one track
    per event table), ``code`` and ``label`` (the description, else the code) of one patient."""
    s = data.schema
    parts = []
    vname, v = s.visits
    V = data.table(vname)
    mine = V[v.patient].map(code_key) == patient
    describe = {target: d for d, target in v.describe.items()}
    parts.append(pd.DataFrame({
        "start": data.times(vname, v.start)[mine],
        "end": data.times(vname, v.stop)[mine] if v.stop else pd.NaT,
        "track": ("visit: " + V.loc[mine, v.klass].astype(str)) if v.klass else "visit",
        "code": V.loc[mine, v.code].map(code_key) if v.code else None,
        "label": V.loc[mine, describe[v.code]] if v.code in describe else
        (V.loc[mine, v.code].map(code_key) if v.code else "visit")}))
    for name, spec in s.events:
        E = data.table(name)
        mine = E[spec.patient].map(code_key) == patient
        describe = {target: d for d, target in spec.describe.items()}
        label = E.loc[mine, describe[spec.code]] if spec.code in describe else E.loc[mine, spec.code]
        if spec.value:
            label = label.astype(str) + ": " + E.loc[mine, spec.value].astype(str)
        parts.append(pd.DataFrame({"start": data.times(name, spec.start)[mine],
                                   "end": data.times(name, spec.stop)[mine] if spec.stop else pd.NaT,
                                   "track": name, "code": E.loc[mine, spec.code].map(code_key),
                                   "label": label}))
    out = pd.concat(parts, ignore_index=True)
    return out.dropna(subset=["start"]).sort_values("start", kind="stable").reset_index(drop=True)
