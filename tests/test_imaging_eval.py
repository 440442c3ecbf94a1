"""Imaging evaluation: ResNet9, FID/KID, PRDC, memorisation, classifier storage and the CLI (tiny configs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsyn_cli.main import main
from medsyn_core.storage import Store
from medsyn_imaging.evaluation.classifier import TrainConfig, TrainedClassifier, run_training
from medsyn_imaging.evaluation.features import ClassifierFeatures, extract_features
from medsyn_imaging.evaluation.image_metrics import fid_kid, kid_subset_size, prdc
from medsyn_imaging.evaluation.labelled_images import (
    LabelledImages,
    load_image_dataset,
    load_synthetic_images,
    read_class_folder,
)
from medsyn_imaging.evaluation.memorisation import memorisation_check
from medsyn_imaging.networks.resnet9 import ResNet9

TINY = TrainConfig(epochs=2, width=4, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def pneumonia():
    return load_image_dataset("pneumoniamnist")


@pytest.fixture
def tiny_npz(tmp_path, pneumonia):
    """A small MedMNIST-style file: 64/24/32 images from the real PneumoniaMNIST splits."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("val", 24), ("test", 32)):
        part = pneumonia.splits[split]
        idx = np.concatenate([rng.choice(np.flatnonzero(part.labels == c), n // 2, replace=False)
                              for c in (0, 1)])
        arrays[f"{split}_images"] = part.images[idx, 0]  # (N, 28, 28) like the official files
        arrays[f"{split}_labels"] = part.labels[idx, None].astype(np.uint8)
    path = tmp_path / "tiny.npz"
    np.savez(path, **arrays)
    return path


def _random_extractor(channels: int = 1, shape=(28, 28)) -> ClassifierFeatures:
    torch.manual_seed(0)
    net = ResNet9(channels, 2, width=4).eval()
    clf = TrainedClassifier(net, [0.5] * channels, [0.25] * channels, ["0", "1"], (channels, *shape), TINY)
    return ClassifierFeatures(clf)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_resnet9_shapes(channels, size):
    net = ResNet9(channels, n_classes=5, width=4).eval()
    x = torch.randn(3, channels, size, size)
    assert net(x).shape == (3, 5)
    assert net.features(x).shape == (3, 32) == (3, net.num_features)
    with pytest.raises(ValueError, match="expects images shaped"):
        net(torch.randn(3, 4 - channels if channels == 3 else 3, size, size))


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise(pneumonia):
    real = pneumonia.splits["test"].images[:120]
    extractor = _random_extractor()
    rng = np.random.default_rng(0)
    fids = []
    for sigma in (0, 20, 80):
        noisy = np.clip(real.astype(float) + rng.normal(0, sigma, real.shape), 0, 255).astype(np.uint8)
        fid, kid_mean, _, subset = fid_kid(extractor, real, noisy, kid_subsets=10)
        fids.append(fid)
        if sigma == 0:
            assert abs(fid) < 1e-3 and abs(kid_mean) < 1e-3
            assert subset == 120
    assert fids == sorted(fids) and fids[-1] > 10 * max(fids[1], 1e-3) > 0
    assert kid_subset_size(5000, 300) == 300 and kid_subset_size(5000, 4000) == 1000


def test_prdc_on_hand_made_point_clouds():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 2))
    same = prdc(real, rng.normal(size=(400, 2)))
    assert same["precision"] > 0.9 and same["recall"] > 0.9 and same["coverage"] > 0.9
    assert 0.7 < same["density"] < 1.3
    far = prdc(real, rng.normal(size=(400, 2)) + 20)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    collapsed = prdc(real, rng.normal(scale=0.05, size=(400, 2)))  # mode collapse: realistic, not diverse
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.2


def test_memorisation_flags_an_exact_copy(pneumonia):
    train = pneumonia.splits["train"].images[:300]
    synthetic = pneumonia.splits["test"].images[:40].copy()  # other real patients: not copies
    synthetic[17] = train[123]
    extractor = _random_extractor()
    result = memorisation_check(synthetic, extract_features(extractor, synthetic), train,
                                extract_features(extractor, train), ssim_threshold=0.95)
    assert result.flagged.tolist() == [17]
    assert result.synthetic.nearest_index[17] == 123 and result.synthetic.ssim[17] == pytest.approx(1.0)
    assert result.summary()["n_flagged"] == 1


