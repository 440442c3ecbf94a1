"""Platform figures: argon2 hash/verify time, login time for real / unknown / disabled usernames (they
must match, or the answer time tells which usernames exist), 16 parallel wrong guesses against the
lock, audit append rate and full-chain verification time.

Run: .venv/bin/python bench/platform_bench.py [N_EVENTS]   (uses a temporary MEDSYN_HOME)
"""

import os
import statistics
import sys
import tempfile
import threading
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
    admin = auth.load_user(store, "admin")
    auth.create_user(store, admin, "rita", "bench-password-2", "researcher")
    auth.create_user(store, admin, "gone", "bench-password-3", "researcher")
    auth.set_active(store, admin, "gone", False)
    auth.warm_up()
    times = {"real": [], "unknown": [], "disabled": []}
    for _ in range(4):  # wrong passwords, under the lock limit of 5 per username
        for label, name in (("real", "rita"), ("unknown", "nobody"), ("disabled", "gone")):
            t = time.perf_counter()
            try:
                auth.authenticate(store, name, "wrong password")
            except auth.AuthError:
                pass
            times[label].append(time.perf_counter() - t)
    print("wrong-password login, median of 4:  " + ",  ".join(
        f"{label} {1000 * statistics.median(v):.1f} ms" for label, v in times.items()))
    answers = []

    def guess(i):
        with Store() as own:
            try:
                auth.authenticate(own, "admin", f"guess {i}")
            except auth.AuthError as exc:
                answers.append(str(exc).split(".")[0])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(16)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(f"16 parallel wrong guesses:  {answers.count('Wrong username or password')} checked by argon2, "
          f"{sum(a.startswith('Too many') for a in answers)} refused by the lock, "
          f"{1000 * (time.perf_counter() - t):.0f} ms, lock {auth.lock_remaining_s(store, 'admin'):.0f} s")
    t = time.perf_counter()
    for i in range(n_events):
        store.append_event("bench", "sample", {"rows": i})
    dt = time.perf_counter() - t
    print(f"audit append:             {n_events / dt:7.0f} events/s ({n_events} events)")
    t = time.perf_counter()
    check = store.check_audit_chain()
    print(f"audit verify:             {1000 * (time.perf_counter() - t):7.1f} ms for {check.n_events} "
          f"events (ok={check.ok})")
