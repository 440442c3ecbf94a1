"""``EHRSynthesizer``: the public API of the EHR generator (used by the CLI, the EHR page, the job and tests).

    from medsyn_tabular.ehr.dataset import read_folder
    from medsyn_tabular.ehr.synthesizer import EHRSynthesizer
    real = read_folder("synthea/csv", schema="ehr.yaml")
    synth = EHRSynthesizer(epochs=200, seed=0).fit(real)
    fake = synth.sample(100)            # an EHRDataset in the input's layout, new keys
    synth.save("models/synthea-ehr");  same = EHRSynthesizer.load("models/synthea-ehr")

``fit``: encoder (vocabularies, lookups; :mod:`~medsyn_tabular.ehr.encoding`) -> token arrays per patient
-> training of :class:`~medsyn_tabular.ehr.model.EHRNet` (Adam; mid-training checkpoints as in the flat
engine). With differential privacy (``epsilon=`` or ``preset=``) the unit is the **patient with all
their rows**: the schema and every vocabulary must be declared (nothing is read from the rows but the
tokens), one DP-SGD sample is one patient (Poisson sampling of patients, clipping of each patient's
gradient, Gaussian noise: Opacus via :mod:`medsyn_core.privacy.dpsgd`), the whole ε goes to training (no
statistic is released in preprocessing), and the ledger recomputes ε.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsyn_core import model_card
from medsyn_core.privacy import PrivacyError
from medsyn_tabular.data.schema import SchemaError
from medsyn_tabular.ehr.codecs import YEAR_SECONDS
from medsyn_tabular.ehr.dataset import EHRDataset, read_source
from medsyn_tabular.ehr.encoding import EHREncoder, EncodedEHR
from medsyn_tabular.ehr.schema import EHRSchema, load_schema

KIND = "ehr-ar"
FORMAT_VERSION = 1
MIN_PATIENTS = 4
SAMPLE_CHUNK = 256
PRIVACY_UNIT = "one patient with all their rows in every table"


@dataclass
class EHRParams:
    """Network and training settings (the card's ``parameters``)."""

    epochs: int = 200
    batch_size: int = 16
    dim: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0


class SamplingPlan:
    """What sampling needs besides the network: forbidden tokens, decoding of counts and gaps, ages."""

    def __init__(self, encoder: EHREncoder, rng: np.random.Generator):
        self.encoder, self.rng = encoder, rng
        pvars, svars = encoder.patient_vars, encoder.step_vars
        self.patient_forbidden = [v.codec.forbidden() for v in pvars]
        self.step_forbidden = [v.codec.forbidden() for v in svars]
        names = {v.name: i for i, v in enumerate(pvars)}
        self.n_visits_index = names["n_visits"]
        self.patient_active = {}
        if "death_gap" in names:
            dead = names["dead"]
            self.patient_active[names["death_gap"]] = lambda tokens: tokens[:, dead] == 3
        steps = {v.name: i for i, v in enumerate(svars)}
        self.gap_index, self.age_index = steps["gap"], steps["age"]
        self.gap_codec, self.age_codec = svars[self.gap_index].codec, svars[self.age_index].codec
        self.count_index = {n: steps[f"count:{n}"] for n in encoder.code_codecs}
        self.count_codec = pvars[self.n_visits_index].codec
        self.code_forbidden = {n: c.forbidden() for n, c in encoder.code_codecs.items()}
        self.row_forbidden = {n: [v.codec.forbidden() for v in vs] for n, vs in encoder.row_vars.items()}
        schema = encoder.schema
        self.max_visits = min(schema.max_visits, encoder.caps.get("visits", schema.max_visits))
        self.max_rows = {n: min(encoder.schema.max_rows, encoder.caps.get(n, encoder.schema.max_rows))
                         for n in encoder.code_codecs}

    def visits(self, pv: np.ndarray) -> np.ndarray:
        return np.minimum(self.count_codec.decode(pv[:, self.n_visits_index], self.rng), self.max_visits)

    def gap_seconds(self, tokens: np.ndarray) -> np.ndarray:
        return self.gap_codec.decode(tokens, self.rng)

    def age_token(self, seconds: np.ndarray) -> np.ndarray:
        return self.age_codec.encode(np.asarray(seconds) / YEAR_SECONDS)

    def row_count(self, tokens: np.ndarray) -> np.ndarray:
        return self.count_codec.decode(tokens, self.rng)


class EHRSynthesizer:
    """Fit the EHR generator on an :class:`~medsyn_tabular.ehr.dataset.EHRDataset` and sample synthetic
    patients with all their tables.

    ``schema``: an EHR schema (file, dict or :class:`EHRSchema`); without one, the dataset's (inferred)
    schema is used, which differential privacy refuses. ``epsilon``/``preset``/``delta``/``max_grad_norm``/
    ``accountant`` as for the flat synthesizer; the unit is always the patient."""

    def __init__(self, schema=None, epochs: int = 200, batch_size: int = 16, seed: int = 0, dim: int = 128,
                 lr: float = 2e-3, device: str | None = None, epsilon: float | None = None,
                 delta: float | None = None, preset: str | None = None, max_grad_norm: float = 1.0,
                 accountant: str = "rdp", declared_by: str | None = None):
        from medsyn_core.privacy import PrivacyBudget
        from medsyn_core.privacy.dpsgd import ACCOUNTANTS

        for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("dim", dim, 8)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be a whole number of at least {low} (got {value!r}).")
        self.params = EHRParams(int(epochs), int(batch_size), int(dim), float(lr))
        self.seed = int(seed)
        self.device_preference = device
        self.declared = load_schema(schema) if schema is not None else None
        self.declared_by = declared_by
        self.privacy_settings = {"epsilon": epsilon, "delta": delta, "preset": preset,
                                 "max_grad_norm": float(max_grad_norm), "accountant": accountant}
        self.private = PrivacyBudget.create(10**12, epsilon, None, preset) is not None
        if self.private:
            if not max_grad_norm > 0:
                raise PrivacyError(f"The clipping norm must be positive (got {max_grad_norm}).")
            if accountant not in ACCOUNTANTS:
                raise PrivacyError(f"Unknown accountant {accountant!r}; use one of {', '.join(ACCOUNTANTS)}.")
        self.encoder: EHREncoder | None = None
        self.net = None
        self.ledger = None
        self.loss_history: list[dict[str, Any]] = []
        self.card: dict[str, Any] = {}

    # -- fitting ---------------------------------------------------------------------------------------
    def plan_privacy(self, n_patients: int):
        """(PrivacyBudget, DPSGDPlan) for ``n_patients`` patients (public), or (None, None) with DP off.
        All of ε and δ go to DP-SGD: nothing is released in preprocessing."""
        from medsyn_core.privacy import PrivacyBudget
        from medsyn_core.privacy.dpsgd import plan_dpsgd, steps_per_epoch

        s = self.privacy_settings
        budget = PrivacyBudget.create(n_patients, s["epsilon"], s["delta"], s["preset"])
        if budget is None:
            return None, None
        steps = self.params.epochs * steps_per_epoch(n_patients, self.params.batch_size)
        try:
            plan = plan_dpsgd(budget.epsilon, budget.delta, n_patients, self.params.batch_size, steps,
                              s["max_grad_norm"], s["accountant"])
        except PrivacyError as exc:
            raise PrivacyError(f"ε = {budget.epsilon:g} over {self.params.epochs} epochs ({steps} steps) of "
                               f"{n_patients} patients: {exc}") from exc
        return budget, plan

    def fit(self, data: EHRDataset | str | Path, progress=None, checkpoint=None,
            resume_from: str | Path | None = None, source: str | None = None) -> EHRSynthesizer:
        """Fit on a dataset (or a folder/zip). ``progress(record)`` after every epoch with ``{"epoch",
        "epochs", "seconds"}`` and, without DP, ``"loss"``; ``checkpoint``/``resume_from`` as in
        :meth:`medsyn_tabular.synthesizer.TabularSynthesizer.fit` (not with DP)."""
        from medsyn_core import training as checkpoints
        from medsyn_core.device import choose_device, seed_everything
        from medsyn_core.redaction import allow_names

        started = time.time()
        if isinstance(data, (str, Path)):
            source = source or Path(data).name
            data = read_source(data, self.declared)
        if self.private and resume_from is not None:
            raise ValueError("Differentially private training cannot be resumed: the accountant's state is "
                             "not checkpointed, so ε could not be guaranteed. Start it again.")
        if self.private and self.declared is None:
            raise PrivacyError("Differential privacy needs a declared EHR schema: write one with `medsyn ehr "
                               "schema FOLDER --out ehr.yaml`, review it, declare the public vocabularies, "
                               "birth_years and end_date, and pass it with --schema (docs/ehr.md).")
        from medsyn_tabular.ehr.dataset import check_tables

        schema = check_tables(data.tables, self.declared) if self.declared is not None else data.schema
        data = EHRDataset(data.tables, schema, data.source, data.files)
        try:
            return self._fit(data, progress, checkpoint, resume_from, source or data.source, started,
                             choose_device, seed_everything, checkpoints)
        except Exception as exc:  # column and table names are public; a stored error keeps them only
            allow_names(exc, [c for df in data.tables.values() for c in df.columns] + list(data.tables))
            raise

    def _fit(self, data, progress, checkpoint, resume_from, source, started, choose_device, seed_everything,
             checkpoints) -> EHRSynthesizer:
        from medsyn_core.privacy.mechanisms import os_entropy_rng

        n_declared = len(data.table(data.schema.patients[0]))
        if self.private:
            self.plan_privacy(n_declared)  # an unreachable budget fails before anything is read
        self.encoder = EHREncoder(data.schema).fit(data, private=self.private)
        rng = os_entropy_rng() if self.private else np.random.default_rng(self.seed)
        encoded = self.encoder.encode(data, rng)
        if encoded.n < MIN_PATIENTS:
            raise SchemaError(f"{encoded.n} usable patient(s); at least {MIN_PATIENTS} are needed.")
        budget, plan = self.plan_privacy(encoded.n)
        device = choose_device(self.device_preference)
        seed_everything(self.seed)
        self.net = self._build(device)
        preprocess_s = time.time() - started
        train_started = time.time()
        if plan is None:
            resume = checkpoints.read_checkpoint(resume_from) if resume_from is not None else None
            self._train(encoded, device, progress, checkpoint, resume, checkpoints)
        else:
            from medsyn_core.privacy import PrivacyLedger
            from medsyn_core.privacy.dpsgd import training_entry

            self.ledger = PrivacyLedger(dataset_rows=encoded.n, budget={**budget.to_dict(),
                                                                        "preprocessing_share": 0.0})
            engine = self._train_private(encoded, plan, device, progress)
            self.ledger.add(training_entry(plan, engine, target="EHR network (one sample = one patient)"))
        self.card = self._card(source, encoded, device, preprocess_s, time.time() - train_started)
        return self

    def _build(self, device):
        from medsyn_tabular.ehr.model import EHRNet

        enc = self.encoder
        tables = {n: (enc.code_codecs[n].size, [v.codec.size for v in enc.row_vars[n]])
                  for n in enc.code_codecs}
        net = EHRNet([v.codec.size for v in enc.patient_vars], [v.codec.size for v in enc.step_vars],
                     [v.head for v in enc.step_vars], tables, dim=self.params.dim)
        return net.to(device)

    def _train(self, encoded: EncodedEHR, device, progress, checkpoint, resume, checkpoints) -> None:
        arrays = [torch.as_tensor(a.astype(np.int32)) for a in encoded.arrays()]
        opt = torch.optim.Adam(self.net.parameters(), lr=self.params.lr,
                               weight_decay=self.params.weight_decay, foreach=True)
        generator = torch.Generator().manual_seed(self.seed)
        wants = checkpoint is not None or resume is not None
        fp = checkpoints.fingerprint(*encoded.arrays(), meta=[KIND, self.seed, asdict(self.params)]) \
            if wants else ""
        start = 0
        nets, opts = {"net": self.net}, {"adam": opt}
        if resume is not None:
            start, self.loss_history = checkpoints.restore(resume, fp, nets, opts, None,
                                                           {"batches": generator})
        n, bs = encoded.n, min(self.params.batch_size, encoded.n)
        self.net.train()
        for epoch in range(start, self.params.epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=generator)
            total = 0.0
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                batch = [a[idx].to(device) for a in arrays]
                loss = self.net(*batch).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            record = {"epoch": epoch + 1, "epochs": self.params.epochs, "loss": total / n,
                      "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
            if checkpoint is not None:
                checkpoint(epoch + 1, self.params.epochs, lambda e=epoch + 1: checkpoints.capture(
                    e, fp, nets, opts, None, {"batches": generator}, self.loss_history))

    def _train_private(self, encoded: EncodedEHR, plan, device, progress):
        """DP-SGD with one patient per sample: Poisson sampling of patients, per-patient clipping."""
        from medsyn_core.privacy.dpsgd import make_private

        tensors = [torch.as_tensor(a.astype(np.int32)) for a in encoded.arrays()]
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors),
                                             batch_size=self.params.batch_size)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.params.lr,
                               weight_decay=self.params.weight_decay)
        engine, module, optimizer, loader = make_private(plan, self.net, opt, loader)
        module.train()
        for epoch in range(self.params.epochs):
            t0 = time.perf_counter()
            for batch in loader:
                batch = [b.to(device) for b in batch]
                losses = module(*batch)
                loss = losses.sum() / max(1, losses.shape[0])  # an empty Poisson batch: a noise-only step
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            # the loss is computed on real patients: DP-SGD does not cover it, so it is never released
            record = {"epoch": epoch + 1, "epochs": self.params.epochs, "seconds": time.perf_counter() - t0}
            self.loss_history.append(record)
            if progress is not None:
                progress(record)
        self.net = module._module if hasattr(module, "_module") else module
        return engine

    def _card(self, source: str, encoded: EncodedEHR, device, preprocess_s: float, train_s: float) -> dict:
        s = self.encoder.schema
        phi = [{"table": n, "column": c, "action": a} for n, t in s.tables.items() if t.model
               for c, a in t.phi.items()]
        card = {
            "card_format": model_card.CARD_FORMAT, "engine": "tabular", "kind": KIND, "model": KIND,
            "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data_source": source, "layout": s.layout,
            "tables": {n: t.role for n, t in s.tables.items() if t.model},
            "patients": encoded.n, "parameters": asdict(self.params), "seed": self.seed,
            "device": str(device),
            "preprocessing_seconds": round(preprocess_s, 3), "training_seconds": round(train_s, 3),
            "phi_handling": phi, "keys": "regenerated (random UUIDs or 1..n): never a real identifier",
            "differential_privacy": self._privacy_card(), "python": platform.python_version(),
        }
        if self.ledger is None:
            card["metrics"] = {"final loss": self.loss_history[-1]["loss"]} if self.loss_history else {}
            card["data_counts"] = {**encoded.stats, "labels withheld (PHI-like, or free text of one patient)":
                                   int(getattr(self.encoder, "withheld_labels", 0))}
        else:
            card["metrics"] = {}
            card["privacy_unit"] = {"kind": "patient", "description": PRIVACY_UNIT}
            card["schema_declared_by"] = self.declared_by or "the EHR schema file"
        card["dp_label"] = model_card.dp_label(card)
        return card

    def _privacy_card(self) -> dict[str, Any]:
        if self.ledger is None:
            return model_card.off_block("Trained without differential privacy: no guarantee; use --epsilon "
                                        "or a preset for DP.")
        return model_card.privacy_block(
            self.ledger, PRIVACY_UNIT,
            public=["table and column names", "the declared EHR schema (roles, kinds, vocabularies with "
                    "their descriptions, birth_years, end_date, max_visits, max_rows)", "the PHI actions",
                    "the public bins of times, counts and values",
                    f"n = {self.ledger.dataset_rows} (number of patients)"])

    # -- sampling --------------------------------------------------------------------------------------
    def sample(self, n_patients: int, seed: int | None = None) -> EHRDataset:
        """``n_patients`` synthetic patients with their visits and event rows, in the input's layout. The
        same ``seed`` (default: the training seed) gives the same dataset."""
        if self.net is None:
            raise RuntimeError("Fit the synthesizer (or load a fitted one) before sampling.")
        if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
            raise ValueError(f"The number of patients must be a whole number of at least 1 (got "
                             f"{n_patients!r}).")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        plan = SamplingPlan(self.encoder, rng)
        self.net.eval()
        parts = []
        for start in range(0, int(n_patients), SAMPLE_CHUNK):
            parts.append(self.net.generate(min(SAMPLE_CHUNK, int(n_patients) - start), plan, generator))
        t_max = max(p["vt"].shape[1] for p in parts)
        s_width = parts[0]["vt"].shape[2]
        pv = np.concatenate([p["pv"] for p in parts])
        nv = np.concatenate([p["nv"] for p in parts])
        vt = np.full((len(pv), t_max, s_width), -1, dtype=np.int64)
        gaps = np.zeros((len(pv), t_max))
        rows, offset = {n: [] for n in self.encoder.code_codecs}, 0
        for p in parts:
            k, t = p["vt"].shape[:2]
            vt[offset:offset + k, :t] = p["vt"]
            gaps[offset:offset + k, :t] = p["gaps"]
            for name in rows:
                r = p[f"rows:{name}"].copy()
                r[:, 0] += offset
                rows[name].append(r)
            offset += k
        rows = {n: np.concatenate(r) for n, r in rows.items()}
        return self.encoder.decode(pv, vt, nv, rows, rng, gaps=gaps)

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, name: str | None = None, overwrite: bool = False,
             register: bool = True, *, replace: bool | None = None, actor: str = "medsyn") -> Path:
        """Save as a folder (safetensors weights; JSON encoder, config, card, ledger), atomically, and
        register it in the store (names and replacement as for the flat synthesizer)."""
        from safetensors.torch import save_file

        from medsyn_core import model_store, names
        from medsyn_core.files import atomic_directory, atomic_write_json

        if self.net is None:
            raise RuntimeError("Nothing to save: fit the synthesizer first.")
        replace = overwrite if replace is None else replace
        name = name or (Path(path).name if path else f"ehr-{time.strftime('%Y%m%d-%H%M%S')}")
        path = Path(path) if path else names.model_dir(name)
        if register:
            model_store.ensure_model_name_free(name, replace=replace)
        existed = path.exists()
        with atomic_directory(path, overwrite=overwrite) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                      str(tmp / "weights.safetensors"))
            history = self.loss_history
            atomic_write_json(tmp / "config.json", {
                "format_version": FORMAT_VERSION, "model": KIND, "params": asdict(self.params),
                "seed": self.seed, "privacy": self.privacy_settings if self.ledger is not None else None,
                "declared_by": self.declared_by, "loss_history": history})
            atomic_write_json(tmp / "encoder.json", self.encoder.to_dict())
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")
            atomic_write_json(tmp / "model_card.json", {**self.card, "name": name})
        if register:
            from medsyn_core.storage import Store

            with Store() as store:
                eps = self.ledger.total()[0] if self.ledger is not None else None
                try:
                    store.register_model(name, KIND, path.resolve(), {**self.card, "name": name},
                                         dp_epsilon=eps, replace=replace, actor=actor)
                except names.NameTaken:
                    if not existed:
                        shutil.rmtree(path, ignore_errors=True)
                    raise
                store.append_event(actor, "ehr-model-saved", {"name": name, "model": KIND})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> EHRSynthesizer:
        """Load a folder written by :meth:`save` (safetensors: no code runs on load)."""
        from safetensors.torch import load_file

        from medsyn_core.device import choose_device

        path = Path(path)
        config_path = path / "config.json"
        if not config_path.exists() or not (path / "encoder.json").exists():
            raise FileNotFoundError(f"{path} is not a saved EHR model (no config.json and encoder.json).")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format_version") != FORMAT_VERSION or config.get("model") != KIND:
            raise ValueError(f"{path}: not an EHR model of format {FORMAT_VERSION}.")
        p = config["params"]
        privacy = config.get("privacy") or {}
        synth = cls(None, p["epochs"], p["batch_size"], config["seed"], p["dim"], p["lr"], device=device,
                    declared_by=config.get("declared_by"), **privacy)
        synth.encoder = EHREncoder.from_dict(json.loads((path / "encoder.json").read_text(encoding="utf-8")))
        synth.declared = synth.encoder.schema
        if (path / "privacy_ledger.json").exists():
            from medsyn_core.privacy import PrivacyLedger

            synth.ledger = PrivacyLedger.load(path / "privacy_ledger.json")
        synth.card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
        synth.loss_history = config.get("loss_history", [])
        synth.net = synth._build(choose_device(device))
        synth.net.load_state_dict(load_file(str(path / "weights.safetensors")))
        return synth


def default_schema(folder: str | Path) -> EHRSchema:
    """The inferred schema of a folder (for review)."""
    return read_source(folder).schema


__all__ = ["PRIVACY_UNIT", "EHRParams", "EHRSynthesizer", "default_schema"]
