#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go, for the first session that is lent one.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default gpu_check_out/; about 5-8 minutes)
#
# Runs, each under its own time limit so one hang cannot eat the rest:
#   1. the CUDA-only tests: the persistent CUDA kernel (with WAVEGEN_TEST_BINDING=1, the
#      torch binding compiled against torch's headers), the Triton kernels on the GPU, the
#      cudagraph backend, Griffin-Lim and truncated BPTT on CUDA;
#   2. scripts/bench_wavenet_sampling.py --device cuda: reference vs cudagraph / triton /
#      cuda, batch 1 and 64, inner loop and end to end;
#   3. scripts/bench_vocoder.py: the GAN vocoders' and WaveGlow's CPU and GPU columns.
# Each step's output goes to OUT_DIR/<step>.txt and a one-line status per step (exit code,
# seconds) to OUT_DIR/summary.txt, which is printed at the end: copy the tables into
# docs/RESULTS.md with the machine and the date. Uses the python on PATH (or $PY) with
# wavegen installed (`make install-test`).
set -u
OUT=${1:-gpu_check_out}
PY=${PY:-python}
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local start
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $(( $(date +%s) - start )) s ($*)" | tee -a "$OUT/summary.txt"
}

step device 60 "$PY" -c "import torch, wavegen; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO GPU'); \
print('wavegen', wavegen.__version__)"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU visible to torch: nothing to check" | tee -a "$OUT/summary.txt"
    exit 1
fi
step tests-cuda 240 env WAVEGEN_TEST_BINDING=1 "$PY" -m pytest -q -rs \
    tests/kernels/test_kernels_cuda.py tests/kernels/test_kernels_triton.py \
    tests/kernels/test_graphed_chunks.py tests/audio/test_griffinlim.py tests/train/test_tbptt.py
step bench-wavenet 180 "$PY" scripts/bench_wavenet_sampling.py --device cuda --skip-driver \
    --repeats 3
step bench-vocoder 150 "$PY" scripts/bench_vocoder.py --seconds 10 --repeats 3 --no-memory
echo "outputs in $OUT/:"
cat "$OUT/summary.txt"