def test_classifier_save_load_round_trip(tmp_path, tiny_npz):
    data = load_image_dataset(tiny_npz)
    clf, summary = run_training(data, "trtr", config=TINY)
    assert 0 <= summary["test"]["auc"] <= 1 and summary["n_train"] == 64
    clf.save(tmp_path / "clf", name="tiny-resnet9", metrics=summary)
    back = TrainedClassifier.load(tmp_path / "clf")
    images = data.splits["test"].images
    np.testing.assert_allclose(back.predict_proba(images), clf.predict_proba(images), atol=1e-6)
    assert back.threshold == clf.threshold and back.class_names == ["0", "1"]
    card = json.loads((tmp_path / "clf" / "model_card.json").read_text())
    assert card["kind"] == "resnet9" and card["engine"] == "imaging" and card["training_mode"] == "trtr"
    with Store() as store:
        assert [m.name for m in store.list_models(kind="resnet9")] == ["tiny-resnet9"]


def test_loaders_folder_by_class_and_synthetic_npz(tmp_path, pneumonia):
    from PIL import Image

    for c in ("0", "1"):
        (tmp_path / "syn" / c).mkdir(parents=True)
        for i in range(3):
            img = pneumonia.splits["test"].images[i + 3 * int(c), 0]
            Image.fromarray(img).save(tmp_path / "syn" / c / f"{i}.png")
    images, names = read_class_folder(tmp_path / "syn")
    assert images.images.shape == (6, 1, 28, 28) and names == ["0", "1"]
    assert images.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.savez(tmp_path / "syn.npz", images=np.zeros((4, 28, 28, 3), np.uint8), labels=np.array([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="only 2 classes"):
        load_synthetic_images(tmp_path / "syn.npz", ["0", "1"])
    np.savez(tmp_path / "bad.npz", pictures=np.zeros((4, 28, 28)))
    with pytest.raises(ValueError, match="needs the arrays 'images'"):
        load_synthetic_images(tmp_path / "bad.npz", ["0", "1"])
    with pytest.raises(ValueError, match="uint8"):
        LabelledImages(np.full((2, 8, 8), 300, np.int32), np.zeros(2))


def test_cli_train_tstr_and_evaluate(tmp_path, tiny_npz, capsys):
    # Stand-in synthetic set: a noisy copy of the real training split with one verbatim copy.
    data = load_image_dataset(tiny_npz)
    train = data.splits["train"]
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 25, train.images.shape)
    fake = np.clip(train.images.astype(float) + noise, 0, 255).astype(np.uint8)
    fake[5] = train.images[9]
    np.savez(tmp_path / "fake.npz", images=fake, labels=train.labels)

    args = ["--epochs", "1", "--width", "4", "--batch-size", "16"]
    assert main(["imaging", "classifier", "train", str(tiny_npz), "--synthetic", str(tmp_path / "fake.npz"),
                 "--out", str(tmp_path / "tstr"), *args]) == 0
    metrics = json.loads((tmp_path / "tstr" / "metrics.json").read_text())
    assert metrics["mode"] == "tstr" and metrics["n_train"] == 64 and 0 <= metrics["test"]["auc"] <= 1
    assert "test AUC" in capsys.readouterr().out

    out = tmp_path / "report.json"
    assert main(["imaging", "evaluate", str(tmp_path / "fake.npz"), "--data", str(tiny_npz),
                 "--out", str(out), "--modes", "tstr", "mix", *args]) == 0
    report = json.loads(out.read_text())
    sections = {s["key"]: s for s in report["sections"]}
    assert set(sections) == {"imaging_samples", "imaging_fidelity", "imaging_utility", "memorisation"}
    fid = next(m for m in sections["imaging_fidelity"]["metrics"] if m["key"] == "fid")
    assert fid["value"] > 0 and fid["reference"] > 0
    near = next(m for m in sections["memorisation"]["metrics"] if m["key"] == "n_flagged")
    assert near["value"] >= 1 and near["good"] is False
    modes = [r["mode"] for r in sections["imaging_utility"]["tables"][0]["rows"]]
    assert modes == ["trtr", "tstr", "mix"]


def test_demo_generator_is_sampled_as_labelled_synthetic_images():
    from medsyn_imaging.training.generator_store import demo_generator_path

    images = load_synthetic_images(demo_generator_path(), ["normal", "pneumonia"], n=10, seed=3)
    assert images.images.shape == (10, 1, 28, 28) and images.images.dtype == np.uint8
    assert sorted(set(images.labels.tolist())) == [0, 1]
    again = load_synthetic_images(demo_generator_path(), ["normal", "pneumonia"], n=10, seed=3)
    assert np.array_equal(images.images, again.images)
    with pytest.raises(ValueError, match="knows 2 classes"):
        load_synthetic_images(demo_generator_path(), ["a", "b", "c"], n=3)


def test_cli_errors_are_readable(tmp_path, tiny_npz, capsys):
    assert main(["imaging", "classifier", "train", str(tiny_npz), "--mode", "tstr", "--out",
                 str(tmp_path / "x")]) == 2
    assert "needs --synthetic" in capsys.readouterr().err
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "model_card.json").write_text('{"engine": "stylegan2"}')
    assert main(["imaging", "evaluate", str(tmp_path / "gen"), "--data", str(tiny_npz),
                 "--out", str(tmp_path / "r.html")]) == 2
    assert "is not a MedSyn generator folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "r.html").exists()


