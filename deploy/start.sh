#!/usr/bin/env bash
# One command for the whole service: the REST API (uvicorn, port 8000) and the app (Streamlit, port 8501) in
# one container or on one host, sharing the home folder and the store. If either stops, both stop, so the
# container's restart policy brings the pair back together. Each runs a job worker; claiming is safe.
#   deploy/start.sh            (the Docker image's command; `make serve` runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."
API_PORT="${MEDSYN_API_PORT:-8000}"
APP_PORT="${MEDSYN_APP_PORT:-8501}"
BIND="${MEDSYN_BIND:-127.0.0.1}"  # the Docker image sets 0.0.0.0; publish the ports only to the TLS proxy
PY="${PYTHON:-python}"

"$PY" -m medsyn_cli.main api --host "$BIND" --port "$API_PORT" &
api=$!
"$PY" -m streamlit run serve.py --server.port="$APP_PORT" --server.address="$BIND" --server.headless=true &
app=$!
trap 'kill -TERM "$api" "$app" 2>/dev/null || true' TERM INT
wait -n "$api" "$app" || true
kill -TERM "$api" "$app" 2>/dev/null || true
wait || true
exit 1
