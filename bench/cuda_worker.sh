#!/usr/bin/env bash
# Issue 18's check of the CUDA set-up on a machine without a GPU (slow, so not in the test
# suite: it builds a second worker): the set-up's FORGETLAB_TORCH=cuda path assembles the CUDA
# libtorch from PyPI, the worker built against it has libtorch_cuda.so in its NEEDED list, it
# still trains on the CPU where there is no GPU, and a run that asks for `device: cuda` fails
# with the reason instead of training on the CPU.
#
#   bench/cuda_worker.sh            # builds into target/cuda; prints what it checked
#
# On a GPU machine the same worker trains on the GPU (bench/gpu.sh measures it there).
set -euo pipefail
export FORGETLAB_TORCH=cuda
unset LIBTORCH
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
ensure_libtorch

step "Building the worker against $LIBTORCH into target/cuda"
CARGO_TARGET_DIR="$ROOT/target/cuda" cargo build -p trainer || die "building the CUDA worker failed"
worker="$ROOT/target/cuda/debug/forgetlab-worker"

step "NEEDED of $worker"
needed="$(readelf -d "$worker" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
note "$needed"
case " $needed " in
    *" libtorch_cuda.so "*) note "libtorch_cuda.so is linked" ;;
    *) die "libtorch_cuda.so is not in the worker's NEEDED list" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run_config() {
    cat > "$work/$1.toml" <<TOML
arch = "small_cnn"
epochs = 1
warmup_epochs = 0
train_subset = 64
val_subset = 32
batch_size = 32
device = "$1"
seed = 3
[dataset]
name = "fashion-mnist"
format = "idx"
path = "/usr/share/datasets/fashion-mnist"
TOML
}

step "Training one epoch with device auto (no GPU here: on the CPU, and it says why)"
run_config auto
LD_LIBRARY_PATH= "$worker" train --config "$work/auto.toml" --out "$work/auto" 2>&1 | tee "$work/auto.log" | grep -E "training on|epoch 1" || true
grep -q "training on cpu (its CUDA libtorch sees no GPU" "$work/auto.log" || die "the CUDA worker did not say it trains on the CPU because it sees no GPU: $(tail -5 "$work/auto.log")"
[ -f "$work/auto/samples.parquet" ] || die "the CPU run wrote no samples.parquet"
note "trained on the CPU; records in samples.parquet"

step "A run that asks for device cuda fails with the reason"
run_config cuda
if LD_LIBRARY_PATH= "$worker" train --config "$work/cuda.toml" --out "$work/cuda" > "$work/cuda.log" 2>&1; then
    die "device cuda trained without a GPU: $(tail -5 "$work/cuda.log")"
fi
grep -q "asks for device cuda, but its CUDA libtorch sees no GPU" "$work/cuda.log" || die "device cuda failed without the reason: $(tail -5 "$work/cuda.log")"
note "$(grep -o 'the run asks for device cuda[^"]*' "$work/cuda.log" | head -1)"
step "All CUDA set-up checks passed"
