"""``medsyn tabular schema|fit|sample`` in-process, with a tiny training run."""

from __future__ import annotations

import pandas as pd
from tabular_helpers import one_torch_thread

from medsyn_cli.main import main


def test_schema_prints_kinds_and_phi_flags(shared_data, capsys):
    assert main(["tabular", "schema", str(shared_data / "tabular/synthea_csv/patients.csv")]) == 0
    out = capsys.readouterr().out
    assert "59 rows x 25 columns" in out
    assert "SSN" in out and "ssn -> drop" in out and "zip -> zip3" in out and "date -> year" in out


def test_fit_then_sample_with_conditions(shared_data, tmp_path, capsys):
    model_dir, out_csv = tmp_path / "heart-tvae", tmp_path / "rows.csv"
    with one_torch_thread():
        assert main(["tabular", "fit", str(shared_data / "tabular/heart.csv"), "--model", "tvae",
                     "--epochs", "2", "--batch-size", "100", "--seed", "3", "--out", str(model_dir)]) == 0
        captured = capsys.readouterr()
        assert "epoch 2/2" in captured.err and f"Saved tvae model to {model_dir}" in captured.out
        assert main(["tabular", "sample", str(model_dir), "-n", "40", "--out", str(out_csv),
                     "--condition", "sex=0", "--condition", "age>=50", "--seed", "1"]) == 0
    rows = pd.read_csv(out_csv)
    assert len(rows) == 40 and (rows["sex"] == 0).all() and (rows["age"] >= 50).all()


def test_user_errors_are_one_readable_line(shared_data, tmp_path, capsys):
    heart = str(shared_data / "tabular/heart.csv")
    assert main(["tabular", "fit", heart, "--epochs", "0", "--out", str(tmp_path / "m")]) == 2
    assert "epochs must be a whole number of at least 1" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["tabular", "schema", str(empty)]) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert main(["tabular", "sample", str(tmp_path / "nowhere"), "-n", "5", "--out", "x.csv"]) == 2
    assert "not a saved tabular model" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
