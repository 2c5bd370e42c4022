#!/usr/bin/env bash
# Whole-system load benchmark on loopback, bounded in time (about 2 minutes).
#
# The server under test is pinned to core 0 with one worker thread, wrk to core 1, and every
# case runs with the same wrk settings:
#   (a) a bare hyper server answering GET /                      — the HTTP ceiling
#   (b) GET /auth/check with one valid carte reused             — the warm path
#   (c) GET /auth/check with a never-seen carte on every request — the cold path
#   (d) GET /api/profile with a never-seen carte                 — the cold path, real handler
#   (e) PUT /api/grants/bench-app, durable grant changes
# and then over TLS (the node restarted with --tls-cert/--tls-key, against bare rustls+hyper):
#   (f) bare rustls+hyper GET /, keep-alive     (g) the warm path over TLS, keep-alive
#   (h) bare rustls+hyper, one new TLS connection per request
#   (i) the node's /healthz, one new TLS connection per request
# and then on PostgreSQL (when installed; the server on core 0 as before, PostgreSQL, the
# registry stub and wrk on core 1):
#   (j) the cold path (c) on one process      (k) durable grant changes (e) on one process
#   (l) the cold path on two processes        (m) durable grant changes on two processes
# (two processes share core 0, each with one worker; two wrk instances, half the
# connections each, one per process, summed).
# For each: requests/s, p50 and p99 latency, non-2xx count and server CPU per request; then the
# ratios b/a, c/a and c against the single-core verify_strict rate measured in the same run.
# Also runs the criterion benches when BENCH_CRITERION=1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
POOL=${BENCH_POOL:-400000}
NODE=127.0.0.1:18650
BARE=127.0.0.1:18660

if ! command -v wrk >/dev/null; then
  echo "installing wrk from Debian's packages" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin grant-node --example bare_hyper --example bench_setup >&2
cargo build --release -p registry-stub >&2

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

taskset -c 0 target/release/examples/bare_hyper "$BARE" >/dev/null &
pids+=($!); bare_pid=$!
TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/grant-node serve --listen "$NODE" \
  --data-dir "$tmp/node" --owner alice --pow-bits 8 >"$tmp/node.out" 2>"$tmp/node.err" &
pids+=($!); node_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://$NODE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
verify_rate=$(taskset -c 1 target/release/examples/bench_setup "http://$NODE" "$tmp/node" "$tmp" "$POOL" | awk '/verify_rate/ {print $2}')

