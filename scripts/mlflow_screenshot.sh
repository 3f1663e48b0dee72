#!/usr/bin/env bash
# Render the MLflow runs-comparison page in headless Chromium and save docs/images/mlflow_runs.png.
#
#   scripts/mlflow_screenshot.sh [WORKSPACE]
#
# Without WORKSPACE, a temporary workspace gets two demo pipeline runs (parent + nested steps) whose
# values are SYNTHETIC: they only show the page layout. With WORKSPACE, its sqlite store is used and the
# two most recent parent runs are compared. Needs the `chromium` Debian package (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-docs/images/mlflow_runs.png}
WS=${1:-$(mktemp -d)}
export MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
unset MLFLOW_TRACKING_URI

if [ $# -eq 0 ]; then
  "$PY" - "$WS" <<'EOF'
import math, sys
from urbangen.tracking import Tracker

tracker = Tracker(sys.argv[1])
for name, lr, erosion, quality in (("demo-erosion-0", 1e-4, 0, 0.0), ("demo-erosion-3", 1e-4, 3, 1.0)):
    config = {"adapt": {"lr": lr, "label_erosion": erosion, "cfg_scale": 2.0}, "generate": {"candidates": 4}}
    with tracker.pipeline_run(name, config=config, tags={"demo": "synthetic values"}) as parent:
        with tracker.step_run(parent.run_id, "adapt_stage2", system_metrics=False) as step:
            for i in range(60):
                step.log_metric("loss", 0.25 * math.exp(-i / (18 + 6 * quality)) + 0.05, step=i)
        scores = {"miou": 0.41 + 0.05 * quality, "mcoc_mean": 0.52 + 0.08 * quality, "kept": 90 + 8 * quality}
        scores.update({f"iou/{c}": v + 0.04 * quality for c, v in (("road", 0.88), ("car", 0.61), ("person", 0.22))})
        with tracker.step_run(parent.run_id, "evaluate", system_metrics=False) as step:
            step.log_metrics(scores)
        parent.log_metrics(scores)
EOF
fi

# The UI is opened as http://$HOST (mapped to 127.0.0.1 inside Chromium): on a loopback hostname MLflow 3
# opens its assistant side panel, which would hide a third of the page.
HOST=mlflow.urbangen
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/mlflow server --backend-store-uri "sqlite:///$WS/mlflow.db" --host 127.0.0.1 --port "$PORT" \
  --workers 1 --allowed-hosts "$HOST:$PORT,127.0.0.1:$PORT" \
  --cors-allowed-origins "http://$HOST:$PORT" >"$WS/mlflow-server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WS/mlflow-server.log"; exit 1; }

URL=$("$PY" - "$WS" "$HOST" "$PORT" <<'EOF'
import json, sys, urllib.parse
from mlflow import MlflowClient

workspace, host, port = sys.argv[1:]
client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
experiment = client.get_experiment_by_name("urbangen")
runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", order_by=["start_time DESC"])
parents = [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags][:2]
query = urllib.parse.urlencode({"runs": json.dumps(parents), "experiments": json.dumps([experiment.experiment_id])})
print(f"http://{host}:{port}/#/compare-runs?{query}")
EOF
)
echo "rendering $URL"
mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1400,1700 \
  --host-resolver-rules="MAP $HOST 127.0.0.1" \
  --virtual-time-budget=15000 --screenshot="$OUT" "$URL" 2>/dev/null
echo "saved $OUT"
