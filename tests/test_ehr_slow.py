"""The bar of the EHR issue on the full Synthea export of the reference data (59 patients, 2,590
encounters, 21,697 observations): visits per patient and gaps between visits within KS complement 0.85 of
the real ones, with full referential integrity, valid time order and no real identifier. A real training
run (minutes): marked slow, and it needs ../shared/data."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import needs_shared_data
from ehr_helpers import one_thread

from medsyn_tabular.ehr.checks import (
    dataset_texts,
    integrity,
    inter_visit_gaps_days,
    real_identifiers_in,
    visits_per_patient,
)
from medsyn_tabular.ehr.dataset import read_folder
from medsyn_tabular.ehr.synthesizer import EHRSynthesizer
from medsyn_tabular.evaluation.fidelity import ks_complement


@needs_shared_data
@pytest.mark.slow
def test_visits_per_patient_and_gaps_match_the_synthea_export(shared_data):
    real = read_folder(shared_data / "tabular" / "synthea_csv")
    assert real.n_patients == 59
    with one_thread():
        fake = EHRSynthesizer(epochs=150, dim=64, seed=0).fit(real).sample(200, seed=0)
    visits = ks_complement(pd.Series(visits_per_patient(real)), pd.Series(visits_per_patient(fake)))
    gaps = ks_complement(pd.Series(inter_visit_gaps_days(real)), pd.Series(inter_visit_gaps_days(fake)))
    assert visits >= 0.85 and gaps >= 0.85, (visits, gaps)
    assert integrity(fake).ok
    assert real_identifiers_in(real, dataset_texts(fake)) == {}
