#!/usr/bin/env bash
# The soak test of issue #7: starts a supervisor the way production runs it (release binary,
# 2 workers, server API on, an HTTP topic, RUST_LOG=info, the embedded broker unless
# BROKER=redis, then Redis on 127.0.0.1:6379), runs `rohrpost bench soak` against it for 30
# minutes — churn, resumes, fan-out, HTTP round trips, a staged restart every 5 minutes, RSS and
# open files sampled every 30 s — and stops it. Exits with the bench's status: non-zero when
# memory or open files grew, or anything was lost. Not part of CI (test/bench_smoke.sh runs a
# 40-second soak); its results are in BENCHMARKS.md, "Soak".
#
#   cargo build --release
#   test/bench/soak.sh                                    # 30 minutes, 2,000 sessions
#   DURATION=10m RESTART_EVERY=2m SESSIONS=500 test/bench/soak.sh
#   BROKER=redis OUT=/tmp/soak.txt test/bench/soak.sh
#
# Everything listens on 127.0.0.1 (main port $PORT, workers $PORT+1 and +2, the bench's HTTP
# backend $PORT+99). The report goes to standard output and $OUT, the server's log to $OUT.server.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/release/rohrpost}"
DURATION="${DURATION:-30m}"
RESTART_EVERY="${RESTART_EVERY:-5m}"
SAMPLE_EVERY="${SAMPLE_EVERY:-30s}"
SESSIONS="${SESSIONS:-2000}"
BROKER="${BROKER:-local}"
PORT="${PORT:-4600}"
OUT="${OUT:-$ROOT/target/soak.txt}"
# Client addresses: limits.max_sessions_per_ip (1,000 per address and worker by default) must
# not refuse the bench's sessions, not even when a staged restart moves them all to one worker.
SRC_IPS="${SRC_IPS:-127.0.0.2-127.0.0.9}"
WORK="$(mktemp -d /tmp/rohrpost-soak.XXXXXX)"
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  [ -f "$WORK/server.log" ] && cp "$WORK/server.log" "$OUT.server"
  rm -rf "$WORK"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)"
# A staged restart starts the workers from the executable file on disk: run a copy, so that a
# rebuild during the soak does not change the server under test.
cp "$BIN" "$WORK/rohrpost"
BIN="$WORK/rohrpost"
cat > "$WORK/soak.toml" <<TOML
[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = $PORT
worker_base_port = $((PORT + 1))
static_dir = ""
[workers]
count = 2
[broker]
kind = "$BROKER"
socket = "$WORK/broker.sock"
[sessions]
default_whitelist = ["anonym.*"]
[api]
key = "soak-key"
[[http_topics]]
pattern = "anonym.http"
url = "http://127.0.0.1:$((PORT + 99))/hook"
TOML

RUST_LOG=info "$BIN" --config "$WORK/soak.toml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
url="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -s "$url/health" 2>/dev/null | grep -q '"ready_workers":2' && break
  sleep 0.2
done
curl -s "$url/health" | grep -q '"ready_workers":2' || {
  echo "soak: the server did not become ready; its log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
}

echo "soak: $SESSIONS sessions for $DURATION, a staged restart every $RESTART_EVERY, broker $BROKER"
set +e
"$BIN" bench soak -n "$SESSIONS" --duration "$DURATION" --restart-every "$RESTART_EVERY" \
  --sample-every "$SAMPLE_EVERY" --rate 10 --http-rate 20 --url "$url" --api-key soak-key \
  --backend "127.0.0.1:$((PORT + 99))" --src-ips "$SRC_IPS" 2>&1 | tee "$OUT"
status=${PIPESTATUS[0]}
set -e
echo "soak: server log lines at warn or error: $(grep -cE ' (WARN|ERROR) ' "$WORK/server.log" || true)"
exit "$status"
