#!/usr/bin/env bash
# Start the web server (uvicorn, ASGI) and a Celery worker; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
# Web and worker share one metrics directory, so /metrics counts the worker's provider calls too
# (prometheus_client's multiprocess mode); it is emptied at every start.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-${PLM_DATA_DIR:-var}/prometheus}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
.venv/bin/celery -A plmportal worker -B --loglevel=WARNING --concurrency="${CELERY_CONCURRENCY:-2}" &
WORKER=$!
trap 'kill "$WORKER" 2>/dev/null || true' EXIT INT TERM
echo ""
echo "PLM Portal is starting on http://${HOST}:${PORT}/  (API docs: http://${HOST}:${PORT}/api/docs/)"
echo "Demo logins, password '${DEMO_PASSWORD:-demo-pass-123}': pm (product manager), reviewer, reviewer2,"
echo "  developer, auditor, admin (superuser; Django admin at /admin/)"
echo ""
.venv/bin/uvicorn plmportal.asgi:application --host "$HOST" --port "$PORT" --log-level warning
