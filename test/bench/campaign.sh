#!/usr/bin/env bash
# The measurement campaign behind BENCHMARKS.md: every scenario of `rohrpost bench`, several runs
# each, against servers this script starts and stops itself (embedded broker, Redis broker, TLS,
# and nginx with nchan beside them: test/bench/nchan/nginx.conf), on 127.0.0.0/8 only. Prints every run's JSON line into $OUT and ends with a table of medians
# (min–max). Takes about 20 minutes on 2 cores.
#
#   cargo build --release
#   test/bench/campaign.sh                 # 3 runs per figure
#   RUNS=5 OUT=/tmp/runs.jsonl test/bench/campaign.sh
#   BASELINE_BIN=/path/to/older/rohrpost test/bench/campaign.sh   # adds a fan-out A/B
#   SECTIONS="fanout slow" test/bench/campaign.sh                  # only some parts
#   SECTIONS="history recovery" test/bench/campaign.sh             # the publication log's cost
#   SECTIONS=presence test/bench/campaign.sh                        # session events and presence
#   SECTIONS="idle fanout nchan" test/bench/campaign.sh             # Rohrpost and nchan side by side
#
# Needs: a Redis on 127.0.0.1:6379, python3 (for the medians), root or an open-file hard limit of
# at least 20,000 (100,000 idle sessions are held by 6 bench processes and 6 workers); for the
# nchan section nginx and its nchan module (Debian: nginx, libnginx-mod-nchan).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/release/rohrpost}"
RUNS="${RUNS:-3}"
OUT="${OUT:-$ROOT/target/bench-campaign.jsonl}"
IDLE_N="${IDLE_N:-100000}"
FANOUT_N="${FANOUT_N:-10000}"
WORK="$(mktemp -d /tmp/rohrpost-campaign.XXXXXX)"
SRC_IPS="127.0.0.2-127.0.0.30"
# Which parts to run (all by default): idle tls-idle fanout ab redis tls-fanout slow history
# recovery presence nchan
SECTIONS="${SECTIONS:-idle tls-idle fanout ab redis tls-fanout slow history recovery presence nchan}"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
SERVER_PID=""
NGINX="${NGINX:-nginx}"
NCHAN_PORT=5600
NCHAN_PREFIX=""

cleanup() {
  stop_server
  rm -rf "$WORK"
  if [ -n "$NCHAN_PREFIX" ]; then rm -rf "$NCHAN_PREFIX"; fi
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)"
: > "$OUT"

