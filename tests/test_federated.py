"""Federated synthesis without starting processes: tokens and keys, certificates, the federation file,
the shared encoding from the sites' DP releases, a site's round and its ledger, the card's privacy block,
the table splits and the CLI's certs command. (Whole federations: tests/test_federated_processes.py.)"""

from __future__ import annotations

import json
import stat

import numpy as np
import pandas as pd
import pytest
import yaml
from federated_helpers import HEART_SCHEMA, TINY_CTGAN

from medsyn_federated import certs, tokens
from medsyn_federated.config import FederationConfigError, load_config
from medsyn_federated.simulate import split_table


@pytest.fixture
def heart(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "tabular" / "heart.csv")


# -- tokens and certificates ------------------------------------------------------------------------
def test_a_token_is_the_seed_of_one_flower_node_key_and_anything_else_is_refused(tmp_path):
    token = tokens.new_token()
    assert tokens.public_key_openssh(token) == tokens.public_key_openssh(token)  # the admin's copy matches
    assert tokens.public_key_openssh(tokens.new_token()) != tokens.public_key_openssh(token)
    assert tokens.public_key_openssh(token).startswith(b"ecdsa-sha2-nistp384 ")
    path = tokens.write_private_key(token, tmp_path / "node.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    key = load_ssh_private_key(path.read_bytes(), None)  # what flower-supernode reads
    from cryptography.hazmat.primitives import serialization

    assert key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) \
        == tokens.public_key_openssh(token)
    for bad in ("", "msft1_short", token[:-1] + "!", "x" * 49):
        with pytest.raises(tokens.TokenError) as err:
            tokens.check_token(bad)
        assert bad not in str(err.value) or not bad


def test_the_server_certificate_is_signed_by_the_ca_for_the_named_hosts_only(tmp_path):
    from cryptography import x509

    files = certs.make_certificates(tmp_path / "c", hosts=["fed.example.org", "10.1.2.3"])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["fed.example.org"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # never replaced silently: sites hold the old CA
        certs.make_certificates(tmp_path / "c")


# -- the federation file ----------------------------------------------------------------------------
def _write(tmp_path, **settings):
    files = certs.make_certificates(tmp_path / "certs")
    base = {"name": "heart-fed", "engine": "tabular", "metadata": str(HEART_SCHEMA), "rounds": 2,
            "tls": {"ca": "certs/ca.crt", "cert": "certs/server.pem", "key": "certs/server.key"},
            "sites": {"site-a": tokens.public_key_openssh(tokens.new_token()).decode()}}
    base.update(settings)
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in base.items() if v is not None}), encoding="utf-8")
    return path, files


@pytest.mark.parametrize(("change", "message"), [
    ({"strategy": "fedsgd"}, "'strategy' must be one of"),
    ({"model": "stylegan2"}, "'model' for engine tabular"),
    ({"metadata": None}, "needs 'metadata'"),
    ({"sites": {}}, "lists no site"),
    ({"sites": 3}, "must name a sites file"),
    ({"sites": {"site-a": "ssh-rsa AAAA"}}, "OpenSSH EC public key"),
    ({"sites": {"../evil": "ecdsa-sha2-nistp384 AAAA"}}, "site pseudonym"),
    ({"rounds": 0}, "'rounds' must lie between"),
    ({"tls": {"ca": "nowhere.crt", "cert": "certs/server.pem", "key": "certs/server.key"}}, "not found"),
    ({"dp_fedavg": {"noise_multiplier": 1.0, "clipping_norm": 1.0}, "strategy": "fedadam"}, "wraps FedAvg"),
    ({"colour": "blue"}, "Unknown setting"),
])
def test_a_wrong_federation_file_is_refused_with_the_setting_to_fix(tmp_path, change, message):
    path, _ = _write(tmp_path, **change)
    with pytest.raises((FederationConfigError, ValueError)) as err:
        load_config(path)
    assert message in str(err.value)


def test_a_federation_without_tls_is_refused_before_anything_starts(tmp_path):
    from medsyn_cli.audit import CLI_USER
    from medsyn_federated import runner

    path, _ = _write(tmp_path, tls=None)
    with pytest.raises(FederationConfigError, match="needs TLS"):
        runner.run_server(path, user=CLI_USER)


def test_only_admins_run_a_federation_and_researchers_may_join(tmp_path):
    from medsyn_core.auth import PermissionDenied, User
    from medsyn_federated import runner

    path, files = _write(tmp_path)
    with pytest.raises(PermissionDenied):
        runner.run_server(path, user=User("cli", "researcher", operator=True))
    with pytest.raises(PermissionDenied):
        runner.start_client("127.0.0.1:9", HEART_SCHEMA, "site-a", tokens.new_token(), files.ca_cert,
                            user=User("cli", "clinician", operator=True))


