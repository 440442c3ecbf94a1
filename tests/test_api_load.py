"""The bounded load test of the REST API (bench/api_load.py) as a slow test: 20 concurrent clients sample
1,000 rows each from a saved model for 60 s on localhost while three training jobs are queued; no request
fails, the p95 latency is reported, at most one training job (a GPU-class job) runs at a time, and the audit
chain verifies. Run with `make test-slow`; the figures are quoted in docs/api.md."""

import sys

import pytest
from api_server import ROOT

sys.path.insert(0, str(ROOT / "bench"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_twenty_clients_for_sixty_seconds(tmp_path, capsys):
    import api_load

    figures = api_load.run(clients=20, seconds=60, rows=1000, train_jobs=3, home=tmp_path / "home")
    print(capsys.readouterr().out)
    assert figures["errors"] == 0, figures["first_errors"]
    assert figures["requests"] >= 20 and figures["p95_s"] is not None
    assert figures["training_jobs"] == ["finished"] * 3 and figures["max_training_jobs_at_once"] == 1
    assert figures["audit_chain_ok"]
