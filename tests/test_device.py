import pytest
import torch

from medsyn_core.device import DeviceError, choose_device, device_info


def test_auto_falls_back_to_cpu_here():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert choose_device().type == expected
    if expected == "cpu":
        info = device_info()
        assert info.device == "cpu" and info.memory_total_gib is None
        assert "CPU" in info.summary()


def test_env_override(monkeypatch):
    monkeypatch.setenv("MEDSYN_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    monkeypatch.setenv("MEDSYN_DEVICE", "CPU ")
    assert choose_device() == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:1", "tpu"])
def test_unknown_device_is_a_clear_error(bad):
    with pytest.raises(DeviceError, match="Unknown device"):
        choose_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_unavailable_cuda_is_refused_not_silently_replaced():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        choose_device("cuda")


def test_no_engine_hard_codes_cuda():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("medsyn_core", "medsyn_tabular", "medsyn_imaging", "pages")
        for p in (root / pkg).rglob("*.py")
        if ".cuda()" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
