"""Discrete codecs: every variable of the EHR generator is a token from a fixed, public set.

Numbers and times are cut into **public bins** whose edges are constants of MedSyn (never read from the
data), and decoded uniformly inside the bin (log-uniformly for times), or, for a model trained without
differential privacy, from the quantiles of the real values that fell in the bin
(:meth:`NumericCodec.learn`: exact values that recur, such as 15-minute visits, come back exactly; bins
holding fewer than :data:`MIN_VALUES_PER_BIN` real values keep the uniform draw):

* :class:`TimeCodec`: seconds; 0, [1 s, 60 s), then 4 bins per octave up to about 220 years (signed for
  offsets that may be negative, with a token for "missing" when the time may be absent);
* :class:`CountCodec`: whole numbers; 0 to 20 exactly, then bins 25 % wide;
* :class:`ValueCodec`: real numbers; 0, and 6 bins per octave (12 % wide) for magnitudes 2^-10 to 2^30 of
  either sign;
* :class:`YearCodec`: years of birth in a declared (or, without DP, observed) range;
* :class:`VocabCodec`: labels (codes, classes, categories) with two reserved tokens: ``<other>`` (a value
  outside the vocabulary: learned from, never generated) and ``<missing>``;
* :class:`MixedCodec`: a column holding numbers or text (an observation's VALUE).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

OTHER, MISSING = "<other>", "<missing>"
#: A bin's values are decoded from the real values' quantiles only when the bin holds at least this many
#: (fewer would hand back nearly exact real values).
MIN_VALUES_PER_BIN = 10
QUANTILES = 16
YEAR_SECONDS = 365.2425 * 86400

_TIME_EDGES = np.concatenate([[0.0, 1.0], 60.0 * 2.0 ** (np.arange(0, 109) / 4.0)])  # 0 .. ~220 years
_VALUE_EDGES = 2.0 ** (np.arange(-10 * 6, 30 * 6 + 1) / 6.0)  # magnitudes 2^-10 .. 2^30, 12 % wide
_COUNT_EDGES = np.unique(np.concatenate([np.arange(0, 21), np.ceil(21 * 1.25 ** np.arange(0, 40))]))


def code_key(value: Any) -> str:
    """The text of a label: 3, 3.0 and '3' are one code; missing values are None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()


class Codec:
    """Base: ``size`` tokens, ``encode`` values -> tokens (-1: not applicable), ``decode`` tokens ->
    values, ``forbidden`` tokens (never sampled)."""

    kind = "codec"

    @property
    def size(self) -> int:
        raise NotImplementedError

    def forbidden(self) -> list[int]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Codec:
        kind = data["kind"]
        if kind == "time":
            return TimeCodec(data["signed"], data["nullable"])._load_quantiles(data)
        if kind == "count":
            return CountCodec()._load_quantiles(data)
        if kind == "value":
            return ValueCodec(data["nullable"], data["integer"], data.get("low"),
                              data.get("high"))._load_quantiles(data)
        if kind == "year":
            return YearCodec(data["first"], data["last"])
        if kind == "vocab":
            return VocabCodec(data["values"], data["nullable"])
        if kind == "mixed":
            return MixedCodec(VocabCodec(data["text"], False),
                              ValueCodec(True, False)._load_quantiles(data.get("numbers") or {}))
        if kind == "age":
            return AgeCodec()
        raise ValueError(f"unknown codec kind {kind!r}")


