"""``TabularSynthesizer``: the public API of the tabular engine (used by the CLI, the app and tests).

    from medsyn_tabular.synthesizer import TabularSynthesizer
    synth = TabularSynthesizer(model="ctgan", epochs=300, batch_size=500, seed=0).fit(df)
    rows = synth.sample(500, conditions=["age>=65", "diabetes=1"])
    synth.save("models/heart-ctgan");  same = TabularSynthesizer.load("models/heart-ctgan")

``fit`` runs: schema inference (+ overrides) -> PHI detection and Safe Harbor transforms -> coercion
to the schema -> :meth:`TableTransformer.fit` (every statistic of the real table) -> model training.

With differential privacy (``epsilon=`` or ``preset=``): the DP-SGD noise is planned first (an unreachable
budget fails before the data is touched), then :meth:`TableTransformer.fit_private` (DP statistics from
the preprocessing share) and ``fit_private`` of the model (DP-SGD from the training share); every release
is recorded in :attr:`TabularSynthesizer.ledger`, saved as ``privacy_ledger.json`` with the model.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsyn_core import model_card
from medsyn_core.redaction import allow_names
from medsyn_tabular.data.conditions import ConditionError, parse_conditions, rows_satisfying
from medsyn_tabular.data.constraints import ConstraintError, ConstraintSet
from medsyn_tabular.data.io import read_table
from medsyn_tabular.data.phi import apply_phi, detect_phi, plan_phi
from medsyn_tabular.data.schema import (
    KINDS,
    ColumnSchema,
    SchemaError,
    TableSchema,
    apply_overrides,
    coerce_to_schema,
    infer_schema,
    load_override_file,
)
from medsyn_tabular.models import registry
from medsyn_tabular.transformers.table import MISSING, OTHER, ColumnEncoding, TableTransformer

MODELS = tuple(registry.MODELS)
MIN_ROWS = 10
FORMAT_VERSION = 1
#: Per-epoch losses computed on real rows, per model (left out of a DP model's saved history).
REAL_ROW_LOSSES = {name: spec.real_row_losses for name, spec in registry.MODELS.items()}
#: Sampling with conditions gives up after generating this many rows per requested row (plus a floor).
MAX_TRIES_PER_ROW, MIN_TRIES = 200, 200_000


def _overrides(schema: str | Path | dict | None) -> dict[str, Any]:
    if schema is None:
        return {}
    if isinstance(schema, dict):
        return schema
    return load_override_file(schema)


def _merge_overrides(schema: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """Schema overrides completed by a metadata file of the same layout (metadata wins per setting)."""
    out = {**schema, **{k: v for k, v in metadata.items() if k != "columns"}}
    columns = {k: ({"kind": v} if isinstance(v, str) else dict(v or {}))
               for k, v in (schema.get("columns") or {}).items()}
    for name, spec in (metadata.get("columns") or {}).items():
        spec = {"kind": spec} if isinstance(spec, str) else dict(spec or {})
        columns[name] = {**columns.get(name, {}), **spec}
    if columns:
        out["columns"] = columns
    return out


def _declared_schema(declared: dict[str, dict[str, Any]]) -> TableSchema:
    """A :class:`TableSchema` from declarations only (no count of the rows: missing/distinct stay 0)."""
    columns = []
    for name, spec in declared.items():
        kind = "empty" if spec["kind"] == "drop" else spec["kind"]
        columns.append(ColumnSchema(name=name, kind=kind, reason="declared", min=spec.get("min"),
                                    max=spec.get("max"), categories=spec.get("categories"),
                                    overridden=True))
    return TableSchema(columns)


dp_label = model_card.dp_label  # one label for every engine (kept here for older imports)


class TabularSynthesizer:
    """Fit a tabular model (:data:`MODELS`: CTGAN, TVAE, AIM) on a table and sample synthetic rows,
    optionally under conditions. ``model=None`` picks :func:`~.models.registry.default_model`: MST with
    differential privacy at ε ≤ 3, otherwise the model with the best measured utility (ARGN).

    ``schema``: a schema/metadata override (path to JSON/YAML or a dict, see
    :mod:`medsyn_tabular.data.schema`);
    its ``columns`` bounds and categories are used as public metadata, its ``phi`` section sets per-column
    PHI actions (``phi_actions`` does the same from Python). Extra keyword arguments go to the model's
    hyperparameters (:class:`~medsyn_tabular.models.ctgan.CTGANParams` /
    :class:`~medsyn_tabular.models.tvae.TVAEParams`).

    Differential privacy: ``epsilon`` (total, preprocessing included) or ``preset`` ('strict' ε=1,
    'balanced' ε=3, 'exploratory' ε=10, 'off'); ``delta`` (default min(1e-5, 1/(10 n)), must be below 1/n);
    ``max_grad_norm`` (per-sample clipping norm C); ``metadata``: a file/dict in the schema-file layout
    whose bounds, categories, ``nullable`` and ``dates_only`` are public and cost no budget;
    ``preprocessing_share`` of ε and δ for the DP statistics (default 0.1); ``accountant`` 'rdp' or 'prv'.

    ``epochs`` and ``batch_size`` left as None are chosen by :mod:`medsyn_tabular.defaults`: 300 and 500
    without DP; under DP from n and ε when the privacy is planned (:meth:`plan_privacy`, at the latest in
    :meth:`fit`), so that the budget is reachable with a useful amount of training.

    Without DP, ``epochs`` is the most a network trains: ``early_stopping`` (None: on for tables of at least
    200 rows and at least 20 epochs) holds out 10 % of the rows and stops when their quality score stops
    improving, ``time_budget_s`` stops before that many seconds (:mod:`medsyn_tabular.early_stopping`). The
    schema file's ``constraints`` section declares clinical rules every generated row keeps
    (:mod:`medsyn_tabular.data.constraints`).
    """

    def __init__(self, model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                 seed: int = 0,
                 schema: str | Path | dict | None = None, phi_actions: dict[str, str] | None = None,
                 device: str | None = None, epsilon: float | None = None, delta: float | None = None,
                 preset: str | None = None, max_grad_norm: float = 1.0,
                 metadata: str | Path | dict | None = None, preprocessing_share: float = 0.1,
                 accountant: str = "rdp", early_stopping: bool | None = None,
                 time_budget_s: float | None = None, **hyperparameters: Any):
        from medsyn_core.privacy import PrivacyError
        from medsyn_core.privacy.settings import PrivacySettings

        # the privacy choice, validated once (δ against 1/n is checked in fit, once n is known)
        self.privacy = PrivacySettings.create(epsilon, delta, preset, max_grad_norm, preprocessing_share,
                                              accountant)
        self.private = self.privacy.enabled
        if self.private and (early_stopping or time_budget_s is not None):
            raise PrivacyError("Early stopping and a time budget apply without differential privacy only: "
                               "under DP the number of training steps fixes the noise before training. Set "
                               "the epochs instead.")
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"The time budget must be a positive number of seconds (got {time_budget_s!r}).")
        self.early_stopping, self.time_budget_s = early_stopping, time_budget_s
        self.monitor = None  # the TrainingMonitor of the last fit (early stopping / time budget)
        if model is None:
            model = registry.default_model(self.privacy.epsilon)
        if self.private and model == "ctgan":
            if hyperparameters.get("pac", 1) != 1:
                raise PrivacyError("Differentially private CTGAN uses pac = 1 (packing rows would break "
                                   "the per-row guarantee); remove the pac setting.")
            hyperparameters = {**hyperparameters, "pac": 1}
        self.spec = registry.spec(model)
        from medsyn_tabular import defaults

        #: settings left to :mod:`medsyn_tabular.defaults` (under DP-SGD chosen once n is known)
        self.chosen_by_default = [k for k, v in (("batch_size", batch_size), ("epochs", epochs)) if v is None]
        if not self.private or self.spec.dp != "dp-sgd":
            epochs = defaults.EPOCHS if epochs is None else epochs
            batch_size = defaults.BATCH_SIZE if batch_size is None else batch_size
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer))
                                   or epochs < 1):
            raise ValueError(f"epochs must be a whole number of at least 1 (got {epochs!r}).")
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, (int, np.integer)) or batch_size < 2):
            raise ValueError(f"batch_size must be a whole number of at least 2 (got {batch_size!r}).")
        pac = hyperparameters.get("pac", 10)
        if model == "ctgan" and batch_size is not None and batch_size % pac:
            raise ValueError(f"For CTGAN, batch_size must be a multiple of pac={pac} (got {batch_size}); "
                             f"try {max(pac, batch_size // pac * pac)}.")
        self.model_name = model
        self.epochs = int(epochs) if epochs is not None else None
        self.batch_size = int(batch_size) if batch_size is not None else None
        self.seed = int(seed)
        self.overrides = _merge_overrides(_overrides(schema), _overrides(metadata))
        self.phi_actions = {**(self.overrides.get("phi") or {}), **(phi_actions or {})}
        self.device_preference = device
        self.hyperparameters = hyperparameters
        self.schema: TableSchema | None = None
        self.transformer: TableTransformer | None = None
        self.model = None
        self.phi_record: list[dict[str, Any]] = []
        self.dropped: dict[str, str] = {}
        self.card: dict[str, Any] = {}
        self.ledger = None  # PrivacyLedger once fitted with differential privacy
        self.privacy_unit = None  # PrivacyUnit of a DP fit (row or patient)
        self.declared_metadata: dict[str, Any] = self.overrides
        self.constraints = ConstraintSet([])  # the declared rules (schema file's ``constraints:``)
        self.derived_columns: dict[str, dict[str, str]] = {}  # derived column -> {kind, dtype}

    # -- fitting ---------------------------------------------------------------------------------
    def prepare(self, df: pd.DataFrame) -> tuple[pd.DataFrame, TableSchema]:
        """Schema + PHI handling + coercion: the table the transformer sees, and its schema.

        Without DP the schema is inferred from the rows (then overridden); with DP it is the declared one
        (see :meth:`prepare_declared`)."""
        if df.shape[1] == 0:
            raise SchemaError("The table has no columns.")
        if len(df) < MIN_ROWS:
            raise SchemaError(f"The table has {len(df)} row(s); at least {MIN_ROWS} are needed to learn "
                              "anything. Use a larger table.")
        if self.private:
            return self.prepare_declared(df)
        from medsyn_tabular.data.phi import declared_after_phi

        first = apply_overrides(infer_schema(df), self._column_overrides(df.columns, self.overrides))
        plan = plan_phi(detect_phi(df, first), self.phi_actions, [str(c) for c in df.columns])
        clean, self.phi_record = apply_phi(df, plan)
        # declared bounds/categories narrowed by the PHI actions (e.g. a declared age max of 100 -> 90)
        actions = {f.column: f.action for f in plan}
        declared = {}
        for name, spec in (self.overrides.get("columns") or {}).items():
            spec = {"kind": spec} if isinstance(spec, str) else dict(spec or {})
            if name in actions:
                spec = declared_after_phi(spec, actions[name])
                spec.pop("phi_max", None)
            declared[name] = spec
        self.declared_metadata = {**self.overrides, "columns": declared}
        schema = apply_overrides(infer_schema(clean), self._column_overrides(clean.columns,
                                                                             self.declared_metadata))
        self.dropped = {r["column"]: f"PHI: {r['category']}, removed" for r in self.phi_record
                        if r["action"] == "drop"}
        for col in schema.columns:
            if col.kind == "empty" and not col.overridden:
                raise SchemaError(f"Column {col.name!r} is entirely missing, so nothing can be learned "
                                  "from it. "
                                  "Remove it from the table or mark it 'drop' in a schema file.")
            if not col.modelled:
                self.dropped[col.name] = f"{col.kind} column, not modelled"
        self._check_enough_columns(schema)
        return coerce_to_schema(clean, schema), schema

    def prepare_declared(self, df: pd.DataFrame) -> tuple[pd.DataFrame, TableSchema]:
        """The differentially private preparation: nothing about the schema is read from the rows.

        Kinds, bounds, categories and nullability come from the declared schema (every column must be
        declared), PHI actions from the column names, declared kinds and the user's choices (never from
        the values), and each PHI action narrows the declared bounds (:func:`~.phi.declared_after_phi`).
        The privacy unit is resolved and each patient's contribution bounded before anything else. The
        saved schema holds no count of the rows (no missing or distinct counts)."""
        from medsyn_tabular.data.phi import declared_after_phi
        from medsyn_tabular.data.privacy_unit import KEY_LIKE_PHI, bound_contributions, resolve_unit

        names = [str(c) for c in df.columns]
        declared = {}
        for name, spec in (self.overrides.get("columns") or {}).items():
            declared[name] = {"kind": spec} if isinstance(spec, str) else dict(spec or {})
        undeclared = [n for n in names if not declared.get(n, {}).get("kind")]
        if undeclared:
            from medsyn_core.privacy import PrivacyError

            shown = ", ".join(map(repr, undeclared[:8])) + (" …" if len(undeclared) > 8 else "")
            raise PrivacyError(
                f"Differential privacy needs a declared schema, but {len(undeclared)} column(s) have no "
                f"declared kind: {shown}. Kinds, bounds and categories read from the rows would leak "
                "them. Write the inferred schema with `medsyn tabular schema DATA --out schema.yaml`, "
                "review it, and pass it with --schema (on the Tabular page the reviewed table is the "
                "declaration).")
        bad = {n: d["kind"] for n, d in declared.items() if d["kind"] not in KINDS + ("drop",)}
        if bad:
            raise SchemaError(f"Unknown kind(s) in the schema: {bad}; use one of {', '.join(KINDS)} or drop.")
        first = _declared_schema({n: declared[n] for n in names})
        plan = plan_phi(detect_phi(df, first, content=False), self.phi_actions, names)
        key_like = sorted({f.column for f in plan if f.category in KEY_LIKE_PHI}
                          | {c.name for c in first.columns if c.kind == "identifier"})
        self.privacy_unit = resolve_unit(self.overrides, names, key_like)
        bounded = bound_contributions(df, self.privacy_unit)
        if len(bounded) < MIN_ROWS:
            raise SchemaError(f"After keeping one row per patient, {len(bounded)} patient(s) remain; at "
                              "least "
                              f"{MIN_ROWS} are needed.")
        plan = [f for f in plan if f.column in bounded.columns]
        clean, self.phi_record = apply_phi(bounded, plan, count_cells=False)
        actions = {f.column: f.action for f in plan}
        after = {n: declared_after_phi(declared[n], actions[n]) if n in actions else declared[n]
                 for n in map(str, clean.columns)}
        schema = _declared_schema(after)
        self.dropped = {r["column"]: f"PHI: {r['category']}, removed" for r in self.phi_record
                        if r["action"] == "drop"}
        if self.privacy_unit.kind == "patient":
            self.dropped[self.privacy_unit.key] = "patient key: used to keep one row per patient, removed"
        for col in schema.columns:
            if not col.modelled:
                self.dropped[col.name] = f"{col.kind} column (declared), not modelled"
        self._check_enough_columns(schema)
        self.declared_metadata = {"columns": after}
        return coerce_to_schema(clean, schema), schema

    @staticmethod
    def _check_enough_columns(schema: TableSchema) -> None:
        if len(schema.modelled) < 2:
            raise SchemaError(f"Only {len(schema.modelled)} column(s) can be modelled "
                              f"({', '.join(c.name for c in schema.modelled) or 'none'}); "
                              "a synthesizer needs "
                              "at least 2. Check the schema (identifier/text columns are not modelled).")

    @staticmethod
    def _column_overrides(columns, declared: dict[str, Any]) -> dict[str, Any]:
        section = declared.get("columns") or {}
        return {"columns": {k: v for k, v in section.items() if k in set(map(str, columns))}}

    def fit(self, data: pd.DataFrame | str | Path, progress=None, source: str | None = None,
            checkpoint=None, resume_from: str | Path | None = None) -> TabularSynthesizer:
        """Fit on a DataFrame or a table file; ``progress(record)`` is called after every epoch with
        ``{"epoch", "epochs", "seconds", "loss_g"/"loss_d" (CTGAN) or "loss" (TVAE)}``.

        ``checkpoint``: a :class:`~medsyn_core.training.Checkpointer` that saves the training
        state
        between epochs; ``resume_from``: a file it wrote, to continue that training (same table,
        parameters and seed) exactly where it stopped. Neither works with DP (see
        :mod:`medsyn_core.training`)."""
        from medsyn_core import training as checkpoints

        started = time.time()
        resume = checkpoints.read(resume_from) if resume_from is not None else None
        if isinstance(data, (str, Path)):
            source = source or Path(data).name
            data = read_table(data)
        try:
            return self._fit_frame(data, progress, source, checkpoint, resume, started)
        except Exception as exc:  # column names are public; a stored error may keep them, never values
            allow_names(exc, data.columns)
            raise

    def _fit_frame(self, data: pd.DataFrame, progress, source, checkpoint, resume, started: float
                   ) -> TabularSynthesizer:
        """The body of :meth:`fit` once the table is read."""
        from medsyn_core.device import choose_device, seed_everything

        unknown = set(self.overrides.get("columns") or {}) - set(map(str, data.columns))
        if unknown:
            raise SchemaError(f"The schema file names column(s) not in the table: {sorted(unknown)}.")
        device = choose_device(self.device_preference)
        seed_everything(self.seed)
        if self.private and resume is not None:
            raise ValueError("Differentially private training cannot be resumed: the privacy accountant's "
                             "state is not checkpointed, so ε could not be guaranteed. Start it again.")
        if self.private:
            self.plan_privacy(len(data))  # a first check on public numbers: unreachable budgets fail here
        # the declared rules are read (and malformed ones refused) before anything is fitted
        self.constraints = ConstraintSet.parse(self.overrides.get("constraints"),
                                               list(map(str, data.columns)))
        table, self.schema = self.prepare(data)  # under DP: declared schema, bounded per patient, no stats
        self._exclude_derived(table)
        budget, plan = self.plan_privacy(len(table))  # n = privacy units (patients or rows), public
        self.transformer = TableTransformer(seed=self.seed)
        marginal = self.spec.dp == "marginals"
        if budget is None:
            self.transformer.fit(table, self.schema, metadata=self.declared_metadata)
            if marginal:
                from medsyn_tabular.models.aim import range_modes

                range_modes(self.transformer)
        else:
            from medsyn_core.privacy import PrivacyLedger

            self.ledger = PrivacyLedger(dataset_rows=len(table), budget=budget.to_dict())
            if marginal:
                plan = self._fit_domain_private(table, budget)
            else:
                from medsyn_tabular.transformers.private import fit_private

                fit_private(self.transformer, table, self.schema, self.declared_metadata, budget, self.ledger)
        self._bind_constraints()  # a rule that can never hold is refused before training
        encoded = self.transformer.transform(table)
        preprocess_s = time.time() - started
        self.model = self._build_model(device)
        seed_everything(self.seed)
        train_started = time.time()
        if plan is None:
            encoded, stop = self._monitor(table, encoded)
            kwargs = {"stop": stop} if stop is not None else {}
            self.model.fit(encoded, progress=progress, checkpoint=checkpoint, resume=resume, **kwargs)
            best = stop.finish(len(self.model.loss_history)) if stop is not None else None
            if best is not None:  # the weights of the best check
                self.model.load_state_tensors(best)
        elif marginal:
            self.ledger.add(self._marginal_entry(plan, self.model.fit_private(encoded, plan, progress)))
        else:
            from medsyn_core.privacy.dpsgd import training_entry

            hidden = REAL_ROW_LOSSES[self.model_name]  # losses on real rows never leave the fit under DP
            released = None if progress is None else (
                lambda record: progress({k: v for k, v in record.items() if k not in hidden}))
            engine = self.model.fit_private(encoded, plan, progress=released)
            self.ledger.add(training_entry(plan, engine, target=self.spec.dp_target))
        final = self.released_loss_history()[-1]
        self.card = {
            "card_format": model_card.CARD_FORMAT, "engine": "tabular", "kind": self.model_name,
            "model": self.model_name, "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data_source": source or "in-memory DataFrame",
            "metrics": {f"final {k}": v for k, v in final.items() if k.startswith("loss")},
            "rows": int(len(table) if self.ledger is not None else len(data)),
            "columns_in": int(data.shape[1]), "columns_modelled": [c.name for c in self.schema.modelled],
            "columns_not_modelled": self.dropped, "parameters": self.model.params_dict(), "seed": self.seed,
            "device": str(device), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "preprocessing_seconds": round(preprocess_s, 3),
            "training_seconds": round(time.time() - train_started, 3),
            "phi_handling": self.phi_record, "statistics_provenance": self.transformer.provenance,
            "resumed_after_epoch": int(resume["epoch"]) if resume is not None else None,
            "differential_privacy": self._privacy_card(), "final_loss": final,
            "chosen_by_default": {k: getattr(self, k) for k in self.chosen_by_default},
            "epochs_trained": len(self.model.loss_history) if self.spec.uses_batches else None,
            "training_stop": self.monitor.summary() if self.monitor is not None else None,
            "python": platform.python_version(),
        }
        if self.constraints:
            self.card["constraints"] = self._constraints_card(table)
        if self.ledger is not None:
            self.card["privacy_unit"] = self.privacy_unit.to_dict()
            self.card["schema_declared_by"] = str(self.overrides.get("declared_by") or "the schema file")
        self.card["dp_label"] = dp_label(self.card)
        return self

    def _monitor(self, table: pd.DataFrame, encoded: np.ndarray):
        """(rows to train on, the :class:`~medsyn_tabular.early_stopping.TrainingMonitor` or None): early
        stopping holds out a validation share of the rows (:mod:`medsyn_tabular.early_stopping`)."""
        from medsyn_tabular import early_stopping as stopping

        self.monitor = None
        if not self.spec.uses_batches:
            return encoded, None
        use = self.early_stopping if self.early_stopping is not None else \
            stopping.early_stopping_applies(len(encoded), self.epochs, self.private)
        if not use and self.time_budget_s is None:
            return encoded, None
        score, higher, relative = None, True, False
        if use:
            train_idx, val_idx = stopping.validation_split(len(encoded), self.seed)
            held_out, encoded = encoded[val_idx], encoded[train_idx]
            if getattr(self.model.params, "stop_on", "quality") == "loss":  # ARGN's held-out loss
                def score() -> float:
                    return self.model.validation_loss(held_out)
                higher, relative = False, True
            else:  # the quality of generated rows against the held-out rows, for every model
                from medsyn_tabular.evaluation.columns import infer_column_kinds

                names = [e.name for e in self.transformer.columns]
                real = table[names].iloc[val_idx].reset_index(drop=True)
                kinds = infer_column_kinds(table[names])

                def score() -> float:
                    rng = np.random.default_rng([self.seed, 15])  # the same draws at every check
                    rows = self._decode(self.model.generate(stopping.QUALITY_ROWS, rng), rng)
                    return stopping.quick_quality(real, rows[names], kinds)

        def snapshot() -> dict:
            return {k: v.detach().clone() for k, v in self.model.state_tensors().items()}

        self.monitor = stopping.TrainingMonitor(score, higher, snapshot if use else None, self.time_budget_s,
                                                relative=relative,
                                                warmup_epochs=stopping.warmup_epochs(self.epochs))
        return encoded, self.monitor

    def _exclude_derived(self, table: pd.DataFrame) -> None:
        """Derived columns are not modelled: they are computed from the generated inputs (by
        construction). Their kind and dtype are kept to write them back."""
        from dataclasses import replace

        self.derived_columns = {}
        for rule in self.constraints.derived:
            if rule.column not in self.schema or not self.schema[rule.column].modelled:
                raise ConstraintError(f"Rule {rule.number} derives column {rule.column!r}, which is not "
                                      "modelled (identifier, text, empty or removed for PHI).")
            col = self.schema[rule.column]
            s = table[rule.column]
            dates = col.kind == "datetime" and not self.private and bool(
                (s.dropna().astype("datetime64[ns]").astype("int64") % (86400 * 10**9) == 0).all())
            if self.private:  # declared, never read from the rows
                dates = bool((self.overrides.get("columns") or {}).get(rule.column, {}).get("dates_only"))
            dtype = str(s.dtype) if not self.private else \
                {"integer": "Int64", "continuous": "float64"}.get(col.kind, "datetime64[ns]")
            self.derived_columns[rule.column] = {"kind": col.kind, "dtype": dtype,
                                                 "dates": "dates" if dates else ""}
            self.schema.columns[self.schema.names.index(rule.column)] = replace(
                col, kind="empty", reason=f"derived by rule {rule.number} (computed, not modelled)")

    def _bind_constraints(self) -> None:
        """Check the rules against what the model generates: kinds, categories and bounds."""
        kinds = {e.name: e.kind for e in self.transformer.columns}
        kinds.update({c: d["kind"] for c, d in self.derived_columns.items()})
        categories = {e.name: [v for v in e.slots if v not in (OTHER, MISSING)] + list(e.other_values)
                      for e in self.transformer.columns if not e.is_numeric}
        bounds = {e.name: (e.low, e.high) for e in self.transformer.columns if e.is_numeric}
        self.constraints.bind(kinds, categories, bounds)

    def _constraints_card(self, table: pd.DataFrame) -> dict[str, Any]:
        """The rules for the model card; without DP, the share of real rows that already break each one
        (under DP that share is a statistic of the rows that ε does not cover, so it is not reported)."""
        if self.ledger is None:
            rows = self.constraints.breaking_shares(table)
            note = ("Share of real training rows that break each rule (after PHI handling); synthetic rows "
                    "never do.")
        else:
            rows = [{**r, "share breaking it": None}
                    for r in self.constraints.breaking_shares(table.iloc[:0])]
            note = ("The share of real rows that break a rule is not reported under differential privacy: it "
                    "is a statistic of the rows that ε does not cover.")
        return {"rules": rows, "note": note,
                "derived": {c: d["kind"] for c, d in self.derived_columns.items()}}

    def released_loss_history(self) -> list[dict[str, Any]]:
        """The per-epoch records that may leave with the model. Under DP, losses computed on real rows
        (CTGAN's critic loss, TVAE's reconstruction loss) are statistics of the data that DP-SGD does not
        cover, so they are kept out of the saved model and its card; CTGAN's generator loss (synthetic
        rows through the private critic) is post-processing and stays."""
        if not self.private:
            return self.model.loss_history
        hidden = self.spec.real_row_losses
        return [{k: v for k, v in r.items() if k not in hidden} for r in self.model.loss_history]

    def plan_privacy(self, n_rows: int):
        """(PrivacyBudget, DPSGDPlan) for ``n_rows`` rows, or (None, None) with DP off. Uses only public
        numbers (n, batch size, epochs) and raises PrivacyError with advice when the budget is unreachable."""
        from medsyn_core.privacy import PrivacyError
        from medsyn_core.privacy.dpsgd import plan_dpsgd, steps_per_epoch

        s = self.privacy
        if self.private and self.chosen_by_default and self.spec.dp == "dp-sgd":
            from medsyn_tabular.defaults import dp_training_defaults

            memo = getattr(self, "_defaults_for", None)
            chosen = memo[1] if memo is not None and memo[0] == n_rows else dp_training_defaults(
                n_rows, s.epsilon, self.model_name, s.delta, s.preprocessing_share, s.accountant)
            self._defaults_for = (n_rows, chosen)
            if "batch_size" in self.chosen_by_default:
                self.batch_size = chosen.batch_size
            if "epochs" in self.chosen_by_default:
                self.epochs = chosen.epochs
        cached = getattr(self, "_planned", None)
        if cached is not None and cached[0] == (n_rows, self.epochs, self.batch_size):
            return cached[1]  # calibrating σ takes seconds; a check before training (the page) is reused
        budget = s.budget(n_rows)
        if budget is None:
            return None, None
        if self.spec.dp == "marginals":  # zCDP from what preprocessing leaves: planned in the fit
            return budget, None
        steps = self.epochs * steps_per_epoch(n_rows, self.batch_size)
        try:
            plan = plan_dpsgd(budget.epsilon_training, budget.delta_training, n_rows, self.batch_size, steps,
                              s.max_grad_norm, s.accountant)
        except PrivacyError as exc:
            raise PrivacyError(
                f"Total ε = {budget.epsilon:g} leaves ε = {budget.epsilon_training:.3g} for training after "
                f"the {budget.preprocessing_share:.0%} preprocessing share ({self.epochs} epochs = {steps} "
                f"steps). {exc}") from exc
        self._planned = ((n_rows, self.epochs, self.batch_size), (budget, plan))
        return budget, plan

    def _epsilon(self) -> float:
        """The total ε asked for (from ``epsilon`` or the preset)."""
        return float(self.privacy.epsilon)

    def _privacy_card(self) -> dict[str, Any]:
        """The model card's privacy block (recomputed from the ledger; :func:`model_card.privacy_block`)."""
        if self.ledger is None:
            return model_card.off_block("Trained without differential privacy: no guarantee; use --epsilon "
                                        "or a preset for DP.")
        unit = self.privacy_unit.describe() if self.privacy_unit is not None else "one row"
        return model_card.privacy_block(
            self.ledger, unit,
            public=["column names", "the declared schema (kinds, bounds, categories, nullability)",
                    "the PHI actions", f"n = {self.ledger.dataset_rows} (number of privacy units)"])

    def _build_model(self, device):
        return self.spec.build(self.transformer, self.epochs, self.batch_size, self.hyperparameters, device,
                               self.seed)

    def _fit_domain_private(self, table: pd.DataFrame, budget):
        """The DP domain of a marginal model (declared, or DP bounds/categories where undeclared) and its
        zCDP plan: ρ from the ε and δ the domain left (all of them when everything is declared)."""
        from medsyn_core.privacy.zcdp import zcdp_rho
        from medsyn_tabular.models.aim import AIMPlan
        from medsyn_tabular.transformers.private import domain_calls, fit_domain_private

        calls, n_stable = domain_calls(self.schema, self.declared_metadata)
        eps_pre = budget.epsilon_preprocessing if calls else 0.0
        delta_pre = budget.delta_preprocessing if n_stable else 0.0
        fit_domain_private(self.transformer, table, self.schema, self.declared_metadata, eps_pre, delta_pre,
                           self.ledger)
        epsilon, delta = budget.epsilon - eps_pre, budget.delta - delta_pre
        return AIMPlan(rho=zcdp_rho(epsilon, delta), delta=delta, target_epsilon=epsilon)

    def _marginal_entry(self, plan, spent):
        """The ledger entry of a marginal model's DP fit; its ε recomputes from every σ and scale."""
        from medsyn_core.privacy.ledger import LedgerEntry, zcdp_entry_epsilon

        names = {f"c{i}": enc.name for i, enc in enumerate(self.transformer.columns)}
        details = {"sensitivity": 1, "rho_budget": plan.rho, "target_epsilon": plan.target_epsilon,
                   "noise": "discrete Gaussian (measurements) and report-noisy-max (selections), OpenDP",
                   "conversion": "zCDP to (ε, δ): OpenDP make_zCDP_to_approxDP",
                   "measurements": [{"clique": [names[a] for a in m["clique"]], "sigma": m["sigma"]}
                                    for m in spent.measurements],
                   "selections": [{"scale": x["scale"], "sensitivity": x["sensitivity"],
                                   "candidates": x["candidates"]} for x in spent.selections]}
        epsilon = zcdp_entry_epsilon(details, plan.delta)
        if epsilon > plan.target_epsilon * (1 + 1e-6) + 1e-9:
            raise RuntimeError(f"AIM spent ε = {epsilon} above its budget {plan.target_epsilon}.")
        return LedgerEntry(stage="training", mechanism=self.model_name, target="marginals", epsilon=epsilon,
                           delta=plan.delta, details=details)

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, n: int, conditions=None, seed: int | None = None, max_tries: int | None = None
               ) -> pd.DataFrame:
        """``n`` synthetic rows; every row satisfies all ``conditions`` (see :mod:`~.conditions`).

        The same ``seed`` (default: the training seed) gives the same rows. Raises
        :class:`~medsyn_tabular.data.conditions.ConditionError` for unknown columns/values or conditions
        too rare to meet within ``max_tries`` generated rows (default: 200 per row asked, at least
        200,000).
        """
        if self.model is None:
            raise RuntimeError("Fit the synthesizer (or load a fitted one) before sampling.")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"The number of rows must be a whole number of at least 1 (got {n!r}).")
        conds = parse_conditions(conditions, self._condition_columns(), self.dropped)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        steer = self._steering_condition(conds)
        rules = self.constraints.rejection_rules
        if not conds and not rules:
            return self._checked(self._finish(self._decode(self.model.generate(n, rng), rng)))
        self._check_reachable(conds)
        kept, tried = [], 0
        limit = max_tries if max_tries is not None else max(MIN_TRIES, MAX_TRIES_PER_ROW * n)
        have, batch = 0, max(2 * n, 1000)
        met_conditions = met_rules = 0
        last = None
        while have < n and tried < limit:
            rows = self._finish(self._decode(self.model.generate(batch, rng, condition=steer), rng))
            tried += batch
            by_conditions = rows_satisfying(rows, conds)
            by_rules = self.constraints.holds(rows)  # declared rules: by rejection (derived: computed)
            met_conditions += int(by_conditions.sum())
            met_rules += int(by_rules.sum())
            ok = rows[by_conditions & by_rules]
            kept.append(ok)
            have += len(ok)
            last = rows
            rate = max(have, 1) / tried
            batch = int(min(max(1000, 1.2 * (n - have) / rate), 100_000, max(1, limit - tried)))
        if have < n:
            if rules and met_rules < met_conditions or not conds:
                rule, share = self.constraints.worst_rule(last)
                on = ", ".join(map(repr, dict.fromkeys(rule.involved)))
                raise ConstraintError(
                    f"Only {have} of {tried:,} generated rows kept the declared rules (needed {n}); rule "
                    f"{rule.number} ({rule.describe()} on {on}) held in {share:.1%} of them. The model "
                    "rarely meets it: check the rule, train longer, or ask for fewer rows.")
            on = ", ".join(dict.fromkeys(repr(c.column) for c in conds))
            raise ConditionError(
                f"Only {have} of {tried:,} generated rows met the conditions on {on} (needed {n}). The "
                "condition is too rare for this model: relax it, ask for fewer rows, or train longer.")
        return self._checked(pd.concat(kept).iloc[:n].reset_index(drop=True))

    def _condition_columns(self) -> list[ColumnEncoding]:
        """The columns a condition may name: the modelled ones and the derived ones."""
        derived = [ColumnEncoding(name=c, kind=d["kind"], dtype=d["dtype"])
                   for c, d in self.derived_columns.items()]
        return list(self.transformer.columns) + derived

    def _finish(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Decoded rows with the derived columns computed, in the table's column order."""
        rows = rows.reset_index(drop=True)
        if not self.derived_columns:
            return rows
        dtypes = {c: d["dates"] for c, d in self.derived_columns.items()}
        rows = self.constraints.derive(rows, dtypes)
        for c, d in self.derived_columns.items():
            if d["kind"] == "integer" and d["dtype"].startswith("int") and not rows[c].isna().any():
                rows[c] = rows[c].astype(d["dtype"])
            elif d["kind"] == "continuous" and d["dtype"].startswith("float"):
                rows[c] = rows[c].astype(d["dtype"])
        return rows[[c for c in self.schema.names if c in rows.columns]]

    def _checked(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with the PHI actions enforced and checked
        (:func:`~medsyn_tabular.data.phi.enforce_phi_output`)."""
        from medsyn_tabular.data.phi import enforce_phi_output

        return enforce_phi_output(rows, self.phi_record)

    def _check_reachable(self, conds) -> None:
        """Range conditions outside the learned bounds of a column can never hold: say so at once."""
        by_name = {e.name: e for e in self.transformer.columns}
        for c in conds:
            enc = by_name.get(c.column)  # None: a derived column (no bounds of its own)
            if enc is None or not enc.is_numeric or c.op in ("==", "!="):
                continue
            value = c.value.value / 1e9 if isinstance(c.value, pd.Timestamp) else float(c.value)
            if (c.op in (">", ">=") and value > enc.high) or (c.op in ("<", "<=") and value < enc.low) \
                    or (c.op == ">" and value == enc.high) or (c.op == "<" and value == enc.low):
                # the bounds are not quoted: without DP they are the real table's minimum and maximum
                raise ConditionError(f"The condition on {c.column!r} cannot be met: it lies outside the "
                                     "range this model generates for the column.")

    def _steering_condition(self, conds):
        """For CTGAN, the rarest equality condition on a discrete column feeds the conditional vector; a
        model that takes conditions (ARGN) gets them all."""
        if self.spec.takes_conditions:
            return conds or None
        if not self.spec.steers_conditions:
            return None
        best, best_freq = None, 2.0
        for c in conds:
            if c.op != "==":
                continue
            try:
                col, slot = self.transformer.slot_of(c.column, c.value)
            except KeyError:
                continue
            freq = self.transformer.discrete_columns[col].slot_freq[slot]
            if freq < best_freq and self.transformer.discrete_columns[col].slots[slot] != OTHER:
                best, best_freq = (col, slot), freq
        return best

    def _decode(self, encoded: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        return self.transformer.inverse_transform(encoded, seed=int(rng.integers(2**62)))

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, name: str | None = None, overwrite: bool = False,
             register: bool = True, *, replace: bool | None = None, actor: str = "medsyn") -> Path:
        """Save as a folder (safetensors weights, JSON transformer/schema/config, ``model_card.json``),
        written atomically, and register it in the SQLite store. Default folder: MedSyn home ``models/``.

        ``name`` (default: the folder's name) must be a safe slug (:mod:`medsyn_core.names`). A name that
        is registered already, or an existing folder, is refused before anything is written unless
        ``overwrite`` (the folder) / ``replace`` (the registered name; default: ``overwrite``) is given;
        a replacement is audited as ``actor``."""
        from safetensors.torch import save_file

        from medsyn_core import model_store, names
        from medsyn_core.files import atomic_directory, atomic_write_json

        if self.model is None:
            raise RuntimeError("Nothing to save: fit the synthesizer first.")
        replace = overwrite if replace is None else replace
        name = name or (Path(path).name if path else f"{self.model_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        path = Path(path) if path else names.model_dir(name)
        if register:
            model_store.ensure_model_name_free(name, replace=replace)
        existed = path.exists()
        with atomic_directory(path, overwrite=overwrite) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_tensors().items()},
                      str(tmp / "weights.safetensors"))
            atomic_write_json(tmp / "config.json", {
                "format_version": FORMAT_VERSION, "model": self.model_name, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": self.seed, "hyperparameters": self.hyperparameters,
                "privacy": self.privacy.to_dict() if self.ledger is not None else None,
                # the user's declaration (schema/metadata file and PHI choices): public by definition
                "declaration": self.overrides, "phi_actions": self.phi_actions,
                "dropped": self.dropped, "derived_columns": self.derived_columns,
                "loss_history": self.released_loss_history()})
            if self.ledger is not None:
                self.ledger.save(tmp / "privacy_ledger.json")
            atomic_write_json(tmp / "transformer.json", self.transformer.to_dict())
            atomic_write_json(tmp / "schema.json", self.schema.to_dict())
            atomic_write_json(tmp / "model_card.json", {**self.card, "name": name})
        if register:
            from medsyn_core.storage import Store

            with Store() as store:
                dp_epsilon = self.ledger.total()[0] if self.ledger is not None else None
                try:
                    store.register_model(name, self.model_name, path.resolve(), {**self.card, "name": name},
                                         dp_epsilon=dp_epsilon, replace=replace, actor=actor)
                except names.NameTaken:  # taken meanwhile by another job: leave nothing half-registered
                    if not existed:
                        shutil.rmtree(path, ignore_errors=True)
                    raise
                store.append_event(actor, "tabular-model-saved", {"name": name, "model": self.model_name})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> TabularSynthesizer:
        """Load a folder written by :meth:`save` (weights via safetensors: no code runs on load)."""
        from safetensors.torch import load_file

        from medsyn_core.device import choose_device

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a saved tabular model (no config.json).")
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: model format {config.get('format_version')} is not supported.")
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in config["hyperparameters"].items()}
        privacy = config.get("privacy") or {}
        synth = cls(config["model"], config["epochs"], config["batch_size"], config["seed"], device=device,
                    schema=config.get("declaration"), phi_actions=config.get("phi_actions"), **privacy,
                    **hyper)
        if (path / "privacy_ledger.json").exists():
            from medsyn_core.privacy import PrivacyLedger

            synth.ledger = PrivacyLedger.load(path / "privacy_ledger.json")
        synth.transformer = TableTransformer.from_dict(json.loads((path / "transformer.json").read_text()))
        synth.schema = TableSchema.from_dict(json.loads((path / "schema.json").read_text()))
        synth.card = json.loads((path / "model_card.json").read_text())
        synth.phi_record, synth.dropped = synth.card.get("phi_handling", []), config["dropped"]
        synth.model = synth._build_model(choose_device(device))
        synth.model.load_state_tensors(load_file(str(path / "weights.safetensors")))
        synth.model.loss_history = config["loss_history"]
        synth.derived_columns = config.get("derived_columns") or {}
        declared = (config.get("declaration") or {}).get("constraints")
        if declared:
            synth.constraints = ConstraintSet.parse(declared, synth.schema.names + list(synth.dropped))
            synth._bind_constraints()
        return synth
