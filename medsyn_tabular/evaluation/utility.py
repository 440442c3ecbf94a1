"""Utility: does a model trained on the synthetic table work on real patients?

Train-on-synthetic / test-on-real (TSTR) against train-on-real / test-on-real (TRTR), both tested on the
same real rows the generator never saw (the holdout). Classification targets (categorical) report ROC AUC
(one-vs-rest macro for more than two classes), accuracy and F1 (macro for more than two classes);
numeric targets report R² and mean absolute error. Feature-importance agreement is Spearman's rank
correlation between the permutation importances of the gradient-boosting models trained on real vs
synthetic rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from medsyn_tabular.evaluation.columns import CATEGORICAL, DATETIME, NUMERIC

IMPORTANCE_MAX_ROWS = 1000
IMPORTANCE_REPEATS = 3


def features(df: pd.DataFrame, kinds: dict[str, str], target: str) -> pd.DataFrame:
    """Model inputs: numbers as floats (dates as days), categories as strings (missing stays missing)."""
    out = {}
    for c, k in kinds.items():
        if c == target:
            continue
        col = df[c]
        if k == DATETIME:
            out[c] = (col.to_numpy(dtype="datetime64[ns]").astype("int64") / 8.64e13)
            out[c] = pd.Series(out[c], index=df.index).where(col.notna())
        elif k == NUMERIC:
            out[c] = col.astype(float)
        else:
            out[c] = col.map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(out, index=df.index)


def labels(values: pd.Series) -> pd.Series:
    """Class labels as strings (so 1 and 1.0 are the same class)."""
    def norm(v):
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return values.map(norm)


def _preprocessor(kinds: dict[str, str], target: str) -> ColumnTransformer:
    num = [c for c, k in kinds.items() if c != target and k in (NUMERIC, DATETIME)]
    cat = [c for c, k in kinds.items() if c != target and k == CATEGORICAL]
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
         num),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat),
    ])


def make_models(task: str, kinds: dict[str, str], target: str, seed: int = 0) -> dict:
    """The scikit-learn models compared (fresh, unfitted pipelines)."""
    if task == "classification":
        return {
            "logistic regression": make_pipeline(_preprocessor(kinds, target),
                                                 LogisticRegression(max_iter=2000)),
            "gradient boosting": make_pipeline(_preprocessor(kinds, target),
                                               HistGradientBoostingClassifier(random_state=seed)),
        }
    return {
        "ridge regression": make_pipeline(_preprocessor(kinds, target), Ridge()),
        "gradient boosting": make_pipeline(_preprocessor(kinds, target),
                                           HistGradientBoostingRegressor(random_state=seed)),
    }


def classification_scores(model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """AUC, accuracy and F1 of a fitted classifier on (x, y)."""
    pred = model.predict(x)
    classes = list(model.classes_)
    present = sorted(set(y))
    out = {"accuracy": float(accuracy_score(y, pred))}
    if len(present) == 2 and len(classes) >= 2:
        positive = present[1]
        out["F1"] = float(f1_score(y, pred, pos_label=positive, average="binary", zero_division=0))
    else:
        out["F1"] = float(f1_score(y, pred, average="macro", zero_division=0))
    auc = float("nan")
    if len(present) >= 2 and len(classes) >= 2:
        proba = pd.DataFrame(model.predict_proba(x), columns=classes).reindex(columns=present, fill_value=0.0)
        if len(present) == 2:
            auc = float(roc_auc_score(y == present[1], proba[present[1]]))
        else:
            p = proba.to_numpy()
            p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
            auc = float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=present))
    out["AUC"] = auc
    return out


def regression_scores(model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    pred = model.predict(x)
    return {"R2": float(r2_score(y, pred)), "MAE": float(mean_absolute_error(y, pred))}


def permutation_importances(model, x: pd.DataFrame, y: pd.Series, repeats: int, seed: int) -> np.ndarray:
    """Mean drop in accuracy (classifier) or R² (regressor) when each input column is shuffled.

    Same definition as ``sklearn.inspection.permutation_importance`` with the model's default score,
    computed with one stacked prediction (all shuffled copies at once) because the preprocessing
    pipeline's per-call overhead dominates on small tables.
    """
    rng = np.random.default_rng(seed)
    blocks = []
    for c in x.columns:
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[c] = x[c].to_numpy()[rng.permutation(len(x))]
            blocks.append(shuffled)
    pred = model.predict(pd.concat([x, *blocks], ignore_index=True))
    n = len(x)
    y = np.asarray(y)

    def score(p):
        return float(np.mean(p == y)) if is_classifier(model) else float(r2_score(y, p))

    base = score(pred[:n])
    drops = [base - score(pred[n * (i + 1): n * (i + 2)]) for i in range(len(blocks))]
    return np.asarray(drops).reshape(len(x.columns), repeats).mean(axis=1)


@dataclass
class UtilityResult:
    """TSTR vs TRTR scores per model (``rows``), the headline comparison and importance agreement."""

    task: str
    target: str
    headline_metric: str
    rows: list[dict] = field(default_factory=list)
    importance_agreement: float = float("nan")
    importances: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fitted: dict = field(default_factory=dict)  # model name -> (real model, synthetic model or None)

    def best(self, which: str) -> float:
        vals = [r[f"{which} {self.headline_metric}"] for r in self.rows]
        vals = [v for v in vals if v is not None and np.isfinite(v)]
        return max(vals) if vals else float("nan")


def evaluate_utility(train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame,
                     kinds: dict[str, str], target: str, seed: int = 0) -> UtilityResult:
    """Fit each model on real ``train`` rows and on ``synthetic`` rows, score both on real ``test`` rows."""
    task = "classification" if kinds[target] == CATEGORICAL else "regression"
    score = classification_scores if task == "classification" else regression_scores
    result = UtilityResult(task, target, "AUC" if task == "classification" else "R2")

    def xy(df):
        df = df[df[target].notna()]
        y = labels(df[target]) if task == "classification" else df[target].astype(float)
        return features(df, kinds, target), y

    x_tr, y_tr = xy(train)
    x_te, y_te = xy(test)
    x_syn, y_syn = xy(synthetic)
    if len(x_te) < 2 or y_te.nunique() < 2 and task == "classification":
        raise ValueError(f"The real test rows have fewer than two values of {target!r}; "
                         "give a larger or more varied holdout.")
    syn_ok = len(x_syn) >= 2 and y_syn.nunique() >= 2
    if not syn_ok:
        result.notes.append(f"The synthetic table has a single value of {target!r}: no model can be trained "
                            "on it, so train-on-synthetic scores are missing (this is a utility failure).")
    for name, model in make_models(task, kinds, target, seed).items():
        real_model = model.fit(x_tr, y_tr)
        real_scores = score(real_model, x_te, y_te)
        syn_model, syn_scores = None, dict.fromkeys(real_scores, float("nan"))
        if syn_ok:
            syn_model = make_models(task, kinds, target, seed)[name].fit(x_syn, y_syn)
            syn_scores = score(syn_model, x_te, y_te)
        row = {"model": name}
        for k in real_scores:
            row[f"real {k}"] = real_scores[k]
            row[f"synthetic {k}"] = syn_scores[k]
        result.rows.append(row)
        result.fitted[name] = (real_model, syn_model)

    booster_real, booster_syn = result.fitted["gradient boosting"]
    if booster_syn is not None and x_te.shape[1] >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(x_te), min(len(x_te), IMPORTANCE_MAX_ROWS), replace=False)
        xs, ys = x_te.iloc[idx], y_te.iloc[idx]
        imp_real = permutation_importances(booster_real, xs, ys, IMPORTANCE_REPEATS, seed)
        imp_syn = permutation_importances(booster_syn, xs, ys, IMPORTANCE_REPEATS, seed)
        rho = spearmanr(imp_real, imp_syn).statistic
        result.importance_agreement = float(rho) if np.isfinite(rho) else float("nan")
        result.importances = [{"feature": f, "importance (real model)": float(a),
                               "importance (synthetic model)": float(b)}
                              for f, a, b in sorted(zip(x_te.columns, imp_real, imp_syn, strict=True),
                                                    key=lambda t: -t[1])]
    return result
