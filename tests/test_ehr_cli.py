"""``medsyn ehr schema|fit|sample|evaluate|privacy`` in-process on the bundled Synthea sample (tiny fit)."""

from __future__ import annotations

import json

import pandas as pd
import yaml
from ehr_helpers import SAMPLE, one_thread

from medsyn_cli.main import main
from medsyn_core.storage import Store


def test_schema_fit_sample_fhir_evaluate_privacy(tmp_path, capsys):
    schema = tmp_path / "ehr.yaml"
    assert main(["ehr", "schema", str(SAMPLE), "--out", str(schema)]) == 0
    out = capsys.readouterr().out
    assert "layout synthea" in out and "encounters" in out and "visits" in out
    assert "FIRST -> drop" in out and yaml.safe_load(schema.read_text())["tables"]["patients"]["key"] == "Id"
    model = tmp_path / "synthea-ehr"
    with one_thread():
        assert main(["ehr", "fit", str(SAMPLE), "--schema", str(schema), "--epochs", "2", "--batch-size", "4",
                     "--dim", "16", "--out", str(model), "--quiet"]) == 0
    assert f"Saved the EHR model to {model}: 12 patients" in capsys.readouterr().out
    synthetic, bundles = tmp_path / "synthetic", tmp_path / "fhir"
    assert main(["ehr", "sample", str(model), "-n", "5", "--out", str(synthetic), "--fhir", str(bundles),
                 "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "Wrote 5 synthetic patients" in out and "Wrote 5 FHIR Bundles (validated" in out
    assert len(pd.read_csv(synthetic / "patients.csv")) == 5 and len(list(bundles.glob("*.json"))) == 5
    assert main(["ehr", "schema", str(synthetic)]) == 0  # the output re-ingests
    assert "layout synthea" in capsys.readouterr().out
    report = tmp_path / "report.json"
    assert main(["ehr", "evaluate", str(SAMPLE), str(synthetic), "--out", str(report), "--no-figures"]) == 0
    sections = {s["key"] for s in json.loads(report.read_text())["sections"]}
    assert {"integrity", "fidelity", "parent_child", "temporal", "utility"} <= sections
    capsys.readouterr()
    assert main(["ehr", "privacy", str(model)]) == 0
    assert "DP: off" in capsys.readouterr().out
    with Store() as store:  # the operator's data-touching actions are audited, without values
        actions = [e["action"] for e in store.audit_events()]
    assert "ehr-model-saved" in actions and "ehr-sample" in actions


def test_user_errors_are_one_readable_line(tmp_path, capsys):
    assert main(["ehr", "schema", str(tmp_path)]) == 2
    assert "no CSV/TSV or Parquet tables" in capsys.readouterr().err
    assert main(["ehr", "fit", str(SAMPLE), "--epochs", "0", "--out", str(tmp_path / "m")]) == 2
    assert "epochs must be a whole number of at least 1" in capsys.readouterr().err
    assert main(["ehr", "fit", str(SAMPLE), "--epsilon", "3", "--out", str(tmp_path / "m")]) == 2
    assert "declared EHR schema" in capsys.readouterr().err
    assert main(["ehr", "sample", str(tmp_path / "nowhere"), "-n", "3", "--out", str(tmp_path / "o")]) == 2
    assert "not a saved EHR model" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