cat >"$tmp/one.lua" <<LUA
local f = io.open("$tmp/warm.txt"); local c = f:read("*l"); f:close()
wrk.headers["Authorization"] = "Carte " .. c
LUA
pool_lua() {
  cat <<LUA
local cartes = {}
for line in io.lines("$1") do cartes[#cartes + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #cartes then i = 1 end
  return wrk.format("GET", "$2", { ["Authorization"] = "Carte " .. cartes[i] })
end
LUA
}
pool_lua "$tmp/pool_c.txt" "/auth/check?scope=view-profile" >"$tmp/pool_c.lua"
pool_lua "$tmp/pool_d.txt" "/api/profile" >"$tmp/pool_d.lua"
cat >"$tmp/put.lua" <<LUA
local f = io.open("$tmp/owner.txt"); local c = f:read("*l"); f:close()
local i = 0
request = function()
  i = i + 1
  local scope = (i % 2 == 0) and '["view-profile"]' or '["view-profile","react"]'
  return wrk.format("PUT", "/api/grants/bench-app",
    { ["Authorization"] = "Carte " .. c, ["Content-Type"] = "application/json" },
    '{"scope":' .. scope .. '}')
end
LUA

ticks=$(getconf CLK_TCK)
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
rss_start=$(rss "$node_pid")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A RPS P50 P99 NON2XX CPU REQS
run() { # name pid url [script]
  local name=$1 pid=$2 url=$3 script=${4:-}
  local before after out
  before=$(cpu "$pid")
  if [ -n "$script" ]; then
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url")
  else
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
  fi
  after=$(cpu "$pid")
  REQS[$name]=$(echo "$out" | awk '/requests in/ {print $1}')
  RPS[$name]=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  P50[$name]=$(echo "$out" | awk '$1=="50%" {print $2}')
  P99[$name]=$(echo "$out" | awk '$1=="99%" {print $2}')
  NON2XX[$name]=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  NON2XX[$name]=${NON2XX[$name]:-0}
  CPU[$name]=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="${REQS[$name]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
}
run a "$bare_pid" "http://$BARE/"
run b "$node_pid" "http://$NODE/auth/check?scope=view-profile" "$tmp/one.lua"
run c "$node_pid" "http://$NODE/" "$tmp/pool_c.lua"
rss_after_cold=$(rss "$node_pid")
run d "$node_pid" "http://$NODE/" "$tmp/pool_d.lua"
run e "$node_pid" "http://$NODE/" "$tmp/put.lua"

# Over TLS: the same node (same data) serving HTTPS, against bare rustls+hyper, both pinned
# to core 0. A self-signed certificate made here (wrk does not verify it).
kill "$node_pid" "$bare_pid" 2>/dev/null || true
wait "$node_pid" "$bare_pid" 2>/dev/null || true
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$tmp/tls.key" -out "$tmp/tls.pem" 2>/dev/null
taskset -c 0 target/release/examples/bare_hyper "$BARE" "$tmp/tls.pem" "$tmp/tls.key" >/dev/null &
pids+=($!); bare_pid=$!
TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/grant-node serve --listen "$NODE" \
  --data-dir "$tmp/node" --owner alice --pow-bits 8 \
  --tls-cert "$tmp/tls.pem" --tls-key "$tmp/tls.key" >"$tmp/node-tls.out" 2>"$tmp/node-tls.err" &
pids+=($!); node_pid=$!
for _ in $(seq 1 100); do
  curl -sfk "https://$NODE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
cat >"$tmp/close.lua" <<LUA
wrk.headers["Connection"] = "close"
LUA
run f "$bare_pid" "https://$BARE/"
run g "$node_pid" "https://$NODE/auth/check?scope=view-profile" "$tmp/one.lua"
run h "$bare_pid" "https://$BARE/" "$tmp/close.lua"
run i "$node_pid" "https://$NODE/healthz" "$tmp/close.lua"

# On PostgreSQL: the same node, its shared data in a cluster made here.
PG_CASES=""
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  kill "$node_pid" "$bare_pid" 2>/dev/null || true
  wait "$node_pid" "$bare_pid" 2>/dev/null || true
  chmod 755 "$tmp"
  pg_url=$(taskset -c 1 bash scripts/pg.sh start "$tmp/pg")
  trap 'bash scripts/pg.sh stop "$tmp/pg"; cleanup' EXIT
  psql "$pg_url" -qc "CREATE DATABASE bench"
  db=${pg_url%/postgres}/bench
  REG=127.0.0.1:18670
  taskset -c 1 target/release/registry-stub --listen "$REG" --data-dir "$tmp/reg" --pow-bits 0 \
    >"$tmp/reg.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://$REG/registry/metadata" >/dev/null 2>&1 && break
    sleep 0.1
  done
  reg_key=$(curl -sf "http://$REG/registry/metadata" | python3 -c 'import json, sys; print(json.load(sys.stdin)["public_key"])')
  pg_node() { # port data-dir
    TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/grant-node serve --listen "127.0.0.1:$1" \
      --data-dir "$2" --owner alice --database "$db" --database-key "$tmp/db.key" \
      --registry "http://$REG" --registry-key "$reg_key" >"$2.out" 2>"$2.err" &
    pids+=($!)
    for _ in $(seq 1 200); do
      curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  }
  pg_node 18680 "$tmp/p1"
  p1_pid=${pids[-1]}
  mkdir -p "$tmp/pgout"
  BENCH_REGISTRY="http://$REG" BENCH_DATABASE="$db" BENCH_DATABASE_KEY="$tmp/db.key" \
    taskset -c 1 target/release/examples/bench_setup "http://127.0.0.1:18680" "$tmp/p1" \
    "$tmp/pgout" "$POOL" >/dev/null
  pool_lua "$tmp/pgout/pool_c.txt" "/auth/check?scope=view-profile" >"$tmp/pg_c.lua"
  sed "s#$tmp/owner.txt#$tmp/pgout/owner.txt#" "$tmp/put.lua" >"$tmp/pg_put.lua"
  # PostgreSQL's own CPU per request (every process of the postgres user: this cluster's).
  pg_cpu() { local t=0 p; for p in $(pgrep -u postgres); do t=$((t + $(cpu "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
  declare -A PGCPU
  pg_run() { # name runner args...
    local name=$1 before after; shift
    before=$(pg_cpu); "$@"; after=$(pg_cpu)
    PGCPU[$name]=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="${REQS[$name]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  }
  pg_run j run j "$p1_pid" "http://127.0.0.1:18680/" "$tmp/pg_c.lua"
  pg_run k run k "$p1_pid" "http://127.0.0.1:18680/" "$tmp/pg_put.lua"
  pg_node 18681 "$tmp/p2"
  p2_pid=${pids[-1]}
  run2() { # name script-for-both
    local name=$1 script=$2 before after o1 o2
    before=$(( $(cpu "$p1_pid") + $(cpu "$p2_pid") ))
    taskset -c 1 wrk -t1 -c$((CONNS / 2)) -d"${DURATION}s" --latency -s "$script" \
      "http://127.0.0.1:18680/" >"$tmp/w1" &
    local first=$!
    taskset -c 1 wrk -t1 -c$((CONNS / 2)) -d"${DURATION}s" --latency -s "$script" \
      "http://127.0.0.1:18681/" >"$tmp/w2"
    wait "$first"
    after=$(( $(cpu "$p1_pid") + $(cpu "$p2_pid") ))
    REQS[$name]=$(cat "$tmp/w1" "$tmp/w2" | awk '/requests in/ {n += $1} END {print n}')
    RPS[$name]=$(cat "$tmp/w1" "$tmp/w2" | awk '/Requests\/sec/ {n += $2} END {printf "%.0f", n}')
    P50[$name]=$(awk '$1=="50%" {print $2}' "$tmp/w1")/$(awk '$1=="50%" {print $2}' "$tmp/w2")
    P99[$name]=$(awk '$1=="99%" {print $2}' "$tmp/w1")/$(awk '$1=="99%" {print $2}' "$tmp/w2")
    NON2XX[$name]=$(cat "$tmp/w1" "$tmp/w2" | awk '/Non-2xx/ {n += $NF} END {print n + 0}')
    CPU[$name]=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="${REQS[$name]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  }
  # Fresh cartes for the second run: the second half of the pool file, so that neither
  # process has seen them.
  tail -n $((POOL / 2)) "$tmp/pgout/pool_c.txt" >"$tmp/pgout/pool_c2.txt"
  pool_lua "$tmp/pgout/pool_c2.txt" "/auth/check?scope=view-profile" >"$tmp/pg_c2.lua"
  pg_run l run2 l "$tmp/pg_c2.lua"
  pg_run m run2 m "$tmp/pg_put.lua"
  PG_CASES="j k l m"
fi

for c in c d; do
  if [ "${REQS[$c]}" -gt "$POOL" ]; then
    echo "warning: case $c sent ${REQS[$c]} requests with a pool of $POOL cartes; raise BENCH_POOL" >&2
  fi
done

echo "grant-node load benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), wrk -t1 -c$CONNS -d${DURATION}s"
echo
echo "| case | req/s | p50 | p99 | non-2xx | server CPU µs/req |"
echo "|---|---|---|---|---|---|"
for c in a b c d e f g h i $PG_CASES; do
  label=$(case $c in a) echo "(a) bare hyper GET /";; b) echo "(b) /auth/check, warm carte";; c) echo "(c) /auth/check, fresh carte";; d) echo "(d) /api/profile, fresh carte";; e) echo "(e) PUT /api/grants (durable)";;
    f) echo "(f) bare rustls+hyper GET /, keep-alive";; g) echo "(g) TLS /auth/check, warm carte, keep-alive";;
    h) echo "(h) bare rustls+hyper, a new TLS connection per request";; i) echo "(i) TLS /healthz, a new TLS connection per request";;
    j) echo "(j) PostgreSQL, 1 process: fresh carte";; k) echo "(k) PostgreSQL, 1 process: PUT /api/grants";;
    l) echo "(l) PostgreSQL, 2 processes: fresh carte";; m) echo "(m) PostgreSQL, 2 processes: PUT /api/grants";; esac)
  echo "| $label | ${RPS[$c]} | ${P50[$c]} | ${P99[$c]} | ${NON2XX[$c]} | ${CPU[$c]} |"
