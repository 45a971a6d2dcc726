#!/usr/bin/env bash
# Throughput of forgetlab's training step against PyTorch eager, measured in one sitting:
# the two alternate round by round (shared machines are noisy), and the median of each is
# compared. Needs a Python with torch, torchvision and timm (FORGETLAB_BENCH_PYTHON).
#
#   bench/compare.sh [ROUNDS]      # settings: FORGETLAB_BENCH_SIZE, _BATCH, _STEPS, _ARCHS
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_libtorch
rounds=${1:-5}
python=${FORGETLAB_BENCH_PYTHON:-$HOME/.cache/forgetlab/bench-venv/bin/python}
[ -x "$python" ] || die "no Python with torch at $python: python3 -m venv DIR && DIR/bin/pip install torch==2.11.0 torchvision==0.26.0 timm; then set FORGETLAB_BENCH_PYTHON=DIR/bin/python"
cargo bench -p trainer --bench throughput --no-run
bin=$(ls -t target/release/deps/throughput-* | grep -v '\.d$' | head -1)
export FORGETLAB_BENCH_THREADS=${FORGETLAB_BENCH_THREADS:-$(nproc)}
out=$(mktemp)
for round in $(seq "$rounds"); do
    "$bin" | grep '^forgetlab' | tee -a "$out"
    "$python" bench/pytorch_reference.py 2>/dev/null | grep '^pytorch' | tee -a "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (\w+) .*: ([\d.]+) img/s, data ([\d.]+)%", line)
    if m:
        rates.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[4])))
for arch in sorted({a for _, a in rates}):
    ours = statistics.median(r for r, _ in rates[("forgetlab", arch)])
    theirs = statistics.median(r for r, _ in rates[("pytorch", arch)])
    data = statistics.median(d for _, d in rates[("forgetlab", arch)])
    print(f"{arch}: forgetlab {ours:.1f} img/s, pytorch {theirs:.1f} img/s, ratio {ours / theirs:.3f}, "
          f"forgetlab data time {data:.2f}% of a step (median of {len(rates[('forgetlab', arch)])} rounds)")
PY
