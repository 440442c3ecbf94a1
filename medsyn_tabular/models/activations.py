"""Output activations over the spans of the encoded matrix, shared by CTGAN and TVAE.

:class:`SpanLayout` precomputes index tensors once per model, so that ``tanh`` over every scalar span and
a (Gumbel-)softmax over every one-hot span are a handful of tensor operations for the whole matrix,
whatever the number of columns (no Python loop over spans in the training or sampling step).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medsyn_tabular.transformers.table import Span


class SpanLayout:
    """Index tensors over the spans of an encoded matrix of width ``dim``.

    * ``tanh_cols`` (t,): columns of the scalar spans; ``soft_cols`` (m,): columns of the one-hot spans.
    * ``pad_index`` (S, K): for each one-hot span (S of them, widest K), its columns, padded with column
      0; ``pad_mask`` (S, K) is True on the padding. Used to view one-hot spans as a (n, S, K) block.
    * ``inverse`` (dim,): puts ``cat([tanh part, one-hot part], 1)`` back in column order.
    """

    def __init__(self, spans: list[Span], device=None):
        self.spans = list(spans)
        tanh, soft, groups = [], [], []
        for span in spans:
            cols = list(range(span.start, span.start + span.size))
            if span.activation == "tanh":
                tanh += cols
            else:
                soft += cols
                groups.append(cols)
        self.dim = len(tanh) + len(soft)
        width = max((len(g) for g in groups), default=1)
        self.starts = torch.tensor([g[0] for g in groups], dtype=torch.long, device=device)
        self.sizes = torch.tensor([len(g) for g in groups], dtype=torch.long, device=device)
        self.pad_index = torch.tensor([g + [0] * (width - len(g)) for g in groups] or [[0]],
                                      dtype=torch.long, device=device)[: len(groups)]
        self.pad_mask = torch.arange(width, device=device)[None, :] >= self.sizes[:, None]
        self.tanh_cols = torch.tensor(tanh, dtype=torch.long, device=device)
        self.soft_cols = torch.tensor(soft, dtype=torch.long, device=device)
        order = torch.tensor(tanh + soft, dtype=torch.long, device=device)
        self.inverse = torch.zeros(int(order.max()) + 1 if len(order) else 0, dtype=torch.long, device=device)
        self.inverse[order] = torch.arange(len(order), device=device)
        # position of each one-hot column inside the flattened (S, K) block (padding excluded)
        self.flat_valid = (~self.pad_mask).reshape(-1).nonzero().squeeze(1)

    def blocks(self, x: torch.Tensor, fill: float = float("-inf")) -> torch.Tensor:
        """(n, dim) -> (n, S, K) one-hot spans side by side; padding set to ``fill``."""
        return x[:, self.pad_index].masked_fill(self.pad_mask, fill)


def gumbel_noise(shape, generator, device) -> torch.Tensor:
    """Standard Gumbel noise of ``shape``: -log(-log(u)), u uniform."""
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1 - 1e-10)
    return u.log_().neg_().log_().neg_()  # -log(-log(u))


def apply_activations(raw: torch.Tensor, spans: list[Span] | SpanLayout, tau: float = 0.2,
                      generator: torch.Generator | None = None, hard: bool = False) -> torch.Tensor:
    """``tanh`` on scalar spans, Gumbel-softmax on one-hot spans; (n, dim) -> (n, dim).

    ``hard=True`` (sampling) returns exact one-hots of the Gumbel-max sample instead of soft vectors.
    """
    layout = spans if isinstance(spans, SpanLayout) else SpanLayout(spans, raw.device)
    if hard:
        tanh_part = torch.tanh(raw[:, layout.tanh_cols])
        if layout.starts.numel() == 0:
            return tanh_part[:, layout.inverse]
        logits = layout.blocks(raw)  # (n, S, K), padding -inf
        idx = (logits + gumbel_noise(logits.shape, generator, raw.device)).argmax(dim=2)
        return one_hot_blocks(layout, idx, tanh_part)
    # training: one noise draw for the whole matrix, then one small softmax per span (measured faster
    # forward + backward at batch 500 than a padded (n, S, K) softmax or a segment-sum softmax)
    noisy = (raw + gumbel_noise(raw.shape, generator, raw.device)) / tau
    parts = []
    for span in layout.spans:
        a, b = span.start, span.start + span.size
        soft = span.activation != "tanh"
        parts.append(F.softmax(noisy[:, a:b], dim=1) if soft else torch.tanh(raw[:, a:b]))
    return torch.cat(parts, dim=1)


def one_hot_blocks(layout: SpanLayout, idx: torch.Tensor, tanh_part: torch.Tensor) -> torch.Tensor:
    """(n, dim) matrix: ``tanh_part`` in the scalar columns, a one-hot at slot ``idx`` (n, S) per span."""
    n = idx.shape[0]
    out = torch.zeros(n, layout.dim, dtype=tanh_part.dtype, device=tanh_part.device)
    out[:, layout.tanh_cols] = tanh_part
    out.scatter_(1, layout.starts[None, :] + idx, 1.0)
    return out


def span_cross_entropy(layout: SpanLayout, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over rows and one-hot spans of the cross-entropy of ``logits`` (n, dim) against the one-hot
    spans of ``target`` (n, dim); scalar."""
    lse = torch.logsumexp(layout.blocks(logits), dim=2).sum()
    picked = (logits[:, layout.soft_cols] * target[:, layout.soft_cols]).sum()
    return lse - picked


