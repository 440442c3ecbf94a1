"""The engine-neutral privacy module: budgets, DP mechanisms, DP-SGD via Opacus, the ledger."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medsyn_core.privacy import PrivacyBudget, PrivacyError, PrivacyLedger
from medsyn_core.privacy.dpsgd import make_private, plan_dpsgd, replace_unsupported_layers, training_entry
from medsyn_core.privacy.ledger import LedgerEntry, dpsgd_epsilon
from medsyn_core.privacy.mechanisms import (
    approx_bounds,
    laplace_epsilon,
    laplace_histogram,
    missing_rate,
    numeric_histogram,
    stable_categories,
    stable_threshold,
)


def test_presets_and_defaults():
    assert PrivacyBudget.create(303, preset="off") is None
    assert PrivacyBudget.create(303) is None
    b = PrivacyBudget.create(303, preset="strict")
    assert b.epsilon == 1.0 and b.delta < 1 / 303
    assert b.epsilon_preprocessing + b.epsilon_training == pytest.approx(1.0)
    assert PrivacyBudget.create(303, preset="Balanced").epsilon == 3.0
    assert PrivacyBudget.create(303, preset="exploratory").epsilon == 10.0


@pytest.mark.parametrize("kwargs,match", [
    ({"epsilon": 0}, "positive"),
    ({"epsilon": -1}, "positive"),
    ({"epsilon": float("nan")}, "positive"),
    ({"epsilon": 1, "delta": 1 / 303}, "not below 1/n"),
    ({"epsilon": 1, "delta": 0.5}, "not below 1/n"),
    ({"preset": "paranoid"}, "Unknown privacy preset"),
    ({"preset": "strict", "epsilon": 3}, "either a preset or an"),
    ({"epsilon": 1, "preprocessing_share": 0}, "strictly between"),
])
def test_impossible_budgets_are_clear_errors(kwargs, match):
    with pytest.raises(PrivacyError, match=match):
        PrivacyBudget.create(303, **kwargs)


def test_discrete_laplace_noise_is_real_centred_and_integer():
    counts = np.full(20000, 50)
    noisy = laplace_histogram(counts, epsilon=0.5)
    assert noisy.dtype == np.int64
    # P(noise = 0) = (1 - e^-ε) / (1 + e^-ε) ≈ 0.245 at ε = 0.5; variance 2 e^-ε / (1 - e^-ε)^2
    q = np.exp(-0.5)
    assert (noisy != counts).mean() == pytest.approx(1 - (1 - q) / (1 + q), abs=0.02)
    assert abs((noisy - counts).mean()) < 0.1
    assert (noisy - counts).std() == pytest.approx(np.sqrt(2 * q) / (1 - q), rel=0.05)
    # a patient with k rows: scale k/ε
    wide = laplace_histogram(counts, epsilon=0.5, sensitivity=3)
    assert (wide - counts).std() == pytest.approx(np.sqrt(2 * q ** (1 / 3)) / (1 - q ** (1 / 3)), rel=0.05)
    assert laplace_epsilon(2.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="whole number"):
        laplace_histogram(np.array([0.5]), epsilon=1.0)


def test_rare_categories_are_never_revealed():
    values = np.array(["common"] * 500 + ["also common"] * 300 + ["only one patient"])
    tau = stable_threshold(1.0, 1e-5)
    assert tau > 10
    for _ in range(20):
        released = stable_categories(values, epsilon=1.0, delta=1e-5)
        assert "only one patient" not in released.categories
        assert set(released.categories) == {"common", "also common"}


def test_approx_bounds_and_histogram_on_ages():
    ages = np.random.default_rng(0).integers(29, 78, size=3000).astype(float)
    lo, hi = approx_bounds(ages, epsilon=1.0)
    assert lo <= 29 and hi >= 77 and lo >= 16 and hi <= 128
    ages[:300] = np.nan
    edges, counts, missing = numeric_histogram(ages, lo, hi, bins=16, epsilon=1.0)
    assert len(edges) == 17 and counts.shape == (16,)
    assert missing_rate(missing, counts.sum()) == pytest.approx(0.1, abs=0.02)
    with pytest.raises(PrivacyError, match="Declare its bounds"):
        approx_bounds(np.array([42.0]), epsilon=0.1)


def test_plan_hits_the_target_and_refuses_unreachable_budgets():
    plan = plan_dpsgd(3.0, 1e-4, n_rows=1000, batch_size=50, steps=400)
    eps = dpsgd_epsilon("rdp", plan.noise_multiplier, plan.sample_rate, plan.steps, 1e-4)
    assert eps <= 3.0 and eps == pytest.approx(3.0, rel=0.01)
    with pytest.raises(PrivacyError, match="cannot be met") as info:
        plan_dpsgd(0.1, 1e-5, n_rows=300, batch_size=150, steps=5000)
    assert "steps" in str(info.value) or "raise ε" in str(info.value)
    with pytest.raises(PrivacyError, match="smaller than the number of rows"):
        plan_dpsgd(1.0, 1e-5, n_rows=100, batch_size=100, steps=10)


def test_batchnorm_is_replaced_not_left_in():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    fixed, replaced = replace_unsupported_layers(net)
    assert replaced and not any(isinstance(m, nn.BatchNorm1d) for m in fixed.modules())


def test_opacus_really_attached_and_ledger_recomputes_epsilon():
    torch.manual_seed(0)
    n = 512
    data = TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)).float())
    model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(data, batch_size=32)
    plan = plan_dpsgd(2.0, 1e-4, n_rows=n, batch_size=32, steps=3 * len(loader), max_grad_norm=1.0)
    engine, model, optimizer, loader = make_private(plan, model, optimizer, loader)
    loss_fn = nn.BCEWithLogitsLoss()
    saw_grad_sample = False
    for _ in range(3):
        for x, y in loader:
            if len(x) == 0:
                continue
            optimizer.zero_grad()
            loss_fn(model(x).squeeze(1), y).backward()
            saw_grad_sample |= all(p.grad_sample is not None for p in model.parameters())
            optimizer.step()
    assert saw_grad_sample
    # Noise is added: a zero-loss step still moves the weights.
    before = [p.detach().clone() for p in model.parameters()]
    x, _ = next(iter(loader))
    optimizer.zero_grad()
    (0.0 * model(x).sum()).backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))

    entry = training_entry(plan, engine, target="toy")
    ledger = PrivacyLedger(dataset_rows=n)
    ledger.add(LedgerEntry("preprocessing", "laplace-histogram", "x", epsilon=0.2))
    ledger.add(entry)
    assert entry.steps >= 3 * 16
    recomputed = dpsgd_epsilon("rdp", entry.noise_multiplier, entry.sample_rate, entry.steps, 1e-4)
    assert entry.epsilon == pytest.approx(recomputed, rel=0.01)
    total, delta = PrivacyLedger.from_dict(ledger.to_dict()).total()
    assert total == pytest.approx(0.2 + engine.get_epsilon(1e-4), rel=0.01)
    assert delta == pytest.approx(1e-4)
