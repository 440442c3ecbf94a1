"""CTGAN (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019), written from the paper.

* Conditional vector + training-by-sampling: each step picks a discrete column uniformly and one of its
  categories with probability proportional to log(frequency + 1); the generator receives that one-hot as
  condition and is penalised (cross-entropy) when its output does not reproduce it; the critic sees real
  rows that hold the category.
* Generator: two residual blocks (Linear -> BatchNorm -> ReLU, output concatenated with the input) of 256
  units, then a Linear layer; tanh on scalars, Gumbel-softmax (tau = 0.2) on one-hot blocks. The generator
  never sees real rows.
* Critic (the only network that sees real rows): PacGAN with ``pac`` = 10 rows per sample, two Linear
  layers of 256 with LeakyReLU(0.2) and Dropout(0.5); **no BatchNorm** (per-sample gradients stay
  separable, as differential privacy needs).
* Loss: WGAN with gradient penalty (lambda = 10). Adam, lr 2e-4, betas (0.5, 0.9), weight decay 1e-6,
  batch 500, embedding 128, 300 epochs: the published defaults.

Training is factored so that a DP version can wrap the critic: :meth:`CTGANModel.make_critic_optimizer`
builds the critic's optimizer and :meth:`CTGANModel.real_batches` is the data iterator over real rows.

**Differential privacy** (:meth:`CTGANModel.fit_private`): only the critic sees real rows, so only its
updates are DP-SGD (Opacus: Poisson sampling, per-sample clipping, Gaussian noise); the generator's
updates use the critic alone and are post-processing. Under DP: ``pac`` = 1 (packing Poisson-sampled
rows would give one sample several rows), no gradient penalty (its double backward does not work with
Opacus' per-sample hooks) but the standard GAN loss (BCE with logits; non-saturating generator loss),
real rows come from Opacus' Poisson loader (not training-by-sampling: a real row's condition vector is
built from that row's own category in a randomly chosen discrete column), fake rows' conditions are drawn
from the transformer's (noisy) frequencies, and real and fake rows go through one critic forward/backward,
so one optimizer step is one accountant step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from medsyn_core import training as checkpoints
from medsyn_tabular.models.activations import (
    MissingSlots,
    SpanLayout,
    apply_activations,
    decode_blocks,
    one_hot_blocks,
)
from medsyn_tabular.transformers.table import TableTransformer

ProgressCallback = Callable[[dict], None]
#: ``checkpoint(epochs_done, epochs, make_state)``, e.g. a
#: :class:`~medsyn_core.training.Checkpointer`.
CheckpointCallback = Callable[[int, int, Callable[[], dict]], None]
SAMPLE_CHUNK = 2_000  # rows per forward pass when sampling (fits the CPU caches; 10,000 was slower)


@dataclass
class CTGANParams:
    """Hyperparameters (defaults as published)."""

    epochs: int = 300
    batch_size: int = 500
    embedding_dim: int = 128
    generator_dim: tuple[int, ...] = (256, 256)
    discriminator_dim: tuple[int, ...] = (256, 256)
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    generator_decay: float = 1e-6
    discriminator_decay: float = 1e-6
    discriminator_steps: int = 1
    pac: int = 10
    gp_lambda: float = 10.0
    tau: float = 0.2


class Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated with the input: (n, i) -> (n, i + o)."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc, self.bn, self.relu = nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    """(n, embedding_dim + cond_dim) noise+condition -> (n, data_dim) raw (pre-activation) rows."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], data_dim: int):
        super().__init__()
        layers, d = [], in_dim
        for o in dims:
            layers.append(Residual(d, o))
            d += o
        layers.append(nn.Linear(d, data_dim))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class Critic(nn.Module):
    """PacGAN critic without BatchNorm: (n, in_dim) rows, n divisible by pac -> (n / pac, 1) scores."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], pac: int):
        super().__init__()
        self.pac, self.pac_dim = pac, in_dim * pac
        layers, d = [], self.pac_dim
        for o in dims:
            layers += [nn.Linear(d, o), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            d = o
        layers.append(nn.Linear(d, 1))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x.reshape(-1, self.pac_dim))

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP penalty on random interpolates, one mixing weight per pac group."""
        n = real.shape[0] // self.pac
        eps = torch.rand(n, 1, 1, device=real.device).expand(n, self.pac, real.shape[1]).reshape(real.shape)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad = torch.autograd.grad(self(mixed).sum(), mixed, create_graph=True)[0]
        return ((grad.reshape(-1, self.pac_dim).norm(2, dim=1) - 1) ** 2).mean()