# -- the shared encoding -----------------------------------------------------------------------------
def _site(df, metadata):
    from medsyn_federated.tabular_site import SiteTable
    from medsyn_tabular.synthesizer import TabularSynthesizer

    synth = TabularSynthesizer(epochs=1, batch_size=2, schema=metadata, pac=1)
    table, schema = synth.prepare_declared(df)
    return SiteTable(table, schema, synth.declared_metadata, synth.phi_record, synth.dropped,
                     synth.privacy_unit)


def test_the_shared_encoding_is_built_from_the_sites_dp_releases_alone(heart):
    from medsyn_core.privacy import PrivacyLedger
    from medsyn_federated import tabular_site

    metadata = yaml.safe_load(HEART_SCHEMA.read_text())
    metadata["columns"]["chol"] = {"kind": "integer", "nullable": False}  # bounds not declared
    parts = split_table(heart, 3, "by-column=age", seed=0)
    sites = [_site(p, metadata) for p in parts]
    # encoding-only budgets (no DP training): ε 30 per site, so 100 rows can release a range
    budgets = [tabular_site.site_budget(s.n, None, None, 30.0) for s in sites]
    ledgers = [PrivacyLedger(s.n, b.to_dict()) for s, b in zip(sites, budgets, strict=True)]
    ranges = [tabular_site.release_bounds(s, b, lg) for s, b, lg in zip(sites, budgets, ledgers, strict=True)]
    shared = {"chol": [min(r["chol"][0] for r in ranges), max(r["chol"][1] for r in ranges)]}
    releases = [tabular_site.release_statistics(s, b, lg, shared)
                for s, b, lg in zip(sites, budgets, ledgers, strict=True)]
    json.dumps(releases)  # what leaves a site is plain JSON: counts and labels, no row
    from medsyn_tabular.transformers.private import plan_epsilon

    eps_call, _, calls = plan_epsilon(sites[0].schema, sites[0].metadata, budgets[0].epsilon_preprocessing,
                                      budgets[0].delta_preprocessing)
    transformer = tabular_site.shared_transformer(sites[0].schema, sites[0].metadata, releases, eps_call,
                                                  sum(s.n for s in sites))
    for ledger, budget in zip(ledgers, budgets, strict=True):  # each site spent exactly its share
        assert len(ledger.entries) == calls
        assert ledger.total()[0] == pytest.approx(budget.epsilon_preprocessing)
    sources = {p for c in transformer.provenance.values() for p in c.values()}
    assert not any("data" in src.replace("metadata", "") for src in sources)  # nothing read without DP
    assert transformer.provenance["chol"]["bounds"] == "dp"
    # the summed noisy counts estimate the whole table's: sex (declared categories) within noise
    sex = next(c for c in transformer.columns if c.name == "sex")
    true = heart["sex"].value_counts(normalize=True).sort_index().to_numpy()
    assert np.abs(np.asarray(sex.slot_freq) - true).max() < 0.1
    for site in sites:  # every site's rows encode with the one shared encoding
        assert transformer.transform(site.table).shape == (site.n, transformer.output_dim)


def test_releases_over_different_bins_are_not_added(heart):
    from medsyn_tabular.transformers.private import ColumnRelease, combine_releases

    a = ColumnRelease("x", "continuous", [1.0, 2.0], 0.0, bounds=(0.0, 1.0), edges=[0, 0.5, 1])
    b = ColumnRelease("x", "continuous", [1.0, 2.0], 0.0, bounds=(0.0, 2.0), edges=[0, 1, 2])
    with pytest.raises(ValueError, match="different bins"):
        combine_releases([[a], [b]])
    c = ColumnRelease("c", "categorical", [5.0], 1.0, categories=["x"], released_total=6.0)
    d = ColumnRelease("c", "categorical", [4.0, 7.0], 0.0, categories=["y", "x"], released_total=11.0)
    total = combine_releases([[c], [d]])[0]
    assert dict(zip(total.categories, total.counts, strict=True)) == {"x": 12.0, "y": 4.0}
    assert total.sites == 2 and total.released_total == 17.0 and total.missing == 1.0


# -- a site's round, its ledger and the replay attack --------------------------------------------------
def _round_setup(heart, private: bool):
    from medsyn_core.privacy import PrivacyLedger
    from medsyn_federated import tabular_site

    metadata = yaml.safe_load(HEART_SCHEMA.read_text())
    site = _site(heart.iloc[:150], metadata)
    budget = tabular_site.site_budget(site.n, 8.0 if private else None, None, 1.0)
    ledger = PrivacyLedger(site.n, budget.to_dict())
    releases = tabular_site.release_statistics(site, budget, ledger, {})
    from medsyn_tabular.transformers.private import plan_epsilon

    eps_call, _, _ = plan_epsilon(site.schema, site.metadata, budget.epsilon_preprocessing,
                                  budget.delta_preprocessing)
    transformer = tabular_site.shared_transformer(site.schema, site.metadata, [releases], eps_call, site.n)
    model = tabular_site.build_model("ctgan", transformer, 30, 1, TINY_CTGAN, 0, private)
    plan = tabular_site.training_plan(site.n, budget, 30, 1, 3, 1.0) if private else None
    return site, transformer, tabular_site.exchanged_state(model), plan, ledger