class MissingSlots:
    """Where the missing-value slots are among the one-hot spans of a :class:`SpanLayout`, and the
    missing rate the transformer learned for each (from the real table, or its DP histogram).

    ``span`` (m,): index of the one-hot span (in layout order) that holds a missing slot; ``slot`` (m,):
    the slot's position inside that span; ``rate`` (m,): the learned missing rate of the column.
    """

    def __init__(self, span: list[int], slot: list[int], rate: list[float]):
        self.span, self.slot, self.rate = list(span), list(slot), list(rate)

    @classmethod
    def of(cls, transformer) -> MissingSlots:
        from medsyn_tabular.transformers.table import MISSING

        span, slot, rate = [], [], []
        k = 0  # index among the one-hot spans
        for enc, spans in zip(transformer.columns, transformer.column_spans, strict=True):
            soft = [s for s in spans if s.activation != "tanh"]
            if enc.has_missing_slot:
                if enc.is_numeric:  # [modes, (present, missing)]
                    span.append(k + len(soft) - 1)
                    slot.append(1)
                else:
                    span.append(k)
                    slot.append(enc.slots.index(MISSING))
                rate.append(float(enc.missing_rate))
            k += len(soft)
        return cls(span, slot, rate)


def decode_blocks(logits: torch.Tensor, missing: MissingSlots | None, generator: torch.Generator | None,
                  sample: bool = False) -> torch.Tensor:
    """Slot index (n, S) of each one-hot span from ``logits`` (n, S, K) (padding ``-inf``).

    ``sample=False``: the argmax; ``sample=True``: a Gumbel-max draw. Missing-value slots are decided
    apart: in each span with one, the ``round(rate * n)`` rows (randomised rounding) whose probability of
    the missing slot is highest are missing and the others take their best non-missing slot. The rate
    then matches the learned one exactly while the rows most likely missing given the other columns are
    the missing ones (an argmax alone would almost never pick a slot of probability 0.2, a draw alone
    leaves the rate to how calibrated the network is)."""
    if sample:
        logits = logits + gumbel_noise(logits.shape, generator, logits.device)
    idx = logits.argmax(dim=2)
    if missing is None or not missing.span or logits.shape[0] == 0:
        return idx
    n = logits.shape[0]
    for s, j, rate in zip(missing.span, missing.slot, missing.rate, strict=True):
        block = logits[:, s, :]
        p_missing = torch.softmax(block, dim=1)[:, j]
        u = float(torch.rand((), generator=generator, device=logits.device))
        k = int(np.floor(rate * n + u))  # randomised rounding: E[k] = rate * n
        others = block.clone()
        others[:, j] = float("-inf")
        best = others.argmax(dim=1)
        if torch.isinf(others.max(dim=1).values).all():  # the span has the missing slot only
            best = torch.full_like(best, j)
        chosen = torch.zeros(n, dtype=torch.bool, device=logits.device)
        if k > 0:
            tie = torch.rand(n, generator=generator, device=logits.device) * 1e-6  # random order of ties
            chosen[torch.topk(p_missing + tie, min(k, n)).indices] = True
        idx[:, s] = torch.where(chosen, torch.full_like(best, j), best)
    return idx