class ConditionSampler:
    """Training-by-sampling over the discrete columns of an encoded table (all vectorised).

    ``frequencies``: per discrete column, the frequency of each slot, as fitted by
    :meth:`TableTransformer.fit` (so no statistic is read here). ``slots`` (n_rows, n_discrete), the slot
    of each real row in each discrete column, is needed only to draw real rows during training.
    ``n_rows`` (public: the number of rows or privacy units) turns frequencies into counts: the training
    probability of a category is ∝ log(count + 1), as in the paper and the reference implementation.
    (It was ∝ log(frequency + 1) ≈ frequency, which left rare outcomes as rare during training as in
    the data: the log-frequency rebalancing the paper relies on did nothing.)
    """

    def __init__(self, frequencies: list[list[float]], slots: np.ndarray | None = None, n_rows: int = 1):
        self.n_cols = len(frequencies)
        self.sizes = np.asarray([len(f) for f in frequencies], dtype=int)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.cond_dim = int(self.sizes.sum())
        width = int(self.sizes.max()) if self.n_cols else 0
        freq = np.zeros((self.n_cols, width))
        for j, f in enumerate(frequencies):
            freq[j, : len(f)] = f
        log_p = np.where(freq > 0, np.log(freq * max(1, n_rows) + 1), 0.0)
        self.cum_log = np.cumsum(log_p / log_p.sum(axis=1, keepdims=True), axis=1)
        self.cum_freq = np.cumsum(freq / freq.sum(axis=1, keepdims=True), axis=1)
        if slots is not None and self.n_cols:
            # rows grouped by (column, slot): rows_sorted[j][start[j, s]: start[j, s] + counts[j, s]]
            self.rows_sorted = np.stack([np.argsort(slots[:, j], kind="stable") for j in range(self.n_cols)])
            self.counts = np.stack([np.bincount(slots[:, j], minlength=width) for j in range(self.n_cols)])
            self.start = np.concatenate([np.zeros((self.n_cols, 1), int),
                                         np.cumsum(self.counts, axis=1)[:, :-1]], axis=1)
            # never ask for a category no real row holds (possible with declared metadata categories)
            log_p = np.where(self.counts > 0, log_p, 0.0)
            self.cum_log = np.cumsum(log_p / log_p.sum(axis=1, keepdims=True), axis=1)

    def _draw(self, n: int, rng: np.random.Generator, cum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        col = rng.integers(self.n_cols, size=n)
        u = rng.random(n)[:, None]
        slot = np.minimum((cum[col] < u).sum(axis=1), self.sizes[col] - 1)
        return col, slot

    def cond_vectors(self, col: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, cond_dim) one-hot conditions and (n, n_discrete) masks of the chosen column."""
        n = len(col)
        cond = np.zeros((n, self.cond_dim), np.float32)
        cond[np.arange(n), self.offsets[col] + slot] = 1.0
        mask = np.zeros((n, self.n_cols), np.float32)
        mask[np.arange(n), col] = 1.0
        return cond, mask

    def sample_training(self, n: int, rng: np.random.Generator):
        """Columns and slots chosen with log-frequency (training-by-sampling)."""
        return self._draw(n, rng, self.cum_log)

    def sample_original(self, n: int, rng: np.random.Generator):
        """Columns uniformly, slots with their real frequency (unconditional generation)."""
        return self._draw(n, rng, self.cum_freq)

    def rows_with(self, col: np.ndarray, slot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random real row index per (column, slot) pair that holds that category."""
        pick = (rng.random(len(col)) * self.counts[col, slot]).astype(int)
        return self.rows_sorted[col, self.start[col, slot] + pick]


def discrete_slots(transformer: TableTransformer, data: np.ndarray) -> np.ndarray:
    """(n_rows, n_discrete) slot index of each row in each discrete column of the encoded ``data``."""
    spans = transformer.discrete_spans()
    out = np.zeros((data.shape[0], len(spans)), dtype=int)
    for j, span in enumerate(spans):
        out[:, j] = data[:, span.start:span.start + span.size].argmax(axis=1)
    return out


class CTGANModel:
    """CTGAN networks + training loop over an encoded matrix from :class:`TableTransformer`."""

    def __init__(self, transformer: TableTransformer, params: CTGANParams, device, seed: int = 0):
        if params.batch_size % params.pac:
            raise ValueError(f"batch_size ({params.batch_size}) must be a multiple of pac ({params.pac}).")
        self.transformer, self.params, self.device, self.seed = transformer, params, device, seed
        self.spans = transformer.spans
        self.data_dim = transformer.output_dim
        sizes = [s.size for s in transformer.discrete_spans()]
        self.cond_dim = int(sum(sizes))
        self.generator = Generator(params.embedding_dim + self.cond_dim, params.generator_dim,
                                   self.data_dim).to(device)
        self.critic = Critic(self.data_dim + self.cond_dim, params.discriminator_dim, params.pac).to(device)
        self.sampler = ConditionSampler(self.frequencies())
        self.layout = SpanLayout(self.spans, device)
        self.missing = MissingSlots.of(transformer)
        self.discrete = SpanLayout(transformer.discrete_spans(), device)  # the conditional vector's spans
        self.cond_offsets = torch.as_tensor(self.sampler.offsets, dtype=torch.long, device=device)
        self.loss_history: list[dict] = []

    def frequencies(self) -> list[list[float]]:
        """Slot frequencies of the discrete columns, as fitted by the transformer."""
        return [list(enc.slot_freq) for enc in self.transformer.discrete_columns]

    # -- pieces a DP wrapper replaces ----------------------------------------------------------
    def make_generator_optimizer(self) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.Adam(self.generator.parameters(), lr=p.generator_lr, betas=(0.5, 0.9),
                                weight_decay=p.generator_decay, foreach=True)

    def make_critic_optimizer(self) -> torch.optim.Optimizer:
        """The critic's optimizer: the one a DP engine (e.g. Opacus) wraps."""
        p = self.params
        return torch.optim.Adam(self.critic.parameters(), lr=p.discriminator_lr, betas=(0.5, 0.9),
                                weight_decay=p.discriminator_decay, foreach=True)

    def real_batches(self, data: torch.Tensor, steps: int, rng: np.random.Generator
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per step, ``batch_size`` real rows (training-by-sampling) and their condition vectors."""
        n = self.params.batch_size
        for _ in range(steps):
            if self.sampler.n_cols == 0:
                idx = rng.integers(data.shape[0], size=n)
                yield data[torch.as_tensor(idx, device=self.device)], None
            else:
                col, slot = self.sampler.sample_training(n, rng)
                idx = self.sampler.rows_with(col, slot, rng)
                cond, _ = self.sampler.cond_vectors(col, slot)
                rows = data[torch.as_tensor(idx, device=self.device)]
                yield rows, torch.as_tensor(cond, device=self.device)

    # -- training ----------------------------------------------------------------------------------
    def _fake(self, n: int, rng: np.random.Generator, original: bool = False):
        """Noise + conditions -> (activated fake rows, raw output, cond, mask) for ``n`` rows."""
        z = torch.randn(n, self.params.embedding_dim, device=self.device)
        cond = mask = None
        if self.cond_dim:
            col, slot = (self.sampler.sample_original if original else self.sampler.sample_training)(n, rng)
            c, m = self.sampler.cond_vectors(col, slot)
            cond, mask = torch.as_tensor(c, device=self.device), torch.as_tensor(m, device=self.device)
            z = torch.cat([z, cond], dim=1)
        raw = self.generator(z)
        return apply_activations(raw, self.layout, self.params.tau), raw, cond, mask

    def _cond_loss(self, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between the generator's block of the conditioned column (``mask`` (n, S), one 1
        per row) and the requested category (``cond`` (n, cond_dim)), summed over rows / n."""
        col = mask.argmax(dim=1)
        slot = cond.argmax(dim=1) - self.cond_offsets[col]
        d = self.discrete
        logits = raw.gather(1, d.pad_index[col]).masked_fill(d.pad_mask[col], float("-inf"))  # (n, K)
        picked = raw.gather(1, (d.starts[col] + slot)[:, None]).squeeze(1)
        return (torch.logsumexp(logits, dim=1) - picked).sum() / raw.shape[0]

    def fit(self, data: np.ndarray, progress: ProgressCallback | None = None,
            checkpoint: CheckpointCallback | None = None, resume: dict | None = None, stop=None) -> None:
        """Train on the encoded ``data`` (n_rows, data_dim) for ``params.epochs`` epochs; ``checkpoint``
        (a :class:`~medsyn_core.training.Checkpointer`) is offered the state after each epoch and
        ``resume`` (a state it wrote) continues from there, as if never interrupted."""
        p = self.params
        rng = np.random.default_rng(self.seed)
        self.sampler = ConditionSampler(self.frequencies(), discrete_slots(self.transformer, data), len(data))
        real_all = torch.as_tensor(data, dtype=torch.float32, device=self.device)
        opt_g, opt_d = self.make_generator_optimizer(), self.make_critic_optimizer()
        steps = max(1, len(data) // p.batch_size)
        nets = {"generator": self.generator, "critic": self.critic}
        opts = {"generator": opt_g, "critic": opt_d}
        wants_state = checkpoint is not None or resume is not None  # hashing a big table is not free
        fp = (checkpoints.table_fingerprint(data, "ctgan", self.params_dict(), self.seed) if wants_state
              else "")
        start = 0
        if resume is not None:
            start, self.loss_history = checkpoints.restore(resume, fp, nets, opts, rng, {})
        self.generator.train()
        self.critic.train()
        for epoch in range(start, p.epochs):
            t0 = time.perf_counter()
            for real, real_cond in self.real_batches(real_all, steps * p.discriminator_steps, rng):
                with torch.no_grad():  # the critic step needs no gradient through the generator
                    fake, _, cond, _ = self._fake(p.batch_size, rng)
                if cond is not None:
                    # the critic compares fakes for one set of conditions with real rows of another
                    fake_in, real_in = torch.cat([fake, cond], 1), torch.cat([real, real_cond], 1)
                else:
                    fake_in, real_in = fake, real
                scores = self.critic(torch.cat([fake_in, real_in], 0))  # one pass; pac groups stay apart
                half = scores.shape[0] // 2
                loss_d = scores[:half].mean() - scores[half:].mean()
                penalty = self.critic.gradient_penalty(real_in, fake_in)
                opt_d.zero_grad(set_to_none=True)
                (loss_d + p.gp_lambda * penalty).backward()
                opt_d.step()

                fake, raw, cond, mask = self._fake(p.batch_size, rng)
                fake_in = torch.cat([fake, cond], 1) if cond is not None else fake
                loss_g = -self.critic(fake_in).mean()
                if cond is not None:
                    loss_g = loss_g + self._cond_loss(raw, cond, mask)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            record = {"epoch": epoch + 1, "epochs": p.epochs, "loss_g": float(loss_g.detach()),
                      "loss_d": float(loss_d.detach()), "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
            if checkpoint is not None:
                checkpoint(epoch + 1, p.epochs, lambda e=epoch + 1: checkpoints.capture(
                    e, fp, nets, opts, rng, {}, self.loss_history))
            if stop is not None and stop(epoch + 1):  # early stopping / time budget
                break

    def real_loader(self, data: np.ndarray) -> torch.utils.data.DataLoader:
        """Batches of real encoded rows for DP-SGD (Opacus replaces it by its Poisson loader)."""
        dataset = torch.utils.data.TensorDataset(torch.as_tensor(data, dtype=torch.float32))
        return torch.utils.data.DataLoader(dataset, batch_size=self.params.batch_size)

    def _own_conditions(self, real: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """(n, cond_dim) condition vectors of real rows: a random discrete column, the row's own category."""
        n = real.shape[0]
        cond = torch.zeros(n, self.cond_dim, device=self.device)
        if n == 0:
            return cond
        col = rng.integers(self.sampler.n_cols, size=n)
        spans = self.transformer.discrete_spans()
        slots = torch.stack([real[:, s.start:s.start + s.size].argmax(dim=1) for s in spans], dim=1)
        col_t = torch.as_tensor(col, device=self.device)
        slot = slots[torch.arange(n, device=self.device), col_t]
        offsets = torch.as_tensor(self.sampler.offsets, device=self.device)
        cond[torch.arange(n, device=self.device), offsets[col_t] + slot] = 1.0
        return cond

    def fit_private(self, data: np.ndarray, plan, progress: ProgressCallback | None = None):
        """DP-SGD training of the critic with the noise of ``plan`` (a calibrated
        :class:`~medsyn_core.privacy.dpsgd.DPSGDPlan`); returns the Opacus ``PrivacyEngine`` whose
        accountant holds the steps taken. Real rows are touched only inside the critic's DP step."""
        from medsyn_core.privacy.dpsgd import make_private

        p = self.params
        if p.pac != 1:
            raise ValueError("Differentially private CTGAN needs pac = 1 (one real row per critic sample).")
        rng = np.random.default_rng(self.seed)
        # noisy frequencies, n public; no real-row lookup
        self.sampler = ConditionSampler(self.frequencies(), n_rows=len(data))
        opt_g = self.make_generator_optimizer()
        engine, critic, opt_d, loader = make_private(plan, self.critic, self.make_critic_optimizer(),
                                                     self.real_loader(data))
        self.generator.train()
        critic.train()
        bce = nn.functional.binary_cross_entropy_with_logits
        for epoch in range(p.epochs):
            t0 = time.perf_counter()
            for (real,) in loader:
                real = real.to(self.device)
                with torch.no_grad():
                    fake, _, cond, _ = self._fake(p.batch_size, rng, original=True)
                real_in = real if cond is None else torch.cat([real, self._own_conditions(real, rng)], 1)
                fake_in = fake if cond is None else torch.cat([fake, cond], 1)
                # one forward/backward over real + fake rows = one DP step; every row is its own sample
                scores = critic(torch.cat([real_in, fake_in], 0)).squeeze(1)
                target = torch.cat([torch.ones(real.shape[0], device=self.device),
                                    torch.zeros(fake_in.shape[0], device=self.device)])
                loss_d = bce(scores, target)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()

                critic.disable_hooks()  # the generator step reads the critic; no per-sample gradients
                fake, raw, cond, mask = self._fake(p.batch_size, rng, original=True)
                fake_in = fake if cond is None else torch.cat([fake, cond], 1)
                logits = critic(fake_in).squeeze(1)
                loss_g = bce(logits, torch.ones_like(logits))  # non-saturating generator loss
                if cond is not None:
                    loss_g = loss_g + self._cond_loss(raw, cond, mask)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                critic.enable_hooks()
                opt_d.zero_grad(set_to_none=True)  # drop the critic gradients of the generator pass
            record = {"epoch": epoch + 1, "epochs": p.epochs, "loss_g": float(loss_g.detach()),
                      "loss_d": float(loss_d.detach()), "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
        self.private_critic, self.private_optimizer = critic, opt_d  # Opacus wrappers, for inspection
        return engine

    # -- sampling ------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, n: int, rng: np.random.Generator, condition: tuple[int, int] | None = None
                 ) -> np.ndarray:
        """(n, data_dim) activated synthetic rows; ``condition`` = (discrete column, slot) to ask for."""
        # BatchNorm uses batch statistics (as in training); large chunks make sampling fast
        bs = max(self.params.batch_size, min(SAMPLE_CHUNK, n))
        g = torch.Generator(device=self.device).manual_seed(int(rng.integers(2**62)))
        chunks = []
        for _ in range(int(np.ceil(n / bs))):
            z = torch.randn(bs, self.params.embedding_dim, device=self.device, generator=g)
            if self.cond_dim:
                if condition is None:
                    col, slot = self.sampler.sample_original(bs, rng)
                else:
                    col, slot = np.full(bs, condition[0]), np.full(bs, condition[1])
                cond, _ = self.sampler.cond_vectors(col, slot)
                z = torch.cat([z, torch.as_tensor(cond, device=self.device)], dim=1)
            raw = self.generator(z)  # BatchNorm on batch statistics, as during training
            # hard Gumbel-max one-hots (the same argmax as Gumbel-softmax at any temperature, cheaper);
            # missing-value slots calibrated to the learned rate (decode_blocks)
            tanh_part = torch.tanh(raw[:, self.layout.tanh_cols])
            if self.layout.starts.numel() == 0:
                chunks.append(tanh_part[:, self.layout.inverse].cpu().numpy())
                continue
            idx = decode_blocks(self.layout.blocks(raw), self.missing, g, sample=True)
            chunks.append(one_hot_blocks(self.layout, idx, tanh_part).cpu().numpy())
        return np.concatenate(chunks)[:n]

    # -- persistence ---------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"generator.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"critic.{k}": v for k, v in self.critic.state_dict().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.generator.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("generator.")})
        self.critic.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("critic.")})

    def params_dict(self) -> dict:
        return asdict(self.params)
