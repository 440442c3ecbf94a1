"""The training layer shared by every engine: fingerprints of training data, mid-training checkpoints and
the periodic checkpointer, so that a crashed background job resumes exactly where it stopped.

A checkpoint is one ``torch.save`` file of tensors and plain values, written atomically
(:func:`write_checkpoint`) and read back with ``weights_only=True`` (:func:`read_checkpoint`: loading runs
no code). :func:`capture` / :func:`restore` hold what a plain training loop needs (networks, optimizers,
the NumPy and torch random states, the loss history, epochs done); an engine with more state (the image
GAN's EMA generator and scalers) adds it to its own state dict and writes it through the same functions.
Every checkpoint carries a :func:`fingerprint` of the training data and of what defines the run; resuming
with anything else is refused with a readable error (:class:`CheckpointMismatch`).

Differentially private training writes no checkpoint: Opacus' accountant and Poisson sampler state are
not saved, so ε could not be guaranteed across a resume (every engine makes this choice).
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

FORMAT = "medsyn-tabular-checkpoint-1"  # the format of capture()/restore() states (kept from release 1)


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to another table, model, parameter set or seed."""

    #: Messages name columns and counts, never a cell value (see medsyn_core.redaction).
    value_free_message = True


def fingerprint(*arrays: np.ndarray, meta: Any = None) -> str:
    """SHA-256 of the training data ``arrays`` (their bytes, in order) and of ``meta`` (JSON: what else
    defines the run, e.g. model, seed, hyperparameters, shapes); the one fingerprint of every engine."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def table_fingerprint(data: np.ndarray, model: str, params: dict[str, Any], seed: int) -> str:
    """:func:`fingerprint` of an encoded training matrix (n_rows, data_dim) as float32, the model kind, its
    hyperparameters and the seed (the tabular models' checkpoints)."""
    return fingerprint(np.asarray(data, dtype=np.float32), meta=[model, seed, params, list(data.shape)])


def write_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain values) to ``path`` atomically with ``torch.save``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (tensors and plain values only; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    return torch.load(path, map_location="cpu", weights_only=True)


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


read = read_checkpoint


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
        write_checkpoint(self.path, make_state())
        self._last = time.monotonic()
        self.written += 1
        if self.on_saved is not None:
            self.on_saved(self.path)


def job_checkpointer(progress, params: dict[str, Any]) -> Checkpointer | None:
    """The periodic checkpointer of a background training job (``progress``: the job's progress handle,
    with its folder and ``checkpoint`` callback), or None under DP: the accountant's state is not saved, so a
    DP run is never resumed. ``params["checkpoint_every_s"]``: seconds between writes (default 30)."""
    if params.get("privacy"):
        return None
    return Checkpointer(progress.dir / "checkpoint.pt", every_s=float(params.get("checkpoint_every_s", 30.0)),
                        on_saved=progress.checkpoint)
