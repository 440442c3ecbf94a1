"""Mid-training checkpoints of the tabular engine: a resumed run equals an uninterrupted one, mismatched
or DP resumes are refused, and a killed `tabular-fit` job resumes from its checkpoint."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from app_helpers import account
from tabular_helpers import one_torch_thread

from medsyn_core import jobs
from medsyn_core.storage import Store
from medsyn_core.training import Checkpointer, CheckpointMismatch
from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.synthesizer import TabularSynthesizer

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def heart():
    return load_heart_cleveland()


def _interrupted_run(model, heart, path, stop_at_epoch, seed=2):
    """Train 4 epochs, writing a checkpoint after every epoch, and 'crash' at ``stop_at_epoch``."""
    checkpointer = Checkpointer(path, every_s=0)

    def crash(record):
        if record["epoch"] == stop_at_epoch:
            raise Interrupted

    with pytest.raises(Interrupted):
        TabularSynthesizer(model, epochs=4, batch_size=50, seed=seed).fit(heart, progress=crash,
                                                                           checkpoint=checkpointer)
    return checkpointer


@pytest.mark.parametrize("model", ["ctgan", "tvae"])
def test_resumed_training_gives_the_weights_of_an_uninterrupted_run(model, heart, tmp_path):
    with one_torch_thread():
        whole = TabularSynthesizer(model, epochs=4, batch_size=50, seed=2).fit(heart)
        checkpointer = _interrupted_run(model, heart, tmp_path / "ck.pt", stop_at_epoch=3)
        assert checkpointer.written == 2  # after epochs 1 and 2; epoch 3 "crashed" before its write
        resumed = TabularSynthesizer(model, epochs=4, batch_size=50, seed=2).fit(
            heart, resume_from=tmp_path / "ck.pt")
        a, b = whole.model.state_tensors(), resumed.model.state_tensors()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert resumed.card["resumed_after_epoch"] == 2
        assert [r["epoch"] for r in resumed.model.loss_history] == [1, 2, 3, 4]
        assert whole.sample(40).equals(resumed.sample(40))


def test_checkpoint_of_another_run_or_a_dp_run_is_refused(heart, tmp_path):
    with one_torch_thread():
        _interrupted_run("ctgan", heart, tmp_path / "ck.pt", stop_at_epoch=2)
        with pytest.raises(CheckpointMismatch, match="another table, model, parameters or seed"):
            TabularSynthesizer("ctgan", epochs=4, batch_size=50, seed=3).fit(heart,
                                                                            resume_from=tmp_path / "ck.pt")
        with pytest.raises(CheckpointMismatch):
            TabularSynthesizer("ctgan", epochs=4, batch_size=50, seed=2).fit(heart.iloc[:-1],
                                                                            resume_from=tmp_path / "ck.pt")
        with pytest.raises(ValueError, match="cannot be resumed"):
            TabularSynthesizer("ctgan", epochs=4, batch_size=50, seed=2, preset="exploratory").fit(
                heart, resume_from=tmp_path / "ck.pt")
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        TabularSynthesizer("ctgan", epochs=4, batch_size=50, seed=2).fit(heart,
                                                                        resume_from=tmp_path / "none.pt")
    with pytest.raises(ValueError, match="every_s"):
        Checkpointer(tmp_path / "x.pt", every_s=-1)


def _wait(job_id, predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store() as store:
            job = jobs.get_job(store, job_id)
        if predicate(job):
            return job
        if job["status"] in jobs.TERMINAL:
            pytest.fail(f"job {job_id} ended early: {job}")
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach the expected state: {job}")


def test_killed_tabular_job_resumes_from_its_checkpoint(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child process trains on one thread, like the tests
    rita = account("rita", "researcher")
    params = {"data_path": str(ROOT / "data/tabular/heart_cleveland.csv"), "source": "heart",
              "name": "heart-resumed", "model": "ctgan", "epochs": 300, "batch_size": 50, "seed": 0,
              "schema": None, "phi_actions": None, "privacy": {}, "checkpoint_every_s": 0,
              "early_stopping": False}  # all 300 epochs, so that the kill lands mid-training
    with Store() as store:
        job_id = jobs.submit(store, rita, "tabular-fit", params)
        (proc,) = jobs.tick(store)
    running = _wait(job_id, lambda j: j["checkpoint"] and j["progress"] >= 0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with Store() as store:
        assert jobs.recover_interrupted(store) == [job_id]
        new_id = jobs.resume(store, rita, job_id)
        (proc2,) = jobs.tick(store)
        proc2.wait(300)
        done = jobs.get_job(store, new_id)
    assert done["status"] == "finished", done
    assert done["result"]["resumed_after_epoch"] >= running["progress"] * 300 - 1
    model_dir = Path(done["result"]["model_path"])
    history = json.loads((model_dir / "config.json").read_text())["loss_history"]
    assert [r["epoch"] for r in history] == list(range(1, 301))  # the epochs before the kill are kept
    assert json.loads((model_dir / "model_card.json").read_text())["resumed_after_epoch"] >= 1
    assert len(TabularSynthesizer.load(model_dir).sample(10)) == 10
