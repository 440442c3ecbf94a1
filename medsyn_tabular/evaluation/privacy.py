"""Privacy: can a real patient be found in, or learned from, the synthetic table?

Distances between rows are SDMetrics' DCR distance (a Gower distance): for a numeric or date column
``min(|a - b| / range, 1)`` with ``range`` the reference table's max - min, for a categorical column 0 if
equal else 1; a missing value is 0 away from another missing value and 1 away from any value; the row
distance is the mean over columns, so it lies in [0, 1].

* DCR: distance of each synthetic row to its closest real training row; SDMetrics'
  ``DCROverfittingProtection`` share of synthetic rows closer to the training rows than to the holdout
  rows, score ``min(2 * (1 - share), 1)``; ``DCRBaselineProtection`` score ``min(median DCR of synthetic /
  median DCR of uniformly random rows, 1)``.
* Nearest-neighbour distance ratio (NNDR): closest / second-closest training distance of each row.
* Exact copies: synthetic rows equal to a training row in every column.
* Membership inference (AUC of telling training rows from holdout rows): a distance attack (closer to a
  synthetic row = member) and a DOMIAS-style density-ratio attack ``log p_synth(x) - log p_ref(x)`` with
  Gaussian kernel densities, the reference density fitted on half the holdout.
* Attribute inference (anonymeter's method): knowing every other column of a target, guess its secret
  column from the closest synthetic row; risk = (attack success - control success) / (1 - control
  success), the control targets being holdout rows the generator never saw.
* k-anonymity and l-diversity of the synthetic release over chosen quasi-identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medsyn_tabular.evaluation.columns import DATETIME, NUMERIC

CHUNK_ROWS = 512
MIA_MAX_ROWS = 1000
ATTACK_MAX_ROWS = 500
BASELINE_MAX_ROWS = 2000
#: Distance-based measures use at most this many synthetic rows (a seeded random sample), like
#: SDMetrics' ``num_rows_subsample``; exact copies are always counted over all rows.
PRIVACY_MAX_ROWS = 5000
KDE_MAX_ROWS = 3000
NUMERIC_TOLERANCE = 0.05  # anonymeter: a numeric guess within 5% of the true value counts as correct


def _numbers(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
        out[values.isna().to_numpy()] = np.nan
        return out
    return values.to_numpy(dtype=float)


class GowerDistance:
    """SDMetrics' DCR row distance over ``columns``, with numeric ranges taken from ``reference``."""

    def __init__(self, reference: pd.DataFrame, kinds: dict[str, str], columns: list[str] | None = None):
        columns = list(columns if columns is not None else kinds)
        self.numeric, self.ranges, self.discrete = [], [], []
        for c in columns:
            if kinds[c] in (NUMERIC, DATETIME):
                values = _numbers(reference[c])
                span = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 0.0
                if span > 0:
                    self.numeric.append(c)
                    self.ranges.append(float(span))
                    continue
            self.discrete.append(c)  # categories, and numbers with zero range (equal or not)
        self.n_columns = len(columns)
        self._codes: dict[str, pd.Index] = {c: pd.Index([], dtype=object) for c in self.discrete}

    @staticmethod
    def _keys(values: pd.Series) -> np.ndarray:
        """Values as comparable strings: numbers via float (1 == 1.0), missing as one shared key."""
        if pd.api.types.is_datetime64_any_dtype(values):
            return _numbers(values).astype(str)
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            return values.to_numpy(dtype=float).astype(str)
        return values.astype(object).where(values.notna(), "\x00missing").astype(str).to_numpy()

    def register(self, *tables: pd.DataFrame) -> None:
        """Learn every category of the discrete columns (call with all tables before ``encode``)."""
        for t in tables:
            for c in self.discrete:
                known = self._codes[c]
                new = pd.Index(pd.unique(self._keys(t[c]))).difference(known, sort=False)
                if len(new):
                    self._codes[c] = known.append(new)

    def encode(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(numbers / range, float32 n x p_num, NaN kept; one-hot of discrete values, float32 n x K)."""
        self.register(df)
        num = (np.column_stack([_numbers(df[c]) / r for c, r in zip(self.numeric, self.ranges, strict=True)])
               if self.numeric else np.zeros((len(df), 0)))
        sizes = [len(self._codes[c]) for c in self.discrete]
        onehot = np.zeros((len(df), sum(sizes)), dtype=np.float32)
        offset = 0
        rows = np.arange(len(df))
        for c, size in zip(self.discrete, sizes, strict=True):
            onehot[rows, offset + self._codes[c].get_indexer(self._keys(df[c]))] = 1.0
            offset += size
        return num.astype(np.float32), onehot

    def pairwise(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Distance matrix (len(a) x len(b), float32) between two encoded blocks."""
        (num_a, oh_a), (num_b, oh_b) = a, b
        dist = np.full((len(num_a), len(num_b)), float(len(self.discrete)), dtype=np.float32)
        if self.discrete:
            dist -= oh_a @ oh_b.T  # mismatches = discrete columns - matches
        buf = np.empty_like(dist)
        for j in range(num_a.shape[1]):
            np.subtract(num_a[:, j, None], num_b[None, :, j], out=buf)
            np.abs(buf, out=buf)
            if self._may_exceed_range(num_a[:, j], num_b[:, j]):
                np.minimum(buf, 1.0, out=buf)
            nan_a, nan_b = np.isnan(num_a[:, j]), np.isnan(num_b[:, j])
            if nan_a.any() or nan_b.any():
                buf[nan_a, :] = 1.0
                buf[:, nan_b] = 1.0
                buf[np.ix_(nan_a, nan_b)] = 0.0
            dist += buf
        dist /= self.n_columns
        return dist

    @staticmethod
    def _may_exceed_range(a: np.ndarray, b: np.ndarray) -> bool:
        both = np.r_[a[~np.isnan(a)], b[~np.isnan(b)]]
        return both.size > 0 and float(both.max() - both.min()) > 1.0

    def nearest(self, a: pd.DataFrame, b: pd.DataFrame, second: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """For rows of ``a``: closest and (optionally) second-closest distance to ``b``; for rows of ``b``:
        closest distance to ``a``. Computed in chunks of ``CHUNK_ROWS`` rows (memory ~ chunk x len(b))."""
        self.register(a, b)
        enc_a, enc_b = self.encode(a), self.encode(b)
        row_min = np.empty(len(a))
        row_second = np.full(len(a), np.nan) if second else None
        col_min = np.full(len(b), np.inf)
        for start in range(0, len(a), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(a))
            dist = self.pairwise((enc_a[0][start:stop], enc_a[1][start:stop]), enc_b)
            if second and len(b) >= 2:
                two = np.partition(dist, 1, axis=1)[:, :2]
                row_min[start:stop], row_second[start:stop] = two[:, 0], two[:, 1]
            else:
                row_min[start:stop] = dist.min(axis=1)
            np.minimum(col_min, dist.min(axis=0), out=col_min)
        return row_min, row_second, col_min

    def argmin(self, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
        """Index of the closest row of ``b`` for each row of ``a``."""
        self.register(a, b)
        enc_a, enc_b = self.encode(a), self.encode(b)
        out = np.empty(len(a), dtype=np.int64)
        for start in range(0, len(a), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(a))
            out[start:stop] = self.pairwise((enc_a[0][start:stop], enc_a[1][start:stop]), enc_b).argmin(1)
        return out


def row_keys(df: pd.DataFrame) -> pd.Series:
    """One hash per row, equal for rows equal in every column (1 == 1.0; missing == missing)."""
    norm = {}
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_numeric_dtype(col):
            norm[c] = pd.Series(_numbers(col), index=df.index)
        else:
            norm[c] = col.map(lambda v: "\x00missing" if pd.isna(v) else str(v))
    return pd.util.hash_pandas_object(pd.DataFrame(norm), index=False)


def exact_copy_share(synthetic: pd.DataFrame, real: pd.DataFrame) -> float:
    """Share of synthetic rows that equal some real row in every column."""
    keys = set(row_keys(real).tolist())
    return float(row_keys(synthetic).isin(keys).mean()) if len(synthetic) else float("nan")


def k_anonymity(df: pd.DataFrame, quasi_identifiers: list[str]) -> int:
    """Smallest number of rows sharing one combination of quasi-identifier values (missing = a value)."""
    if not quasi_identifiers or df.empty:
        raise ValueError("k-anonymity needs at least one quasi-identifier column and one row.")
    return int(df.groupby(quasi_identifiers, dropna=False).size().min())


def l_diversity(df: pd.DataFrame, quasi_identifiers: list[str], sensitive: str) -> int:
    """Smallest number of distinct sensitive values within one quasi-identifier group (distinct l)."""
    if not quasi_identifiers or df.empty:
        raise ValueError("l-diversity needs at least one quasi-identifier column and one row.")
    return int(df.groupby(quasi_identifiers, dropna=False)[sensitive].nunique(dropna=False).min())


_QI_PATTERN = re.compile(r"^(age|sex|gender|zip|zipcode|zip_code|postcode|postal_code|postal)$|zip|postcode",
                         re.IGNORECASE)


def default_quasi_identifiers(columns: list[str]) -> list[str]:
    """Columns named like age, sex/gender or a ZIP/post code (the usual linkage keys)."""
    return [c for c in columns if _QI_PATTERN.search(str(c))]


def _auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    s = np.r_[member_scores, nonmember_scores]
    if not np.isfinite(s).all():
        s = np.nan_to_num(s, nan=np.nanmin(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.0,
                          neginf=-1e300, posinf=1e300)
    return float(roc_auc_score(y, s))


def _dense_encoding(train: pd.DataFrame, tables: list[pd.DataFrame],
                    kinds: dict[str, str]) -> list[np.ndarray]:
    """Standardised numbers (median-imputed) and one-hot categories, reduced by PCA fitted on train."""
    from sklearn.decomposition import PCA

    blocks_per_table: list[list[np.ndarray]] = [[] for _ in tables]
    for c, k in kinds.items():
        if k in (NUMERIC, DATETIME):
            ref = _numbers(train[c])
            med = np.nanmedian(ref) if np.isfinite(ref).any() else 0.0
            sd = np.nanstd(ref) or 1.0
            for i, t in enumerate(tables):
                v = _numbers(t[c])
                blocks_per_table[i].append(((np.where(np.isnan(v), med, v) - med) / sd)[:, None])
        else:
            cats = pd.Index(train[c].astype(str).unique())
            for i, t in enumerate(tables):
                codes = cats.get_indexer(t[c].astype(str))
                oh = np.zeros((len(t), len(cats)))
                ok = codes >= 0
                oh[np.arange(len(t))[ok], codes[ok]] = 1.0
                blocks_per_table[i].append(oh)
    mats = [np.hstack(b) for b in blocks_per_table]
    n_comp = int(min(5, mats[0].shape[1], len(train) - 1))
    pca = PCA(n_components=n_comp, random_state=0).fit(mats[0])
    return [pca.transform(m) for m in mats]


def domias_auc(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str],
               seed: int = 0) -> float:
    """DOMIAS-style membership AUC: score ``log p_synth(x) - log p_ref(x)`` with Gaussian KDEs.

    Half of the holdout is the reference sample for ``p_ref``; the other half are the non-members, an
    equal number of training rows the members. 0.5 = no better than chance.
    """
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(seed)
    hold_idx = rng.permutation(len(holdout))
    ref_idx, non_idx = hold_idx[: len(hold_idx) // 2], hold_idx[len(hold_idx) // 2:]
    n = min(len(non_idx), len(train), MIA_MAX_ROWS)
    mem_idx = rng.choice(len(train), n, replace=False)
    non_idx = non_idx[:n]
    syn = synthetic.iloc[rng.choice(len(synthetic), min(len(synthetic), KDE_MAX_ROWS), replace=False)]
    z_syn, z_ref, z_mem, z_non = _dense_encoding(
        train, [syn, holdout.iloc[ref_idx], train.iloc[mem_idx], holdout.iloc[non_idx]], kinds)[0:4]
    try:
        kde_syn, kde_ref = gaussian_kde(z_syn.T), gaussian_kde(z_ref.T)
    except np.linalg.LinAlgError:  # degenerate (e.g. constant) data: fall back to a diagonal jitter
        jitter = rng.normal(0, 1e-3, z_syn.shape), rng.normal(0, 1e-3, z_ref.shape)
        kde_syn, kde_ref = gaussian_kde((z_syn + jitter[0]).T), gaussian_kde((z_ref + jitter[1]).T)

    def score(z):
        return kde_syn.logpdf(z.T) - kde_ref.logpdf(z.T)

    return _auc(score(z_mem), score(z_non))


def attribute_inference(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                        kinds: dict[str, str], secret: str, seed: int = 0) -> dict:
    """Anonymeter-style inference attack on ``secret`` knowing all other columns.

    Returns attack, control and random-guess success rates and the risk
    ``(attack - control) / (1 - control)`` clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    aux = [c for c in kinds if c != secret]
    n = min(ATTACK_MAX_ROWS, len(train), len(holdout))
    targets = train.iloc[rng.choice(len(train), n, replace=False)]
    controls = holdout.iloc[rng.choice(len(holdout), n, replace=False)]
    targets, controls = targets[targets[secret].notna()], controls[controls[secret].notna()]
    syn_secret = synthetic[secret].to_numpy()
    numeric = kinds[secret] in (NUMERIC, DATETIME)

    def correct(guesses: np.ndarray, truth: pd.Series) -> np.ndarray:
        if numeric:
            g, t = _numbers(pd.Series(guesses)), _numbers(truth)
            return np.abs(g - t) <= NUMERIC_TOLERANCE * np.abs(t)
        return np.array([pd.notna(x) and x == y for x, y in zip(guesses, truth, strict=True)])

    def success(rows: pd.DataFrame) -> float:
        if rows.empty:
            return float("nan")
        if aux:
            idx = GowerDistance(train, kinds, aux).argmin(rows[aux], synthetic[aux])
            guesses = syn_secret[idx]
        else:
            guesses = rng.choice(syn_secret, len(rows))
        return float(correct(guesses, rows[secret]).mean())

    attack, control = success(targets), success(controls)
    baseline = float(correct(rng.choice(syn_secret, len(targets)), targets[secret]).mean()) \
        if len(targets) else float("nan")
    risk = low = float("nan")
    if np.isfinite(attack) and np.isfinite(control):
        risk = 0.0 if control >= 1 else float(np.clip((attack - control) / (1 - control), 0, 1))
        # Lower end of an approximate 95% interval (two independent proportions): small samples are noisy.
        noise = np.sqrt(attack * (1 - attack) / len(targets) + control * (1 - control) / len(controls))
        low = 0.0 if control >= 1 else float(np.clip((attack - control - 1.96 * noise) / (1 - control), 0, 1))
    return {"secret": secret, "attack rate": attack, "control rate": control, "random-guess rate": baseline,
            "risk": risk, "risk, 95% lower bound": low, "targets": len(targets)}


def _random_table(train: pd.DataFrame, kinds: dict[str, str], n: int, rng) -> pd.DataFrame:
    """Rows drawn uniformly at random within the training ranges / categories (DCR baseline)."""
    out = {}
    for c, k in kinds.items():
        if k in (NUMERIC, DATETIME):
            v = _numbers(train[c])
            lo, hi = (np.nanmin(v), np.nanmax(v)) if np.isfinite(v).any() else (0.0, 0.0)
            draw = rng.uniform(lo, hi, n)
            out[c] = pd.to_datetime(draw.astype("int64")) if k == DATETIME else draw
        else:
            cats = train[c].dropna().unique()
            out[c] = rng.choice(cats, n) if len(cats) else np.full(n, np.nan)
    return pd.DataFrame(out)


@dataclass
class PrivacyResult:
    """All privacy numbers; arrays are kept for the DCR histograms."""

    exact_copies_train: float
    exact_copies_holdout: float | None
    holdout_copies_of_train: float | None
    dcr_synthetic_train: np.ndarray
    dcr_synthetic_holdout: np.ndarray | None
    dcr_holdout_train: np.ndarray | None
    share_closer_to_train: float | None
    dcr_overfitting_score: float | None
    dcr_baseline_score: float
    median_dcr_random: float
    nndr_synthetic: float
    nndr_holdout: float | None
    mia_distance_auc: float | None
    mia_domias_auc: float | None
    attribute_inference: dict | None
    quasi_identifiers: list[str]
    k_anonymity: int | None
    l_diversity: int | None
    small_group_share: float | None
    sensitive: str | None
    notes: list[str] = field(default_factory=list)
    n_synthetic: int = 0  # all synthetic rows (the distance measures may use a sample)


def evaluate_privacy(train: pd.DataFrame, holdout: pd.DataFrame | None, synthetic: pd.DataFrame,
                     kinds: dict[str, str], *, quasi_identifiers: list[str] | None = None,
                     sensitive: str | None = None, seed: int = 0) -> PrivacyResult:
    """All privacy measures of ``synthetic`` against the real ``train`` rows (and ``holdout`` if given)."""
    rng = np.random.default_rng(seed)
    columns = list(kinds)
    notes = []
    copies_train = exact_copy_share(synthetic, train)
    all_synthetic = synthetic
    if len(synthetic) > PRIVACY_MAX_ROWS:
        synthetic = synthetic.iloc[np.sort(rng.choice(len(synthetic), PRIVACY_MAX_ROWS, replace=False))]
        notes.append(f"Distance-based privacy measures used a random {PRIVACY_MAX_ROWS:,} of the "
                     f"{len(all_synthetic):,} synthetic rows; exact copies were counted over all rows.")
    dist_train = GowerDistance(train, kinds)
    dcr_st, second_st, dcr_train_syn = dist_train.nearest(synthetic, train, second=True)
    nndr_syn = float(np.nanmedian(_ratio(dcr_st, second_st)))

    copies_holdout = holdout_copies = share = overfit = nndr_hold = None
    dcr_sh = dcr_ht = None
    mia = domias = attr = None
    if holdout is not None:
        copies_holdout = exact_copy_share(all_synthetic, holdout)
        holdout_copies = exact_copy_share(holdout, train)
        dcr_sh, _, _ = GowerDistance(holdout, kinds).nearest(synthetic, holdout)
        share = float(np.mean(dcr_st < dcr_sh))
        overfit = float(min((1.0 - share) * 2.0, 1.0))
        dcr_ht, second_ht, _ = dist_train.nearest(holdout, train, second=True)
        nndr_hold = float(np.nanmedian(_ratio(dcr_ht, second_ht)))
        n = min(len(train), len(holdout), MIA_MAX_ROWS)
        d_mem = dcr_train_syn[rng.choice(len(train), n, replace=False)]
        nonmembers = holdout.iloc[rng.choice(len(holdout), n, replace=False)]
        _, _, d_non = dist_train.nearest(synthetic, nonmembers)
        mia = _auc(-d_mem, -d_non)
        if len(holdout) >= 20:
            domias = domias_auc(train, holdout, synthetic, kinds, seed)
        else:
            notes.append("The density-ratio membership attack needs at least 20 holdout rows.")
        secret = sensitive or None
        if secret is not None and len(columns) >= 2:
            attr = attribute_inference(train, holdout, synthetic, kinds, secret, seed)
    else:
        notes.append("No holdout was given: the comparisons that need real rows the generator never saw "
                     "(DCR share, membership and attribute inference) were not computed.")

    rand = _random_table(train, kinds, min(len(synthetic), BASELINE_MAX_ROWS), rng)
    dcr_rand, _, _ = dist_train.nearest(rand, train)
    median_rand = float(np.median(dcr_rand))
    baseline = float(min(np.median(dcr_st) / median_rand, 1.0)) if median_rand > 0 else float("nan")

    qis = [c for c in (quasi_identifiers if quasi_identifiers is not None
                       else default_quasi_identifiers(columns)) if c in columns]
    unknown = [c for c in (quasi_identifiers or []) if c not in columns]
    if unknown:
        raise ValueError(f"Quasi-identifiers {unknown} are not columns of the table.")
    k = l_div = small = None
    if qis:
        k = k_anonymity(all_synthetic, qis)
        sizes = all_synthetic.groupby(qis, dropna=False)[qis[0]].transform("size")
        small = float((sizes < 5).mean())
        if sensitive and sensitive not in qis:
            l_div = l_diversity(all_synthetic, qis, sensitive)
    else:
        notes.append("No quasi-identifiers were chosen or found (age, sex, ZIP-like columns): "
                     "k-anonymity and l-diversity were not computed.")
    return PrivacyResult(copies_train, copies_holdout, holdout_copies, dcr_st, dcr_sh, dcr_ht, share,
                         overfit, baseline, median_rand, nndr_syn, nndr_hold, mia, domias, attr, qis, k,
                         l_div, small, sensitive, notes, len(all_synthetic))


def _ratio(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(second > 0, first / second, 0.0)
    return np.where(first == 0, 0.0, r)
