"""DP training with the defaults (issue 19): batch size and epochs chosen from n and ε, so that the plan is
reachable on small tables such as the 303-row heart table."""

import pytest
import torch

from medsyn_core.privacy import PrivacyError
from medsyn_core.privacy.dpsgd import plan_dpsgd, steps_per_epoch
from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
from medsyn_tabular.defaults import (
    BATCH_SIZE,
    EPOCHS,
    FALLBACK_SIGMA,
    MIN_DP_EPOCHS,
    TARGET_SIGMA,
    dp_batch_size,
    dp_training_defaults,
)
from medsyn_tabular.synthesizer import TabularSynthesizer


def test_the_old_fixed_batch_was_refused_on_the_heart_table_and_the_defaults_are_not():
    fixed = TabularSynthesizer("ctgan", epochs=300, batch_size=500, preset="balanced")
    with pytest.raises(PrivacyError, match="choose a batch size below 75"):
        fixed.plan_privacy(303)
    for preset in ("strict", "balanced", "exploratory"):
        synth = TabularSynthesizer("ctgan", preset=preset)
        budget, plan = synth.plan_privacy(303)
        assert synth.batch_size == 20 and MIN_DP_EPOCHS <= synth.epochs <= EPOCHS
        assert plan.noise_multiplier <= FALLBACK_SIGMA
        assert plan.steps == synth.epochs * steps_per_epoch(303, 20)


@pytest.mark.parametrize("n,epsilon", [(303, 3.0), (768, 10.0), (5110, 1.0), (40, 10.0)])
def test_the_rule_aims_at_sigma_two_and_keeps_a_minimum_of_epochs(n, epsilon):
    batch, epochs = dp_training_defaults(n, epsilon, "tvae")
    assert batch == dp_batch_size(n) and batch <= n // 2 and batch <= BATCH_SIZE
    delta = min(1e-5, 1 / (10 * n))
    plan = plan_dpsgd(0.9 * epsilon, 0.9 * delta, n, batch, epochs * steps_per_epoch(n, batch))
    if epochs > MIN_DP_EPOCHS:  # as many epochs as σ = 2 allows (one more would need more noise)
        assert plan.noise_multiplier <= TARGET_SIGMA * 1.01
        more = plan_dpsgd(0.9 * epsilon, 0.9 * delta, n, batch, (epochs + 1) * steps_per_epoch(n, batch))
        assert more.noise_multiplier > TARGET_SIGMA or epochs == EPOCHS
    else:
        assert plan.noise_multiplier <= FALLBACK_SIGMA


def test_a_budget_too_small_for_one_epoch_is_refused_with_advice():
    with pytest.raises(PrivacyError, match="Raise ε"):
        dp_training_defaults(40, 0.1, "ctgan")


def test_without_dp_the_defaults_are_the_fixed_ones():
    synth = TabularSynthesizer("tvae")
    assert (synth.batch_size, synth.epochs) == (BATCH_SIZE, EPOCHS)
    assert dp_training_defaults(303, None) == (BATCH_SIZE, EPOCHS)


def test_dp_training_with_the_defaults_trains_on_the_heart_table():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy CPU: one thread is many times faster for these small batches
    try:
        synth = TabularSynthesizer("tvae", preset="strict", metadata=heart_cleveland_metadata())
        synth.fit(load_heart_cleveland())
    finally:
        torch.set_num_threads(threads)
    assert synth.card["chosen_by_default"] == {"batch_size": 20, "epochs": synth.epochs}
    assert synth.ledger.total()[0] <= 1.0 + 1e-9
    assert len(synth.sample(50)) == 50
