"""The schema and PHI review of a table, cached on the table's content.

Schema inference and PHI detection look at every column (about 0.5 ms per column, so ~1 s for a
2,000-column table); the Tabular page shows their result on every rerun (each widget change), so it
calls :func:`review_table`, which keeps the last few results keyed on a fingerprint of the table's
content. Results are returned as copies, so one caller editing them cannot change another's.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd

from medsyn_tabular.data.phi import PhiFinding, detect_phi
from medsyn_tabular.data.schema import TableSchema, infer_schema

#: Reviews kept (one per distinct table; a few sessions' uploads).
CACHE_ENTRIES = 8


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


_cache: OrderedDict[str, tuple[TableSchema, list[PhiFinding]]] = OrderedDict()
_lock = threading.Lock()
stats = CacheStats()


def table_fingerprint(df: pd.DataFrame) -> str | None:
    """SHA-256 of the column names, dtypes and every cell (pandas' row hashes); None if a cell cannot be
    hashed (then nothing is cached)."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    try:
        rows = pd.util.hash_pandas_object(df, index=False)
    except TypeError:
        return None
    digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


def review_table(df: pd.DataFrame) -> tuple[TableSchema, list[PhiFinding]]:
    """``(infer_schema(df), detect_phi(df, schema))``, from the cache when this table was reviewed
    recently."""
    key = table_fingerprint(df)
    with _lock:
        cached = _cache.get(key) if key is not None else None
        if cached is not None:
            _cache.move_to_end(key)
            stats.hits += 1
            return copy.deepcopy(cached)
        stats.misses += 1
    schema = infer_schema(df)
    review = (schema, detect_phi(df, schema))
    if key is not None:
        with _lock:
            _cache[key] = copy.deepcopy(review)
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return review
