"""The holdout: real rows kept back from training, so that every report can test membership inference
and distance to closest record against patients the generator never saw.

:func:`split_holdout` is deterministic: the same table, share, stratification column and seed always give
the same split, so the training job (which reads the saved upload) and the page (which holds the table in
memory) agree on which rows were held out without anyone writing the held-out rows anywhere else. The
holdout therefore lives exactly as long as the uploaded table (deleted with the job's upload unless it is
kept, never in a model folder). A :class:`HoldoutSpec` (share, column, seed, counts: no values) travels with
the job and the model card.

Under differential privacy the guarantee covers the training rows; the held-out rows are never used to
train, and only the researcher who holds the table sees the numbers measured on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

DEFAULT_SHARE = 0.2
#: A column is used to stratify when it has at most this many values and each appears at least twice.
MAX_STRATA = 20
MIN_HOLDOUT = 10


@dataclass(frozen=True)
class HoldoutSpec:
    """How a table was split (no values): share held out, stratification column (None: random), seed,
    and the resulting row counts."""

    share: float = DEFAULT_SHARE
    stratify: str | None = None
    seed: int = 0
    n_train: int | None = None
    n_holdout: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> HoldoutSpec | None:
        if not data:
            return None
        return cls(**{k: data.get(k) for k in ("share", "stratify", "seed", "n_train", "n_holdout")
                      if k in data})


def _strata(df: pd.DataFrame, column: str | None) -> pd.Series | None:
    if column is None or column not in df.columns:
        return None
    labels = df[column].astype(object).where(df[column].notna(), "(missing)").astype(str)
    counts = labels.value_counts()
    if len(counts) > MAX_STRATA or counts.min() < 2:
        return None
    return labels


def split_holdout(df: pd.DataFrame, share: float = DEFAULT_SHARE, stratify: str | None = None,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, HoldoutSpec]:
    """``(train, holdout, spec)``: ``share`` of the rows kept back, stratified by ``stratify`` when that
    column has few values, each at least twice (else a plain random split). Row order and index are kept.
    Raises ValueError when the share is out of range or leaves fewer than 10 rows on either side."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"The holdout share must be between 0 and 1 (got {share}); 0.2 keeps back 20 %.")
    n_holdout = int(round(len(df) * share))
    if n_holdout < MIN_HOLDOUT or len(df) - n_holdout < MIN_HOLDOUT:
        raise ValueError(f"A {share:.0%} holdout of {len(df)} rows leaves too few rows on one side (at least "
                         f"{MIN_HOLDOUT} each): use more rows or turn the holdout off.")
    from sklearn.model_selection import train_test_split

    labels = _strata(df, stratify)
    positions = np.arange(len(df))
    try:
        train_pos, holdout_pos = train_test_split(positions, test_size=n_holdout, random_state=seed,
                                                  stratify=labels.to_numpy() if labels is not None else None)
    except ValueError:  # e.g. more strata than holdout rows: fall back to a random split
        labels = None
        train_pos, holdout_pos = train_test_split(positions, test_size=n_holdout, random_state=seed)
    train_pos, holdout_pos = np.sort(train_pos), np.sort(holdout_pos)
    spec = HoldoutSpec(float(share), stratify if labels is not None else None, int(seed), len(train_pos),
                       len(holdout_pos))
    return df.iloc[train_pos], df.iloc[holdout_pos], spec


def apply_spec(df: pd.DataFrame, spec: HoldoutSpec | dict | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(train, holdout)`` of ``df`` split as ``spec`` says (``(df, None)`` without a spec); raises
    ValueError when the table is not the one the spec was made on (other row counts)."""
    spec = HoldoutSpec.from_dict(spec) if isinstance(spec, dict) else spec
    if spec is None:
        return df, None
    train, holdout, again = split_holdout(df, spec.share, spec.stratify, spec.seed)
    if spec.n_holdout is not None and (again.n_holdout, again.stratify) != (spec.n_holdout, spec.stratify):
        raise ValueError("This table is not the one the holdout was drawn from (other rows); evaluate with "
                         "the table the model was trained on.")
    return train, holdout
