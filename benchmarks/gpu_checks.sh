#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (about 8 minutes on an H100/H200): the generation benchmark
# (docs/BENCHMARKS.md "Generation engine") first, then the tests marked gpu. Results go to $OUT (default
# ./gpu-out): gen.json (render it into the docs with `python benchmarks/generation.py --render gen.json
# --update docs/BENCHMARKS.md`), bench.log and tests.log.
#
# Run it from the repository root in an environment where urbangen imports (the README's set-up with a
# CUDA build of torch). Where packages travel as wheels in .whl/ (a machine without an index), they are
# installed into /tmp/site first. BENCH_DEADLINE (seconds, default 330) bounds the benchmark's measured
# configurations so the tests still get their turn on a time-limited machine.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
timeout $((${BENCH_DEADLINE:-330} + 120)) python3 benchmarks/generation.py --batches 8,1 \
  --deadline "${BENCH_DEADLINE:-330}" --json "$OUT/gen.json" 2>&1 | grep -v "should be kept in float32" | tee "$OUT/bench.log"
for tests in tests/generate/test_generate_real.py tests/diffusion/test_diffusion_sampler.py; do  # one each:
  # the two folders' conftest modules share a name
  timeout "${TESTS_TIMEOUT:-180}" python3 -m pytest -m gpu -p no:cacheprovider "$tests" 2>&1 | tee -a "$OUT/tests.log"
done
