"""The vectorised span operations (one tensor op over all spans) against the per-span definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tabular_helpers import one_torch_thread

from medsyn_tabular.models.activations import SpanLayout, apply_activations, span_cross_entropy
from medsyn_tabular.transformers.table import Span

# scalar, 3 modes, 2-slot missing block, scalar, a 5-category column, a 2-category column
SIZES = [(1, "tanh"), (3, "softmax"), (2, "softmax"), (1, "tanh"), (5, "softmax"), (2, "softmax")]


def _spans() -> list[Span]:
    spans, start = [], 0
    for size, act in SIZES:
        spans.append(Span(start, size, act))
        start += size
    return spans


def _one_hot_rows(spans: list[Span], n: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.zeros(n, spans[-1].start + spans[-1].size)
    for s in spans:
        if s.activation == "tanh":
            x[:, s.start] = torch.rand(n, generator=gen) * 2 - 1
        else:
            x[torch.arange(n), s.start + torch.randint(s.size, (n,), generator=gen)] = 1.0
    return x


def test_span_cross_entropy_equals_the_sum_of_per_span_cross_entropies():
    spans, gen = _spans(), torch.Generator().manual_seed(0)
    logits = torch.randn(64, 14, generator=gen) * 3
    target = _one_hot_rows(spans, 64, gen)
    expected = sum(F.cross_entropy(logits[:, s.start:s.start + s.size],
                                   target[:, s.start:s.start + s.size].argmax(1), reduction="sum")
                   for s in spans if s.activation == "softmax")
    assert torch.allclose(span_cross_entropy(SpanLayout(spans), logits, target), expected, rtol=1e-5)


def test_soft_activations_are_tanh_and_per_span_distributions():
    spans = _spans()
    raw = torch.randn(32, 14, generator=torch.Generator().manual_seed(1))
    out = apply_activations(raw, spans, tau=0.2, generator=torch.Generator().manual_seed(2))
    for s in spans:
        block = out[:, s.start:s.start + s.size]
        if s.activation == "tanh":
            assert torch.equal(block, torch.tanh(raw[:, s.start:s.start + s.size]))
        else:
            assert torch.allclose(block.sum(1), torch.ones(32)) and (block >= 0).all()


def test_hard_sampling_gives_one_hots_drawn_with_the_softmax_probabilities():
    spans = _spans()
    logits = torch.tensor([0.3, 1.0, -1.0, 0.0, 2.0, -0.5, 0.1, 0.0, 0.5, 1.5, -2.0, 0.2, 0.0, 1.0])
    n = 20_000
    with one_torch_thread():
        out = apply_activations(logits.expand(n, -1), SpanLayout(spans), hard=True,
                                generator=torch.Generator().manual_seed(3))
    for s in spans:
        block = out[:, s.start:s.start + s.size]
        if s.activation == "tanh":
            assert torch.allclose(block, torch.tanh(logits[s.start:s.start + s.size]).expand(n, -1))
            continue
        assert torch.equal(block.sum(1), torch.ones(n)) and set(block.unique().tolist()) == {0.0, 1.0}
        p = F.softmax(logits[s.start:s.start + s.size], 0).numpy()
        freq = block.mean(0).numpy()
        assert np.abs(freq - p).max() < 4 * np.sqrt(p * (1 - p) / n).max() + 1e-9


def test_ctgan_condition_loss_equals_the_masked_per_column_cross_entropy(shared_data):
    from medsyn_tabular.data.io import read_table
    from medsyn_tabular.data.schema import infer_schema
    from medsyn_tabular.models.ctgan import CTGANModel, CTGANParams
    from medsyn_tabular.transformers.table import TableTransformer

    heart = read_table(shared_data / "tabular/heart.csv")
    schema = infer_schema(heart)
    model = CTGANModel(TableTransformer().fit(heart, schema), CTGANParams(epochs=1), "cpu")
    rng = np.random.default_rng(0)
    col, slot = model.sampler.sample_training(200, rng)
    cond, mask = (torch.as_tensor(a) for a in model.sampler.cond_vectors(col, slot))
    raw = torch.randn(200, model.data_dim, generator=torch.Generator().manual_seed(4))
    losses = []
    for j, (span, off, size) in enumerate(zip(model.transformer.discrete_spans(), model.sampler.offsets,
                                              model.sampler.sizes, strict=True)):
        ce = F.cross_entropy(raw[:, span.start:span.start + span.size], cond[:, off:off + size].argmax(1),
                             reduction="none")
        losses.append(ce * mask[:, j])
    expected = torch.stack(losses, 1).sum() / 200
    assert model._cond_loss(raw, cond, mask).item() == pytest.approx(expected.item(), rel=1e-5)
