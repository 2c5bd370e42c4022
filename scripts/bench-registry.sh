#!/usr/bin/env bash
# The registry at scale: for each size (default: one and ten million names), in one run:
#   - the registry written by the bench tool `gen_registry` (every entry real; kept in
#     $BENCH_REGISTRY_DIR/<N> and reused when already there, since ten million take minutes);
#   - the database's size on disk;
#   - registry-stub's start-up time (process start to listening) and resident memory, at
#     start and after the load below;
#   - name proofs per second on one thread, in process (`gen_registry --prove`);
#   - light look-ups (GET /registry/names/<name>/proof, random names) per second under wrk,
#     with p50 and p99, at 32 connections;
#   - full tiles and a partial tile per second under wrk;
#   - a node's mirror syncing the whole log from scratch (every signature checked with
#     verify_strict on every core): its time, against the bound N / (verify_strict rate x
#     cores) measured in the same run, and its peak resident memory;
#   - the node's name look-up at that size: a hit (random registered names) and a miss
#     (names nobody holds) per second under wrk.
# The registry and the node get core 0 ... while wrk runs on core 1; the mirror sync has both.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${*:-1000000 10000000}
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
ROOT=${BENCH_REGISTRY_DIR:-/tmp/grant-bench-registry}
REG=127.0.0.1:18671
NODE=127.0.0.1:18681

if ! command -v wrk >/dev/null; then
  echo "installing wrk from Debian's packages" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin grant-node --example gen_registry >&2
cargo build --release -p registry-stub >&2

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
wait_up() { # url
  for _ in $(seq 1 600); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "not up: $1" >&2
  return 1
}
wrk_run() { # label url [script] -> "rps p50 p99 non2xx"
  local out
  if [ -n "${3:-}" ]; then
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$3" "$2")
  else
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2")
  fi
  echo "$out" >"$tmp/wrk-$1.txt"
  local rps p50 p99 non
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$rps $p50 $p99 ${non:-0}"
}
random_lua() { # path-prefix path-suffix n
  cat <<LUA
math.randomseed(42)
request = function()
  return wrk.format("GET", "$1" .. math.random(0, $3 - 1) .. "$2")
end
LUA
}
# Full level-0 tiles at random, by their tlog path (x001/234 for 1234).
tiles_lua() { # full-tile count
  cat <<LUA
math.randomseed(7)
local function tile_path(n)
  local s = string.format("%03d", n % 1000)
  n = math.floor(n / 1000)
  while n > 0 do
    s = string.format("x%03d/", n % 1000) .. s
    n = math.floor(n / 1000)
  end
  return s
end
request = function()
  return wrk.format("GET", "/registry/tile/0/" .. tile_path(math.random(0, $1 - 1)))
end
LUA
}

verify_rate=$(taskset -c 1 target/release/examples/gen_registry --verify-rate | python3 -c 'import json,sys; print(json.load(sys.stdin)["verify_strict_per_second"])')
cores=$(nproc)
echo "registry benchmark, $(date -u +%Y-%m-%d), $cores cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), wrk -t1 -c$CONNS -d${DURATION}s; verify_strict on one core: $verify_rate/s"

