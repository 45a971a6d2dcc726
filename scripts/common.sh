# Shared by scripts/run and scripts/test: installs what is missing, idempotently, and builds.
# Every step says what it does; every failure says which step failed and what to try.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Pinned versions: keep in step with rust-toolchain.toml and Cargo.toml.
RUST_TOOLCHAIN="1.96.0"
TORCH_VERSION="2.11.0"
# What scripts/export-weights exports from (torchvision pairs with torch 2.11).
TORCHVISION_VERSION="0.26.0"
TIMM_VERSION="1.0.31"
CUDA_WHEEL_SERIES="13.0"
CARGO_LEPTOS_VERSION="0.3.11"
WASM_BINDGEN_VERSION="0.2.130"

# Tools shared by every checkout on this machine live outside the clone, so a fresh clone
# reuses them instead of rebuilding cargo-leptos (17 minutes on 2 cores).
FORGETLAB_CACHE="${FORGETLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forgetlab}"

# Which libtorch the worker links (issue 18): FORGETLAB_TORCH=cpu (the small one), cuda (with
# the NVIDIA libraries, about 2.5 GB), or auto, the default: cuda on a machine whose
# `nvidia-smi -L` lists a GPU. A CUDA worker still trains on the CPU where there is no GPU.
case "${FORGETLAB_TORCH:-auto}" in
    cpu | cuda) TORCH_VARIANT="$FORGETLAB_TORCH" ;;
    auto)
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
            TORCH_VARIANT=cuda
        else
            TORCH_VARIANT=cpu
        fi ;;
    *) printf 'forgetlab setup failed: FORGETLAB_TORCH must be auto, cpu or cuda, got %s\n' "$FORGETLAB_TORCH" >&2; exit 1 ;;
esac
if [ "$TORCH_VARIANT" = cuda ]; then
    export LIBTORCH="${LIBTORCH:-$FORGETLAB_CACHE/libtorch-$TORCH_VERSION-cuda}"
else
    export LIBTORCH="${LIBTORCH:-$FORGETLAB_CACHE/libtorch-$TORCH_VERSION}"
fi
export LIBTORCH_BYPASS_VERSION_CHECK=1
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$ROOT/end2end/node_modules/.bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\n\033[31mforgetlab setup failed: %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
    else die "need root to run: $* (install sudo or run as root)"; fi
}

# Node, npm, Python and pip may come from elsewhere (nodesource, nvm, pyenv): a working
# command counts as installed.
provided_elsewhere() {
    case "$1" in
        nodejs) command -v node ;;
        npm) command -v npm ;;
        python3) command -v python3 ;;
        python3-pip) python3 -m pip --version ;;
        *) false ;;
    esac >/dev/null 2>&1
}

