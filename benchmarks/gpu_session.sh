#!/usr/bin/env bash
# Everything issue-sized that needs a GPU, in one run of under ten minutes: the GPU tests,
# the CuPy training-step and decoding benchmarks against PyTorch CUDA (benchmark, codon and
# GPU-sized configs), the same step with the fused kernels on and with TF32, and the codon
# demo on the GPU. Run it from the repository root on the GPU machine:
#
#     PYTHONPATH=$PWD bash benchmarks/gpu_session.sh "$OUT"
#
# Each part has its own time limit and writes its log (and JSON) under OUT; a part that
# fails or runs out of time does not stop the others. OUT/summary.txt lists each part's
# exit status (124: out of time) and seconds.
set -u
out=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-$PWD}
python=${PYTHON:-python3}

part() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

part machine 20 bash -c "nvidia-smi; $python -c 'import cupy, numpy, torch; print(cupy.__version__, numpy.__version__, torch.__version__)'"
part gpu-tests 150 "$python" -m pytest -m gpu -q --durations=15 -p no:cacheprovider
part bench-fp32 170 "$python" -m benchmarks.run --backend cupy --quick --only train,decode --out "$out/results-cupy.json"
part bench-fused 60 env MINITRANSFORMER_FUSED=1 "$python" -m benchmarks.run --backend cupy --quick --only train \
    --no-torch --out "$out/results-cupy-fused.json"
part bench-tf32 60 env CUPY_TF32=1 "$python" -m benchmarks.run --backend cupy --quick --only train \
    --out "$out/results-cupy-tf32.json"
part codon-demo 130 "$python" -m minitransformer codon demo --backend cupy --time-budget 100 \
    --out-dir "$out/codon-demo" --force
