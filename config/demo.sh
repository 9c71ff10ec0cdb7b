#!/usr/bin/env bash
# Quick start: run pingress in standalone mode on config/example and show traffic flowing.
# Starts two tiny echo backends (127.0.0.1:18081 and :18082, the endpoints in
# config/example/demo.yaml), starts pingress on http://127.0.0.1:8080, sends a few requests,
# and keeps serving until Ctrl-C. PORT=... changes the listener port; DEMO_ONCE=1 exits after
# the requests. HTTPS_PORT (8443) and HEALTHZ_PORT (10254) move the other listeners.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
bash .ci/setup
cargo build --locked --quiet --bin pingress
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
python3 config/demo-backend.py 18081 echo-a & pids+=($!)
python3 config/demo-backend.py 18082 echo-b & pids+=($!)
wait_for() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
wait_for http://127.0.0.1:18081/ && wait_for http://127.0.0.1:18082/
./target/debug/pingress --manifests config/example --http-port "$PORT" \
  --https-port "${HTTPS_PORT:-8443}" --healthz-port "${HEALTHZ_PORT:-10254}" --bind-address 127.0.0.1 &
pids+=($!)
wait_for "http://127.0.0.1:$PORT/"
show() { echo; echo "\$ curl $*"; curl -s -i "$@"; }
show -H 'Host: demo.localhost' "http://127.0.0.1:$PORT/hello?name=pingress"
show "http://127.0.0.1:$PORT/echo/round-robin"
show "http://127.0.0.1:$PORT/echo/round-robin"
show -H 'Host: unknown.example' "http://127.0.0.1:$PORT/"
echo
echo "pingress is serving config/example on http://127.0.0.1:$PORT (edit the manifests: changes apply within a second)."
echo "Metrics: http://127.0.0.1:${HEALTHZ_PORT:-10254}/metrics  Access log: the request lines above (stdout)."
[ "${DEMO_ONCE:-}" = "1" ] && exit 0
echo "Ctrl-C to stop."
wait
