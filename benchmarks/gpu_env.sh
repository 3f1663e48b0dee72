# Shared by benchmarks/gpu_checks.sh and benchmarks/gpu_compute.sh (sourced from the repository root).
#
# gpu_env OUT: where packages travel as wheels in .whl/ (a device machine without a package index) and the
#   image lacks them, install them into /tmp/site; put src/ on PYTHONPATH; check that urbangen imports and
#   write the GPU's name, memory and driver and torch's view of it to OUT/device.txt. Fails when torch sees no CUDA device, unless
#   DEVICE=cpu (a check of the scripts' orchestration on a CPU machine).
# gpu_tests SECONDS: the tests marked gpu, one file at a time (the folders' conftest modules share a
#   name), each stopped after SECONDS; output on stdout.

gpu_env() {
  local out=$1
  export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
  if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import pydantic, diffusers, cityscapesscripts" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site:$PYTHONPATH
  fi
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.txt" 2>&1
  python3 -c "import torch, urbangen.generate.filtering, urbangen.diffusion.adapt, urbangen.segment.train
print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')
assert torch.cuda.is_available() or '${DEVICE:-cuda}' == 'cpu', 'torch sees no CUDA device'" >> "$out/device.txt" 2>&1
  local status=$?
  cat "$out/device.txt"
  return $status
}

gpu_tests() {
  local tests
  for tests in tests/segment/test_segment_train.py tests/generate/test_generate_real.py \
    tests/diffusion/test_diffusion_sampler.py tests/deploy/test_export_tensorrt.py; do
    timeout "$1" python3 -m pytest -m gpu -p no:cacheprovider -q "$tests" 2>&1
  done
}
