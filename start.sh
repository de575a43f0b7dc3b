#!/usr/bin/env bash
# Development start: builds Rohrpost, fetches the SockJS browser client, makes a development TLS
# certificate if there is none, and runs the supervisor (main port 3000, workers from 3001) with
# the committed config and the demo chat's backend (127.0.0.1:3100).
# Usage: ./start.sh [extra rohrpost args]
set -euo pipefail
cd "$(dirname "$0")"

# The SockJS browser client, from npm (never committed): served under /js/.
if [ ! -f static/js/sockjs.min.js ]; then
  command -v npm >/dev/null || { echo "start.sh: npm is needed to fetch sockjs-client" >&2; exit 1; }
  (cd test/browser && npm ci --no-audit --no-fund --silent)
  mkdir -p static/js
  cp test/browser/node_modules/sockjs-client/dist/sockjs.min.js static/js/sockjs.min.js
fi

cargo build --release
# A self-signed certificate for localhost, used when tls.enabled = true.
./target/release/rohrpost gen-cert --dir keys
./target/release/rohrpost check-config >/dev/null
# The demo chat's backend talks to the server API with a key made for this run.
export ROHRPOST__API__KEY="${ROHRPOST__API__KEY:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
./target/release/rohrpost demo-backend &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
echo "Rohrpost: open http://localhost:3000 (console: http://localhost:3000/console.html)"
./target/release/rohrpost "$@"
