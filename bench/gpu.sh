#!/usr/bin/env bash
# Issue 18's measurements on a GPU machine (the device tool's H100/H200), in one short run
# that builds nothing there. Build here first, against the CUDA libtorch:
#
#   FORGETLAB_TORCH=cuda bash -c 'source scripts/common.sh && ensure_libtorch && \
#       CARGO_TARGET_DIR=target/cuda cargo bench -p trainer --bench throughput --no-run && \
#       CARGO_TARGET_DIR=target/cuda cargo build --release -p trainer && cargo build --release -p server'
#   mkdir -p gpu-carry && cp "$(ls -t target/cuda/release/deps/throughput-* | grep -v '\.d$' | head -1)" gpu-carry/throughput \
#       && cp target/cuda/release/forgetlab-worker target/release/forgetlab gpu-carry/
#
# then run `bench/gpu.sh gpu-carry` there (carry gpu-carry/). That machine's PyTorch 2.11
# provides the CUDA libraries (LD_LIBRARY_PATH below). It records, into $OUT (or ./gpu-out):
# ResNet-18 and DeiT-Small at 224 px, batch 256, bf16 autocast, forgetlab's step with
# recording against PyTorch eager with the same recipe, img/s and their ratio (rounds
# alternate); nvidia-smi's view of the GPU. Goals (issue 18): ResNet-18 >= 9,000 img/s,
# DeiT-Small >= 4,500 img/s, >= 1.0x PyTorch. Never write a number this did not print.
set -euo pipefail
carry="${1:?usage: bench/gpu.sh CARRIED_BINARIES_DIR}"
out="${OUT:-./gpu-out}"
mkdir -p "$out"
python="${FORGETLAB_BENCH_PYTHON:-python3}"
torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
site="$(dirname "$(dirname "$torch_lib")")"
nvidia_libs="$(find "$site/nvidia" -maxdepth 2 -name lib -type d 2>/dev/null | tr '\n' ':')"
export LD_LIBRARY_PATH="$torch_lib:$nvidia_libs${LD_LIBRARY_PATH:-}"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
} | tee "$out/machine.txt"

export FORGETLAB_BENCH_SIZE=224 FORGETLAB_BENCH_BATCH=256 FORGETLAB_BENCH_AMP=1 FORGETLAB_BENCH_STEPS="${FORGETLAB_BENCH_STEPS:-30}"
rounds="${ROUNDS:-3}"
for round in $(seq "$rounds"); do
    timeout 120 "$carry/throughput" | grep '^forgetlab' | tee -a "$out/throughput.txt"
    timeout 120 "$python" "$(dirname "$0")/pytorch_reference.py" 2>/dev/null | grep '^pytorch' | tee -a "$out/throughput.txt"
done
"$python" - "$out/throughput.txt" <<'PY' | tee "$out/summary.txt"
import re, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (\w+) .*: ([\d.]+) img/s", line)
    if m:
        rates.setdefault((m[1], m[2]), []).append(float(m[3]))
for arch in sorted({a for _, a in rates}):
    ours, theirs = statistics.median(rates.get(("forgetlab", arch), [0])), statistics.median(rates.get(("pytorch", arch), [float("nan")]))
    print(f"{arch}: forgetlab {ours:.0f} img/s, pytorch {theirs:.0f} img/s, ratio {ours / theirs:.3f} (median of {len(rates.get(('forgetlab', arch), []))} rounds)")
PY
