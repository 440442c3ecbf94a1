"""Output activations over the spans of the encoded matrix, shared by CTGAN and TVAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medsyn_tabular.transformer import Span


def gumbel_softmax(logits: torch.Tensor, tau: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Soft Gumbel-softmax sample (rows sum to 1) of ``logits`` (n, k) at temperature ``tau``."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1 - 1e-10)
    return F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=1)


def apply_activations(raw: torch.Tensor, spans: list[Span], tau: float = 0.2,
                      generator: torch.Generator | None = None, hard: bool = False) -> torch.Tensor:
    """``tanh`` on scalar spans, Gumbel-softmax on one-hot spans; (n, dim) -> (n, dim).

    ``hard=True`` (sampling) returns exact one-hots of the Gumbel-max sample instead of soft vectors.
    """
    parts = []
    for span in spans:
        block = raw[:, span.start:span.start + span.size]
        if span.activation == "tanh":
            parts.append(torch.tanh(block))
        elif hard:
            parts.append(sample_categorical(block, generator))
        else:
            parts.append(gumbel_softmax(block, tau, generator))
    return torch.cat(parts, dim=1)


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard one-hot sample (n, k) from softmax(``logits``) via the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1 - 1e-10)
    idx = (logits - torch.log(-torch.log(u))).argmax(dim=1)
    return F.one_hot(idx, logits.shape[1]).to(logits.dtype)