class _NotATensor:
    pass


def test_inception_extractor_never_downloads_and_refuses_pickled_code(tmp_path):
    from medsyn_imaging.evaluation.features import InceptionFeatures

    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionFeatures(tmp_path / "missing.pth")
    torch.save({"object": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a plain PyTorch weights file"):
        InceptionFeatures(tmp_path / "evil.pth")


def test_saved_imaging_report_is_listed_on_the_evaluation_page():

    from medsyn_core.report import Metric, Report, Section
    from medsyn_imaging.evaluation.imaging_report import list_saved_reports, save_report_copy

    report = Report("Imaging evaluation: demo vs tiny", "imaging")
    report.add(Section("imaging_fidelity", "Imaging fidelity",
                       metrics=[Metric("fid", "FID", 3.2, "lower is better", reference=1.1)]))
    save_report_copy(report)
    assert [r.title for _, r in list_saved_reports()] == [report.title]
    from app_helpers import logged_in

    at = logged_in("pages/evaluation.py", "researcher").run()
    at.radio[0].set_value("Synthetic images").run()
    assert not at.exception, at.exception
    saved = next(s for s in at.selectbox if s.label == "Saved imaging report")
    assert any(report.title in option for option in saved.options)
    assert any(t.value.startswith("Imaging fidelity") for t in at.subheader)


def test_the_imaging_evaluation_runs_as_a_job_and_becomes_the_generators_one_figure(tiny_npz):
    """Issue 19: the evaluation blocked the page for 342 s; it is a job now, its report carries the
    generator's context and verdicts, and its FID becomes the generator's figure everywhere."""
    import json

    from app_helpers import account, finish_job, logged_in

    from medsyn_core import jobs, model_card
    from medsyn_core.storage import Store
    from medsyn_imaging.evaluation.imaging_report import list_saved_reports
    from medsyn_imaging.training.generator_store import DEMO_MODEL_NAME, list_generators

    at = logged_in("pages/evaluation.py", "researcher").run()
    at.radio[0].set_value("Synthetic images").run()
    at.number_input[0].set_value(1)
    at.button[0].click().run()  # the form's Evaluate: queues a job, returns at once
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = at.session_state["imaging_eval_job"]
    with Store() as store:  # run the same job on the small file instead of the whole bundled set
        job = store.job(job_id)
        assert job["kind"] == "imaging-evaluate" and job["params"]["generator"] == DEMO_MODEL_NAME
        rita = account("rita", "researcher")
        small = jobs.submit(store, rita, "imaging-evaluate", {
            "real": str(tiny_npz), "generator": DEMO_MODEL_NAME, "epochs": 1, "width": 4, "modes": ["tstr"]})
        jobs.request_cancel(store, account("test-researcher", "researcher"), job_id)
    done = finish_job(small)
    assert done["status"] == "finished", done["error"]
    (_, report), = list_saved_reports()
    assert report.header()["model"] == DEMO_MODEL_NAME and report.header()["differential privacy"].startswith(
        "off")
    assert report.section("imaging_fidelity").metric("recall").good is not None
    demo = next(g for g in list_generators() if g.name == DEMO_MODEL_NAME)
    fid = model_card.read_card(demo.card).metrics["fid"]
    assert fid == report.section("imaging_fidelity").metric("fid").value == done["result"]["fid"]
    with Store() as store:
        events = [(e["actor"], e["action"], json.loads(e["details_json"])) for e in store.audit_events()]
    assert any(a == "rita" and act == "evaluate" and d["kind"] == "imaging" for a, act, d in events)
