"""AIM, the marginal-based DP synthesizer (McKenna, Mullins, Sheldon & Miklau, "AIM: An Adaptive and
Iterative Mechanism for Differentially Private Synthetic Data", VLDB 2022), written from the paper on the
``mbi`` library (Private-PGM's successor, by the same authors) for estimation and sampling.

Data: every modelled column is discretised on the transformer's public domain (bins from public or DP
bounds for numbers: one bin per value for small integer ranges, else ``max_bins`` equal-width bins; the
released slots for categories; one more value for a missing cell). Workload: every pair of columns whose
marginal has at most ``max_cells`` cells, weight 1.

DP fit (:meth:`AIMModel.fit_private`), with ρ-zCDP from :class:`AIMPlan` (converted from the ε and δ left
after preprocessing): all one-way marginals measured with discrete Gaussian noise σ = √(T / (2·0.9·ρ)),
then rounds of (1) selecting the worst-approximated candidate marginal (weighted L1 error minus the
noise's expected error) by the exponential mechanism (report-noisy-max, ε_sel = √(8·0.1·ρ/T)), among those
that keep the junction tree under ``max_model_size`` × (ρ used / ρ), (2) measuring it with σ, (3)
re-estimating the graphical model by mirror descent, warm-started; σ is halved when a measurement barely
changed the estimate, and the last round spends what is left. T = ``rounds`` (default 16 · columns).
Every ρ spent is read from OpenDP's privacy maps and kept in :attr:`AIMModel.spent` for the ledger. Noise
comes from the OS CSPRNG (OpenDP); the seed only drives sampling from the released model.

Without DP (:meth:`AIMModel.fit`) the model is a Chow-Liu tree: the maximum spanning tree of pairwise
mutual information, its exact one- and two-way marginals fitted by the same estimator (a fast baseline).

Generated rows are written in the transformer's encoding (one mode spanning [low, high] per number, see
:func:`range_modes`), so sampling, conditions, PHI rules and decoding are shared with the other models.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from medsyn_tabular.models.ctgan import ProgressCallback
from medsyn_tabular.transformers.table import TableTransformer

#: one bin per value for integer columns whose range holds at most this many values
MAX_UNIT_BINS = 32


@dataclass
class AIMParams:
    """Hyperparameters. ``epochs``/``batch_size`` are kept for the shared interface (unused)."""

    epochs: int = 1
    batch_size: int = 500
    max_bins: int = 16
    rounds: int | None = None  # T; default 16 x columns (the paper)
    max_model_size: float = 4.0  # MB of the junction tree (the paper's 80 MB takes hours on a CPU)
    iters: int = 200  # mirror-descent iterations per round
    final_iters: int = 1000
    max_cells: int = 10_000
    mechanism: str = "aim"  # "aim" (adaptive rounds) or "mst" (one spanning tree of pairs)


@dataclass
class MSTParams(AIMParams):
    """MST (McKenna, Sheldon & Miklau 2021): the same model with a one-shot spanning tree of pairs."""

    mechanism: str = "mst"


@dataclass
class AIMPlan:
    """The zCDP budget of the AIM stage (ρ) and the δ its (ε, δ) conversion uses."""

    rho: float
    delta: float
    target_epsilon: float


@dataclass
class Spent:
    """Every measurement and selection of a DP fit: what the ledger needs to recompute ρ (and ε)."""

    measurements: list[dict] = field(default_factory=list)  # {"clique", "sigma", "rho"}
    selections: list[dict] = field(default_factory=list)  # {"scale", "sensitivity", "rho", "candidates"}

    @property
    def rho(self) -> float:
        return sum(m["rho"] for m in self.measurements) + sum(s["rho"] for s in self.selections)


def range_modes(transformer: TableTransformer) -> TableTransformer:
    """Give every numeric column one mode spanning its public range (mean at the centre, 4σ = half the
    range), so that alpha = 2 (x - centre) / (high - low) is a linear, loss-free code of x."""
    for enc in transformer.columns:
        if enc.is_numeric:
            lo, hi = float(enc.low), float(enc.high)
            if not hi > lo:
                hi = lo + 1.0
            enc.means, enc.stds, enc.weights = [(lo + hi) / 2], [(hi - lo) / 8], [1.0]
    transformer._build_spans()
    return transformer


class _Column:
    """How one transformer column maps to a discrete attribute: bins (numbers) or slots (categories)."""

    def __init__(self, enc, spans, max_bins: int):
        self.enc, self.spans = enc, spans
        if enc.is_numeric:
            lo, hi = float(enc.low), float(enc.high)
            self.unit = enc.kind == "integer" and lo.is_integer() and hi.is_integer() \
                and hi - lo + 1 <= MAX_UNIT_BINS
            self.edges = np.arange(lo - 0.5, hi + 1.0) if self.unit else np.linspace(lo, hi, max_bins + 1)
            self.bins = len(self.edges) - 1
            self.size = self.bins + (1 if enc.has_missing_slot else 0)
        else:
            self.size = len(enc.slots)

    def to_codes(self, encoded: np.ndarray) -> np.ndarray:
        """(n,) attribute value of each encoded row."""
        enc, spans = self.enc, self.spans
        if not enc.is_numeric:
            return encoded[:, spans[0].start:spans[0].start + spans[0].size].argmax(axis=1)
        mode = encoded[:, spans[1].start:spans[1].start + spans[1].size].argmax(axis=1)
        x = encoded[:, spans[0].start] * 4 * np.asarray(enc.stds)[mode] + np.asarray(enc.means)[mode]
        codes = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, self.bins - 1)
        if enc.has_missing_slot:
            missing = encoded[:, spans[2].start + 1] > encoded[:, spans[2].start]
            codes = np.where(missing, self.bins, codes)
        return codes

    def write(self, codes: np.ndarray, out: np.ndarray, rng: np.random.Generator) -> None:
        """Write attribute values ``codes`` (n,) into the encoded matrix ``out`` (range mode)."""
        enc, spans, rows = self.enc, self.spans, np.arange(len(codes))
        if not enc.is_numeric:
            out[rows, spans[0].start + codes] = 1.0
            return
        missing = codes >= self.bins
        b = np.minimum(codes, self.bins - 1)
        if self.unit:
            x = (self.edges[b] + self.edges[b + 1]) / 2
        else:
            x = rng.uniform(self.edges[b], self.edges[b + 1])
        centre, half = enc.means[0], 4 * enc.stds[0]
        out[:, spans[0].start] = np.where(missing, 0.0, (x - centre) / half)
        out[rows, spans[1].start] = 1.0
        if enc.has_missing_slot:
            out[rows, spans[2].start + missing.astype(int)] = 1.0


def _workload(names: list[str], sizes: dict[str, int], max_cells: int) -> dict[tuple, float]:
    """Candidate cliques (the downward closure of all pairs) with AIM's weights."""
    pairs = [p for p in itertools.combinations(names, 2) if sizes[p[0]] * sizes[p[1]] <= max_cells]
    candidates: dict[tuple, float] = {}
    for cl in [(a,) for a in names] + pairs:
        candidates[cl] = float(sum(len(set(cl) & set(w)) for w in pairs))
    return candidates