# config NAME MAIN_PORT WORKERS BROKER [tls|nohistory]
config() {
  local name=$1 port=$2 workers=$3 broker=$4 tls=${5:-}
  cat > "$WORK/$name.toml" <<TOML
[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = $port
worker_base_port = $((port + 1))
static_dir = ""
[workers]
count = $workers
[broker]
kind = "$broker"
socket = "$WORK/$name.sock"
[sessions]
default_whitelist = ["anonym.*"]
[limits]
max_sessions_per_worker = 200000
max_sessions_per_ip = 200000
[api]
key = "bench-key"
[[http_topics]]
pattern = "anonym.http"
url = "http://127.0.0.1:$((port + 99))/hook"
TOML
  if [ "$tls" = events ]; then
    printf '[hooks]\nevents_url = "http://127.0.0.1:%s/events"\n' "$((port + 98))" >> "$WORK/$name.toml"
  elif [ "$tls" = nohistory ]; then
    printf '[history]\nenabled = false\n' >> "$WORK/$name.toml"
  elif [ -n "$tls" ]; then
    cat >> "$WORK/$name.toml" <<TOML
[tls]
enabled = true
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
TOML
  fi
}

# start_server NAME [BINARY]: waits until every worker is ready.
start_server() {
  local name=$1 bin=${2:-$BIN}
  local url; url=$(server_url "$name")
  "$bin" --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "server $name" "$url/health" '"status":"ok"' "$WORK/$name.log"
}

# wait_ready WHAT URL PATTERN LOG: waits (up to 20 s) until URL answers with PATTERN, then a
# second more; otherwise prints LOG and ends the campaign.
wait_ready() {
  local what=$1 url=$2 pattern=$3 log=$4
  for _ in $(seq 1 100); do
    if curl -sk "$url" 2>/dev/null | grep -q "$pattern"; then
      sleep 1
      return 0
    fi
    sleep 0.2
  done
  echo "$what did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

server_url() {
  local scheme=http
  grep -q '^\[tls\]' "$WORK/$1.toml" && scheme=https
  echo "$scheme://127.0.0.1:$(sed -n 's/^main_port = //p' "$WORK/$1.toml")"
}

# bench LABEL SERVER [BINARY --] ARGS...: one run, its JSON line labelled into $OUT.
bench() {
  local label=$1 name=$2; shift 2
  local bin=$BIN
  if [ "${2:-}" = "--" ]; then bin=$1; shift 2; fi
  local url; url=$(server_url "$name")
  local line
  line=$("$bin" bench "$@" --url "$url" --ca "$WORK/cert.pem" --src-ips "$SRC_IPS" \
    --api-key bench-key --timeout 300s | sed -n 1p)
  echo "{\"label\":\"$label\",\"run\":$line}" | tee -a "$OUT"
  sleep 2
}

"$BIN" gen-cert --dir "$WORK" > /dev/null
config embedded 4700 2 local
config embedded6 5700 6 local
config redis 4800 2 redis
config tls 4900 2 local tls
config nohistory 5000 2 local nohistory
config redis-nohistory 5100 2 redis nohistory
config events 5200 2 local events
config redis-events 5300 2 redis events

if want idle; then
echo "# idle: $IDLE_N sessions, 6 workers, 6 bench processes; 10,000 on 2 workers; a fresh server per run"
for _ in $(seq "$RUNS"); do
  start_server embedded6
  bench "idle $IDLE_N, embedded" embedded6 idle -n "$IDLE_N" --processes 6 --hold 5s
  stop_server
  if [ "$IDLE_N" != 10000 ]; then # else the run above is it (with 6 workers), under this label
    start_server embedded
    bench "idle 10000, embedded" embedded idle -n 10000 --hold 5s
    stop_server
  fi
done
fi

if want tls-idle; then
echo "# idle: 20,000 sessions, plain and TLS, a fresh server per run"
for _ in $(seq "$RUNS"); do
  start_server embedded
  bench "idle 20000, plain" embedded idle -n 20000 --processes 2 --hold 3s
  stop_server
  start_server tls
  bench "idle 20000, TLS" tls idle -n 20000 --processes 2 --hold 3s
  stop_server
done
fi

# fanout_runs LABEL SERVER [BINARY --]: unthrottled and half-rate fan-out to $FANOUT_N sessions.
fanout_runs() {
  local label=$1 name=$2; shift 2
  for _ in $(seq "$RUNS"); do
    bench "fanout $FANOUT_N x 200, $label" "$name" "$@" fanout -n "$FANOUT_N" -m 200 "${PUBLISH[@]}"
    bench "fanout $FANOUT_N x 100 at 25/s, $label" "$name" "$@" fanout -n "$FANOUT_N" -m 100 \
      --rate 25 "${PUBLISH[@]}"
  done
}

if want fanout; then
echo "# fan-out to $FANOUT_N sessions"
PUBLISH=()
start_server embedded
fanout_runs "embedded" embedded
for _ in $(seq "$RUNS"); do
  # A steady stream, the everyday case: 10 messages a second for 5 seconds.
  bench "fanout $FANOUT_N x 50 at 10/s, embedded" embedded fanout -n "$FANOUT_N" -m 50 --rate 10
  bench "inbound 10000 x 20, embedded" embedded inbound -n 10000 -k 20 \
    --local-broker "$WORK/embedded.sock"
  bench "http 200 x 50, embedded" embedded http -n 200 -k 50 --topic anonym.http \
    --backend 127.0.0.1:4799
  bench "http 400 x 50, embedded" embedded http -n 400 -k 50 --topic anonym.http \
    --backend 127.0.0.1:4799
done
stop_server
fi

if [ -n "${BASELINE_BIN:-}" ] && want ab; then
  echo "# fan-out A/B: $BASELINE_BIN against $BIN, alternating servers"
  for _ in $(seq "$RUNS"); do
    start_server embedded "$BASELINE_BIN"
    bench "A/B fanout at 25/s, baseline" embedded fanout -n "$FANOUT_N" -m 100 --rate 25
    bench "A/B fanout unthrottled, baseline" embedded fanout -n "$FANOUT_N" -m 200
    stop_server
    start_server embedded
    bench "A/B fanout at 25/s, this build" embedded fanout -n "$FANOUT_N" -m 100 --rate 25
    bench "A/B fanout unthrottled, this build" embedded fanout -n "$FANOUT_N" -m 200
    stop_server
  done
fi

if want redis; then
PUBLISH=(--redis redis://127.0.0.1:6379/)
start_server redis
fanout_runs "Redis" redis
for _ in $(seq "$RUNS"); do
  bench "inbound 10000 x 20, Redis" redis inbound -n 10000 -k 20 --redis redis://127.0.0.1:6379/
done
stop_server
fi

if want tls-fanout; then
PUBLISH=()
start_server tls
fanout_runs "embedded, TLS" tls
stop_server
fi

if want slow; then
echo "# a slow consumer among 1,000 readers: fan-out with and without one stalled session"
start_server embedded
for _ in $(seq "$RUNS"); do
  bench "slow consumer: 1000 x 2500 of 4 KiB at 100/s, none stalled" embedded fanout -n 1000 \
    -m 2500 --payload 4096 --rate 100
  bench "slow consumer: 1000 x 2500 of 4 KiB at 100/s, 1 stalled" embedded fanout -n 1000 \
    -m 2500 --payload 4096 --rate 100 --stalled 1
done
stop_server
fi

if want history; then
echo "# the publication log's cost: fan-out and publish throughput with history on and off"
for _ in $(seq "$RUNS"); do
  for server in embedded nohistory redis redis-nohistory; do
    start_server "$server"
    bench "history: fanout $FANOUT_N x 200, $server" "$server" fanout -n "$FANOUT_N" -m 200
    bench "history: fanout $FANOUT_N x 100 at 25/s, $server" "$server" fanout -n "$FANOUT_N" \
      -m 100 --rate 25
    bench "history: publish 1 x 5000, $server" "$server" fanout -n 1 -m 5000
    stop_server
  done
done
fi

if want recovery; then
echo "# recovery bursts: $FANOUT_N sessions resuming through a staged restart, fan-out at 5/s"
for _ in $(seq "$RUNS"); do
  for server in embedded redis; do
    start_server "$server"
    bench "recovery $FANOUT_N, $server" "$server" recovery -n "$FANOUT_N" --rate 5
    stop_server
  done
done
fi

if want presence; then
echo "# session events and presence: $FANOUT_N sessions come and go, the bench is the event hook"
for _ in $(seq "$RUNS"); do
  # The baseline: opening as many sessions on the same server without an event hook.
  start_server embedded
  bench "presence baseline: idle $FANOUT_N, no hook" embedded idle -n "$FANOUT_N" --hold 1s
  stop_server
  start_server events
  bench "presence baseline: idle $FANOUT_N, with the hook" events idle -n "$FANOUT_N" --hold 1s
  stop_server
  if [ -n "${BASELINE_BIN:-}" ]; then
    # Against an older build: what listing every session in the directory costs its opening.
    start_server embedded "$BASELINE_BIN"
    bench "presence A/B: idle $FANOUT_N, baseline" embedded "$BASELINE_BIN" -- idle -n "$FANOUT_N" --hold 1s
    stop_server
    start_server embedded
    bench "presence A/B: idle $FANOUT_N, this build" embedded idle -n "$FANOUT_N" --hold 1s
    stop_server
  fi
  for server in events redis-events; do
    # A fresh deliverer on Redis must not wait out the lease of the last run's supervisor.
    redis-cli -h 127.0.0.1 DEL rohrpost:events:deliverer > /dev/null
    start_server "$server"
    port=$(sed -n 's/^main_port = //p' "$WORK/$server.toml")
    bench "presence $FANOUT_N, $server" "$server" presence -n "$FANOUT_N" \
      --backend "127.0.0.1:$((port + 98))"
    stop_server
  done
done
fi

# start_nchan WORKERS: a fresh nginx with nchan from a new temporary prefix; waits until it answers.
start_nchan() {
  local workers=$1 nofile; nofile=$(ulimit -Hn)
  NCHAN_PREFIX=$(mktemp -d /tmp/rohrpost-nchan.XXXXXX)
  sed "s/@PORT@/$NCHAN_PORT/; s/@WORKERS@/$workers/; s/@NOFILE@/$nofile/; \
    s/@CONNECTIONS@/$((nofile - 100))/" "$ROOT/test/bench/nchan/nginx.conf" > "$NCHAN_PREFIX/nginx.conf"
  "$NGINX" -p "$NCHAN_PREFIX/" -c "$NCHAN_PREFIX/nginx.conf" -e "$NCHAN_PREFIX/error.log" &
  SERVER_PID=$!
  wait_ready "nginx with nchan" "http://127.0.0.1:$NCHAN_PORT/status" '^nchan version' \
    "$NCHAN_PREFIX/error.log"
}

stop_nchan() {
  stop_server
  # What nginx had to say (a full worker_connections, shared memory running out) goes with the run.
  grep -v '\[info\]' "$NCHAN_PREFIX/error.log" >&2 || true
  rm -rf "$NCHAN_PREFIX"
  NCHAN_PREFIX=""
}

# bench_nchan LABEL ARGS...: one run against the nginx of start_nchan, labelled into $OUT.
bench_nchan() {
  local label=$1; shift
  local line
  line=$("$BIN" bench "$@" --target nchan --url "http://127.0.0.1:$NCHAN_PORT" \
    --server-pid "$SERVER_PID" --src-ips "$SRC_IPS" --timeout 300s | sed -n 1p)
  echo "{\"label\":\"$label\",\"run\":$line}" | tee -a "$OUT"
  sleep 2
}

if want nchan; then
echo "# nginx with nchan, the same runs as Rohrpost's: a fresh nginx per run, 2 workers (6 for $IDLE_N idle)"
for _ in $(seq "$RUNS"); do
  start_nchan 6
  bench_nchan "idle $IDLE_N, nchan" idle -n "$IDLE_N" --processes 6 --hold 5s
  stop_nchan
  if [ "$IDLE_N" != 10000 ]; then # as in the idle section
    start_nchan 2
    bench_nchan "idle 10000, nchan" idle -n 10000 --hold 5s
    stop_nchan
  fi
  start_nchan 2
  bench_nchan "fanout $FANOUT_N x 200, nchan" fanout -n "$FANOUT_N" -m 200
  bench_nchan "fanout $FANOUT_N x 100 at 25/s, nchan" fanout -n "$FANOUT_N" -m 100 --rate 25
  bench_nchan "fanout $FANOUT_N x 50 at 10/s, nchan" fanout -n "$FANOUT_N" -m 50 --rate 10
  bench_nchan "inbound 10000 x 20, nchan" inbound -n 10000 -k 20
  stop_nchan
done
fi

echo "# medians over $RUNS runs (min–max)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    rec = json.loads(line)
    runs.setdefault(rec["label"], []).append(rec["run"])
def flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, list):
            v = {str(i): x for i, x in enumerate(v)}
        if isinstance(v, dict):
            yield from flat(v, prefix + k + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield prefix + k, v
KEYS = ["kib_per_session", "pss_kib_per_session", "sessions_lost", "per_second", "delivered_ratio", "latency_ms.p50",
        "latency_ms.p99", "latency_ms.p99_9", "latency_ms.max", "msgs_per_second", "loss",
        "server.cpu_percent", "server.cpu_us_per_delivery", "server.cpu_percent_while_opening",
        "server.rss_kib", "server.pss_kib",
        "opened_per_second", "slow_consumer_closes", "catch_up_ms.p50", "catch_up_ms.p99",
        "catch_up_ms.max", "roll_seconds", "recovered", "not_recovered", "lost", "duplicates",
        "bursts.0.sessions", "bursts.0.all_caught_up_ms", "bursts.1.sessions",
        "bursts.1.all_caught_up_ms", "opened_events_per_second", "closed_events_per_second",
        "hook_posts", "count_query_ms", "list_query_ms", "open_seconds"]
for label, rs in runs.items():
    values = {}
    for r in rs:
        for k, v in flat(r):
            values.setdefault(k, []).append(v)
    cells = []
    for k in KEYS:
        if k in values:
            v = values[k]
            fmt = (lambda x: f"{x:,.0f}") if max(abs(x) for x in v) >= 100 else (lambda x: f"{x:.2f}")
            cells.append(f"{k} {fmt(statistics.median(v))} ({fmt(min(v))}–{fmt(max(v))})")
    print(f"| {label} | {len(rs)} | " + "; ".join(cells) + " |")
PY
