"""ARGN: an auto-regressive network over the columns of a table, written from the TabularARGN paper
(Tiwald, Krchova, Sidorenko, Vieyra, Scriminaci & Platzer, "TabularARGN: A Flexible and Efficient
Auto-Regressive Framework for Generating High-Fidelity Synthetic Data", 2025; MOSTLY AI's engine) in plain
PyTorch. The joint distribution is factorised column by column, p(x) = Π_j p(x_j | x_<j), every factor a
softmax over the column's tokens, trained by maximum likelihood (one cross-entropy per column).

* **Tokens.** Every column becomes one discrete token: a categorical column's slots (released categories,
  the rare-category group, "missing"); a number's or date's exact value when it has at most
  ``max_values`` distinct values (ages, scores, counts: kept exactly), otherwise its frequent values
  (each ≥ 1/``max_bins`` of the rows) plus ``max_bins`` quantile bins of the rest, a value drawn uniformly
  inside a generated bin; plus a "missing" token where the column has missing cells. Without DP the
  values and quantiles come from the training rows (:meth:`ARGNModel.fit`); under DP only from public
  bounds (one token per whole number of a small range) or the quantiles of the transformer's DP mixture
  (post-processing of the DP histogram), so the tokenisation costs no budget.
* **Network.** One embedding per column (width 1.6·cardinality^0.56, at most ``max_embedding``, the fastai
  rule the paper follows); for each column j a head (Linear → ReLU → dropout → Linear) reads the
  concatenated embeddings of the columns *before* j, the others zeroed, plus a bit per column saying which
  are known. ``order="fixed"`` uses the table's order; ``order="random"`` draws one permutation per row
  and step (the paper's "flexible" any-order training), so that conditioned columns can be generated
  first, giving exactly p(rest | condition). All heads run as two batched matrix products.
* **Training.** AdamW (lr ``lr``), batches of ``batch_size`` (about n / 10 rows on small tables:
  :func:`small_table_batch`); early stopping on the held-out quality score like the other networks
  (:mod:`medsyn_tabular.early_stopping`; ``stop_on="loss"`` uses the held-out likelihood, as the paper
  does, but on tables of hundreds of rows it stopped after a few epochs while quality and utility kept
  improving).
* **Sampling.** Column by column in the training order (conditioned columns first under "random" order),
  each token drawn from its softmax; conditions restrict the allowed tokens (equality, inequality and
  ranges on numbers; a partly allowed bin is sampled inside the allowed part). Missing cells come out at
  the learned rate because tokens are sampled, not argmax-decoded.
* **DP-SGD** (:meth:`ARGNModel.fit_private`): the whole network sees real rows and is trained by
  DP-SGD (Opacus: Poisson sampling, per-sample clipping, Gaussian noise; the heads' per-sample gradients
  through Opacus' functorch path).

Generated rows are written in the transformer's encoding (nearest mixture mode), so decoding, conditions,
PHI rules and constraints are shared with the other models.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from medsyn_core import training as checkpoints
from medsyn_tabular.models.ctgan import SAMPLE_CHUNK, CheckpointCallback, ProgressCallback
from medsyn_tabular.transformers.table import MISSING, OTHER, TableTransformer


@dataclass
class ARGNParams:
    """Hyperparameters (``epochs`` is the most; early stopping usually ends sooner)."""

    epochs: int = 300
    batch_size: int = 500
    hidden: int = 128
    max_embedding: int = 32
    dropout: float = 0.25
    lr: float = 2e-3
    weight_decay: float = 1e-5
    max_values: int = 100  # a number with at most this many distinct values keeps them exactly
    max_bins: int = 50  # quantile bins for other numbers
    order: str = "fixed"  # "fixed" (the table's order) or "random" (any order: exact conditioning)
    stop_on: str = "quality"  # early stopping on held-out "quality" or "loss" (stopped too early: docs)


def table_bins(n_present: int, max_bins: int) -> int:
    """Tokens for a number with many values: about √n (10 to ``max_bins``), so that each token has
    rows enough to be learned (a token per value on a 250-row table overfitted within 30 steps)."""
    return int(np.clip(round(np.sqrt(max(n_present, 1))), 10, max_bins))


def small_table_batch(n_rows: int, batch_size: int) -> int:
    """The batch size without DP: ``batch_size`` at most, but about n / 10 rows (a power of two, at least
    64) on small tables, so that an epoch is several optimizer steps (one step per epoch on a 250-row
    table at batch 500 left the model undertrained when early stopping ended it)."""
    return int(min(batch_size, max(64, 2 ** int(np.log2(max(n_rows, 1) / 10))), n_rows))


class _Tokens:
    """The tokens of one column: ``values`` (exact values, numbers only), ``edges`` (quantile bins) and
    whether the last token is "missing". Categorical columns: one token per transformer slot."""

    def __init__(self, enc, spans, values: np.ndarray, edges: np.ndarray):
        self.enc, self.spans = enc, spans
        self.values = np.asarray(values, dtype=np.float64)
        self.edges = np.asarray(edges, dtype=np.float64)
        if enc.is_numeric:
            self.present = len(self.values) + max(0, len(self.edges) - 1)
            self.card = self.present + (1 if enc.has_missing_slot else 0)
        else:
            self.present = self.card = len(enc.slots)

    @property
    def missing_token(self) -> int | None:
        """The token of a missing cell, or None when the column has none."""
        if self.enc.is_numeric:
            return self.card - 1 if self.enc.has_missing_slot else None
        return self.enc.slots.index(MISSING) if MISSING in self.enc.slots else None

    # numbers <-> the transformer's encoding ---------------------------------------------------
    def numbers(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x (n,), missing (n,)) of a numeric column from encoded rows."""
        enc, spans = self.enc, self.spans
        mode = encoded[:, spans[1].start:spans[1].start + spans[1].size].argmax(axis=1)
        x = encoded[:, spans[0].start] * 4 * np.asarray(enc.stds)[mode] + np.asarray(enc.means)[mode]
        missing = np.zeros(len(x), bool)
        if enc.has_missing_slot:
            missing = encoded[:, spans[2].start + 1] > encoded[:, spans[2].start]
        return x, missing

    def encode(self, encoded: np.ndarray) -> np.ndarray:
        """(n,) token of each encoded row."""
        if not self.enc.is_numeric:
            s = self.spans[0]
            return encoded[:, s.start:s.start + s.size].argmax(axis=1)
        x, missing = self.numbers(encoded)
        tok = np.zeros(len(x), dtype=np.int64)
        if len(self.values):  # exact values: the nearest (values are exact up to float32 rounding)
            near = np.abs(x[:, None] - self.values[None, :]).argmin(axis=1)
            exact = np.isclose(x, self.values[near], rtol=1e-5, atol=1e-6 * (1 + np.abs(x)))
            tok = np.where(exact, near, 0)
        else:
            exact = np.zeros(len(x), bool)
        if len(self.edges) > 1:
            b = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2)
            tok = np.where(exact, tok, len(self.values) + b)
        elif len(self.values):
            tok = np.abs(x[:, None] - self.values[None, :]).argmin(axis=1)
        return np.where(missing, self.card - 1, tok) if self.enc.has_missing_slot else tok

    def write(self, tok: np.ndarray, out: np.ndarray, rng: np.random.Generator,
              limits: tuple[float, float] | None = None) -> None:
        """Write tokens ``tok`` (n,) into the encoded matrix ``out``; a bin token becomes a value drawn
        uniformly inside the bin (inside ``limits`` where a condition narrows it)."""
        enc, spans, rows = self.enc, self.spans, np.arange(len(tok))
        if not enc.is_numeric:
            out[rows, spans[0].start + tok] = 1.0
            return
        missing = tok >= self.present
        nv = len(self.values)
        x = np.zeros(len(tok))
        is_value = tok < nv
        x[is_value] = self.values[tok[is_value]]
        if len(self.edges) > 1:
            b = np.clip(tok - nv, 0, len(self.edges) - 2)
            lo, hi = self.edges[b], self.edges[b + 1]
            if limits is not None:
                lo, hi = np.maximum(lo, limits[0]), np.minimum(hi, limits[1])
                hi = np.maximum(hi, lo)
            inside = ~is_value & ~missing
            x[inside] = rng.uniform(lo[inside], hi[inside])
        mu, sd = np.asarray(enc.means), np.asarray(enc.stds)
        mode = np.abs((x[:, None] - mu[None, :]) / sd[None, :]).argmin(axis=1)  # the nearest mode
        alpha = np.clip((x - mu[mode]) / (4 * sd[mode]), -0.99, 0.99)
        out[:, spans[0].start] = np.where(missing, 0.0, alpha)
        out[rows, spans[1].start + mode] = 1.0
        if enc.has_missing_slot:
            out[rows, spans[2].start + missing.astype(int)] = 1.0

    def allowed(self, conds) -> tuple[np.ndarray, tuple[float, float] | None]:
        """(card,) bool mask of the tokens that can satisfy every condition in ``conds`` (all on this
        column), and the numeric interval the conditions leave (for drawing inside a bin)."""
        ok = np.ones(self.card, dtype=bool)
        if self.card > self.present:
            ok[self.present:] = False  # a condition never holds on a missing cell
        if not self.enc.is_numeric:
            keys = np.array([str(v) for v in self.enc.slots])
            grouped = {str(v) for v in self.enc.other_values}  # rare categories share the OTHER slot
            for c in conds:
                hit = keys == str(c.value)
                if c.op == "==":
                    ok &= hit | ((keys == OTHER) & (str(c.value) in grouped))
                elif c.op == "!=":
                    ok &= ~hit
            return ok, None
        lo, hi = -np.inf, np.inf
        for c in conds:
            v = c.value.value / 1e9 if hasattr(c.value, "value") else float(c.value)
            if c.op in (">", ">="):
                lo = max(lo, v)
            elif c.op in ("<", "<="):
                hi = min(hi, v)
            elif c.op == "==":
                lo, hi = max(lo, v), min(hi, v)
        nv = len(self.values)
        import operator as op

        ops = {">": op.gt, ">=": op.ge, "<": op.lt, "<=": op.le, "==": op.eq, "!=": op.ne}
        for c in conds:
            v = c.value.value / 1e9 if hasattr(c.value, "value") else float(c.value)
            ok[:nv] &= ops[c.op](self.values, v)
        if len(self.edges) > 1:
            bins_lo, bins_hi = self.edges[:-1], self.edges[1:]
            ok[nv:self.present] &= (bins_hi >= lo) & (bins_lo <= hi)
        return ok, (lo, hi)


