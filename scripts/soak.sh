#!/usr/bin/env bash
# A soak under load, on loopback only, bounded in time (SOAK_SECONDS, default 300).
#
# wrk mixes carte-authenticated reads (fresh cartes, so the verified-carte cache fills to its
# bound, and one warm carte) with durable grant changes, while a second client walks the
# consent flow (log in, consent page, Allow, redirect) over and over with curl. Every 10 s the
# node's resident memory is sampled. The run passes when there were no errors, memory stayed
# flat after warm-up and the cache never exceeded its bound.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${SOAK_SECONDS:-300}
NODE=127.0.0.1:18750
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin grant-node --example bench_setup >&2

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

target/release/grant-node serve --listen "$NODE" --data-dir "$tmp/node" --owner alice --pow-bits 8 \
  >"$tmp/node.out" 2>"$tmp/node.err" &
pids+=($!); node_pid=$!
for _ in $(seq 1 100); do curl -sf "http://$NODE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
link=$(grep -o 'http://[^ ]*/setup?token=[^ ]*' "$tmp/node.out")
token=${link##*token=}
curl -sf -o /dev/null -c "$tmp/jar" -b "$tmp/jar" -H "Origin: http://$NODE" \
  --data-urlencode "token=$token" --data-urlencode "password=correct horse battery" "http://$NODE/setup"
pool=$((SECONDS_TOTAL * 8000))
target/release/examples/bench_setup "http://$NODE" "$tmp/node" "$tmp" "$pool" 100000 >/dev/null

cat >"$tmp/mix.lua" <<LUA
local fresh = {}
for line in io.lines("$tmp/pool_c.txt") do fresh[#fresh + 1] = line end
local f = io.open("$tmp/warm.txt"); local warm = f:read("*l"); f:close()
f = io.open("$tmp/owner.txt"); local owner = f:read("*l"); f:close()
local i, n = 0, 0
request = function()
  n = n + 1
  local k = n % 10
  if k < 6 then
    i = i + 1; if i > #fresh then i = 1 end
    return wrk.format("GET", "/auth/check?scope=view-profile", { ["Authorization"] = "Carte " .. fresh[i] })
  elseif k < 9 then
    return wrk.format("GET", "/api/profile", { ["Authorization"] = "Carte " .. warm })
  else
    local scope = (n % 20 == 9) and '["view-profile"]' or '["view-profile","react"]'
    return wrk.format("PUT", "/api/grants/bench-app",
      { ["Authorization"] = "Carte " .. owner, ["Content-Type"] = "application/json" }, '{"scope":' .. scope .. '}')
  end
end
LUA

rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$node_pid/status"; }
echo "$(rss)" >"$tmp/rss"
( while sleep 10; do echo "$(rss)" >>"$tmp/rss"; done ) &
pids+=($!)
wrk -t1 -c16 -d"${SECONDS_TOTAL}s" -s "$tmp/mix.lua" "http://$NODE/" >"$tmp/wrk.out" &
wrk_pid=$!
pids+=($wrk_pid)

consents=0; consent_errors=0
end=$((SECONDS + SECONDS_TOTAL))
while [ $SECONDS -lt $end ] && read -r url; do
  page=$(curl -s -c "$tmp/jar" -b "$tmp/jar" "$url")
  id=$(printf '%s' "$page" | grep -o 'name="request_id" value="[^"]*"' | cut -d'"' -f4)
  csrf=$(printf '%s' "$page" | grep -o 'name="csrf" value="[^"]*"' | cut -d'"' -f4)
  code=$(curl -s -o /dev/null -w '%{http_code}' -c "$tmp/jar" -b "$tmp/jar" -H "Origin: http://$NODE" \
    --data-urlencode "request_id=$id" --data-urlencode "csrf=$csrf" --data-urlencode "scope=view-profile" \
    --data-urlencode "decision=allow" "http://$NODE/grant")
  if [ "$code" = 303 ]; then consents=$((consents + 1)); else consent_errors=$((consent_errors + 1)); fi
done <"$tmp/grants.txt"
wait "$wrk_pid" || true

requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.out"); non2xx=${non2xx:-0}
errors=$(awk '/Socket errors/ {print}' "$tmp/wrk.out")
cache=$(curl -s "http://$NODE/metrics" | awk '/^grant_node_carte_cache_entries/ {print $2}')
# Warm-up: the first minute, while the verified-carte cache fills to its bound for the first
# time; from then on memory must stay flat.
start=$(sed -n 1p "$tmp/rss"); first=$(sed -n 7p "$tmp/rss"); first=${first:-$start}
last=$(tail -n1 "$tmp/rss"); peak=$(sort -n "$tmp/rss" | tail -n1)
echo "soak: RSS samples every 10 s (MiB): $(tr '\n' ' ' <"$tmp/rss")"
echo "soak: ${SECONDS_TOTAL}s, $requests wrk requests ($non2xx non-2xx) ${errors:+($errors)}, $consents consent flows ($consent_errors failed)"
echo "soak: node RSS $start MiB at start, $first MiB after a minute, $last MiB at the end, peak $peak MiB; verified-carte cache $cache entries (bound 100000)"
status=0
[ "$non2xx" = 0 ] && [ -z "$errors" ] && [ "$consent_errors" = 0 ] || { echo "soak: errors" >&2; status=1; }
[ "${cache%.*}" -le 100000 ] || { echo "soak: cache over its bound" >&2; status=1; }
[ "$last" -le $((first * 5 / 4 + 8)) ] || { echo "soak: memory grew" >&2; status=1; }
exit $status
