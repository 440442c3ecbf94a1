"""The EHR generator network: autoregressive over a patient's record, in plain PyTorch.

The factorisation follows the probabilistic autoregressive (PAR) model of Zhang, Patki and Veeramachaneni
("Sequential Models in the Synthetic Data Vault", arXiv:2207.14406, 2022): context (the patient) first,
then the sequence one step at a time, each step conditioned on the context and on what came before, every
value a categorical distribution over tokens (:mod:`~medsyn_tabular.ehr.codecs`). Here it is written out
in three levels:

    p(record) = p(patient) · Π_t p(visit_t | patient, visits_<t) · Π_rows p(row | visit_t, patient, history)

* **patient** (:class:`Chain`): its variables one after another (MADE-style: variable k sees the
  embeddings of variables < k), ending with the year of birth, the number of visits and death;
* **history**: the summary x_t of visit t (the embeddings of its tokens plus the mean embedding of the
  codes of its rows) is read by the next visit through a fixed causal filter: x_{t-1} itself,
  exponential moving averages with decays 0.5, 0.8 and 0.95, and the running mean (a linear recurrence
  computed as a matrix product, so training needs no loop over time and only Linear and Embedding layers,
  which Opacus computes per-sample gradients for); with the patient's context and the visit's position
  and the number of visits still to come, an MLP gives the visit state h_t;
* **visit** (:class:`Chain` conditioned on h_t): gap since the previous visit, age (derived, not
  predicted), class, code, duration, other columns, then the number of rows per event table;
* **rows**: each event table's codes are a bag drawn from a softmax over its vocabulary given the visit
  (u_t = h_t + the visit's token embeddings); each row's other variables (start offset, duration, value,
  columns) come from a :class:`Chain` conditioned on u_t and the row's code embedding.

Training maximises the log-likelihood; the loss of one patient is the mean cross-entropy of each level
(patient, visits, each event table's codes and rows), summed, so every patient weighs the same whatever
the length of their record. Each step scores at most ``rows_per_step`` rows of a patient per event table,
drawn at random (an unbiased estimate of the mean over all rows; the visit summaries still read every
row), which keeps a step's cost bounded for patients with thousands of observations.
:meth:`EHRNet.forward` takes a batch of patients (padded token arrays) and
returns one loss per patient: one DP-SGD sample is one patient with all their rows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DECAYS = (0.5, 0.8, 0.95)
MAX_POSITION = 255


def _masked(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens with -1 replaced by 0, float mask of valid tokens)."""
    valid = tokens >= 0
    return tokens.clamp(min=0), valid.float()


class Chain(nn.Module):
    """An autoregressive chain over K discrete variables given a condition vector (B, ..., d).

    Variable k's logits come from ``trunk(cond + pos_k + Σ_{j<k} emb_j(x_j))``; variables without a head
    are inputs only (e.g. the age at a visit). :meth:`summary` is ``Σ_k emb_k(x_k)``.
    """

    def __init__(self, sizes: list[int], heads: list[bool], dim: int):
        super().__init__()
        self.sizes, self.heads = list(sizes), list(heads)
        self.embed = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)
        self.position = nn.Embedding(max(1, len(sizes)), dim)
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.out = nn.ModuleList(nn.Linear(dim, n) if h else nn.Identity() for n, h in zip(sizes, heads,
                                                                                            strict=True))

    def embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, ..., K) tokens -> (B, ..., K, d) embeddings (zero where a token is -1)."""
        clean, mask = _masked(tokens)
        return torch.stack([self.embed[k](clean[..., k]) * mask[..., k, None]
                            for k in range(len(self.sizes))], dim=-2)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, emb: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced: (mean cross-entropy per leading index (B, ...), embeddings (B, ..., K, d)).

        The loss averages over the variables with a head and a valid target; ``emb``: the tokens'
        embeddings when already computed."""
        emb = self.embeddings(tokens) if emb is None else emb
        prefix = torch.cumsum(emb, dim=-2) - emb  # Σ_{j<k}
        index = torch.arange(len(self.sizes), device=tokens.device).expand(*tokens.shape).contiguous()
        hidden = self.trunk(cond.unsqueeze(-2) + self.position(index) + prefix)
        losses, counts = 0.0, 0.0
        clean, mask = _masked(tokens)
        for k, head in enumerate(self.heads):
            if not head:
                continue
            logits = self.out[k](hidden[..., k, :])
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), clean[..., k].reshape(-1),
                                 reduction="none").reshape(clean.shape[:-1])
            losses = losses + ce * mask[..., k]
            counts = counts + mask[..., k]
        return losses / torch.clamp(counts, min=1.0), emb

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator, forbidden: list[list[int]],
               derived: dict | None = None, fixed: dict | None = None,
               active: dict | None = None) -> torch.Tensor:
        """Sample tokens (M, K) given ``cond`` (M, d), variable by variable.

        ``forbidden[k]``: tokens never drawn; ``derived[k](tokens so far) -> (M,)``: tokens of variables
        without a head; ``fixed[k]``: tokens given in advance; ``active[k](tokens so far) -> bool (M,)``:
        where the variable applies (elsewhere its token is -1)."""
        m = cond.shape[0]
        tokens = torch.full((m, len(self.sizes)), -1, dtype=torch.long, device=cond.device)
        running = cond.clone()
        for k in range(len(self.sizes)):
            if fixed and k in fixed:
                tok = fixed[k]
            elif derived and k in derived:
                tok = derived[k](tokens)
            else:
                pos = self.position(torch.full((m,), k, dtype=torch.long, device=cond.device))
                logits = self.out[k](self.trunk(running + pos)).float()
                if forbidden[k]:
                    logits[:, forbidden[k]] = -torch.inf
                tok = torch.multinomial(torch.softmax(logits, dim=-1).cpu(), 1, generator=generator)[:, 0]
                tok = tok.to(cond.device)
            if active and k in active:
                tok = torch.where(active[k](tokens), tok, torch.full_like(tok, -1))
            tokens[:, k] = tok
            running = running + self.embed[k](tok.clamp(min=0)) * (tok >= 0).float()[:, None]
        return tokens


