#!/usr/bin/env bash
# Crash a demo part-way (SIGKILL to the whole process group, as a power cut or OOM kill would), resume it,
# and compare its results with an uninterrupted run's.
#
#   benchmarks/demo_resume.sh OUT KILL_AFTER_S REFERENCE_RESULTS_JSON [demo options...]
#   e.g. benchmarks/demo_resume.sh runs/crash 330 runs/demo/results.json --scale demo
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 kill_after=$2 reference=$3
shift 3
rm -rf "$out"
setsid .venv/bin/urbangen demo --out "$out" "$@" >"$out.first.log" 2>&1 &
pid=$!
sleep "$kill_after"
if ! pgid=$(ps -o pgid= "$pid" | tr -d ' ') || [ -z "$pgid" ]; then
  echo "the demo ended (finished or failed) before $kill_after s, see $out.first.log; nothing to resume" >&2
  exit 2
fi
kill -9 -- "-$pgid"
wait "$pid" 2>/dev/null || true
echo "killed after $kill_after s; task folders of the first try: $(ls "$out"/workspace/kfp/*/ | tr '\n' ' ')"
start=$(date +%s)
.venv/bin/urbangen demo --out "$out" "$@" --resume >"$out.resume.log" 2>&1
echo "resumed in $(($(date +%s) - start)) s; reused: $(grep -c '^reused:' "$out.resume.log") task(s)"
.venv/bin/python - "$reference" "$out/results.json" <<'PY'
import json, sys
ref, got = (json.load(open(path))["methods"] for path in sys.argv[1:3])
for method in ref:
    print(f"{method:<20} {ref[method]['mIoU']:8.4f} uninterrupted  {got[method]['mIoU']:8.4f} resumed")
same = all(ref[m]["mIoU"] == got[m]["mIoU"] and ref[m]["per_class"] == got[m]["per_class"] for m in ref)
print("identical" if same else "DIFFERENT")
sys.exit(0 if same else 1)
PY
