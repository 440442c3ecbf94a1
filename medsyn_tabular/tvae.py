"""TVAE (Xu et al. 2019, the variational autoencoder baseline of the CTGAN paper), from the paper.

Encoder and decoder: two Linear+ReLU layers of 128 units each, latent size 128, **no BatchNorm**. The
decoder outputs one value per encoded column: a mean for each scalar (``tanh``) with a learned scale
sigma (clamped to [0.01, 1]), and logits for each one-hot block. Loss: Gaussian negative log-likelihood
of the scalars + cross-entropy of the blocks (times ``loss_factor`` = 2) + KL divergence to N(0, I).
Adam, lr 1e-3, weight decay 1e-5, batch 500, 300 epochs: the published defaults.

Training is factored for a DP wrapper: :meth:`TVAEModel.make_optimizer` and :meth:`TVAEModel.data_loader`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from medsyn_tabular.activations import sample_categorical
from medsyn_tabular.ctgan import ProgressCallback
from medsyn_tabular.transformer import TableTransformer


@dataclass
class TVAEParams:
    epochs: int = 300
    batch_size: int = 500
    embedding_dim: int = 128
    compress_dims: tuple[int, ...] = (128, 128)
    decompress_dims: tuple[int, ...] = (128, 128)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    loss_factor: float = 2.0


def _mlp(in_dim: int, dims: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    layers, d = [], in_dim
    for o in dims:
        layers += [nn.Linear(d, o), nn.ReLU()]
        d = o
    return nn.Sequential(*layers), d


class Encoder(nn.Module):
    """(n, data_dim) -> (mu, logvar), each (n, embedding_dim)."""

    def __init__(self, data_dim: int, dims: tuple[int, ...], embedding_dim: int):
        super().__init__()
        self.body, d = _mlp(data_dim, dims)
        self.mu, self.logvar = nn.Linear(d, embedding_dim), nn.Linear(d, embedding_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """(n, embedding_dim) -> (n, data_dim) raw outputs, plus a learned sigma (data_dim,)."""

    def __init__(self, embedding_dim: int, dims: tuple[int, ...], data_dim: int):
        super().__init__()
        body, d = _mlp(embedding_dim, dims)
        self.seq = nn.Sequential(*body, nn.Linear(d, data_dim))
        self.sigma = nn.Parameter(torch.ones(data_dim) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.seq(z)


class TVAEModel:
    """TVAE networks + training loop over an encoded matrix from :class:`TableTransformer`."""

    def __init__(self, transformer: TableTransformer, params: TVAEParams, device, seed: int = 0):
        self.transformer, self.params, self.device, self.seed = transformer, params, device, seed
        self.spans = transformer.spans
        dim = transformer.output_dim
        self.encoder = Encoder(dim, params.compress_dims, params.embedding_dim).to(device)
        self.decoder = Decoder(params.embedding_dim, params.decompress_dims, dim).to(device)
        self.loss_history: list[dict] = []

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Optimizer over encoder + decoder: the one a DP engine (e.g. Opacus) wraps."""
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return torch.optim.Adam(params, lr=self.params.lr, weight_decay=self.params.weight_decay)

    def data_loader(self, data: np.ndarray) -> torch.utils.data.DataLoader:
        """Shuffled batches of real encoded rows (drop_last, like the reference)."""
        generator = torch.Generator().manual_seed(self.seed)
        dataset = torch.utils.data.TensorDataset(torch.as_tensor(data, dtype=torch.float32))
        return torch.utils.data.DataLoader(dataset, batch_size=min(self.params.batch_size, len(data)),
                                           shuffle=True, drop_last=True, generator=generator)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of a batch ``x`` (n, data_dim), averaged over rows."""
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        out = self.decoder(z)
        sigma = self.decoder.sigma
        rec = []
        for span in self.spans:
            a, b = span.start, span.start + span.size
            if span.activation == "tanh":
                rec.append((((x[:, a] - torch.tanh(out[:, a])) ** 2) / (2 * sigma[a] ** 2)).sum()
                           + torch.log(sigma[a]) * x.shape[0])
            else:
                rec.append(nn.functional.cross_entropy(out[:, a:b], x[:, a:b].argmax(dim=1), reduction="sum"))
        kld = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())
        return (self.params.loss_factor * torch.stack(rec).sum() + kld) / x.shape[0]

    def fit(self, data: np.ndarray, progress: ProgressCallback | None = None) -> None:
        opt = self.make_optimizer()
        loader = self.data_loader(data)
        self.encoder.train()
        self.decoder.train()
        for epoch in range(self.params.epochs):
            t0 = time.perf_counter()
            for (x,) in loader:
                x = x.to(self.device)
                loss = self.loss(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    self.decoder.sigma.clamp_(0.01, 1.0)
            record = {"epoch": epoch + 1, "epochs": self.params.epochs, "loss": float(loss.detach()),
                      "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)

    @torch.no_grad()
    def generate(self, n: int, rng: np.random.Generator, condition=None) -> np.ndarray:
        """(n, data_dim) synthetic encoded rows: scalars tanh(mean) + sigma noise, blocks sampled."""
        self.decoder.eval()
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z = torch.randn(n, self.params.embedding_dim, generator=g).to(self.device)
        out = self.decoder(z).cpu()
        sigma = self.decoder.sigma.detach().cpu()
        parts = []
        for span in self.spans:
            a, b = span.start, span.start + span.size
            if span.activation == "tanh":
                noise = torch.randn(n, 1, generator=g) * sigma[a]
                parts.append((torch.tanh(out[:, a:b]) + noise).clamp(-1, 1))
            else:
                parts.append(sample_categorical(out[:, a:b], g))
        return torch.cat(parts, dim=1).numpy()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        out.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
        self.decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})

    def params_dict(self) -> dict:
        return asdict(self.params)