class NumericCodec(Codec):
    """A codec of numbers in bins, with optional per-bin quantiles of real values (no DP only)."""

    def __init__(self):
        self.quantiles: dict[int, np.ndarray] = {}

    def learn(self, values, tokens) -> None:
        """Keep the quantiles of the real ``values`` of every bin that holds at least
        :data:`MIN_VALUES_PER_BIN` of them (never called under differential privacy)."""
        x = np.asarray(values, dtype=float)
        t = np.asarray(tokens, dtype=np.int64)
        ok = np.isfinite(x) & (t >= 0)
        self.quantiles = {}
        for token in np.unique(t[ok]):
            inside = x[ok & (t == token)]
            if inside.size >= MIN_VALUES_PER_BIN:
                self.quantiles[int(token)] = np.quantile(inside, np.linspace(0, 1, QUANTILES + 1))

    def _from_quantiles(self, tokens: np.ndarray, value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.quantiles:
            return value
        out = np.array(value, dtype=float, copy=True)
        u = rng.random(tokens.shape) * QUANTILES
        for token, q in self.quantiles.items():
            hit = tokens == token
            if hit.any():
                out[hit] = np.interp(u[hit], np.arange(QUANTILES + 1), q)
        return out

    def _quantile_dict(self) -> dict[str, list[float]]:
        return {str(k): [float(x) for x in v] for k, v in self.quantiles.items()}

    def _load_quantiles(self, data: dict[str, Any]) -> NumericCodec:
        saved = data.get("quantiles") or {}
        self.quantiles = {int(k): np.asarray(v, dtype=float) for k, v in saved.items()}
        return self


class TimeCodec(NumericCodec):
    """Durations or offsets in seconds (see the module docstring)."""

    kind = "time"

    def __init__(self, signed: bool = False, nullable: bool = False):
        super().__init__()
        self.signed, self.nullable = bool(signed), bool(nullable)
        self.n_pos = len(_TIME_EDGES)  # token i covers [edge i, edge i+1); the last is open-ended

    @property
    def size(self) -> int:
        return self.n_pos + (self.n_pos - 1 if self.signed else 0) + (1 if self.nullable else 0)

    @property
    def missing_token(self) -> int:
        return self.size - 1 if self.nullable else -1

    def encode(self, seconds) -> np.ndarray:
        x = np.asarray(seconds, dtype=float)
        missing = np.isnan(x)
        mag = np.abs(np.where(missing, 0.0, x))
        idx = np.clip(np.searchsorted(_TIME_EDGES, mag, side="right") - 1, 0, self.n_pos - 1)
        if self.signed:
            idx = np.where((x < 0) & (idx > 0), self.n_pos - 1 + idx, idx)
        else:
            idx = np.where(x < 0, 0, idx)
        return np.where(missing, self.missing_token, idx).astype(np.int64)

    def decode(self, tokens, rng: np.random.Generator) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        missing = (t == self.missing_token) if self.nullable else np.zeros(t.shape, bool)
        negative = (t >= self.n_pos) & ~missing
        idx = np.where(negative, t - self.n_pos + 1, np.where(missing, 0, t))
        lo = _TIME_EDGES[idx]
        hi = np.where(idx + 1 < self.n_pos, _TIME_EDGES[np.minimum(idx + 1, self.n_pos - 1)], lo * 2 ** 0.25)
        u = rng.random(t.shape)
        linear = idx <= 1  # [0, 1) and [1 s, 60 s): uniform; wider bins: log-uniform
        value = np.where(linear, lo + u * (hi - lo), np.exp(np.log(np.maximum(lo, 1e-9)) * (1 - u)
                                                            + np.log(np.maximum(hi, 1e-9)) * u))
        value = np.where(idx == 0, 0.0, value)
        value = np.where(negative, -value, value)
        value = self._from_quantiles(t, value, rng)
        return np.where(missing, np.nan, value)

    def forbidden(self) -> list[int]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "signed": self.signed, "nullable": self.nullable,
                "quantiles": self._quantile_dict()}


class CountCodec(NumericCodec):
    """Whole numbers >= 0 (rows per visit, visits per patient)."""

    kind = "count"

    @property
    def size(self) -> int:
        return len(_COUNT_EDGES)

    def encode(self, counts) -> np.ndarray:
        x = np.asarray(counts, dtype=float)
        return np.clip(np.searchsorted(_COUNT_EDGES, x, side="right") - 1, 0, self.size - 1).astype(np.int64)

    def decode(self, tokens, rng: np.random.Generator) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        lo = _COUNT_EDGES[t]
        hi = np.where(t + 1 < self.size, _COUNT_EDGES[np.minimum(t + 1, self.size - 1)], lo + 1)
        value = self._from_quantiles(t, lo + rng.random(t.shape) * (hi - lo), rng)
        return np.clip(np.floor(value + (0.5 if self.quantiles else 0.0)), lo, hi - 1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "quantiles": self._quantile_dict()}


class ValueCodec(NumericCodec):
    """Real numbers of any sign; ``integer`` rounds the decoded values; ``nullable`` adds 'missing'."""

    kind = "value"

    def __init__(self, nullable: bool = True, integer: bool = False, low: float | None = None,
                 high: float | None = None):
        super().__init__()
        self.nullable, self.integer = bool(nullable), bool(integer)
        self.low, self.high = (None if low is None else float(low)), (None if high is None else float(high))
        self.n_mag = len(_VALUE_EDGES) - 1  # magnitude bins

    @property
    def size(self) -> int:
        return 1 + 2 * self.n_mag + (1 if self.nullable else 0)

    @property
    def missing_token(self) -> int:
        return self.size - 1 if self.nullable else -1

    def encode(self, values) -> np.ndarray:
        x = np.asarray(pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce"),
                       dtype=float)
        missing = ~np.isfinite(x)
        mag = np.abs(np.where(missing, 0.0, x))
        bin_ = np.clip(np.searchsorted(_VALUE_EDGES, mag, side="right") - 1, 0, self.n_mag - 1)
        tok = np.where(mag == 0, 0, np.where(x > 0, 1 + bin_, 1 + self.n_mag + bin_))
        return np.where(missing, self.missing_token, tok).astype(np.int64)

    def decode(self, tokens, rng: np.random.Generator) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        missing = (t == self.missing_token) if self.nullable else np.zeros(t.shape, bool)
        negative = t > self.n_mag
        b = np.clip(np.where(negative, t - 1 - self.n_mag, t - 1), 0, self.n_mag - 1)
        value = _VALUE_EDGES[b] + rng.random(t.shape) * (_VALUE_EDGES[b + 1] - _VALUE_EDGES[b])
        value = np.where(t == 0, 0.0, np.where(negative, -value, value))
        value = self._from_quantiles(t, value, rng)
        if self.low is not None or self.high is not None:
            value = np.clip(value, self.low, self.high)
        if self.integer:
            value = np.round(value)
        return np.where(missing, np.nan, value)

    def forbidden(self) -> list[int]:
        """Bins entirely outside the declared [low, high] (public bounds; none without a declaration)."""
        if self.low is None and self.high is None:
            return []
        lo = np.concatenate([[0.0], _VALUE_EDGES[:-1], -_VALUE_EDGES[1:]])  # per token (zero, +, -)
        hi = np.concatenate([[0.0], _VALUE_EDGES[1:], -_VALUE_EDGES[:-1]])
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        outside = (np.maximum(lo, hi) < low) | (np.minimum(lo, hi) > high)
        return [int(i) for i in np.flatnonzero(outside)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "nullable": self.nullable, "integer": self.integer, "low": self.low,
                "high": self.high, "quantiles": self._quantile_dict()}