def _gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def causal_filters(length: int, device) -> torch.Tensor:
    """(F, T, T) lower-triangular weights: one EMA per decay, then the running mean (row t: weights of
    inputs 0..t)."""
    t = torch.arange(length, device=device, dtype=torch.float32)
    diff = t[:, None] - t[None, :]
    lower = (diff >= 0).float()
    mats = [((1 - d) * torch.pow(torch.tensor(d, device=device), diff.clamp(min=0))) * lower for d in DECAYS]
    mats.append(lower / (t[:, None] + 1))
    return torch.stack(mats)


class EHRNet(nn.Module):
    """Patient chain, visit chain with a causal history, event-table bags and row chains (module doc).

    ``patient_sizes``/``step_sizes``/``step_heads``: token counts of the variables; ``tables``: per event
    table (vocabulary size, row variable sizes); ``index``: positions of named variables (``n_visits`` in
    the patient chain, ``count:<table>`` in the visit chain)."""

    def __init__(self, patient_sizes: list[int], step_sizes: list[int], step_heads: list[bool],
                 tables: dict[str, tuple[int, list[int]]], dim: int = 128, rows_per_step: int = 256):
        super().__init__()
        self.dim, self.rows_per_step = dim, rows_per_step
        self.table_names = list(tables)
        self.patient = Chain(patient_sizes, [True] * len(patient_sizes), dim)
        self.context = nn.Linear(dim, dim)
        self.start = nn.Embedding(1, dim)
        self.history = nn.Linear(dim * (2 + len(DECAYS)), dim)
        self.visit_position = nn.Embedding(MAX_POSITION + 1, dim)
        self.remaining = nn.Embedding(MAX_POSITION + 1, dim)
        self.state = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.step = Chain(step_sizes, step_heads, dim)
        self.codes = nn.ModuleDict({n: nn.Embedding(v, dim) for n, (v, _) in tables.items()})
        self.bags = nn.ModuleDict({n: nn.Linear(dim, v) for n, (v, _) in tables.items()})
        self.rows = nn.ModuleDict({n: Chain(sizes, [True] * len(sizes), dim)
                                   for n, (_, sizes) in tables.items()})

    # -- training ------------------------------------------------------------------------------------
    def visit_states(self, ctx: torch.Tensor, summaries: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
        """h (B, T, d) of every visit from the context (B, d) and the visit summaries (B, T, d)."""
        b, t, _ = summaries.shape
        start = self.start(torch.zeros(b, 1, dtype=torch.long, device=summaries.device))
        x = torch.cat([start, summaries[:, :-1]], dim=1)  # visit t reads visits < t
        filtered = torch.einsum("fts,bsd->bftd", causal_filters(t, x.device), x)
        feats = torch.cat([x] + [filtered[:, i] for i in range(filtered.shape[1])], dim=-1)
        pos = torch.arange(t, device=x.device).clamp(max=MAX_POSITION).expand(b, t).contiguous()
        left = (nv[:, None] - pos).clamp(min=0, max=MAX_POSITION)
        return self.state(self.history(feats) + self.context(ctx)[:, None] + self.visit_position(pos)
                          + self.remaining(left))

    def forward(self, pv: torch.Tensor, vt: torch.Tensor, nv: torch.Tensor, *rows: torch.Tensor
                ) -> torch.Tensor:
        """Loss per patient (B,) for token arrays (see :class:`~medsyn_tabular.ehr.encoding.EncodedEHR`):
        ``rows`` alternates each table's rows (B, R, 2 + Q) and row counts (B,)."""
        b = pv.shape[0]
        pv, vt, nv = pv.long(), vt.long(), nv.long()
        t_max = max(1, int(nv.max())) if b else 1
        vt = vt[:, :t_max]
        patient_loss, patient_emb = self.patient(pv, torch.zeros(b, self.dim, device=pv.device))
        ctx = patient_emb.sum(dim=-2)
        visit_mask = (torch.arange(t_max, device=pv.device)[None, :] < nv[:, None]).float()
        step_tok_emb = self.step.embeddings(vt)  # (B, T, S, d)
        step_emb = step_tok_emb.sum(dim=-2)
        code_means, table_rows = [], []
        for i, name in enumerate(self.table_names):
            r, nr = rows[2 * i].long(), rows[2 * i + 1].long()
            r = r[:, :max(1, int(nr.max()) if b else 1)]
            valid = (r[:, :, 0] >= 0).float()
            t_idx = r[:, :, 0].clamp(min=0, max=t_max - 1)
            code_emb = self.codes[name](r[:, :, 1].clamp(min=0)) * valid[..., None]
            sums = torch.zeros(b, t_max, self.dim, device=pv.device).scatter_add(
                1, t_idx[..., None].expand(-1, -1, self.dim), code_emb)
            counts = torch.zeros(b, t_max, device=pv.device).scatter_add(1, t_idx, valid)
            code_means.append(sums / counts.clamp(min=1.0)[..., None])
            table_rows.append((r, valid, t_idx, code_emb))
        summaries = step_emb + sum(code_means) if code_means else step_emb
        h = self.visit_states(ctx, summaries, nv)
        step_loss, _ = self.step(vt, h, step_tok_emb)  # (B, T)
        visit_loss = (step_loss * visit_mask).sum(1) / visit_mask.sum(1).clamp(min=1.0)
        u = h + step_emb
        table_losses, table_present = [], []
        for name, (r, valid, t_idx, code_emb) in zip(self.table_names, table_rows, strict=True):
            if r.shape[1] > self.rows_per_step:  # an unbiased estimate of each patient's mean row loss
                keys = torch.rand(valid.shape, device=valid.device) + valid
                pick = torch.topk(keys, self.rows_per_step, dim=1).indices
                r = r.gather(1, pick[..., None].expand(-1, -1, r.shape[2]))
                valid, t_idx = valid.gather(1, pick), t_idx.gather(1, pick)
                code_emb = code_emb.gather(1, pick[..., None].expand(-1, -1, self.dim))
            logp = torch.log_softmax(self.bags[name](u), dim=-1)  # (B, T, V)
            v = logp.shape[-1]
            flat = logp.flatten(1).gather(1, t_idx * v + r[:, :, 1].clamp(min=0))
            n_rows = valid.sum(1)
            code_loss = -(flat * valid).sum(1) / n_rows.clamp(min=1.0)
            cond = u.gather(1, t_idx[..., None].expand(-1, -1, self.dim)) + code_emb
            row_loss, _ = self.rows[name](r[:, :, 2:], cond)
            row_loss = (row_loss * valid).sum(1) / n_rows.clamp(min=1.0)
            table_losses.append(code_loss + row_loss)
            table_present.append((n_rows > 0).float())
        total = patient_loss + visit_loss
        if table_losses:
            present = torch.stack(table_present, 1)
            total = total + (torch.stack(table_losses, 1) * present).sum(1) / present.sum(1).clamp(min=1.0)
        return total

    # -- sampling ------------------------------------------------------------------------------------
    @staticmethod
    def _draw_codes(logits: torch.Tensor, count: torch.Tensor, forbidden: list[int],
                    generator: torch.Generator) -> torch.Tensor:
        """``count[b]`` codes for each visit b from its bag ``logits`` (m, V), concatenated in visit order:
        the first min(count, allowed codes) without replacement (Gumbel top-k, so a visit rarely repeats a
        code, as real visits do), any further ones with replacement."""
        logits = logits.cpu()
        if forbidden:
            logits[:, forbidden] = -torch.inf
        keys = logits + _gumbel(logits.shape, generator)
        order = torch.argsort(keys, dim=1, descending=True)
        allowed = torch.isfinite(logits).sum(1)
        count = count.cpu()
        first = torch.minimum(count, allowed)
        parts = []
        probs = torch.softmax(logits, dim=-1)
        for b in torch.nonzero(count > 0)[:, 0].tolist():
            picked = order[b, :int(first[b])]
            extra = int(count[b] - first[b])
            if extra:
                picked = torch.cat([picked, torch.multinomial(probs[b], extra, replacement=True,
                                                              generator=generator)])
            parts.append(picked)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def generate(self, m: int, plan, generator: torch.Generator) -> dict[str, np.ndarray]:
        """Sample ``m`` patients; ``plan`` (:class:`~medsyn_tabular.ehr.synthesizer.SamplingPlan`) says
        which tokens are forbidden, how to decode the number of visits and how to derive ages. Returns
        ``pv`` (m, P), ``vt`` (m, T, S), ``nv`` (m,) and ``rows:<table>`` (K, 3 + Q) arrays."""
        device = next(self.parameters()).device
        zero = torch.zeros(m, self.dim, device=device)
        pv = self.patient.sample(zero, generator, plan.patient_forbidden, active=plan.patient_active)
        nv = torch.as_tensor(plan.visits(pv.cpu().numpy()), device=device)
        ctx = self.patient.embeddings(pv).sum(dim=-2)
        t_max = int(nv.max()) if m else 0
        filters = [torch.zeros(m, self.dim, device=device) for _ in DECAYS]
        running = torch.zeros(m, self.dim, device=device)
        x = self.start(torch.zeros(m, dtype=torch.long, device=device))
        visits = torch.full((m, max(1, t_max), len(self.step.sizes)), -1, dtype=torch.long, device=device)
        rows: dict[str, list[np.ndarray]] = {n: [] for n in self.table_names}
        used = {n: torch.zeros(m, dtype=torch.long, device=device) for n in self.table_names}
        elapsed = torch.zeros(m, dtype=torch.float64)  # seconds since birth at the current visit
        gaps = np.zeros((m, max(1, t_max)))  # decoded gaps (s): the ages seen by the network are kept
        for t in range(t_max):
            for i, d in enumerate(DECAYS):
                filters[i] = d * filters[i] + (1 - d) * x
            running = running + x
            feats = torch.cat([x, *filters, running / (t + 1)], dim=-1)
            pos = torch.full((m,), min(t, MAX_POSITION), dtype=torch.long, device=device)
            left = (nv - t).clamp(min=0, max=MAX_POSITION)
            h = self.state(self.history(feats) + self.context(ctx) + self.visit_position(pos)
                           + self.remaining(left))

            def age_of(tokens, _t=t):
                gap_s = plan.gap_seconds(tokens[:, plan.gap_index].cpu().numpy())
                gaps[:, _t] = gap_s
                elapsed.add_(torch.as_tensor(gap_s))
                return torch.as_tensor(plan.age_token(elapsed.numpy()), device=device)

            step = self.step.sample(h, generator, plan.step_forbidden, derived={plan.age_index: age_of})
            visits[:, t] = step
            alive = t < nv
            step_emb = self.step.embeddings(step).sum(dim=-2)
            u = h + step_emb
            x = step_emb
            for name in self.table_names:
                count = torch.as_tensor(plan.row_count(step[:, plan.count_index[name]].cpu().numpy()),
                                        device=device) * alive.long()
                count = torch.minimum(count, (plan.max_rows[name] - used[name]).clamp(min=0))  # per patient
                used[name] += count
                total = int(count.sum())
                if total == 0:
                    continue
                owner = torch.repeat_interleave(torch.arange(m, device=device), count)
                codes = self._draw_codes(self.bags[name](u).float(), count, plan.code_forbidden[name],
                                         generator).to(device)
                emb = self.codes[name](codes)
                cond = u[owner] + emb
                row_tokens = self.rows[name].sample(cond, generator, plan.row_forbidden[name])
                sums = torch.zeros(m, self.dim, device=device).index_add(0, owner, emb)
                x = x + sums / count.clamp(min=1)[:, None].float()
                rows[name].append(np.concatenate([owner.cpu().numpy()[:, None],
                                                  np.full((total, 1), t), codes.cpu().numpy()[:, None],
                                                  row_tokens.cpu().numpy()], axis=1))
        out = {"pv": pv.cpu().numpy(), "vt": visits.cpu().numpy(), "nv": nv.cpu().numpy(), "gaps": gaps}
        for name in self.table_names:
            width = 3 + len(self.rows[name].sizes)
            out[f"rows:{name}"] = (np.concatenate(rows[name]) if rows[name]
                                   else np.zeros((0, width), dtype=np.int64)).astype(np.int64)
        return out
