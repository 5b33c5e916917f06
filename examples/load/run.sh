#!/usr/bin/env bash
# Load test: what the middleware costs against a bare route, in axum and in actix-web.
#
#   bash examples/load/run.sh            # about 2 minutes
#
# For each framework, one server (`load_target`, one worker thread) serves two routes
# doing the same work on the same 1 KiB body: /bare (read the body, 204) and /verified
# (the same behind WebhookVerify with the default moka dedup store). wrk (one thread,
# CONNECTIONS connections, the other core) drives them in turn, bare then verified,
# ROUNDS times, DURATION each, after a warm-up. Every request is pre-signed with a new
# eventId (load_presign), so the verified route verifies and inserts into the store
# every time. Each ratio is verified/bare within one round; the table gives medians.
# Throughput depends on how much CPU the shared machine leaves the server, so the
# server's own CPU time per request (from /proc) is reported too: that ratio is what
# the middleware costs whatever else runs.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
CONNECTIONS=${CONNECTIONS:-32}
BODY_BYTES=${BODY_BYTES:-1024}
# Fresh events per verified run: more than one run can send (about 60k/s here).
POOL=${POOL:-500000}
PORT=${PORT:-8401}

cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --quiet --release -p mapping-webhooks-examples --bin load_target --bin load_presign
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
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

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "each run: wrk -t1 -c$CONNECTIONS -d$DURATION, ${BODY_BYTES}-byte bodies, $ROUNDS rounds (bare, verified)"
for framework in axum actix; do
  "$BIN/load_target" "$framework" "127.0.0.1:$PORT" > "$WORK/$framework.log" 2>&1 &
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
  drive "$framework" bare warm "$WORK/warm.txt" 2s
  drive "$framework" verified warm "$WORK/warm.txt" 2s
  for round in $(seq "$ROUNDS"); do
    drive "$framework" bare "$round" "$WORK/run$round.txt" "$DURATION"
    drive "$framework" verified "$round" "$WORK/run$round.txt" "$DURATION"
  done
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
done

echo
echo "| framework | bare req/s | verified req/s | **verified / bare** | bare p50 / p99 | verified p50 / p99 | server CPU per request, bare / verified | **CPU bare / verified** |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -v tick="$TICK" '
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
    for (f = 1; f <= nfw; f++) {
      fw = order[f]; ratios = ""; cpuratios = ""
      for (k in rounds) {
        split(k, p, SUBSEP)
        if (p[1] != fw) continue
        ratios = ratios " " this[fw SUBSEP "verified" SUBSEP p[2]] / this[fw SUBSEP "bare" SUBSEP p[2]]
        cpuratios = cpuratios " " thiscpu[fw SUBSEP "bare" SUBSEP p[2]] / thiscpu[fw SUBSEP "verified" SUBSEP p[2]]
      }
      b = fw SUBSEP "bare"; v = fw SUBSEP "verified"
      printf "| %s | %.0f | %.0f | **%.2f** | %s / %s | %s / %s | %.1f / %.1f µs | **%.2f** |\n", fw, median(rate[b]), median(rate[v]), median(ratios),
        ms(median(p50[b])), ms(median(p99[b])), ms(median(p50[v])), ms(median(p99[v])),
        median(cpus[b]), median(cpus[v]), median(cpuratios)
      if (bad[b] + bad[v] > 0) printf "  %s: %d errors or non-204 answers\n", fw, bad[b] + bad[v]
      if (wraps[v] > 0) printf "  %s: the verified runs ran out of fresh events (raise POOL)\n", fw
    }
  }' "$WORK/results"
echo
echo "per run (framework route round requests seconds p50_us p99_us errors non204 wraps server_cpu_ticks):"
cat "$WORK/results"