done
echo
awk -v a="${RPS[a]}" -v b="${RPS[b]}" -v c="${RPS[c]}" -v v="$verify_rate" 'BEGIN {
  printf "b/a = %.2f (target >= 0.60)\n", b / a
  printf "c/a = %.2f\n", c / a
  printf "c / single-core verify_strict (%.0f/s) = %.2f (target >= 0.80)\n", v, c / v
}'
echo "grant changes: ${RPS[e]}/s durable (target >= 5000)"
awk -v f="${RPS[f]}" -v g="${RPS[g]}" -v h="${RPS[h]}" -v i="${RPS[i]}" 'BEGIN {
  printf "TLS: warm carte over TLS / bare rustls+hyper (g/f) = %.2f\n", g / f
  printf "TLS: new connections/s, node / bare rustls+hyper (i/h) = %.2f\n", i / h
}'
if [ -n "$PG_CASES" ]; then
  awk -v c="${RPS[c]}" -v e="${RPS[e]}" -v j="${RPS[j]}" -v k="${RPS[k]}" -v l="${RPS[l]}" -v m="${RPS[m]}" 'BEGIN {
    printf "PostgreSQL / SQLite, one process: cold carte (j/c) = %.2f, grant changes (k/e) = %.2f\n", j / c, k / e
    printf "two processes / one, on PostgreSQL: cold carte (l/j) = %.2f, grant changes (m/k) = %.2f\n", l / j, m / k
  }'
  echo "PostgreSQL CPU µs/req: j ${PGCPU[j]}, k ${PGCPU[k]}, l ${PGCPU[l]}, m ${PGCPU[m]}"
fi
echo "node resident memory: ${rss_start} MiB at start, ${rss_after_cold} MiB after the cold-path run (verified-carte cache full to its bound)"

if [ "${BENCH_CRITERION:-0}" = 1 ]; then
  cargo bench --bench carte_verify --bench grant_check --bench registry_replay --bench name_map --bench sig_batch
fi
