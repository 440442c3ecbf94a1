"""Names that cannot escape: model and run names are safe slugs resolved inside the home folder, and a
taken name is refused unless "replace" is chosen, which is audited (issue 20 item 2). Written as the
attacks: each one escaped or silently re-pointed a model on the old code."""

import json
import os
from pathlib import Path

import pytest
from app_helpers import logged_in

from medsyn_cli.main import main
from medsyn_core import names, settings
from medsyn_core.storage import Store

ESCAPES = ["../../x", "../x", "..", ".", "", "/tmp/abs-model", "a/b", "a\\b", ".hidden", "-rf",
           "x" * (names.MAX_LENGTH + 1), "ｅｖｉｌ", "．．／x", "evil\u202egpj.exe", "a\u200bb", "café",
           "a b", "name\n", "x;rm -rf"]


@pytest.mark.parametrize("name", ESCAPES)
def test_unsafe_names_are_refused(name):
    with pytest.raises(names.NameRefused) as refused:
        names.model_dir(name)
    assert "letters, digits" in str(refused.value)
    assert not (settings.home_dir().parent / "x").exists()


@pytest.mark.parametrize("name", ["heart-ctgan", "v2.1_final", "A", "x" * names.MAX_LENGTH])
def test_safe_names_resolve_to_a_child_of_the_models_folder(name):
    assert names.model_dir(name) == settings.models_dir().resolve() / name


def test_a_symlink_planted_at_the_name_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, settings.models_dir() / "planted")
    with pytest.raises(names.NameRefused, match="resolves outside"):
        names.model_dir("planted")


def test_slugify_makes_safe_defaults_from_any_text():
    for text in ["Smith John MRN4711.csv-ctgan", "../../etc", "éàü", "", "a" * 200]:
        names.check_name(names.slugify(text))
    assert names.slugify("heart.csv-ctgan") == "heart.csv-ctgan"


def test_registry_never_re_points_a_name_silently(medsyn_home):
    with Store() as store:
        first = store.register_model("heart-ctgan", "ctgan", "/models/a", {"v": 1})
        for clash in ("heart-ctgan", "HEART-ctgan"):  # case-insensitive file systems: one folder
            with pytest.raises(names.NameTaken, match="already exists"):
                store.register_model(clash, "tvae", "/models/b", {"v": 2})
        assert store.list_models()[0].path == "/models/a"
        with pytest.raises(names.NameRefused):
            store.register_model("../../evil", "ctgan", "/tmp/evil", {})
        assert store.register_model("heart-ctgan", "tvae", "/models/b", {"v": 2}, replace=True,
                                    actor="rita") == first
        (model,) = store.list_models()
        assert (model.kind, model.engine, model.path, model.card) == ("tvae", "tabular", "/models/b",
                                                                      {"v": 2})
        (event,) = store.audit_events()
        assert (event["actor"], event["action"]) == ("rita", "model_replaced")
        assert json.loads(event["details_json"])["previous_kind"] == "ctgan"
        assert store.check_audit_chain().ok


def test_tabular_save_refuses_escapes_and_clashes_and_audits_a_replace(heart_tvae, medsyn_home):
    settings.models_dir()
    before = sorted(p.name for p in medsyn_home.parent.iterdir())
    for bad in ("../../x", "/tmp/abs-model", ".."):
        with pytest.raises(names.NameRefused):
            heart_tvae.save(name=bad)
    assert sorted(p.name for p in medsyn_home.parent.iterdir()) == before
    path = heart_tvae.save(name="heart-tvae")
    assert path == settings.models_dir().resolve() / "heart-tvae"
    with pytest.raises(names.NameTaken):  # refused before anything is written
        heart_tvae.save(settings.home_dir() / "elsewhere", name="heart-tvae")
    assert not (settings.home_dir() / "elsewhere").exists()
    heart_tvae.save(name="heart-tvae", overwrite=True, actor="rita")
    with Store() as store:
        assert [m.name for m in store.list_models()] == ["heart-tvae"]
        replaced = [e for e in store.audit_events() if e["action"] == "model_replaced"]
    assert [e["actor"] for e in replaced] == ["rita"]
    with pytest.raises(names.NameRefused, match="ships with MedSyn"):  # bundled names are reserved
        heart_tvae.save(name="pneumoniamnist-stylegan2", overwrite=True)


