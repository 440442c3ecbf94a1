"""Mid-training checkpoints of a tabular model, so that a crashed background job resumes where it stopped.

A checkpoint is one ``torch.save`` file of tensors and plain values, read back with
``weights_only=True`` (loading runs no code): the networks and their optimizers, every random state the
training loop draws from (NumPy generator, torch CPU/CUDA generators), the loss history, the number of
epochs done, and a fingerprint of the encoded training matrix, model kind, hyperparameters and seed.
Resuming on the same machine with the same table, parameters and seed gives exactly the weights of an
uninterrupted run; anything else is refused with a readable error.

Differentially private training writes no checkpoint: Opacus' accountant and Poisson sampler state are
not saved, so ε could not be guaranteed across a resume (the imaging engine makes the same choice).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsyn_core.files import atomic_write_bytes

FORMAT = "medsyn-tabular-checkpoint-1"


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to another table, model, parameter set or seed."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


def fingerprint(data: np.ndarray, model: str, params: dict[str, Any], seed: int) -> str:
    """SHA-256 of the encoded training matrix (n_rows, data_dim) and of what defines the run."""
    h = hashlib.sha256()
    h.update(json.dumps([model, seed, params, list(data.shape)], sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    return h.hexdigest()


def capture(epoch: int, fp: str, modules: dict[str, torch.nn.Module],
            optimizers: dict[str, torch.optim.Optimizer], rng: np.random.Generator | None,
            generators: dict[str, torch.Generator], loss_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The training state after ``epoch`` epochs (copied to CPU, so training may go on meanwhile)."""
    return {
        "format": FORMAT, "epoch": int(epoch), "fingerprint": fp,
        "modules": {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()}
                    for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "rng": {
            # PCG64's state holds 128-bit integers: kept as JSON text, which round-trips them exactly
            "numpy": json.dumps(rng.bit_generator.state) if rng is not None else None,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "generators": {k: g.get_state() for k, g in generators.items()},
        },
        "loss_history": [dict(r) for r in loss_history],
    }


def restore(state: dict[str, Any], fp: str, modules: dict[str, torch.nn.Module],
            optimizers: dict[str, torch.optim.Optimizer], rng: np.random.Generator | None,
            generators: dict[str, torch.Generator]) -> tuple[int, list[dict[str, Any]]]:
    """Load ``state`` into the given objects; returns (epochs done, loss history)."""
    if state.get("format") != FORMAT:
        raise CheckpointMismatch(f"Checkpoint format {state.get('format')!r} is not {FORMAT!r}.")
    if state["fingerprint"] != fp:
        raise CheckpointMismatch(
            "This checkpoint was made with another table, model, parameters or seed; it cannot be resumed "
            "with these. Start a new training instead.")
    for k, m in modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    if rng is not None:
        rng.bit_generator.state = json.loads(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    for k, g in generators.items():
        g.set_state(state["rng"]["generators"][k])
    return int(state["epoch"]), list(state["loss_history"])


def read(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (tensors and plain values only; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No tabular checkpoint at {path}.")
    return torch.load(path, map_location="cpu", weights_only=True)


class Checkpointer:
    """Called after each epoch as ``checkpointer(epoch, epochs, make_state)``; writes ``make_state()``
    to ``path`` atomically when ``every_s`` seconds have passed since the last write (0: every epoch),
    never after the last epoch (the finished model is saved instead), then calls ``on_saved(path)``."""

    def __init__(self, path: str | Path, every_s: float = 30.0,
                 on_saved: Callable[[Path], None] | None = None):
        if every_s < 0:
            raise ValueError(f"every_s must be 0 or more seconds (got {every_s}).")
        self.path, self.every_s, self.on_saved = Path(path), float(every_s), on_saved
        self._last = time.monotonic()
        self.written = 0

    def __call__(self, epoch: int, epochs: int, make_state: Callable[[], dict[str, Any]]) -> None:
        if epoch >= epochs or time.monotonic() - self._last < self.every_s:
            return
        buf = io.BytesIO()
        torch.save(make_state(), buf)
        atomic_write_bytes(self.path, buf.getvalue())
        self._last = time.monotonic()
        self.written += 1
        if self.on_saved is not None:
            self.on_saved(self.path)
