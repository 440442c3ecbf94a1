"""One place that decides where tensors live: CUDA, then Apple MPS, then CPU.

Override with the environment variable ``MEDSYN_DEVICE`` (``cuda``, ``cuda:1``, ``mps``, ``cpu`` or
``auto``) or the CLI flag ``medsyn --device``. Every engine calls :func:`choose_device`; nothing else in
MedSyn names a device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEVICE_ENV = "MEDSYN_DEVICE"
_VALID_KINDS = ("auto", "cuda", "mps", "cpu")


class DeviceError(ValueError):
    """The requested device does not exist or is not available on this machine."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(preference: str | None = None):
    """Return the ``torch.device`` to use.

    ``preference`` (or, when it is None, ``$MEDSYN_DEVICE``) may be ``auto`` (the default: CUDA if
    available, else MPS, else CPU), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``. Asking for an accelerator
    that is not available raises :class:`DeviceError` with a readable message rather than silently
    falling back, so that a researcher never believes a CPU run was a GPU run.
    """
    import torch

    raw = preference if preference is not None else os.environ.get(DEVICE_ENV, "auto")
    choice = (raw or "auto").strip().lower()
    kind, _, index = choice.partition(":")
    if kind not in _VALID_KINDS or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(
            f"Unknown device {raw!r}. Use one of: auto, cuda, cuda:N, mps, cpu "
            f"(via {DEVICE_ENV} or --device)."
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but no CUDA GPU is available here. "
                f"Unset {DEVICE_ENV} (or use --device auto) to run on the CPU."
            )
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(
                f"CUDA device {index} was requested but only {torch.cuda.device_count()} GPU(s) exist."
            )
        return torch.device(choice)
    if kind == "mps":
        if not _mps_available(torch):
            raise DeviceError(
                "Apple MPS was requested but is not available here. "
                f"Unset {DEVICE_ENV} (or use --device auto) to run on the CPU."
            )
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class DeviceInfo:
    """What the sidebar and ``medsyn info`` show about the compute device."""

    device: str  # e.g. "cuda:0", "mps", "cpu"
    name: str  # human-readable, e.g. "NVIDIA H100 80GB HBM3" or "CPU (2 threads)"
    memory_total_gib: float | None = None  # GPU memory, CUDA only
    memory_free_gib: float | None = None

    def summary(self) -> str:
        text = f"{self.device} — {self.name}"
        if self.memory_total_gib is not None:
            text += f" ({self.memory_free_gib:.1f} of {self.memory_total_gib:.1f} GiB free)"
        return text


def device_info(preference: str | None = None) -> DeviceInfo:
    """Describe the device :func:`choose_device` picks (name, and GPU memory on CUDA)."""
    import torch

    dev = choose_device(preference)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        return DeviceInfo(
            device=f"cuda:{index}",
            name=torch.cuda.get_device_name(index),
            memory_total_gib=total / 2**30,
            memory_free_gib=free / 2**30,
        )
    if dev.type == "mps":
        return DeviceInfo(device="mps", name="Apple Metal (MPS)")
    return DeviceInfo(device="cpu", name=f"CPU ({torch.get_num_threads()} threads)")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible runs."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
