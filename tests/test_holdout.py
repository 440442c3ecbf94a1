"""The holdout kept back from training (issue 19): stratified, deterministic, and the same rows wherever
the split is made again."""

import pytest

from medsyn_tabular.data.datasets import load_heart_cleveland
from medsyn_tabular.data.holdout import HoldoutSpec, apply_spec, split_holdout


def test_a_stratified_twenty_percent_holdout_that_is_the_same_every_time():
    df = load_heart_cleveland()
    train, holdout, spec = split_holdout(df, stratify="num")
    assert (spec.n_train, spec.n_holdout, spec.stratify) == (242, 61, "num") == (len(train), len(holdout),
                                                                                   "num")
    assert set(train.index).isdisjoint(holdout.index) and len(set(train.index) | set(holdout.index)) == 303
    shares = df["num"].value_counts(normalize=True)
    held = holdout["num"].value_counts(normalize=True)
    assert (held - shares).abs().max() < 0.03  # each outcome as common as in the whole table
    again_train, again_holdout = apply_spec(df, spec.to_dict())
    assert again_holdout.index.tolist() == holdout.index.tolist()


def test_a_column_with_many_values_is_not_used_to_stratify_and_another_table_is_refused():
    df = load_heart_cleveland()
    _, _, spec = split_holdout(df, stratify="chol")
    assert spec.stratify is None
    with pytest.raises(ValueError, match="not the one"):
        apply_spec(df.iloc[:250], HoldoutSpec(0.2, "num", 0, 242, 61))
    with pytest.raises(ValueError, match="too few"):
        split_holdout(df.iloc[:30])
    assert apply_spec(df, None) == (df, None)