def test_a_dp_sites_update_cannot_be_replayed_from_the_global_weights_and_the_seed(heart):
    """The attack: the server knows the global weights it sent and the round's seed (both in the
    settings); with them it replays the site's round and compares, to learn about the site's rows."""
    from medsyn_federated import tabular_site

    for private in (False, True):
        site, transformer, start, plan, _ = _round_setup(heart, private)
        runs = [tabular_site.train_round(site, transformer, "ctgan", start, 30, 1, TINY_CTGAN, seed=7,
                                         plan=plan)[0] for _ in range(2)]
        same = all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
        assert same is (not private), "DP noise and batches must come from OS entropy, never the seed"


def test_a_sites_ledger_holds_one_dp_sgd_entry_over_all_rounds_and_refuses_a_round_too_many(heart):
    from medsyn_core.privacy import PrivacyError
    from medsyn_core.privacy.ledger import dpsgd_epsilon
    from medsyn_federated import tabular_site

    site, transformer, start, plan, ledger = _round_setup(heart, True)
    per_round = plan.steps // 3
    for _ in range(3):
        tabular_site.spend_training(ledger, plan, per_round, "critic")
    entry = next(e for e in ledger.entries if e.mechanism == "dp-sgd")
    assert entry.steps == plan.steps and entry.details["rounds"] == 3
    assert entry.recompute_epsilon() == pytest.approx(
        dpsgd_epsilon("rdp", plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta))
    assert ledger.total()[0] <= 8.0 + 1e-6
    with pytest.raises(PrivacyError, match="budget is spent"):
        tabular_site.spend_training(ledger, plan, per_round, "critic")


def test_the_card_states_each_guarantee_with_its_unit_and_recomputes_it():
    from medsyn_core.privacy import PrivacyLedger
    from medsyn_core.privacy.ledger import LedgerEntry
    from medsyn_federated.model_folder import privacy_section

    ledgers = {}
    for site, steps in (("site-a", 40), ("site-b", 80)):
        lg = PrivacyLedger(100, {"epsilon": 5.0, "delta": 1e-5})
        lg.add(LedgerEntry("training", "dp-sgd", "critic", 0.0, 1e-5, noise_multiplier=1.2,
                           sample_rate=0.2, steps=steps, max_grad_norm=1.0, accountant="rdp"))
        ledgers[site] = lg.to_dict()
    settings = {"engine": "tabular", "privacy": {"epsilon": 5.0},
                "dp_fedavg": {"noise_multiplier": 1.0, "clipping_norm": 5.0}}
    block = privacy_section(settings, {"ledgers": ledgers, "released_rounds": 3, "sites": ["a", "b"]})
    eps = {s: PrivacyLedger.from_dict(v).total()[0] for s, v in ledgers.items()}
    assert block["per_site"]["site-b"]["epsilon"] == pytest.approx(eps["site-b"])
    assert eps["site-b"] > eps["site-a"]
    assert block["epsilon_total"] == pytest.approx(eps["site-b"]) and "one row of one site" in block["unit"]
    client = block["client_level"]
    assert client["unit"].startswith("one whole site") and client["entry"]["steps"] == 3
    assert LedgerEntry(**client["entry"]).recompute_epsilon() == pytest.approx(client["epsilon"])
    assert client["epsilon"] > 0


# -- splits and the CLI -----------------------------------------------------------------------------
def test_a_split_by_column_gives_each_site_a_different_range(heart):
    parts = split_table(heart, 3, "by-column=age", seed=0)
    assert sum(len(p) for p in parts) == len(heart)
    assert parts[0]["age"].max() <= parts[1]["age"].min() and parts[1]["age"].max() <= parts[2]["age"].min()
    iid = split_table(heart, 3, "iid", seed=0)
    assert abs(iid[0]["age"].mean() - iid[2]["age"].mean()) < 5
    with pytest.raises(ValueError, match="no column"):
        split_table(heart, 3, "by-column=nope")


def test_the_certs_command_issues_site_tokens_whose_keys_the_sites_file_holds(tmp_path, capsys):
    from medsyn_cli.main import main

    out = tmp_path / "fed"
    assert main(["federated", "certs", "--out", str(out), "--host", "127.0.0.1", "--site", "site-a",
                 "--site", "site-b"]) == 0
    sites = yaml.safe_load((out / "sites.yaml").read_text())["sites"]
    for site in ("site-a", "site-b"):
        token = (out / "tokens" / f"{site}.token").read_text().strip()
        assert stat.S_IMODE((out / "tokens" / f"{site}.token").stat().st_mode) == 0o600
        assert sites[site] == tokens.public_key_openssh(token).decode()
        assert token not in (out / "sites.yaml").read_text()
    assert main(["federated", "certs", "--out", str(out), "--sites-only", "--site", "site-a"]) == 2
    assert "already have a key" in capsys.readouterr().err
