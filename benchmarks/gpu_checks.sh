#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (about 8 minutes on an H100/H200): the generation benchmark
# (docs/BENCHMARKS.md "Generation engine") first, then the tests marked gpu. Results go to $OUT (default
# ./gpu-out): gen.json (render it into the docs with `python benchmarks/generation.py --render gen.json
# --update docs/BENCHMARKS.md`), bench.log and tests.log.
#
# Run it from the repository root in an environment where urbangen imports (the README's set-up with a
# CUDA build of torch), or where packages travel as wheels in .whl/ (benchmarks/gpu_env.sh). BENCH_DEADLINE
# (seconds, default 330) bounds the benchmark's measured configurations so the tests still get their turn
# on a time-limited machine; TESTS_TIMEOUT (default 180) bounds each test file.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-gpu-out}
source benchmarks/gpu_env.sh
gpu_env "$OUT" || exit 1
timeout $((${BENCH_DEADLINE:-330} + 120)) python3 benchmarks/generation.py --batches 8,1 \
  --deadline "${BENCH_DEADLINE:-330}" --json "$OUT/gen.json" 2>&1 | grep -v "should be kept in float32" | tee "$OUT/bench.log"
gpu_tests "${TESTS_TIMEOUT:-180}" | tee "$OUT/tests.log"
