#!/usr/bin/env bash
# Fresh machine to first answer: install into .venv (with the embedded S3 store), start `moorage serve` in
# the background, deploy the recommender example with plain boto3 and print one recommendation. The server
# keeps running; running this again reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${MOORAGE_PORT:-7070}"
STATE="${MOORAGE_STATE_DIR:-.moorage}"
URL="http://127.0.0.1:$PORT"
source scripts/python.sh
make_venv
PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[example,s3]'

answers() {  # true when a Moorage server answers on $URL
  .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/ping", timeout=1)' \
    "$URL" >/dev/null 2>&1
}

mkdir -p "$STATE"
if ! answers; then
  nohup .venv/bin/moorage serve --port "$PORT" --state-dir "$STATE" >"$STATE/server.log" 2>&1 &
  echo $! >"$STATE/server.pid"
  for _ in $(seq 1 300); do
    answers && break
    if ! kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then
      echo "moorage serve exited; its log:" >&2
      cat "$STATE/server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
.venv/bin/python examples/recommender/deploy.py --endpoint-url "$URL" --reuse
echo "Moorage is serving on $URL (log: $STATE/server.log; stop: kill \$(cat $STATE/server.pid))."
echo "For a SageMaker notebook: eval \"\$(.venv/bin/moorage env --endpoint-url $URL --state-dir $STATE)\" (examples/notebook)."