class AIMModel:
    """AIM over the encoded rows of a :class:`TableTransformer` (whose numbers use :func:`range_modes`)."""

    def __init__(self, transformer: TableTransformer, params: AIMParams, device=None, seed: int = 0):
        self.transformer, self.params, self.device, self.seed = transformer, params, device, seed
        self._set_bins(params.max_bins)
        self.loss_history: list[dict] = []
        self.model = None
        self.cliques: list[tuple[str, ...]] = []
        self.total = 0.0
        self.spent = Spent()

    def _set_bins(self, bins: int) -> None:
        """Discretise numbers into ``bins`` equal-width bins (small integer ranges: one per value)."""
        self.bins = int(bins)
        self.attrs = [_Column(e, s, self.bins) for e, s in
                      zip(self.transformer.columns, self.transformer.column_spans, strict=True)]
        self.names = [f"c{i}" for i in range(len(self.attrs))]  # column names stay out of JAX
        self.sizes = {n: a.size for n, a in zip(self.names, self.attrs, strict=True)}

    def _choose_bins(self, n: int, rho: float) -> None:
        """Fewer bins when the noise is large against n (public numbers only): a pair of b-bin columns
        holds n / b² rows per cell, which should stand above the noise σ of a pair measurement, so
        b ≈ √(n / σ), between 3 and ``max_bins``. (16 bins on 242 rows at ε = 1 left each cell of a
        pair at about one row under noise of σ ≈ 25: the relations were lost.)"""
        d = max(2, len(self.transformer.columns))
        sigma = math.sqrt((d - 1) / (2 * rho / 3))  # MST's pair noise; AIM's is of the same order
        self._set_bins(int(np.clip(round(math.sqrt(n / sigma)), 3, self.params.max_bins)))

    # -- data ----------------------------------------------------------------------------------------
    def _domain(self):
        return _mbi().Domain(self.names, [self.sizes[n] for n in self.names])

    def _dataset(self, encoded: np.ndarray):
        codes = {n: a.to_codes(encoded) for n, a in zip(self.names, self.attrs, strict=True)}
        return _mbi().Dataset(codes, self._domain())

    def _estimate(self, measurements, iters: int, warm=None):
        estimator = _mbi().estimation.MirrorDescent()
        return estimator.estimate(self._domain(), measurements, known_total=self.total, iters=iters,
                                  warm_start=warm)

    def _progress(self, progress, record: dict) -> None:
        self.loss_history.append(record)
        if progress is not None:
            progress(record)

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, data: np.ndarray, progress: ProgressCallback | None = None, checkpoint=None,
            resume=None) -> None:
        """Without DP: a Chow-Liu tree (maximum spanning tree of mutual information) of exact marginals."""
        import networkx as nx

        LinearMeasurement = _mbi().LinearMeasurement  # noqa: N806

        t0 = time.perf_counter()
        data_set = self._dataset(data)
        self.total = float(len(data))
        graph = nx.Graph()
        graph.add_nodes_from(self.names)
        one = {n: data_set.project((n,)).datavector() / self.total for n in self.names}
        for a, b in itertools.combinations(self.names, 2):
            if self.sizes[a] * self.sizes[b] > self.params.max_cells:
                continue
            joint = data_set.project((a, b)).datavector(flatten=False) / self.total
            indep = np.outer(one[a], one[b])
            mask = joint > 0
            graph.add_edge(a, b, weight=float((joint[mask] * np.log(joint[mask] / indep[mask])).sum()))
        edges = [tuple(e) for e in nx.maximum_spanning_tree(graph).edges()]
        measurements = [LinearMeasurement(data_set.project(cl).datavector(), cl, stddev=1.0)
                        for cl in [(n,) for n in self.names] + edges]
        self.model = self._estimate(measurements, self.params.final_iters)
        self.cliques = [tuple(cl) for cl in self.model.potentials.cliques]
        self._progress(progress, {"epoch": 1, "epochs": 1, "marginals": len(measurements),
                                  "seconds": time.perf_counter() - t0})

    def fit_private(self, data: np.ndarray, plan: AIMPlan, progress: ProgressCallback | None = None
                    ) -> Spent:
        """AIM (or MST) under ρ = ``plan.rho`` zCDP (see the module docstring); returns what was spent."""
        if self.params.mechanism == "mst":
            return self._fit_mst(data, plan, progress)
        if self.params.mechanism != "aim":
            raise ValueError(f"Unknown marginal mechanism {self.params.mechanism!r}; use 'aim' or 'mst'.")
        from medsyn_core.privacy.zcdp import gaussian_counts, noisy_max

        mbi = _mbi()
        LinearMeasurement, junction_tree = mbi.LinearMeasurement, mbi.junction_tree  # noqa: N806

        p, rho = self.params, float(plan.rho)
        t0 = time.perf_counter()
        self._choose_bins(len(data), rho)
        data_set = self._dataset(data)
        self.total = float(len(data))  # n is public (the number of privacy units)
        candidates = _workload(self.names, self.sizes, p.max_cells)
        answers = {cl: data_set.project(cl).datavector() for cl in candidates}
        rounds = p.rounds or 16 * len(self.names)
        sigma = math.sqrt(rounds / (2 * 0.9 * rho))
        eps_sel = math.sqrt(8 * 0.1 * rho / rounds)
        self.spent = Spent()
        measurements = []

        def measure(cl, s):
            noisy, r = gaussian_counts(answers[cl] if cl in answers else data_set.project(cl).datavector(), s)
            self.spent.measurements.append({"clique": list(cl), "sigma": s, "rho": r})
            measurements.append(LinearMeasurement(noisy.astype(float), cl, stddev=s))

        # the one-way marginals cost d / (2σ²); if that alone exceeds the budget, σ grows to fit it
        sigma = max(sigma, math.sqrt(len(self.names) / (2 * rho * 0.999)))
        for n in self.names:
            measure((n,), sigma)
        model = self._estimate(measurements, p.iters)
        step, final = 0, False
        while not final:
            remaining = rho - self.spent.rho
            if remaining <= 1e-12:
                break
            if remaining < 2 * (0.5 / sigma**2 + eps_sel**2 / 8):  # the last round takes what is left
                sigma = math.sqrt(1 / (2 * 0.9 * remaining * 0.999))
                eps_sel = math.sqrt(8 * 0.1 * remaining * 0.999)
                final = True
            used_after = self.spent.rho + 0.5 / sigma**2 + eps_sel**2 / 8
            limit = p.max_model_size * used_after / rho
            closure = {tuple(sorted(s)) for cl in model.cliques for k in range(1, len(cl) + 1)
                       for s in itertools.combinations(cl, k)}
            size = junction_tree.hypothetical_model_size
            options = [cl for cl in candidates if tuple(sorted(cl)) in closure
                       or size(model.domain, list(model.cliques) + [cl]) <= limit]
            scores, weights = [], []
            for cl in options:
                estimate = np.asarray(model.project(cl).datavector())
                bias = math.sqrt(2 / math.pi) * sigma * float(np.prod([self.sizes[a] for a in cl]))
                scores.append(candidates[cl] * (np.abs(answers[cl] - estimate).sum() - bias))
                weights.append(candidates[cl])
            sensitivity = max(max(weights), 1e-9)
            index, r = noisy_max(np.asarray(scores), eps_sel**2 / 8, sensitivity)
            self.spent.selections.append({"scale": sensitivity / math.sqrt(2 * eps_sel**2 / 8),
                                          "sensitivity": sensitivity, "rho": r, "candidates": len(options)})
            chosen = options[index]
            before = np.asarray(model.project(chosen).datavector())
            measure(chosen, sigma)
            model = self._estimate(measurements, p.iters, warm=model)
            after = np.asarray(model.project(chosen).datavector())
            step += 1
            self._progress(progress, {"epoch": step, "epochs": rounds, "rho_used": self.spent.rho,
                                      "seconds": time.perf_counter() - t0})
            if not final and np.abs(after - before).sum() <= sigma * math.sqrt(2 / math.pi) * after.size:
                sigma, eps_sel = sigma / 2, eps_sel * 2
        self.model = self._estimate(measurements, p.final_iters, warm=model)
        self.cliques = [tuple(cl) for cl in self.model.potentials.cliques]
        return self.spent

    def _fit_mst(self, data: np.ndarray, plan: AIMPlan, progress) -> Spent:
        """MST: ρ/3 on the one-way marginals, ρ/3 on choosing d - 1 pairs that form a spanning tree (Kruskal,
        each edge by report-noisy-max over the pairs joining two components, scored by how badly the
        one-way model fits them), ρ/3 on measuring those pairs; one final estimation."""
        from medsyn_core.privacy.zcdp import gaussian_counts, noisy_max

        mbi = _mbi()
        rho, t0 = float(plan.rho), time.perf_counter()
        self._choose_bins(len(data), rho)
        names = self.names
        data_set = self._dataset(data)
        self.total = float(len(data))
        self.spent = Spent()
        measurements = []

        def measure(cl, sigma):
            noisy, r = gaussian_counts(data_set.project(cl).datavector(), sigma)
            self.spent.measurements.append({"clique": list(cl), "sigma": sigma, "rho": r})
            measurements.append(mbi.LinearMeasurement(noisy.astype(float), cl, stddev=sigma))

        d = len(names)
        sigma1 = math.sqrt(d / (2 * rho / 3 * 0.999))
        for n in names:
            measure((n,), sigma1)
        one_way = self._estimate(measurements, self.params.iters)
        pairs = [p for p in itertools.combinations(names, 2)
                 if self.sizes[p[0]] * self.sizes[p[1]] <= self.params.max_cells]
        error = {p: float(np.abs(data_set.project(p).datavector()
                                 - np.asarray(one_way.project(p).datavector())).sum()) for p in pairs}
        component = {n: n for n in names}

        def root(n):
            while component[n] != n:
                n = component[n]
            return n

        edges = []
        steps = max(1, d - 1)
        rho_select = rho / 3 / steps * 0.999
        while len(edges) < d - 1:
            options = [p for p in pairs if root(p[0]) != root(p[1])]
            if not options:
                break  # pairs too large for max_cells: the forest stays disconnected
            index, r = noisy_max(np.asarray([error[p] for p in options]), rho_select, 1.0)
            self.spent.selections.append({"scale": 1.0 / math.sqrt(2 * rho_select), "sensitivity": 1.0,
                                          "rho": r, "candidates": len(options)})
            a, b = options[index]
            component[root(a)] = root(b)
            edges.append((a, b))
        if edges:
            sigma2 = math.sqrt(len(edges) / (2 * rho / 3 * 0.999))
            for edge in edges:
                measure(edge, sigma2)
        self.model = self._estimate(measurements, self.params.final_iters, warm=one_way)
        self.cliques = [tuple(cl) for cl in self.model.potentials.cliques]
        self._progress(progress, {"epoch": 1, "epochs": 1, "marginals": len(measurements),
                                  "rho_used": self.spent.rho, "seconds": time.perf_counter() - t0})
        return self.spent

    # -- sampling ------------------------------------------------------------------------------------
    def generate(self, n: int, rng: np.random.Generator, condition=None) -> np.ndarray:
        """(n, output_dim) encoded rows drawn i.i.d. from the fitted graphical model (``condition`` is
        met by the synthesizer's rejection sampling)."""
        state = np.random.get_state()
        np.random.seed(int(rng.integers(2**32)))  # mbi samples with NumPy's global generator
        try:
            codes = self.model.synthetic_data(rows=int(n), method="sample").data
        finally:
            np.random.set_state(state)
        out = np.zeros((n, self.transformer.output_dim), dtype=np.float32)
        for name, attr in zip(self.names, self.attrs, strict=True):
            attr.write(np.asarray(codes[name], dtype=int)[:n], out, rng)
        return out

    # -- persistence ---------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted potentials, one tensor per clique, with each clique's column indices and n."""
        tables = self.model.potentials.tables
        out = {"total": torch.tensor([self.total], dtype=torch.float64),
               "bins": torch.tensor([self.bins], dtype=torch.int64)}
        for i, cl in enumerate(self.cliques):
            out[f"potential.{i}"] = torch.as_tensor(np.asarray(tables[cl].values, dtype=np.float32))
            out[f"clique.{i}"] = torch.tensor([self.names.index(a) for a in cl], dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        mbi = _mbi()
        import jax.numpy as jnp

        self._set_bins(int(tensors["bins"][0]))
        domain = self._domain()
        count = sum(1 for k in tensors if k.startswith("clique."))
        self.cliques = [tuple(self.names[j] for j in tensors[f"clique.{i}"].tolist()) for i in range(count)]
        self.total = float(tensors["total"][0])
        tables = {cl: mbi.Factor(domain.project(cl), jnp.asarray(tensors[f"potential.{i}"].numpy()))
                  for i, cl in enumerate(self.cliques)}
        potentials = mbi.CliqueVector(domain, self.cliques, tables)
        marginals = mbi.marginal_oracles.message_passing_stable(potentials, self.total)
        self.model = mbi.MarkovRandomField(potentials=potentials, marginals=marginals, total=self.total)

    def params_dict(self) -> dict:
        return {**asdict(self.params), "bins": self.bins, "cliques": [list(c) for c in self.cliques]}


def _mbi():
    """The mbi package, imported once without its start-up warnings (float32 is ample for counts of
    clinical tables; the JAX compilation cache is off, as mbi advises)."""
    import warnings

    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import mbi
        import mbi.marginal_oracles  # noqa: F401
    return mbi