class YearCodec(Codec):
    """Calendar years ``first``..``last``; token 0 is a year outside the range (never generated)."""

    kind = "year"

    def __init__(self, first: int, last: int):
        self.first, self.last = int(first), int(last)

    @property
    def size(self) -> int:
        return 2 + self.last - self.first

    def encode(self, years) -> np.ndarray:
        y = np.asarray(years, dtype=float)
        ok = np.isfinite(y) & (y >= self.first) & (y <= self.last)
        return np.where(ok, np.nan_to_num(y) - self.first + 1, 0).astype(np.int64)

    def decode(self, tokens, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(tokens, dtype=np.int64) - 1 + self.first

    def forbidden(self) -> list[int]:
        return [0]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "first": self.first, "last": self.last}


class AgeCodec(Codec):
    """Whole years of age 0..110 (an input of the network, derived, never sampled)."""

    kind = "age"

    @property
    def size(self) -> int:
        return 111

    def encode(self, years) -> np.ndarray:
        y = np.asarray(years, dtype=float)
        return np.clip(np.floor(np.nan_to_num(y)), 0, 110).astype(np.int64)


class VocabCodec(Codec):
    """Labels: token 0 ``<other>`` (outside the vocabulary), 1 ``<missing>``, then ``values`` (as text)."""

    kind = "vocab"

    def __init__(self, values: list, nullable: bool = True):
        self.values = [code_key(v) for v in values if code_key(v) is not None]
        self.values = list(dict.fromkeys(self.values))
        self.nullable = bool(nullable)
        self.index = {v: i + 2 for i, v in enumerate(self.values)}

    @property
    def size(self) -> int:
        return 2 + len(self.values)

    def encode(self, values) -> np.ndarray:
        keys = [code_key(v) for v in np.asarray(values, dtype=object)]
        return np.asarray([1 if k is None else self.index.get(k, 0) for k in keys], dtype=np.int64)

    def decode(self, tokens, rng: np.random.Generator | None = None) -> np.ndarray:
        table = np.asarray([None, None] + self.values, dtype=object)
        return table[np.asarray(tokens, dtype=np.int64)]

    def forbidden(self) -> list[int]:
        return [0] if self.nullable else [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values), "nullable": self.nullable}


class MixedCodec(Codec):
    """A column of numbers or text: the value bins (missing included) first, then the text labels."""

    kind = "mixed"

    def __init__(self, text: VocabCodec, numbers: ValueCodec):
        self.text, self.numbers = text, numbers

    @property
    def size(self) -> int:
        return self.numbers.size + len(self.text.values) + 1  # + <other> text

    def encode(self, values) -> np.ndarray:
        raw = pd.Series(np.asarray(values, dtype=object))
        numeric = pd.to_numeric(raw, errors="coerce")
        tokens = self.numbers.encode(numeric.to_numpy())
        is_text = numeric.isna().to_numpy() & raw.notna().to_numpy()
        if is_text.any():
            text_tokens = self.text.encode(raw[is_text].to_numpy())  # 0 = other text, 2.. = labels
            tokens[is_text] = np.where(text_tokens == 0, self.size - 1,
                                       self.numbers.size + text_tokens - 2)
        return tokens

    def decode(self, tokens, rng: np.random.Generator) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64)
        is_num = t < self.numbers.size
        out = np.empty(t.shape, dtype=object)
        out[is_num] = self.numbers.decode(t[is_num], rng)
        labels = np.asarray(self.text.values + [None], dtype=object)
        out[~is_num] = labels[np.clip(t[~is_num] - self.numbers.size, 0, len(labels) - 1)]
        return out

    def forbidden(self) -> list[int]:
        return [self.size - 1]

    def learn(self, values, tokens) -> None:
        numbers = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy()
        t = np.asarray(tokens, dtype=np.int64)
        self.numbers.learn(numbers, np.where(t < self.numbers.size, t, -1))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": list(self.text.values), "numbers": self.numbers.to_dict()}