for n in $SIZES; do
  dir="$ROOT/$n"
  gen="(reused)"
  if [ ! -f "$dir/registry.sqlite3" ]; then
    rm -rf "$dir"
    t0=$(now)
    target/release/examples/gen_registry "$dir" "$n" >"$tmp/gen.json"
    gen="$(since "$t0") s"
  fi
  db_bytes=$(du -cb "$dir"/registry.sqlite3* | awk 'END {print $1}')

  # The registry: start-up, memory, proofs, tiles.
  t0=$(now)
  taskset -c 0 target/release/registry-stub --listen "$REG" --data-dir "$dir" --pow-bits 0 \
    >"$tmp/reg.out" 2>"$tmp/reg.err" &
  reg_pid=$!
  pids+=("$reg_pid")
  wait_up "http://$REG/registry/checkpoint"
  startup=$(since "$t0")
  reg_rss_start=$(rss_mib "$reg_pid")
  reg_key=$(curl -sf "http://$REG/registry/metadata" | python3 -c 'import json, sys; print(json.load(sys.stdin)["public_key"])')

  prove=$(taskset -c 1 target/release/examples/gen_registry --prove "$dir" "$n" 20000)
  proofs_per_s=$(echo "$prove" | python3 -c 'import json,sys; print(json.load(sys.stdin)["proofs_per_second"])')
  proof_bytes=$(echo "$prove" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mean_proof_bytes"])')
  random_lua "/registry/names/n" "/proof" "$n" >"$tmp/light.lua"
  read -r light_rps light_p50 light_p99 light_non <<<"$(wrk_run light "http://$REG/" "$tmp/light.lua")"
  tiles_lua $((n / 256)) >"$tmp/tiles.lua"
  read -r full_rps full_p50 full_p99 full_non <<<"$(wrk_run full "http://$REG/" "$tmp/tiles.lua")"
  last=$((n / 256)); width=$((n % 256))
  partial_path=$(python3 -c "
n=$last; s='%03d' % (n % 1000); n//=1000
while n > 0: s='x%03d/' % (n % 1000) + s; n//=1000
print(s)")
  if [ "$width" -gt 0 ]; then
    read -r part_rps part_p50 part_p99 part_non <<<"$(wrk_run partial "http://$REG/registry/tile/0/$partial_path.p/$width")"
  else
    part_rps="-"; part_p50="-"; part_p99="-"; part_non=0
  fi
  reg_rss_after=$(rss_mib "$reg_pid")

  # A node's mirror syncing the whole log from scratch, then its look-ups.
  t0=$(now)
  # A new owner name each run: the registry is reused between runs and keeps earlier ones.
  target/release/grant-node serve --listen "$NODE" --data-dir "$tmp/node-$n" \
    --owner "bench-owner$(date +%s)" \
    --registry "http://$REG" --registry-key "$reg_key" >"$tmp/node.out" 2>"$tmp/node.err" &
  node_pid=$!
  pids+=("$node_pid")
  # The node syncs before it answers.
  until curl -sf "http://$NODE/healthz" >/dev/null 2>&1; do
    kill -0 "$node_pid" 2>/dev/null || { cat "$tmp/node.err" >&2; exit 1; }
    sleep 0.2
  done
  # (The node registers its owner at start, so the log ends one entry past the generated ones.)
  size_of() { curl -sf "$1/registry/checkpoint" | python3 -c 'import json, sys; print(json.load(sys.stdin)["size"])' 2>/dev/null || echo 0; }
  until [ "$(size_of "http://$NODE")" -gt "$n" ] && [ "$(size_of "http://$NODE")" = "$(size_of "http://$REG")" ]; do
    kill -0 "$node_pid" || { cat "$tmp/node.err" >&2; exit 1; }
    sleep 0.5
  done
  sync_s=$(since "$t0")
  node_hwm=$(hwm_mib "$node_pid")
  bound=$(awk -v n="$n" -v r="$verify_rate" -v c="$cores" 'BEGIN { printf "%.1f", n / (r * c) }')
  random_lua "/registry/names/n" "" "$n" >"$tmp/hit.lua"
  random_lua "/registry/names/nobody" "" "$n" >"$tmp/miss.lua"
  read -r hit_rps hit_p50 hit_p99 hit_non <<<"$(wrk_run hit "http://$NODE/" "$tmp/hit.lua")"
  read -r miss_rps miss_p50 miss_p99 miss_non <<<"$(wrk_run miss "http://$NODE/" "$tmp/miss.lua")"
  node_db=$(du -cb "$tmp/node-$n"/*.sqlite3* | awk 'END {print $1}')
  kill "$node_pid" "$reg_pid"
  wait "$node_pid" "$reg_pid" 2>/dev/null || true
  rm -rf "$tmp/node-$n"

  echo
  echo "== $n names (generated: $gen)"
  echo "registry database on disk:   $((db_bytes / 1048576)) MiB ($((db_bytes / n)) bytes per name)"
  echo "registry start-up:           ${startup} s"
  echo "registry resident memory:    ${reg_rss_start} MiB at start, ${reg_rss_after} MiB after the load below"
  echo "name proofs, one thread:     ${proofs_per_s}/s in process (mean proof ${proof_bytes} bytes)"
  echo "light look-ups (wrk):        ${light_rps}/s  p50 ${light_p50}  p99 ${light_p99}  non-2xx ${light_non}"
  echo "full tiles (wrk):            ${full_rps}/s  p50 ${full_p50}  p99 ${full_p99}  non-2xx ${full_non}"
  echo "partial tile (wrk):          ${part_rps}/s  p50 ${part_p50}  p99 ${part_p99}  non-2xx ${part_non}"
  echo "mirror whole-log sync:       ${sync_s} s; bound by verify_strict on $cores cores ${bound} s (ratio $(awk -v a="$bound" -v b="$sync_s" 'BEGIN { printf "%.2f", a / b }')); peak resident memory ${node_hwm} MiB; mirror on disk $((node_db / 1048576)) MiB"
  echo "node name look-up, hit:      ${hit_rps}/s  p50 ${hit_p50}  p99 ${hit_p99}  non-2xx ${hit_non}"
  echo "node name look-up, miss:     ${miss_rps}/s  p50 ${miss_p50}  p99 ${miss_p99}  non-2xx ${miss_non}"
done
