#!/usr/bin/env bash
# Load test: what the middleware costs against a bare route, in axum and in actix-web.
#
#   bash examples/load/run.sh            # about 2 minutes
#
# For each framework, one server (`load_target`, one worker thread) serves routes doing
# the same work on the same 1 KiB body: /bare (read the body, 204), /verified (the same
# behind WebhookVerify with the default moka dedup store) and, when redis-server is
# installed, /verified-redis (with a RedisStore on a local redis-server: two round trips
# per request, one EVALSHA to claim and one to complete). wrk (one thread,
# CONNECTIONS connections, the other core) drives them in turn, bare then verified,
# ROUNDS times, DURATION each, after a warm-up. Every request is pre-signed with a new
# eventId (load_presign), so the verified route verifies and inserts into the store
# every time. Each ratio is verified/bare within one round; the table gives medians.
# Throughput depends on how much CPU the shared machine leaves the server, so the
# server's own CPU time per request (from /proc) is reported too: that ratio is what
# the middleware costs whatever else runs.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
BODY_BYTES=${BODY_BYTES:-1024}
# Fresh events per verified run: more than one run can send (about 60k/s here).
POOL=${POOL:-500000}
PORT=${PORT:-8401}
REDIS_PORT=${REDIS_PORT:-8479}

cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --quiet --release -p load-test --bin load_target --bin load_presign
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
SERVER=""
REDIS=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  if [ -n "$REDIS" ]; then kill "$REDIS" 2>/dev/null || true; wait "$REDIS" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

url="http://127.0.0.1:$PORT"
TICK=$(getconf CLK_TCK)
# The server's CPU time so far (user + system), in clock ticks.
server_cpu() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
# One wrk run; appends "framework route round requests seconds p50_us p99_us errors
# non204 wraps server_cpu_ticks".
drive() {
  local framework=$1 route=$2 round=$3 file=$4 duration=$5
  local line before after
  before=$(server_cpu)
  line=$(wrk -t1 -c"$CONNECTIONS" -d"$duration" -s examples/load/requests.lua "$url" -- "/$route" "$file" | grep '^RESULT')
  after=$(server_cpu)
  if [ "$round" != warm ]; then
    echo "$framework $route $round ${line#RESULT } $((after - before))" >> "$WORK/results"
  fi
}

ROUTES="bare verified"
REDIS_URL=""
if command -v redis-server >/dev/null; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" > "$WORK/redis.log" 2>&1 &
  REDIS=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
  done
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  ROUTES="bare verified verified-redis"
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "each run: wrk -t1 -c$CONNECTIONS -d$DURATION, ${BODY_BYTES}-byte bodies, $ROUNDS rounds of: $ROUTES"
for framework in axum actix; do
  # shellcheck disable=SC2086 # REDIS_URL is empty or one word
  "$BIN/load_target" "$framework" "127.0.0.1:$PORT" $REDIS_URL > "$WORK/$framework.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  # Signed now: every request must be sent within the 5-minute window.
  "$BIN/load_presign" "$WORK/warm.txt" 100000 "$BODY_BYTES" "${framework:0:2}w"
  for round in $(seq "$ROUNDS"); do
    "$BIN/load_presign" "$WORK/run$round.txt" "$POOL" "$BODY_BYTES" "${framework:0:2}$round"
  done
  for route in $ROUTES; do
    drive "$framework" "$route" warm "$WORK/warm.txt" 2s
  done
  for round in $(seq "$ROUNDS"); do
    for route in $ROUTES; do
      # Each route has its own store, so both verified routes can send the same events.
      drive "$framework" "$route" "$round" "$WORK/run$round.txt" "$DURATION"
    done
  done
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
done

echo
echo "| framework | route | req/s | **req/s ratio to bare** | p50 / p99 latency | server CPU per request | **CPU ratio bare / route** |"
echo "|---|---|---:|---:|---:|---:|---:|"
awk -v tick="$TICK" -v routes="$ROUTES" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function ms(us) { return sprintf("%.2f ms", us / 1000) }
  {
    fw = $1; route = $2; round = $3; rps = $4 / $5; cpu = $11 / tick * 1e6 / $4
    key = fw SUBSEP route
    rate[key] = rate[key] " " rps; p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $7
    cpus[key] = cpus[key] " " cpu
    bad[key] += $8 + $9; wraps[key] += $10
    this[fw SUBSEP route SUBSEP round] = rps
    thiscpu[fw SUBSEP route SUBSEP round] = cpu
    if (!(fw in seen)) { seen[fw] = 1; order[++nfw] = fw }
    rounds[fw SUBSEP round] = 1
  }
  END {
    nr = split(routes, rlist, " ")
    for (f = 1; f <= nfw; f++) {
      fw = order[f]
      for (r = 1; r <= nr; r++) {
        route = rlist[r]; key = fw SUBSEP route; ratios = ""; cpuratios = ""
        for (k in rounds) {
          split(k, p, SUBSEP)
          if (p[1] != fw) continue
          ratios = ratios " " this[fw SUBSEP route SUBSEP p[2]] / this[fw SUBSEP "bare" SUBSEP p[2]]
          cpuratios = cpuratios " " thiscpu[fw SUBSEP "bare" SUBSEP p[2]] / thiscpu[fw SUBSEP route SUBSEP p[2]]
        }
        printf "| %s | %s | %.0f | **%.2f** | %s / %s | %.1f µs | **%.2f** |\n", fw, route, median(rate[key]), median(ratios),
          ms(median(p50[key])), ms(median(p99[key])), median(cpus[key]), median(cpuratios)
        if (bad[key] > 0) printf "  %s %s: %d errors or non-204 answers\n", fw, route, bad[key]
        if (wraps[key] > 0 && route != "bare") printf "  %s %s: ran out of fresh events (raise POOL)\n", fw, route
      }
    }
  }' "$WORK/results"
echo
echo "per run (framework route round requests seconds p50_us p99_us errors non204 wraps server_cpu_ticks):"
cat "$WORK/results"