def _quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))


def _mixture_edges(enc, bins: int) -> np.ndarray:
    """Quantile edges of the transformer's mixture restricted to [low, high] (DP: post-processing)."""
    from scipy.stats import norm

    grid = np.linspace(enc.low, enc.high, 2001)
    cdf = sum(w * norm.cdf(grid, m, s) for w, m, s in zip(enc.weights, enc.means, enc.stds, strict=True))
    cdf = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1e-12)
    edges = np.interp(np.linspace(0, 1, bins + 1), cdf, grid)
    edges[0], edges[-1] = enc.low, enc.high
    return np.unique(edges)


def tokenize(transformer: TableTransformer, encoded: np.ndarray | None, params: ARGNParams) -> list[_Tokens]:
    """The tokens of every column: from the training rows ``encoded``, or (``encoded=None``, DP) from
    public bounds and the transformer's DP statistics only."""
    out = []
    for enc, spans in zip(transformer.columns, transformer.column_spans, strict=True):
        values, edges = np.zeros(0), np.zeros(0)
        if enc.is_numeric:
            probe = _Tokens(enc, spans, values, edges)
            small_range = enc.kind in ("integer", "datetime") and float(enc.low).is_integer() and \
                float(enc.high).is_integer()
            unit = 86400.0 if enc.kind == "datetime" and enc.datetime_dates_only else 1.0
            if encoded is not None:
                x, missing = probe.numbers(encoded)
                x = x[~missing]
                if enc.kind == "integer":
                    x = np.round(x)
                elif enc.kind == "datetime":
                    x = np.round(x / unit) * unit
                uniq, counts = np.unique(x, return_counts=True)
                bins = table_bins(len(x), params.max_bins)
                if len(uniq) <= max(bins, min(params.max_values, bins)):
                    values = uniq
                else:
                    heavy = counts >= len(x) / bins
                    values = uniq[heavy]
                    rest = x[~np.isin(x, values)]
                    edges = _quantile_edges(rest, bins) if rest.size else np.zeros(0)
            elif small_range and (enc.high - enc.low) / unit + 1 <= params.max_values:
                values = np.arange(enc.low, enc.high + unit / 2, unit)
            else:
                edges = _mixture_edges(enc, params.max_bins)
            if len(edges) == 1:  # one distinct value left: it is a value
                values, edges = np.append(values, edges), np.zeros(0)
        out.append(_Tokens(enc, spans, values, edges))
    return out