# What running needs (`run`): the default dataset, a C toolchain, Python and pip (the libtorch
# wheels), Node and npm (binaryen's wasm-opt), unzip and curl; Slurm's client only with
# FORGETLAB_EXECUTOR=slurm. What testing needs besides (`test`): Chromium for the browser
# tests, slurmctld, slurmd, slurm-client and munge, from which the Slurm executor's test
# starts a one-node cluster of its own (server/tests/slurm.rs; nothing is configured
# system-wide), Caddy for the HTTPS test, and systemd's systemctl and systemd-analyze for the
# service check (scripts/check-service).
ensure_debian_packages() {
    local purpose="$1"
    local wanted=(dataset-fashion-mnist build-essential python3 python3-pip python3-venv nodejs npm unzip curl ca-certificates)
    if [ "$purpose" = test ]; then
        wanted+=(chromium slurmctld slurmd slurm-client munge caddy systemd)
    elif [ "${FORGETLAB_EXECUTOR:-local}" = slurm ]; then
        wanted+=(slurm-client)
    fi
    local missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || provided_elsewhere "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then note "Debian packages: all present"; return; fi
    step "Installing Debian packages: ${missing[*]}"
    as_root apt-get update -q || die "apt-get update failed (network or sources.list?)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

ensure_rust() {
    command -v rustup >/dev/null || die "rustup is not installed: see https://rustup.rs"
    if ! rustup toolchain list | grep -q "^$RUST_TOOLCHAIN"; then
        step "Installing Rust $RUST_TOOLCHAIN with the wasm32 target and rustfmt (rust-toolchain.toml)"
        rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal --component rustfmt \
            --target wasm32-unknown-unknown || die "rustup could not install $RUST_TOOLCHAIN"
    fi
    rustup component list --installed --toolchain "$RUST_TOOLCHAIN" | grep -q '^rustfmt' \
        || rustup component add --toolchain "$RUST_TOOLCHAIN" rustfmt \
        || die "rustup could not add rustfmt to $RUST_TOOLCHAIN"
    rustup target list --installed --toolchain "$RUST_TOOLCHAIN" | grep -q wasm32-unknown-unknown \
        || rustup target add --toolchain "$RUST_TOOLCHAIN" wasm32-unknown-unknown \
        || die "rustup could not add the wasm32-unknown-unknown target"
    note "Rust: $(rustc --version)"
}

ensure_libtorch() {
    if [ "$TORCH_VARIANT" = cuda ]; then ensure_libtorch_cuda; else ensure_libtorch_cpu; fi
}

# A CPU libtorch assembled from the pinned PyPI wheel: torch's own libraries plus the two small
# CUDA runtime wheels libtorch_cpu.so links against (not the 2.5 GB of CUDA wheels).
ensure_libtorch_cpu() {
    if [ -f "$LIBTORCH/build-version" ] && [ -e "$LIBTORCH/lib/libtorch.so" ]; then
        note "libtorch: $LIBTORCH ($(cat "$LIBTORCH/build-version"); FORGETLAB_TORCH=cuda for the CUDA build)"; return
    fi
    step "Installing libtorch $TORCH_VERSION (CPU) from the PyPI wheel into $LIBTORCH"
    local wheels="$FORGETLAB_CACHE/wheels" site="$FORGETLAB_CACHE/torch-site"
    mkdir -p "$wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
        "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDA_WHEEL_SERIES.*" "nvidia-cuda-cupti==$CUDA_WHEEL_SERIES.*" \
        || die "pip could not download torch==$TORCH_VERSION (needs CPython 3.11 and network access to PyPI)"
    rm -rf "$site" "$LIBTORCH.partial"
    mkdir -p "$site" "$LIBTORCH.partial/lib"
    for w in "$wheels"/torch-"$TORCH_VERSION"-*.whl "$wheels"/nvidia_cuda_runtime-*.whl "$wheels"/nvidia_cuda_cupti-*.whl; do
        unzip -q -o "$w" -d "$site" || die "could not unpack $w"
    done
    cp -r "$site/torch/include" "$LIBTORCH.partial/include"
    ln -s "$site"/torch/lib/*.so* "$LIBTORCH.partial/lib/"
    ln -s "$site"/nvidia/cu13/lib/*.so* "$LIBTORCH.partial/lib/"
    # tch links -ltorch; libtorch.so would pull in libtorch_cuda.so, so point it at the CPU library.
    rm -f "$LIBTORCH.partial/lib/libtorch.so"
    ln -s libtorch_cpu.so "$LIBTORCH.partial/lib/libtorch.so"
    echo "$TORCH_VERSION+cpu" > "$LIBTORCH.partial/build-version"
    echo cpu > "$LIBTORCH.partial/variant"
    rm -rf "$LIBTORCH"; mv "$LIBTORCH.partial" "$LIBTORCH"
    note "libtorch ready: $LIBTORCH"
}

# The CUDA libtorch: the same PyPI torch wheel (it is the CUDA build) with every NVIDIA wheel
# its metadata requires on Linux (cuDNN, cuBLAS, cuFFT, cuSPARSE, NCCL, ...), their libraries
# beside torch's in one lib folder the worker's rpath names. trainer/build.rs reads `variant`
# and links libtorch_cuda.so whatever the linker's --as-needed would say.
ensure_libtorch_cuda() {
    if [ "$(cat "$LIBTORCH/variant" 2>/dev/null)" = cuda ] && [ -e "$LIBTORCH/lib/libtorch_cuda.so" ]; then
        note "libtorch: $LIBTORCH ($(cat "$LIBTORCH/build-version"); FORGETLAB_TORCH=cpu for the small CPU build)"; return
    fi
    step "Installing libtorch $TORCH_VERSION (CUDA $CUDA_WHEEL_SERIES) from the PyPI wheels into $LIBTORCH (about 1.9 GB to download, 3.8 GB unpacked)"
    local wheels="$FORGETLAB_CACHE/wheels" cuda_wheels="$FORGETLAB_CACHE/wheels-cuda-$TORCH_VERSION" site="$FORGETLAB_CACHE/torch-site-cuda"
    mkdir -p "$wheels" "$cuda_wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "torch==$TORCH_VERSION" \
        || die "pip could not download torch==$TORCH_VERSION (needs CPython 3.11 and network access to PyPI)"
    rm -rf "$site" "$LIBTORCH.partial"
    mkdir -p "$site" "$LIBTORCH.partial/lib"
    unzip -q -o "$wheels"/torch-"$TORCH_VERSION"-*.whl -d "$site" || die "could not unpack the torch wheel"
    local requires
    requires="$(sed -n 's/^Requires-Dist: \(\(nvidia-\|cuda-toolkit\)[^;]*\);.*Linux.*/\1/p' "$site/torch-$TORCH_VERSION.dist-info/METADATA" | tr -d ' ')"
    [ -n "$requires" ] || die "the torch wheel's METADATA names no NVIDIA wheels; is it the CUDA build?"
    # shellcheck disable=SC2086 # one requirement per word
    python3 -m pip download --quiet --only-binary=:all: -d "$cuda_wheels" $requires \
        || die "pip could not download the NVIDIA wheels torch $TORCH_VERSION needs: $requires"
    for w in "$cuda_wheels"/nvidia_*.whl; do
        unzip -q -o "$w" -d "$site" || die "could not unpack $w"
    done
    cp -r "$site/torch/include" "$LIBTORCH.partial/include"
    ln -s "$site"/torch/lib/*.so* "$LIBTORCH.partial/lib/"
    for dir in "$site"/nvidia/*/lib; do
        ln -sf "$dir"/*.so* "$LIBTORCH.partial/lib/"
    done
    echo "$TORCH_VERSION+cu${CUDA_WHEEL_SERIES/./}" > "$LIBTORCH.partial/build-version"
    echo cuda > "$LIBTORCH.partial/variant"
    rm -rf "$LIBTORCH"; mv "$LIBTORCH.partial" "$LIBTORCH"
    note "libtorch ready: $LIBTORCH (CUDA; the worker trains on the CPU where no GPU is found)"
}

ensure_cargo_tools() {
    if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
        step "Building cargo-leptos $CARGO_LEPTOS_VERSION without downloads (about 17 minutes on 2 cores, once per machine)"
        cargo +"$RUST_TOOLCHAIN" install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked \
            --features no_downloads || die "cargo install cargo-leptos failed"
    fi
    note "cargo-leptos: $(cargo leptos --version)"
    if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
        step "Building wasm-bindgen-cli $WASM_BINDGEN_VERSION (must match Cargo.lock; about 3 minutes, once per machine)"
        # Not --locked: its lock file names a webpki-roots release the registry does not serve.
        cargo +"$RUST_TOOLCHAIN" install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" \
            || die "cargo install wasm-bindgen-cli failed"
    fi
    note "wasm-bindgen: $(wasm-bindgen --version)"
}

ensure_npm_packages() {
    if [ -d end2end/node_modules/@playwright/test ] && [ end2end/node_modules/.package-lock.json -nt end2end/package-lock.json ]; then
        note "npm packages: present"; return
    fi
    step "Installing the end-to-end test packages (npm ci in end2end/; no browser download)"
    (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) \
        || die "npm ci in end2end/ failed"
}

# `ensure_all run` or `ensure_all test`: what that command needs.
ensure_all() {
    step "Checking what is installed (for the $1 command)"
    ensure_debian_packages "$1"
    ensure_rust
    ensure_libtorch
    ensure_cargo_tools
    ensure_npm_packages
}

# One package at a time: two cores, and never the ssr and hydrate features in one build.
# The release bundle (profile wasm-release, then wasm-opt): 1.7 MB instead of 7 MB, what every
# page loads (bench/RESULTS.md). wasm-opt is binaryen 132 from npm (end2end/package.json, on
# PATH above): Debian's binaryen 108 breaks wasm-bindgen's externref table and nothing
# hydrates. About 5 minutes from scratch on 2 cores, 1-3 when nothing changed (wasm-bindgen
# and the JavaScript wasm-opt run again). The server writes its brotli and gzip copies.
build_frontend() {
    step "Building the browser bundle (cargo leptos --release: wasm32 + wasm-opt + CSS -> target/site)"
    case "$(command -v wasm-opt)" in
        "$ROOT/end2end/node_modules/.bin/wasm-opt") ;;
        *) die "wasm-opt should be binaryen 132 from end2end/node_modules (npm ci in end2end/), found: $(command -v wasm-opt || echo none)" ;;
    esac
    cargo leptos build --frontend-only --release || die "the wasm/CSS build failed (see the compiler output above)"
}

# Debug builds for the tests (target/debug); `release` for the run command (target/release).
build_worker() {
    step "Building the training worker (forgetlab-worker, links libtorch${1:+, $1})"
    cargo build ${1:+--$1} -p trainer || die "building the worker failed"
}

build_server() {
    step "Building the web server (forgetlab${1:+, $1})"
    cargo build ${1:+--$1} -p server || die "building the server failed"
}
