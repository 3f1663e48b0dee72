#!/usr/bin/env bash
# On a CUDA GPU: the `full` preset's projected wall time on this machine (benchmarks/full_estimate.py: every
# step measured at the preset's settings on a slice of its work), then the tests marked gpu with the time
# left. Results in $OUT (default ./gpu-out): estimate.json, estimate.log, device.txt, tests.log. Packages
# that travel as wheels in .whl/ are installed as benchmarks/gpu_env.sh says.
#
#   OUT=gpu-out DEADLINE=540 bash benchmarks/gpu_full_estimate.sh
#
# DEADLINE (seconds from the start, default 540) bounds the whole script; the estimate gets at most
# ESTIMATE_TIMEOUT of it (default 330) and the four test files share the rest. ADAPT_BATCHES=16,32 adds
# the adaptation timed at those batch sizes (before the preset's stages). SMOKE=1 DEVICE=cpu checks the
# script on a CPU machine (tiny models, no tests).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-gpu-out}
end=$(($(date +%s) + ${DEADLINE:-540}))
source benchmarks/gpu_env.sh
gpu_env "$OUT" || exit 1
work=$(mktemp -d)
extra=()
[ "${SMOKE:-0}" = 1 ] && extra=(--smoke --seg-iterations 20 --adapt-steps 20)
[ -n "${ADAPT_BATCHES:-}" ] && extra+=(--adapt-batches "$ADAPT_BATCHES")
timeout "${ESTIMATE_TIMEOUT:-330}" python3 benchmarks/full_estimate.py --out "$work" "${extra[@]}" 2>&1 \
  | tr '\r' '\n' > "$OUT/estimate.log"
status=$?
grep -v -E "[0-9]+/[0-9]+ \[" "$OUT/estimate.log"  # the lines without progress bars
cp "$work/estimate.json" "$OUT/" 2>/dev/null || echo "no estimate.json: the estimate stopped before its first step"
if [ "${DEVICE:-cuda}" != cpu ]; then
  left=$((end - $(date +%s)))
  if [ "$left" -gt 40 ]; then gpu_tests $((left / 4)) > "$OUT/tests.log"; else echo "no time left for the tests"; fi
  grep -E "passed|failed|skipped|error" "$OUT/tests.log"
fi
exit $status
