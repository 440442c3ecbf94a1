"""Generators offered to clinicians (issue 19): below the quality bar or not evaluated -> hidden unless an
admin approves (stored and audited); one FID figure everywhere: the latest evaluation, with its floor."""

import json

import pytest
import torch
from app_helpers import account
from test_imaging_generator import TINY_SG2, toy_set

from medsyn_core import approvals, model_card, model_store
from medsyn_core.auth import PermissionDenied
from medsyn_core.storage import Store
from medsyn_imaging.evaluation.quality import quality_check
from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
from medsyn_imaging.training.generator_store import (
    DEMO_MODEL_NAME,
    list_generators,
    load_generator,
    offered_generators,
    save_generator,
)


@pytest.fixture
def blob_generator(medsyn_home):
    """A 0.04-kimg generator that draws blobs: trained here, never evaluated."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = GANTrainer(toy_set(32), TrainConfig(kimg=0.02, batch_size=8, checkpoint_kimg=0, grid_kimg=0,
                                                      arch=dict(TINY_SG2)))
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return save_generator(trainer, medsyn_home / "models" / "blobs", name="blobs", actor="rita")


def test_the_demo_passes_the_bar_and_an_unevaluated_generator_does_not():
    demo = next(g for g in list_generators() if g.name == DEMO_MODEL_NAME)
    check = quality_check(model_card.read_card(demo.card).metrics)
    assert check.passed and check.label == "FID 46.2 (real-vs-real floor 11.3)"
    assert not quality_check({}).passed and "not evaluated" in quality_check({}).reasons[0]
    far = quality_check({"fid": 80.0, "fid_real_floor": 11.0, "near_copies": 2})
    assert not far.passed and len(far.reasons) == 2


def test_clinicians_see_an_unevaluated_generator_only_after_an_admin_approves_it(blob_generator):
    cleo, rita, admin = account("cleo", "clinician"), account("rita", "researcher"), account("ada", "admin")
    names = lambda user: [o.entry.name for o in offered_generators(user)]  # noqa: E731
    assert names(rita) == [DEMO_MODEL_NAME, "blobs"]  # researchers see everything, with the verdict
    assert names(cleo) == [DEMO_MODEL_NAME]
    with Store() as store:
        with pytest.raises(PermissionDenied):
            approvals.approve(store, rita, "blobs")
        approvals.approve(store, admin, "blobs", note="for the teaching session")
    offered = {o.entry.name: o for o in offered_generators(cleo)}
    assert offered["blobs"].approved_by == "ada" and not offered["blobs"].quality.passed
    with Store() as store:
        approvals.revoke(store, admin, "blobs")
        events = [(e["actor"], e["action"], json.loads(e["details_json"])) for e in store.audit_events()]
    assert names(cleo) == [DEMO_MODEL_NAME]
    assert ("ada", "model_approved", {"model": "blobs", "note": "for the teaching session"}) in events
    assert ("ada", "model_approval_revoked", {"model": "blobs"}) in events
    assert ("rita", "imaging.generator.register", {"name": "blobs", "model": "stylegan2"}) in events


def test_the_latest_evaluation_is_the_one_figure_every_reader_shows(blob_generator):
    """The demo's card said FID 46.2 while the app's report said 11.6: after an evaluation, the card seen
    by the model store, the generator list and the loaded generator all carry the new figure."""
    model_card.record_evaluation(DEMO_MODEL_NAME, {"fid": 11.6, "fid_real_floor": 10.9, "tstr_auc": 0.9,
                                                   "trtr_auc": 0.95, "near_copies": 0}, report="r.json")
    with Store() as store:
        entries = {m.name: m for m in model_store.list_models(store, account("ada", "admin"))}
    assert entries[DEMO_MODEL_NAME].view.metrics["fid"] == 11.6
    demo = next(g for g in list_generators() if g.name == DEMO_MODEL_NAME)
    assert model_card.read_card(demo.card).metrics["fid"] == 11.6
    assert load_generator(demo.path).card["evaluation"]["fid"] == 11.6
    assert quality_check(model_card.read_card(demo.card).metrics).label.startswith("FID 11.6")
    model_card.record_evaluation("blobs", {"fid": 300.0, "fid_real_floor": 10.0})
    blobs = next(o for o in offered_generators(account("rita", "researcher")) if o.entry.name == "blobs")
    assert not blobs.quality.passed and "more than 5x" in blobs.quality.reasons[0]


def test_an_admin_approves_a_generator_on_the_model_store_page(blob_generator):
    from app_helpers import logged_in

    at = logged_in("pages/model_store.py", "admin").run()
    at.selectbox[0].set_value(next(i for i, o in enumerate(at.selectbox[0].options) if o == "blobs")).run()
    assert any("below the quality bar (not evaluated yet" in m.value for m in at.markdown)
    at.text_input(key="approval-note-blobs").input("demo for the ward")
    next(b for b in at.button if b.label == "Approve for clinicians").click().run()
    assert not at.exception, at.exception
    with Store() as store:
        grant = approvals.approval(store, "blobs")
    assert grant.approved_by == "test-admin" and grant.note == "demo for the ward"
    assert any("Approved for clinicians by test-admin" in c.value for c in at.caption)
    researcher = logged_in("pages/model_store.py", "researcher").run()
    assert not any(b.label == "Approve for clinicians" for b in researcher.button)
