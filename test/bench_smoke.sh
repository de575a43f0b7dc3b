#!/usr/bin/env bash
# Smoke run of every `rohrpost bench` scenario with small numbers, so the load generator cannot
# rot: a supervisor with the embedded broker (presence, idle, fanout through the server API, http, a
# 40-second soak with two staged restarts) and one with the Redis broker (fanout through Redis,
# inbound). Checks that every message arrived; no performance thresholds (those are
# BENCHMARKS.md's business). Usage: test/bench_smoke.sh BIN
set -euo pipefail
bin=${1:-target/release/rohrpost}
bin=$(realpath "$bin")
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

free_block() { # a main port with two free ports after it
  python3 - <<'PY'
import socket
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    if base > 60000: continue
    ok = True
    for d in (1, 2):
        t = socket.socket()
        try: t.bind(("127.0.0.1", base + d))
        except OSError: ok = False
        finally: t.close()
    if ok: print(base); break
PY
}

start() { # start NAME BROKER_KIND -> sets $main
  local name=$1 kind=$2 port backend hook
  port=$(free_block); backend=$(free_block); hook=$(free_block)
  cat > "$dir/$name.toml" <<TOML
[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = $port
worker_base_port = $((port + 1))
static_dir = ""
[workers]
count = 2
[sessions]
default_whitelist = ["anonym.*"]
[broker]
kind = "$kind"
socket = "$dir/$name.sock"
[api]
key = "smoke-key"
[hooks]
events_url = "http://127.0.0.1:$hook/events"
[[http_topics]]
pattern = "anonym.http"
url = "http://127.0.0.1:$backend/hook"
TOML
  RUST_LOG=warn "$bin" --config "$dir/$name.toml" 2>>"$dir/$name.log" &
  pids+=($!)
  main="http://127.0.0.1:$port"
  backend_addr="127.0.0.1:$backend"
  hook_addr="127.0.0.1:$hook"
  for _ in $(seq 100); do
    curl -fs "$main/health" | grep -q '"ready_workers":2' && return 0
    sleep 0.1
  done
  echo "bench smoke: $name did not become ready" >&2; cat "$dir/$name.log" >&2; return 1
}

check() { # check LABEL JSON_FIELD_PATTERN -- command...
  local label=$1 want=$2; shift 2
  local out
  out=$(RUST_LOG=error timeout "${limit:-60}" "$@")
  out=${out%%$'\n'*} # the JSON line; the table follows
  echo "$label: $out"
  grep -q "$want" <<<"$out" || { echo "bench smoke: $label failed (want $want)" >&2; return 1; }
}

start local local
# First: the bench is the event hook only while this runs (later events find no hook).
check "presence (events, queries)" '"sessions_lost":0' "$bin" bench presence -n 50 --url "$main" \
  --api-key smoke-key --backend "$hook_addr"
check "idle" '"sessions_lost":0' "$bin" bench idle -n 50 --hold 1s --url "$main"
check "idle (2 processes, source addresses)" '"sessions_lost":0' "$bin" bench idle -n 60 \
  --processes 2 --src-ips 127.0.0.2-127.0.0.4 --hold 1s --url "$main"
check "fanout (server API)" '"delivered_ratio":1.0' "$bin" bench fanout -n 50 -m 20 --url "$main" --api-key smoke-key
check "fanout with a stalled reader" '"slow_consumer_closes":1' "$bin" bench fanout -n 10 \
  -m 3000 --payload 4096 --stalled 1 --url "$main" --api-key smoke-key
check "inbound (embedded broker)" '"loss":0' "$bin" bench inbound -n 20 -k 5 --url "$main" \
  --local-broker "$dir/local.sock"
check "http" '"delivered_ratio":1.0' "$bin" bench http -n 20 -k 5 --topic anonym.http --backend "$backend_addr" --url "$main"
limit=120 check "soak (40 s, restarts)" '"ok":true' "$bin" bench soak -n 40 --duration 40s \
  --restart-every 15s --sample-every 5s --url "$main" --api-key smoke-key --backend "$backend_addr"
limit=90 check "recovery (staged restart)" '"ok":true' "$bin" bench recovery -n 30 --rate 20 \
  --url "$main" --api-key smoke-key
start redis redis
check "fanout (Redis)" '"delivered_ratio":1.0' "$bin" bench fanout -n 50 -m 20 --url "$main" --redis redis://127.0.0.1:6379/
check "inbound (Redis)" '"loss":0' "$bin" bench inbound -n 20 -k 5 --url "$main" --redis redis://127.0.0.1:6379/
echo "bench smoke: 11 passed, 0 failed"
