#!/usr/bin/env bash
# Fresh machine to first answer: install into .venv, start `moorage serve` in the background, deploy the
# recommender example with plain boto3 and print one recommendation. The server keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${MOORAGE_PORT:-7070}"
STATE="${MOORAGE_STATE_DIR:-.moorage}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[example]'
mkdir -p "$STATE"
if ! curl -fs "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1; then
  nohup .venv/bin/moorage serve --port "$PORT" --state-dir "$STATE" >"$STATE/server.log" 2>&1 &
  echo $! >"$STATE/server.pid"
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
.venv/bin/python examples/recommender/deploy.py --endpoint-url "http://127.0.0.1:$PORT"
echo "Moorage is serving on http://127.0.0.1:$PORT (log: $STATE/server.log; stop: kill \$(cat $STATE/server.pid))."
