"""Shared helpers for the tabular tests (kept tiny so the whole tabular suite stays well under 3 minutes)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_torch_thread():
    """Tiny networks train fastest on one thread (and do not fight other jobs for the 2 CI cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
