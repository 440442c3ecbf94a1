"""Federations with real processes on 127.0.0.1: Flower's SuperLink (TLS, node authentication) started by
``run_server``, one SuperNode per site started by ``start_client``, the MedSyn ServerApp and ClientApps
they launch. No mocks: every message crosses Flower's TLS connection.

Each test is a whole federation (a minute or more of CPU on a shared machine), so they are marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from federated_helpers import HEART_SCHEMA, TINY_CTGAN, Federation, wait_for

from medsyn_federated import runner, tokens
from medsyn_federated.simulate import split_table

pytestmark = pytest.mark.slow


def _heart_sites(shared_data, root, n_sites=3, split="by-column=age"):
    df = pd.read_csv(shared_data / "tabular" / "heart.csv")
    paths = []
    for i, part in enumerate(split_table(df, n_sites, split, seed=0)):
        path = root / f"site{i}.csv"
        part.to_csv(path, index=False)
        paths.append(path)
    return df, paths


def test_three_sites_train_a_ctgan_over_tls_refuse_a_wrong_token_and_survive_a_killed_site(tmp_path,
                                                                                             shared_data):
    df, paths = _heart_sites(shared_data, tmp_path)
    fed = Federation(tmp_path, ["site-a", "site-b", "site-c"], engine="tabular", model="ctgan",
                     metadata=yaml.safe_load(HEART_SCHEMA.read_text()), rounds=2, local_epochs=1,
                     batch_size=20, hyperparameters=TINY_CTGAN, round_timeout_s=60)
    try:
        fed.start_server()
        # an unknown site: a well-formed token the admin never issued
        intruder, intruder_work = fed.start_site("intruder", paths[0], token=tokens.new_token())
        for site, path in zip(["site-a", "site-b", "site-c"], paths, strict=True):
            fed.start_site(site, path)
        assert intruder.wait(timeout=120) != 0  # Flower stops it at once
        assert runner.was_refused(intruder_work)
        assert "refused this site" in runner.explain_exit(intruder.returncode, intruder_work)
        # kill site-c's SuperNode while round 1 is under way
        wait_for(lambda: "round 1/2: training at 3 site(s)" in fed.log(), 600, "round 1 to start")
        runner.stop_process(fed.clients["site-c"])
        status = fed.wait()
    finally:
        fed.stop()
    log = fed.log()
    assert status["state"] == "finished"
    assert "site site-c did not answer" in log or "site site-c failed" in log
    assert "the round completes with the other sites" in log or "left out of this round" in log
    first = status["history"][0]
    assert sorted(first["sites"]) == ["site-a", "site-b"] and first["missing"] == ["site-c"]
    assert "unregistered" not in log and "intruder" not in log  # the refused site never joined

    from medsyn_tabular.synthesizer import TabularSynthesizer

    model = TabularSynthesizer.load(status["model_path"])
    rows = model.sample(200, seed=1)
    assert list(rows.columns) == list(df.columns)
    declared = yaml.safe_load(HEART_SCHEMA.read_text())["columns"]
    for col, spec in declared.items():
        if "categories" in spec:
            assert set(rows[col].dropna().astype(int)) <= set(spec["categories"]), col
        else:
            assert rows[col].min() >= spec["min"] and rows[col].max() <= spec["max"], col
    card = model.card
    assert [s["pseudonym"] for s in card["federation"]["sites"]] == ["site-a", "site-b", "site-c"]
    assert {s["pseudonym"]: s["rounds"] for s in card["federation"]["sites"]}["site-c"] == 0
    text = json.dumps(card)
    assert "msft1_" not in text and str(paths[0]) not in text  # no token, no site path in the card
    # each site's shared-encoding statistics are DP, with a ledger per site
    assert set(card["differential_privacy"]["per_site"]) == {"site-a", "site-b", "site-c"}


def test_an_image_gan_trains_on_two_sites_pneumoniamnist_halves(tmp_path):
    from medsyn_imaging.io.datasets import load_medmnist
    from medsyn_imaging.training.generator_store import load_generator

    data = load_medmnist("pneumoniamnist")
    images, labels = data.images["train"][:240], data.labels["train"][:240]
    halves = []
    for i, sl in enumerate((slice(0, 120), slice(120, 240))):
        path = tmp_path / f"half{i}.npz"
        arrays = {}
        for split in ("train", "val", "test"):
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[sl], labels[sl].reshape(-1, 1)
        np.savez(path, **arrays)
        halves.append(path)
    fed = Federation(tmp_path, ["site-a", "site-b"], engine="imaging", model="dcgan", rounds=2,
                     local_epochs=0.032, batch_size=16, name="fed-images",
                     imaging={"resolution": 32, "class_names": ["normal", "pneumonia"],
                              "arch": {"base_channels": 8, "max_channels": 32, "z_dim": 16}})
    try:
        fed.start_server()
        for site, path in zip(["site-a", "site-b"], halves, strict=True):
            fed.start_site(site, path)
        status = fed.wait()
    finally:
        fed.stop()
    assert status["state"] == "finished"
    assert all(sorted(r["sites"]) == ["site-a", "site-b"] for r in status["history"])
    generator = load_generator(status["model_path"])
    images, labels = generator.sample(4, label="pneumonia", seed=0)
    assert images.shape == (4, 1, 28, 28) and np.isfinite(images).all()  # padding to 32 px undone
    assert (labels == 1).all()
    assert generator.card["federation"]["rounds"] == 2


def test_a_dp_federation_states_each_sites_epsilon_and_it_recomputes_from_the_ledger(tmp_path, shared_data):
    from medsyn_core.privacy import PrivacyLedger
    from medsyn_federated.model_folder import read_site_epsilons
    from medsyn_tabular.synthesizer import TabularSynthesizer

    df, paths = _heart_sites(shared_data, tmp_path, n_sites=2, split="iid")
    fed = Federation(tmp_path, ["site-a", "site-b"], engine="tabular", model="ctgan",
                     metadata=yaml.safe_load(HEART_SCHEMA.read_text()), rounds=2, local_epochs=1,
                     batch_size=30, hyperparameters=TINY_CTGAN, name="fed-dp",
                     privacy={"epsilon": 8.0}, dp_fedavg={"noise_multiplier": 1.0, "clipping_norm": 10.0})
    try:
        fed.start_server()
        fed.start_site("site-a", paths[0], public_rows=True)
        _, site_b_work = fed.start_site("site-b", paths[1], epsilon=4.0)  # a site may ask for less
        status = fed.wait()
    finally:
        fed.stop()
    model = TabularSynthesizer.load(status["model_path"])
    dp = model.card["differential_privacy"]
    assert dp["enabled"] and dp["sample_level"]
    eps = read_site_epsilons(status["model_path"])
    for site, limit in (("site-a", 8.0), ("site-b", 4.0)):
        ledger = PrivacyLedger.from_dict(dp["per_site"][site]["ledger"])
        recomputed, _ = ledger.total()
        assert recomputed == pytest.approx(dp["per_site"][site]["epsilon"], rel=1e-9)
        assert recomputed == pytest.approx(eps[site], rel=1e-9) and recomputed <= limit + 1e-6
        sgd = next(e for e in ledger.entries if e.mechanism == "dp-sgd")
        assert sgd.steps == sgd.details["planned_steps"] and sgd.details["rounds"] == 2
    assert dp["epsilon_total"] == pytest.approx(max(eps.values()))
    # the site keeps its own copy of its ledger, and it says the same
    local = PrivacyLedger.load(next(site_b_work.glob("ledger-*.json")))
    assert local.total()[0] == pytest.approx(eps["site-b"], rel=1e-9)
    # client level (DP-FedAvg): recomputed from z and the released rounds
    client = dp["client_level"]
    from medsyn_core.privacy.ledger import LedgerEntry

    assert LedgerEntry(**client["entry"]).recompute_epsilon() == pytest.approx(client["epsilon"])
    assert client["entry"]["steps"] == 2
    # rows only where the site declared them public; no real-row loss on the card
    rows = {s["pseudonym"]: s["rows"] for s in model.card["federation"]["sites"]}
    assert rows["site-a"] == len(pd.read_csv(paths[0])) and rows["site-b"] == "not declared public"
    assert "loss_d" not in json.dumps(model.card)
