#!/usr/bin/env bash
# Does more generator compute close urbangen's gap? (docs/BENCHMARKS.md "More generator compute")
#
# For each bundle of a finished `urbangen demo --scale demo` run (benchmarks/adaptation.py bundle; default the
# folders under .gpu/), on a CUDA GPU: remake the run's worlds from their seeds (checked against the run's
# files), then, side by side, adapt the demo's generator anew at the preset's compute ("x1": stage 1 200 +
# stage 2 800 steps of 8 crops) and at 16 times the crops ("x16": 800 + 3200 steps of 32), render the run's
# 300 source label maps, MCOC-filter and rectify them with the run's judge as it labelled, and train the
# demo's segmenter on the result with training seeds 0 1 2 (everything on the GPU, float32 generation).
# The tests marked gpu run alongside. Each what-if writes its regenerate.json after every segmenter, and
# every command is stopped at DEADLINE seconds after the start, so a short device lease still returns the
# seeds that finished.
#
#   python benchmarks/adaptation.py bundle --run RUN --seed S --style-seed T --out .gpu/sS   # here, per run
#   OUT=gpu-out benchmarks/gpu_compute.sh                                                     # on the GPU
#
# Results in $OUT: results.json (every what-if's regenerate.json and exit status, every bundle's world
# check), device.txt, tests.log and logs.tar.gz (logs, and six generated images per what-if for a look).
# Packages that travel as wheels in .whl/ are installed as benchmarks/gpu_env.sh says. VARIANTS (default
# "x1 x16"), METHODS (default urbangen,urbangen_nofilter) and TESTS=0 run less. Time on an H200
# (2026-11-27): x1 on three bundles side by side, seeds 0-2 of both methods, ~7 min; x16's adaptation
# alone ~4 min (17 steps/s in stage 2; 9.7 side by side), then ~40 s per segmenter. SMOKE=1 DEVICE=cpu runs the same orchestration with a few steps of everything (a check of the
# script). Exits non-zero when a what-if failed (a deadline stop counts as one).
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-gpu-out}
BUNDLES=${BUNDLES:-.gpu}
DEADLINE=${DEADLINE:-450}
WORK=${WORK:-/tmp/gpu-compute}
DEVICE=${DEVICE:-cuda}
VARIANTS=${VARIANTS:-x1 x16}
METHODS=${METHODS:-urbangen,urbangen_nofilter}
end=$(($(date +%s) + DEADLINE))
left() { local n=$((end - $(date +%s))); echo $((n > 1 ? n : 1)); }  # timeout 0 would mean no limit

bundles=("$BUNDLES"/*/)
[ ${#bundles[@]} -gt 0 ] || { echo "no bundles under $BUNDLES (benchmarks/adaptation.py bundle)"; exit 1; }
rm -rf "$WORK"  # a fresh start: earlier what-ifs would resume or be reported as this run's
mkdir -p "$OUT" "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
source benchmarks/gpu_env.sh
gpu_env "$OUT" || exit 1

X1=(--readapt)
X16=(--adapt-set stage1.steps=800 --adapt-set stage1.batch_size=32 --adapt-set stage1.checkpoint_every=1000
  --adapt-set stage2.steps=3200 --adapt-set stage2.batch_size=32 --adapt-set stage2.checkpoint_every=1000)
RUN=(--train-seeds 0 1 2)
if [ "${SMOKE:-0}" = 1 ]; then
  X1=(--adapt-set stage1.steps=2 --adapt-set stage2.steps=2)
  X16=(--adapt-set stage1.steps=2 --adapt-set stage1.batch_size=32 --adapt-set stage2.steps=2
    --adapt-set stage2.batch_size=32)
  RUN=(--train-seeds 0 1 --set candidates=1 --set steps=2 --seg-iterations 10)
fi
for variant in $VARIANTS; do
  case $variant in x1 | x16) ;; *) echo "unknown variant $variant (x1, x16)"; exit 1 ;; esac
done

if [ "$DEVICE" != cpu ] && [ "${TESTS:-1}" != 0 ]; then
  gpu_tests "$(left)" > "$OUT/tests.log" &
fi

for bundle in "${bundles[@]}"; do
  name=$(basename "$bundle")
  (
    timeout "$(left)" python3 benchmarks/adaptation.py worlds --bundle "$bundle" > "$WORK/$name-worlds.log" 2>&1 || {
      echo "$name: the worlds were not remade or are not the run's: $WORK/$name-worlds.log"
      echo 1 > "$WORK/$name-worlds.rc"; exit 1; }
    for variant in $VARIANTS; do
      if [ "$variant" = x16 ]; then extra=("${X16[@]}"); else extra=("${X1[@]}"); fi
      (
        timeout "$(left)" python3 benchmarks/adaptation.py regenerate --run "$bundle" "${extra[@]}" "${RUN[@]}" \
          --device "$DEVICE" --set engine.dtype='"float32"' --methods "$METHODS" --out "$WORK/$name-$variant" \
          > "$WORK/$name-$variant.log" 2>&1
        echo $? > "$WORK/$name-$variant.rc"
      ) &
    done
    wait
  ) &
done
wait
echo "what-ifs and tests: $((DEADLINE - $(left))) s"

python3 - "$WORK" "$BUNDLES" "$OUT/results.json" <<'EOF'
import json, sys
from pathlib import Path
work, bundles, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
results = {"worlds": {}, "what_ifs": {}}
for check in sorted(bundles.glob("*/worlds/check.json")):
    results["worlds"][check.parts[-3]] = json.loads(check.read_text())
for rc in sorted(work.glob("*.rc")):
    found = work / rc.stem / "regenerate.json"
    entry = json.loads(found.read_text()) if found.is_file() else {}
    results["what_ifs"][rc.stem] = {**entry, "exit_status": int(rc.read_text())}  # 124: stopped at the deadline
out.write_text(json.dumps(results, indent=2))
failed = []
for name, r in results["what_ifs"].items():
    scores = {m: {s: round(v, 2) for s, v in seeds.items()} for m, seeds in r.get("mIoU", {}).items()}
    print(name, "exit", r["exit_status"], scores, r.get("timings", {}))
    failed += [name] if r["exit_status"] else []
sys.exit(f"not finished: {failed}" if failed else 0)
EOF
status=$?
(cd "$WORK" && for d in */generated/leftImg8bit/train/*/; do ls "$d"*.png | head -6; done > images.txt
  tar czf - ./*.log images.txt -T images.txt) > "$OUT/logs.tar.gz"
touch "$OUT/tests.log"
grep -E "passed|failed|skipped|error" "$OUT/tests.log" | tail -8
exit $status
