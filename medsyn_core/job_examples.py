"""A small real background job used by the tests and the Jobs panel: counting primes in chunks.

It shows the contract every job follows: report progress (which raises when cancelled), write a
checkpoint atomically after each chunk, record it, and continue from ``resume_from`` when given.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from medsyn_core.files import atomic_write_json
from medsyn_core.redaction import ValueFreeError


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def count_primes(params: dict[str, Any], progress, resume_from: str | None = None) -> dict[str, Any]:
    """Count primes below ``params['limit']`` in ``params['chunks']`` chunks (trial division).

    ``params['chunk_delay_s']`` (default 0) sleeps after each chunk so tests can act mid-run.
    Returns ``{"limit", "primes", "resumed_at_chunk"}``; π(10 000) = 1229.
    """
    limit = int(params.get("limit", 10_000))
    chunks = int(params.get("chunks", 10))
    delay = float(params.get("chunk_delay_s", 0.0))
    if limit < 2 or chunks < 1:
        raise ValueFreeError("limit must be at least 2 and chunks at least 1")
    start_chunk, count = 0, 0
    if resume_from:
        with open(resume_from) as fh:
            state = json.load(fh)
        if state["limit"] != limit or state["chunks"] != chunks:
            raise ValueFreeError("the checkpoint belongs to a job with other parameters")
        start_chunk, count = state["next_chunk"], state["count"]
    bounds = [round(i * limit / chunks) for i in range(chunks + 1)]
    for chunk in range(start_chunk, chunks):
        count += sum(_is_prime(n) for n in range(bounds[chunk], bounds[chunk + 1]))
        path = progress.dir / "checkpoint.json"
        atomic_write_json(path, {"limit": limit, "chunks": chunks, "next_chunk": chunk + 1, "count": count})
        progress.checkpoint(path)
        progress((chunk + 1) / chunks, f"chunk {chunk + 1} of {chunks}", {"primes_so_far": count})
        if delay:
            time.sleep(delay)
    return {"limit": limit, "primes": count, "resumed_at_chunk": start_chunk}
