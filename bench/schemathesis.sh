#!/usr/bin/env bash
# Schemathesis (from PyPI) against a live debug server and the OpenAPI document it publishes
# (`GET /api/v1/openapi.json`, server/openapi.json): issue 7's fuzzing run. Every answer must
# be a deliberate one (no 5xx), with the status, content type, headers and body the document
# gives. Results: bench/RESULTS.md, "Schemathesis (issue 7)".
#
#   bench/schemathesis.sh [CASES_PER_OPERATION] [SEED]     # defaults: 100, 7
#
# Idempotent: makes the venv ($FORGETLAB_CACHE/schemathesis-venv) when it is missing, builds
# the server (`cargo build -p server`, nothing else), and starts it on a free port with a fresh
# data directory, its administrator made from FORGETLAB_ADMIN_USER/_PASSWORD (set here). When the
# worker binary is there (FORGETLAB_WORKER_BIN, or target/debug/forgetlab-worker from
# `cargo build -p trainer`), a small study of two tiny runs trains first, so that the routes
# over finished runs (samples, classes, data map, compare, exports, the study report) answer
# with data; the server then restarts without workers, so that what the fuzzer launches stays
# queued. The fuzzing runs as an administrator's API token (every route's parser is reached):
# first every operation but `DELETE /tokens/{id}` and `PATCH /users/{name}` (they might revoke
# the token the run uses, or demote its account), then those two. The event streams
# (`/events`, `/runs/{id}/events`) never end and are left out. Reports (JUnit, NDJSON) and
# the server's log go to $FORGETLAB_SCHEMATHESIS_OUT (default: a temporary directory, printed
# at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

cases=${1:-100}
seed=${2:-7}
version=4.32.5
venv=${FORGETLAB_SCHEMATHESIS_VENV:-$FORGETLAB_CACHE/schemathesis-venv}
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    step "Installing schemathesis $version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version" || die "pip could not install schemathesis==$version (needs network access to PyPI)"
fi

step "Building the server (debug)"
cargo build -p server
bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/forgetlab"
worker_bin=${FORGETLAB_WORKER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/forgetlab-worker}