class ARGNNet(nn.Module):
    """One embedding table for every column's tokens + one head per column, as batched matrix products.

    ``tokens`` (n, C) int -> logits (n, C, K) (K = the largest cardinality; padding -inf) given ``known``
    (n, C, C) float: known[i, j, k] = 1 if column k is visible when predicting column j for row i. Every
    column's embedding has the same width (1.6·median cardinality^0.56, 4 to ``max_embedding``: the fastai
    rule), so that all lookups are one ``nn.Embedding`` call."""

    def __init__(self, cards: list[int], hidden: int, max_embedding: int, dropout: float):
        super().__init__()
        self.cards = list(cards)
        C, K = len(cards), max(cards)
        self.dim = int(np.clip(round(1.6 * float(np.median(cards)) ** 0.56), 4, max_embedding))
        self.embedding = nn.Embedding(int(sum(cards)), self.dim)
        offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(cards)[:-1]]), dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.heads = Heads(C, C * self.dim + C, hidden, K, dropout)
        pad = torch.arange(K)[None, :] >= torch.tensor(cards)[:, None]
        self.register_buffer("pad", pad, persistent=False)

    def inputs(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """(n, C', C·dim + C): per predicted column, the visible columns' embeddings and the known bits
        (``known`` (n, C', C) for C' predicted columns)."""
        emb = self.embedding(tokens + self.offsets)  # (n, C, dim)
        n, c = known.shape[0], known.shape[1]
        visible = (known[:, :, :, None] * emb[:, None, :, :]).reshape(n, c, -1)
        return torch.cat([visible, known], dim=2)

    def forward(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return self.heads(self.inputs(tokens, known)).masked_fill(self.pad, float("-inf"))


class Heads(nn.Module):
    """C independent two-layer heads: (n, C, I) -> (n, C, K)."""

    def __init__(self, columns: int, inputs: int, hidden: int, outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Parameter(torch.randn(columns, inputs, hidden) / math.sqrt(inputs))
        self.b1 = nn.Parameter(torch.zeros(columns, hidden))
        self.w2 = nn.Parameter(torch.randn(columns, hidden, outputs) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(columns, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(torch.einsum("nci,cih->nch", x, self.w1) + self.b1))
        return torch.einsum("nch,cho->nco", h, self.w2) + self.b2


class ARGNModel:
    """The auto-regressive network + training loop over an encoded matrix from :class:`TableTransformer`."""

    def __init__(self, transformer: TableTransformer, params: ARGNParams, device, seed: int = 0):
        if params.order not in ("fixed", "random"):
            raise ValueError(f"order must be 'fixed' or 'random' (got {params.order!r}).")
        self.transformer, self.params, self.device, self.seed = transformer, params, device, seed
        self.tokens: list[_Tokens] = []
        self.net: ARGNNet | None = None
        self.loss_history: list[dict] = []

    # -- set-up --------------------------------------------------------------------------------------
    def _build(self, tokens: list[_Tokens], dropout: float | None = None) -> None:
        torch.manual_seed(self.seed)
        self.tokens = tokens
        p = self.params
        self.net = ARGNNet([t.card for t in tokens], p.hidden, p.max_embedding,
                           p.dropout if dropout is None else dropout).to(self.device)
        C = len(tokens)
        self._fixed = torch.tril(torch.ones(C, C, device=self.device), diagonal=-1)  # k before j

    def token_matrix(self, encoded: np.ndarray) -> torch.Tensor:
        """(n, C) tokens of the encoded rows."""
        return torch.as_tensor(np.stack([t.encode(encoded) for t in self.tokens], axis=1), dtype=torch.long,
                               device=self.device)

    def _known(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """(n, C, C) visibility: the fixed order, or one random order per row."""
        C = len(self.tokens)
        if self.params.order == "fixed" or generator is None:
            return self._fixed.expand(n, C, C)
        rank = torch.argsort(torch.rand(n, C, generator=generator), dim=1).argsort(dim=1).to(self.device)
        return (rank[:, None, :] < rank[:, :, None]).float()  # k visible for j if k comes earlier

    def loss(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Mean over rows of the summed per-column cross-entropy (nats per row)."""
        logits = self.net(tokens, known)
        logp = torch.log_softmax(logits, dim=2).gather(2, tokens[:, :, None]).squeeze(2)
        return -logp.sum(dim=1).mean()

    def make_optimizer(self, module: nn.Module | None = None) -> torch.optim.Optimizer:
        return torch.optim.AdamW((module or self.net).parameters(), lr=self.params.lr,
                                 weight_decay=self.params.weight_decay)

    # -- training ------------------------------------------------------------------------------------
    def fit(self, data: np.ndarray, progress: ProgressCallback | None = None,
            checkpoint: CheckpointCallback | None = None, resume: dict | None = None, stop=None) -> None:
        """Train on the encoded ``data`` (n_rows, data_dim); ``stop(epoch)`` (early stopping / time budget,
        :mod:`medsyn_tabular.early_stopping`) ends training when it returns True; ``checkpoint``/``resume`` as
        in :meth:`medsyn_tabular.models.ctgan.CTGANModel.fit`."""
        p = self.params
        self._build(tokenize(self.transformer, data, p))
        tokens = self.token_matrix(data)
        opt = self.make_optimizer()
        generator = torch.Generator().manual_seed(self.seed)
        nets, opts = {"argn": self.net}, {"argn": opt}
        wants_state = checkpoint is not None or resume is not None
        fp = checkpoints.table_fingerprint(data, "argn", self.params_dict(), self.seed) if wants_state else ""
        start = 0
        if resume is not None:
            start, self.loss_history = checkpoints.restore(resume, fp, nets, opts, None,
                                                           {"batches": generator})
        n = tokens.shape[0]
        bs = small_table_batch(n, p.batch_size)
        for epoch in range(start, p.epochs):
            self.net.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=generator).to(self.device)
            total = 0.0
            for i in range(0, n, bs):
                batch = tokens[perm[i:i + bs]]
                loss = self.loss(batch, self._known(len(batch), generator))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            record = {"epoch": epoch + 1, "epochs": p.epochs, "loss": total / n,
                      "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
            if checkpoint is not None:
                checkpoint(epoch + 1, p.epochs, lambda e=epoch + 1: checkpoints.capture(
                    e, fp, nets, opts, None, {"batches": generator}, self.loss_history))
            if stop is not None and stop(epoch + 1):
                break

    @torch.no_grad()
    def validation_loss(self, data: np.ndarray) -> float:
        """Mean negative log-likelihood (nats per row) of encoded held-out rows, in the fixed order."""
        self.net.eval()
        tokens = self.token_matrix(data)
        return float(self.loss(tokens, self._fixed.expand(len(tokens), -1, -1)))

    def fit_private(self, data: np.ndarray, plan, progress: ProgressCallback | None = None):
        """DP-SGD training of the whole network (it sees real rows) with the noise of ``plan``; the tokens
        come from public bounds and the transformer's DP statistics only. Returns the Opacus engine."""
        from medsyn_core.privacy.dpsgd import make_private

        p = self.params
        self._build(tokenize(self.transformer, None, p), dropout=0.0)  # DP noise regularises instead
        model = _PrivateARGN(self)
        dataset = torch.utils.data.TensorDataset(self.token_matrix(data).cpu())
        loader = torch.utils.data.DataLoader(dataset, batch_size=p.batch_size)
        engine, module, optimizer, loader = make_private(plan, model, self.make_optimizer(model), loader)
        module.train()
        loss = torch.zeros(())
        for epoch in range(p.epochs):
            t0 = time.perf_counter()
            for (tokens,) in loader:
                optimizer.zero_grad(set_to_none=True)
                loss = module(tokens.to(self.device))  # an empty Poisson batch is a noise-only step
                loss.backward()
                optimizer.step()
            record = {"epoch": epoch + 1, "epochs": p.epochs, "loss": float(loss.detach()),
                      "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
        return engine

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, rng: np.random.Generator, condition=None) -> np.ndarray:
        """(n, data_dim) synthetic encoded rows, drawn column by column. ``condition``: parsed conditions
        (:class:`~medsyn_tabular.data.conditions.Condition`) to steer by; their columns' tokens are
        restricted to those that can satisfy them (and, under "random" order, generated first)."""
        self.net.eval()
        C = len(self.tokens)
        names = [t.enc.name for t in self.tokens]
        by_col: dict[int, list] = {}
        for c in condition or []:
            if c.column in names:
                by_col.setdefault(names.index(c.column), []).append(c)
        allowed = {j: self.tokens[j].allowed(cs) for j, cs in by_col.items()}
        first = [j for j in range(C) if j in by_col] if self.params.order == "random" else []
        order = first + [j for j in range(C) if j not in first]
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        out = np.zeros((n, self.transformer.output_dim), dtype=np.float32)
        for a in range(0, n, SAMPLE_CHUNK):
            m = min(SAMPLE_CHUNK, n - a)
            tok = torch.zeros(m, C, dtype=torch.long, device=self.device)
            known = torch.zeros(m, C, C, device=self.device)
            for j in order:
                logits = self._head(tok, known, j)  # (m, K)
                slot = self.tokens[j].missing_token
                if not by_col and slot is not None:
                    logits = _calibrate_missing(logits, slot, self.tokens[j].enc.missing_rate)
                if j in allowed:
                    mask = torch.zeros(logits.shape[1], dtype=torch.bool)
                    mask[:len(allowed[j][0])] = torch.as_tensor(allowed[j][0])
                    if mask.any():
                        logits = logits.masked_fill(~mask.to(logits.device), float("-inf"))
                u = torch.rand(logits.shape, generator=g).clamp_(1e-10, 1 - 1e-10).to(logits.device)
                tok[:, j] = (logits - torch.log(-torch.log(u))).argmax(dim=1)  # Gumbel-max draw
                known[:, :, j] = 1.0
                known[:, j, j] = 0.0
            tok_np = tok.cpu().numpy()
            chunk = out[a:a + m]
            for j, t in enumerate(self.tokens):
                t.write(tok_np[:, j], chunk, rng, allowed[j][1] if j in allowed else None)
        return out

    def _head(self, tok: torch.Tensor, known: torch.Tensor, j: int) -> torch.Tensor:
        """Logits (m, K) of column j given the visible columns (only head j is computed)."""
        net = self.net
        x = net.inputs(tok, known[:, j:j + 1, :])[:, 0, :]
        h = torch.relu(x @ net.heads.w1[j] + net.heads.b1[j])
        return (h @ net.heads.w2[j] + net.heads.b2[j]).masked_fill(net.pad[j], float("-inf"))

    # -- persistence ---------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        for j, t in enumerate(self.tokens):
            out[f"tokens.{j}.values"] = torch.as_tensor(t.values, dtype=torch.float64)
            out[f"tokens.{j}.edges"] = torch.as_tensor(t.edges, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        cols = zip(self.transformer.columns, self.transformer.column_spans, strict=True)
        self._build([_Tokens(enc, spans, tensors[f"tokens.{j}.values"].numpy(),
                             tensors[f"tokens.{j}.edges"].numpy()) for j, (enc, spans) in enumerate(cols)])
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})

    def params_dict(self) -> dict:
        return asdict(self.params)


def _calibrate_missing(logits: torch.Tensor, slot: int, rate: float) -> torch.Tensor:
    """``logits`` (m, K) with the missing token's logit shifted by one constant so that the mean
    probability of a missing cell over the m rows equals the learned ``rate`` (the transformer's, from
    the rows or their DP histogram): rows likelier to be missing stay likelier, and the rate matches
    even when the network is poorly calibrated (DP-SGD after few steps). A rate of 0 means never."""
    out = logits.clone()
    if rate <= 0:
        out[:, slot] = float("-inf")
        return out
    logp = torch.log_softmax(logits, dim=1)
    rest = torch.logsumexp(torch.cat([logp[:, :slot], logp[:, slot + 1:]], dim=1), dim=1)
    d = (logp[:, slot] - rest).clamp(-60, 60)  # log-odds of missing
    lo, hi = -60.0, 60.0
    for _ in range(50):  # bisection on the shift: the mean probability grows with it
        mid = (lo + hi) / 2
        if float(torch.sigmoid(d + mid).mean()) < rate:
            lo = mid
        else:
            hi = mid
    out[:, slot] = logits[:, slot] + (lo + hi) / 2
    return out


class _PrivateARGN(nn.Module):
    """The network with its loss as one module (tokens (n, C) -> mean loss), for Opacus: the random order
    is drawn inside, per row."""

    def __init__(self, model: ARGNModel):
        super().__init__()
        self.net, self._model = model.net, [model]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        model = self._model[0]
        if tokens.shape[0] == 0:
            return sum(p.sum() * 0 for p in self.parameters())
        known = model._known(tokens.shape[0], torch.Generator().manual_seed(int(torch.randint(2**62, ()))))
        logits = self.net(tokens, known)
        logp = torch.log_softmax(logits, dim=2).gather(2, tokens[:, :, None]).squeeze(2)
        return -logp.sum(dim=1).mean()