@pytest.fixture(scope="module")
def heart_tvae():
    from tabular_helpers import one_torch_thread

    from medsyn_tabular.data.datasets import load_heart_cleveland
    from medsyn_tabular.synthesizer import TabularSynthesizer

    with one_torch_thread():
        return TabularSynthesizer("tvae", epochs=1, batch_size=100, seed=0).fit(load_heart_cleveland())


@pytest.mark.parametrize("name", ["../../evil", "/tmp/evil-abs", "ｅｖｉｌ"])
def test_imaging_train_cli_refuses_an_escaping_name_before_anything_is_written(name, tmp_path, capsys,
                                                                              medsyn_home):
    rc = main(["imaging", "train", "pneumoniamnist", "--kimg", "0.01", "--out", str(tmp_path / "gen"),
               "--name", name])
    assert rc == 2
    assert "letters, digits" in capsys.readouterr().err
    assert not (tmp_path / "gen").exists() and not (medsyn_home / "runs").exists()
    assert not (medsyn_home.parent / "evil").exists() and not Path("/tmp/evil-abs").exists()
    with Store() as store:
        assert store.list_models() == []


def test_imaging_train_cli_refuses_a_taken_name_before_training(tmp_path, capsys):
    with Store() as store:
        store.register_model("chest-gen", "stylegan2", "/models/chest-gen", {})
    rc = main(["imaging", "train", "pneumoniamnist", "--kimg", "0.01", "--out", str(tmp_path / "gen"),
               "--name", "chest-gen"])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert not (tmp_path / "gen").exists()


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_tabular_page_validates_the_name_and_replaces_only_when_asked():
    from app_helpers import finish_job

    at = logged_in("pages/tabular.py", "researcher").run()
    name_box = next(t for t in at.text_input if t.label == "Model name")
    for bad in ("../../x", "/etc/medsyn", "ｅｖｉｌ"):
        name_box.set_value(bad)
        _button(at, "Train").click().run()
        assert not at.exception and any("letters, digits" in e.value for e in at.error), bad
        assert "tabular_job_id" not in at.session_state
    with Store() as store:
        store.register_model("heart-model", "ctgan", "/models/heart-model", {})
    next(t for t in at.text_input if t.label == "Model name").set_value("heart-model")
    _button(at, "Train").click().run()
    assert any("already exists" in e.value for e in at.error)
    assert "tabular_job_id" not in at.session_state

    at.number_input[0].set_value(1)  # epochs
    at.number_input[1].set_value(100)  # batch size
    next(c for c in at.checkbox if c.label == "Replace the existing model").check()
    _button(at, "Train").click().run()
    assert not at.error, [e.value for e in at.error]
    job = finish_job(at.session_state["tabular_job_id"])
    assert job["status"] == "finished", job["error"]
    with Store() as store:
        (model,) = store.list_models()
        events = [(e["actor"], e["action"]) for e in store.audit_events()]
    assert model.name == "heart-model" and Path(model.path) == settings.models_dir().resolve() / "heart-model"
    assert ("test-researcher", "model_replaced") in events


def test_synthetic_scans_page_validates_the_name_before_submitting():
    at = logged_in("pages/synthetic_scans.py", "researcher").run()
    with Store() as store:
        store.register_model("chest-gen", "stylegan2", "/models/chest-gen", {})
    for bad, message in (("../../evil", "letters, digits"), ("chest-gen", "already exists")):
        next(t for t in at.text_input if t.label == "Model name").set_value(bad)
        next(b for b in at.button if b.label == "Start training").click().run()
        assert not at.exception and any(message in e.value for e in at.error), bad
        assert "imaging_job_id" not in at.session_state
    assert any(c.label == "Replace the existing model" for c in at.checkbox)
