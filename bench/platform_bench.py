"""Platform figures: argon2 hash/verify time, audit append rate and full-chain verification time.

Run: .venv/bin/python bench/platform_bench.py [N_EVENTS]   (uses a temporary MEDSYN_HOME)
"""

import os
import sys
import tempfile
import time

os.environ["MEDSYN_HOME"] = tempfile.mkdtemp(prefix="medsyn-bench-")

from medsyn_core import auth  # noqa: E402
from medsyn_core.storage import Store  # noqa: E402

n_events = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
with Store() as store:
    t = time.perf_counter()
    auth.create_first_admin(store, "admin", "bench-password-1", via="bench")
    print(f"argon2id hash + insert:   {1000 * (time.perf_counter() - t):7.1f} ms")
    t = time.perf_counter()
    auth.authenticate(store, "admin", "bench-password-1")
    print(f"login (argon2id verify):  {1000 * (time.perf_counter() - t):7.1f} ms")
    t = time.perf_counter()
    for i in range(n_events):
        store.append_event("bench", "sample", {"rows": i})
    dt = time.perf_counter() - t
    print(f"audit append:             {n_events / dt:7.0f} events/s ({n_events} events)")
    t = time.perf_counter()
    check = store.check_audit_chain()
    print(f"audit verify:             {1000 * (time.perf_counter() - t):7.1f} ms for {check.n_events} "
          f"events (ok={check.ok})")
