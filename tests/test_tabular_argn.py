"""ARGN, the auto-regressive model (issue 14, item 2): mixed types, missing values, dates, exact
conditions (steered), save/load, checkpoint/resume, DP-SGD; early stopping and time budgets (item 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tabular_helpers import MISSING_TABLE_SCHEMA, missing_table, one_torch_thread

from medsyn_tabular import early_stopping as defaults
from medsyn_tabular.data.conditions import parse_conditions
from medsyn_tabular.synthesizer import TabularSynthesizer


@pytest.fixture(scope="module")
def fitted():
    with one_torch_thread():
        return TabularSynthesizer("argn", epochs=3, batch_size=100, seed=0,
                                  phi_actions={"visit": "keep"}).fit(missing_table())


def test_argn_keeps_kinds_missing_rates_dates_and_bounds(fitted):
    df = missing_table()
    with one_torch_thread():
        rows = fitted.sample(3000)
    assert list(rows.columns) == list(df.columns)
    assert (df.isna().mean() - rows.isna().mean()).abs().max() <= 0.03
    assert rows["visit"].dtype == df["visit"].dtype and (rows["visit"].dropna().dt.normalize()
                                                          == rows["visit"].dropna()).all()
    assert rows["age"].dropna().between(df["age"].min(), df["age"].max()).all()
    assert set(rows["smoker"].dropna()) <= set(df["smoker"].dropna())


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_argn_conditions_hold_on_every_row_and_random_order_steers_them(order):
    """Conditions are exact (every row). Under the "random" (any-order) training the conditioned
    columns are generated first, so a rare condition needs no rejection: every generated row meets it."""
    df = missing_table()
    with one_torch_thread():
        synth = TabularSynthesizer("argn", epochs=3, batch_size=100, seed=0, order=order,
                                   phi_actions={"visit": "keep"}).fit(df)
        rows = synth.sample(300, conditions=["smoker=current", "age>=70", "visit<2020-06-01"])
        conds = parse_conditions(["smoker=current", "age>=70"], synth.transformer.columns)
        direct = synth.model.generate(500, np.random.default_rng(0), condition=conds)
    decoded = synth._decode(direct, np.random.default_rng(1))
    assert len(rows) == 300 and (rows["smoker"] == "current").all() and (rows["age"] >= 70).all()
    assert (rows["visit"] < pd.Timestamp("2020-06-01")).all()
    if order == "random":  # steered by construction: no generated row breaks the conditions
        assert (decoded["smoker"] == "current").all() and (decoded["age"] >= 70).all()


def test_argn_keeps_the_relation_between_a_feature_and_the_outcome():
    from test_tabular_quality import outcome_table

    with one_torch_thread():
        rows = TabularSynthesizer("argn", epochs=30, batch_size=200, seed=0).fit(outcome_table()).sample(2000)
    agreement = ((rows["x"] > 50) == (rows["y"] == "high")).mean()
    assert agreement >= 0.95, agreement
    assert 0.4 < (rows["y"] == "high").mean() < 0.6


def test_argn_save_load_gives_the_same_rows(fitted, tmp_path):
    again = TabularSynthesizer.load(fitted.save(tmp_path / "argn", register=False))
    with one_torch_thread():
        assert again.sample(200, seed=3).equals(fitted.sample(200, seed=3))
    assert again.card["model"] == "argn" and again.card["differential_privacy"]["enabled"] is False


def test_argn_with_dp_sgd_spends_its_budget_and_keeps_complete_columns_complete():
    """The whole network sees real rows, so it is trained by DP-SGD; its tokens come from public bounds
    and the DP statistics only. The ledger total is the ε asked; the missing rate follows the DP one."""
    df = missing_table(n=600, seed=3)
    with one_torch_thread():
        synth = TabularSynthesizer("argn", epochs=1, batch_size=60, seed=0, epsilon=3.0,
                                   schema=MISSING_TABLE_SCHEMA).fit(df)
        rows = synth.sample(1000)
    eps, _ = synth.ledger.total()
    assert eps == pytest.approx(3.0, rel=1e-3) and eps <= 3.0 + 1e-9
    entry = synth.ledger.entries[-1]
    assert entry.mechanism == "dp-sgd" and entry.target == "network"
    assert rows["sex"].notna().all() and rows["outcome"].notna().all()  # declared never missing
    assert "loss" not in synth.released_loss_history()[-1]  # a loss on real rows is not released


def test_early_stopping_stops_on_the_validation_score_and_keeps_the_best_weights():
    """A model that stops improving is stopped (patience) and the best check's weights are restored;
    validation rows are held out of training."""
    df = missing_table(n=600, seed=4)
    with one_torch_thread():
        synth = TabularSynthesizer("argn", epochs=400, batch_size=100, seed=0, lr=2e-2).fit(df)
    stop = synth.card["training_stop"]
    assert "did not improve" in stop["stopped_because"]
    assert synth.card["epochs_trained"] < 400
    best = stop["best_score"]  # an improvement counts when above MIN_DELTA
    assert best >= max(c["score"] for c in stop["checks"]) - defaults.MIN_DELTA["quality"]
    assert best in [c["score"] for c in stop["checks"]] and stop["best_epoch"] < synth.card["epochs_trained"]
    train, val = defaults.validation_split(600, 0)
    assert len(val) == 60 and not set(train) & set(val)
    with one_torch_thread():  # scored again (the same draws): the weights kept are the best check's
        assert synth.monitor.score() == pytest.approx(best, abs=1e-9)


def test_a_time_budget_ends_training_before_it_is_spent():
    df = missing_table(n=300, seed=5)
    with one_torch_thread():
        synth = TabularSynthesizer("tvae", epochs=100_000, batch_size=100, seed=0, time_budget_s=2.0,
                                   early_stopping=False).fit(df)
    stop = synth.card["training_stop"]
    assert stop["stopped_because"].startswith("time budget of 2 s")
    assert 1 < synth.card["epochs_trained"] < 100_000
    assert synth.card["training_seconds"] < 6  # the budget, one epoch and the set-up
    assert defaults.epochs_for_time_budget(10.0, 0.3, 300) == 33
    assert defaults.epochs_for_time_budget(10.0, 0.01, 300) == 300


def test_early_stopping_and_time_budgets_are_refused_under_dp():
    from medsyn_core.privacy import PrivacyError

    with pytest.raises(PrivacyError, match="without differential privacy only"):
        TabularSynthesizer("argn", epsilon=1.0, time_budget_s=60)


def test_quick_quality_equals_the_evaluation_engines_quality_on_all_pairs():
    from medsyn_tabular.evaluation.columns import infer_column_kinds
    from medsyn_tabular.evaluation.fidelity import evaluate_fidelity

    real, synthetic = missing_table(n=300, seed=6), missing_table(n=300, seed=7)
    kinds = infer_column_kinds(real)
    f = evaluate_fidelity(real, synthetic, kinds)
    assert defaults.quick_quality(real, synthetic, kinds) == pytest.approx(
        (f.column_shapes + f.pair_trends_all_pairs) / 2, abs=1e-9)


def test_argn_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    from test_tabular_resume import _interrupted_run

    from medsyn_tabular.data.datasets import load_heart_cleveland

    heart = load_heart_cleveland()
    with one_torch_thread():
        whole = TabularSynthesizer("argn", epochs=4, batch_size=50, seed=2).fit(heart)
        _interrupted_run("argn", heart, tmp_path / "ck.pt", stop_at_epoch=3)
        resumed = TabularSynthesizer("argn", epochs=4, batch_size=50, seed=2).fit(
            heart, resume_from=tmp_path / "ck.pt")
    a, b = whole.model.state_tensors(), resumed.model.state_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_monitor_stops_after_patience_or_once_the_best_epoch_is_doubled():
    """Scores as a noisy plateau: five failed checks in a row, or two once training has run twice as
    long as it took to reach the best score, end training; the best check's state is kept."""
    scores = iter([0.50, 0.60, 0.70, 0.705, 0.69, 0.701, 0.70])
    states = iter(range(100))
    monitor = defaults.TrainingMonitor(lambda: next(scores), snapshot=lambda: {"state": next(states)},
                                       every_epoch=True)
    epochs = [1, 5, 10, 15, 20, 25, 30]
    stopped = [monitor(e) for e in epochs]
    assert stopped == [False, False, False, False, False, False, True]  # best at 15; 2 failures by 30
    assert monitor.best_epoch == 15 and monitor.best_state == {"state": 3}
    assert "as many epochs as it took" in monitor.stopped_because
    patient = defaults.TrainingMonitor(iter([0.5] + [0.4] * 5).__next__, every_epoch=True)
    assert [patient(e) for e in range(1, 7)] == [False] * 5 + [True]  # epoch 6 < 2 x 1 + 10: patience


def test_no_validation_check_before_the_warm_up():
    """A TVAE kept its epoch-1 weights: on a small validation set a barely trained network scored best by
    noise. The first check now comes after a third of the most epochs (at least 20, at most all)."""
    warmups = (defaults.warmup_epochs(300), defaults.warmup_epochs(30), defaults.warmup_epochs(10))
    assert warmups == (100, 20, 10)
    scores = iter([0.9, 0.1, 0.1, 0.1, 0.1, 0.1])  # the first check would win by far
    monitor = defaults.TrainingMonitor(lambda: next(scores), snapshot=lambda: {}, every_epoch=True,
                                       warmup_epochs=5)
    for epoch in range(1, 5):
        assert not monitor(epoch)
    assert monitor.checks == []  # nothing scored before epoch 5
    monitor(5)
    assert [c["epoch"] for c in monitor.checks] == [5] and monitor.best_epoch == 5