data=$(mktemp -d)
out=${FORGETLAB_SCHEMATHESIS_OUT:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
export FORGETLAB_ADMIN_USER=fuzz-admin-7q
FORGETLAB_ADMIN_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
export FORGETLAB_ADMIN_PASSWORD
server_pid=

start_server() {
    FORGETLAB_ADDR="127.0.0.1:$port" FORGETLAB_DATA_DIR="$data" FORGETLAB_WORKERS="$1" FORGETLAB_DEVICE=cpu \
        FORGETLAB_WORKER_BIN="$worker_bin" FORGETLAB_WORKER_TOKEN=fuzz-worker-token-of-at-least-32-bytes RUST_LOG=info,tower_http=warn \
        "$bin" >> "$out/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 240); do
        curl -fsS "$url/api/v1/health" >/dev/null 2>&1 && return
        kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$out/server.log"; die "the server exited before answering"; }
        sleep 0.5
    done
    die "the server did not answer on port $port"
}

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -rf "$data"' EXIT

token() {
    curl -fsS -u "$FORGETLAB_ADMIN_USER:$FORGETLAB_ADMIN_PASSWORD" -X POST "$url/api/v1/tokens" \
        -H 'content-type: application/json' -d "{\"name\": \"$1\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

if [ -x "$worker_bin" ]; then
    step "Training a small study of two tiny runs (one local worker)"
    start_server 1
    seed_token=$(token seeding)
    auth=(-H "Authorization: Bearer $seed_token")
    curl -fsS "${auth[@]}" -X POST "$url/api/v1/studies" -H 'content-type: application/json' -d '{"name": "fuzz seed", "archs": ["small_cnn"], "seeds": [1, 2],
        "base": {"dataset": "fashion-mnist", "epochs": 2, "warmup_epochs": 1, "train_subset": 256, "val_subset": 64, "batch_size": 32, "device": "cpu"}}' >/dev/null
    # A weights file, so that GET /weights lists one (an 8-byte header length, then `{}`).
    printf '\x02\x00\x00\x00\x00\x00\x00\x00{}' | curl -fsS "${auth[@]}" -X PUT --data-binary @- "$url/api/v1/weights/tiny.safetensors" >/dev/null
    for _ in $(seq 1 600); do
        done_runs=$(curl -fsS "${auth[@]}" "$url/api/v1/studies/1" | python3 -c 'import json, sys; s = json.load(sys.stdin); print(sum(r["run"]["status"] in ("succeeded", "failed", "cancelled") for r in s["runs"]))')
        [ "$done_runs" = 2 ] && break
        sleep 1
    done
    curl -fsS "${auth[@]}" "$url/api/v1/runs?sort=id" | python3 -c 'import json, sys; print("    seeded runs:", ", ".join("#%s %s" % (r["id"], r["status"]) for r in json.load(sys.stdin)))'
    stop_server
else
    note "no worker binary at $worker_bin: no finished runs to fuzz over (cargo build -p trainer makes one)"
fi

step "Fuzzing $url with schemathesis $version: $cases cases per operation, seed $seed"
start_server 0
api_token=$(token schemathesis)
# FORGETLAB_SCHEMATHESIS_CHECKS=all adds schemathesis's other checks (ignored_auth,
# unsupported_method, negative_data_rejection, ...); some of those judge the document's
# strictness rather than the server (e.g. numbers sent as strings are accepted on purpose).
checks=${FORGETLAB_SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}
common=(--checks "$checks" --max-examples "$cases" --seed "$seed" --workers 1 --request-timeout 60
    --exclude-path-regex '/events$' --suppress-health-check all)
status=0
# Run from $out: schemathesis keeps a crash cache in `.schemathesis/` of its working directory
# (and would replay it next time); a fresh one per run keeps runs of one seed alike.
cd "$out"
# Two operations could take the fuzzing account's own rights away mid-run: revoking its token,
# and changing its role (the stateful phase finds account names in GET /users). They run
# last, on their own, without the stateful phase, with a token made after the main pass (the
# token ids the fuzzer tries are mostly older ones).
"$venv/bin/schemathesis" run "$url/api/v1/openapi.json" "${common[@]}" -H "Authorization: Bearer $api_token" \
    --exclude-operation-id revokeToken --exclude-operation-id updateUser --report junit,ndjson --report-dir "$out/main" || status=$?
curl -fsS -H "Authorization: Bearer $api_token" "$url/api/v1/users" >/dev/null || die "the fuzzing token lost its administrator's rights during the run: its results mean little"
last_token=$(token schemathesis-last)
"$venv/bin/schemathesis" run "$url/api/v1/openapi.json" "${common[@]}" -H "Authorization: Bearer $last_token" \
    --include-operation-id revokeToken --include-operation-id updateUser --phases examples,coverage,fuzzing --report junit,ndjson --report-dir "$out/last" || status=$?
curl -fsS "$url/api/v1/health" >/dev/null || die "the server stopped answering"
if grep -E 'panicked|ERROR' "$out/server.log" | grep -v 'tower_http' > "$out/server-errors.txt"; then
    note "the server logged errors or panics ($out/server-errors.txt):"; head -n 20 "$out/server-errors.txt"
    status=1
fi
stop_server
cd "$ROOT"
step "Requests per operation and their answers"
python3 - "$out"/main/*.ndjson "$out"/last/*.ndjson <<'PY'
import collections, json, sys
per_op = collections.defaultdict(collections.Counter)
phases = collections.Counter()
failed = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path):
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, case in recorder.get("cases", {}).items():
            interaction = recorder.get("interactions", {}).get(case_id) or {}
            response = interaction.get("response")
            per_op[(case["value"]["path"], case["value"]["method"])][response["status_code"] if response else "no answer"] += 1
            phases[finished["phase"]] += 1
        for checks in recorder.get("checks", {}).values():
            failed.update(check["name"] for check in checks if check["status"] != "success")
document = json.load(open("server/openapi.json"))
documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
for key in sorted(per_op):
    counts = per_op[key]
    if key in documented:
        print(f"{sum(counts.values()):6d}  {key[1]:6s} {key[0]:38s} " + ", ".join(f"{code}: {n}" for code, n in sorted(counts.items(), key=lambda kv: str(kv[0]))))
others = [key for key in per_op if key not in documented]
print(f"{sum(sum(per_op[k].values()) for k in others):6d}  requests with methods a path does not take: " + ", ".join(f"{code}: {n}" for code, n in sorted(sum((per_op[k] for k in others), collections.Counter()).items(), key=lambda kv: str(kv[0]))))
print(f"{sum(phases.values()):6d}  requests in all; by phase: " + ", ".join(f"{p} {n}" for p, n in phases.items()) + "; failed checks: " + (", ".join(f"{c} {n}" for c, n in failed.items()) or "none"))
PY
note "reports and the server's log: $out"
exit "$status"
