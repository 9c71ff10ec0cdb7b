#!/usr/bin/env bash
# gRPC messages per second through pingress and through nginx `grpc_pass` (the directive
# ingress-nginx renders for backend-protocol GRPC), one run, same backend and client:
#   unary: CONC callers sending BYTES-byte unary calls back to back over one h2c connection;
#   stream: CONC bidi streams, each a ping-pong (every message waits for its echo).
# Both without a body limit (proxy-body-size "0" / client_max_body_size 0): a long stream is
# one request body, and the 1m default would end it after about 4,000 messages of 256 bytes.
# ROUNDS interleaved rounds of DURATION s per proxy and mode; reported: median msgs/s per proxy,
# pingress / nginx, and the errors seen. The backend and the client are examples/grpc_bench.rs
# (tonic, raw-bytes messages). Loopback only, h2c, free ports picked at run time.
# Env: DURATION=5 ROUNDS=3 CONC=32 BYTES=256 PINGRESS_BIN (target/release/pingress)
# Usage: bash benches/grpc.sh   (APPEND=1 appends the summary to benches/RESULTS.md)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-grpc.XXXXXX)}
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BACK=$(py_free); NGX=$(py_free); PX_HTTP=$(py_free); PX_HTTPS=$(py_free); PX_HZ=$(py_free)
export BENCH_HOST=grpc.bench.local
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx curl python3
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-3}; CONC=${CONC:-32}; BYTES=${BYTES:-256}
[ -x "$PINGRESS_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress >&2)
(cd "$ROOT" && cargo build --release --locked --example grpc_bench >&2)
TOOL=$ROOT/target/release/examples/grpc_bench

cleanup() {
  stop_pingress pingress || true
  stop_pidfile "$BENCH_RUN_DIR/nginx-grpc.pid" || true
  [ -n "${backend_pid:-}" ] && kill "$backend_pid" 2>/dev/null || true
}
trap cleanup EXIT

log "machine: $(nproc) cpus, loadavg $(loadavg); run dir $BENCH_RUN_DIR"
"$TOOL" server "$BACK" &
backend_pid=$!

# nginx: h2c listener, grpc_pass to a keepalive upstream, access log on (as both proxies log)
cat > "$BENCH_RUN_DIR/nginx-grpc.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile 65535;
daemon off;
pid $BENCH_RUN_DIR/nginx-grpc.pid;
error_log $BENCH_RUN_DIR/nginx-grpc-error.log notice;
events { worker_connections 16384; use epoll; multi_accept on; }
http {
    access_log $BENCH_RUN_DIR/nginx-grpc-access.log;
    client_body_temp_path $BENCH_RUN_DIR/nginx-body;
    upstream grpc_backend { server 127.0.0.1:$BACK; keepalive 320; keepalive_requests 10000; }
    server {
        listen 127.0.0.1:$NGX http2;
        server_name $BENCH_HOST;
        location / {
            client_max_body_size 0;
            grpc_connect_timeout 5s;
            grpc_send_timeout 60s;
            grpc_read_timeout 60s;
            grpc_set_header Host \$host;
            grpc_set_header X-Real-IP \$remote_addr;
            grpc_set_header X-Forwarded-For \$remote_addr;
            grpc_pass grpc://grpc_backend;
        }
    }
}
EOF
mkdir -p "$BENCH_RUN_DIR/nginx-body"
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/nginx-grpc.conf" >>"$BENCH_RUN_DIR/nginx-grpc.out" 2>&1 &

mkdir -p "$BENCH_RUN_DIR/manifests"
cat > "$BENCH_RUN_DIR/manifests/grpc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: bench}
spec: {ports: [{name: grpc, port: 50051, targetPort: $BACK}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: grpc-1, namespace: bench, labels: {kubernetes.io/service-name: grpc}}
addressType: IPv4
ports: [{name: grpc, port: $BACK}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: grpc
  namespace: bench
  annotations: {nginx.ingress.kubernetes.io/backend-protocol: "GRPC", nginx.ingress.kubernetes.io/proxy-body-size: "0"}
spec:
  rules:
  - host: $BENCH_HOST
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: grpc, port: {number: 50051}}}}
EOF
start_pingress pingress "$BENCH_RUN_DIR/manifests" "$PX_HTTP" "$PX_HTTPS" "$PX_HZ" --watch-ingress-without-class

# both answer a call before measuring
for port in "$NGX" "$PX_HTTP"; do
  ok=
  for _ in $(seq 1 100); do
    r=$("$TOOL" unary "127.0.0.1:$port" "$BENCH_HOST" 1 1 16 2>/dev/null || true)
    [ -n "$r" ] && [ "${r%% *}" != 0 ] && { ok=1; break; }
    sleep 0.2
  done
  [ -n "$ok" ] || die "no gRPC call went through port $port"
done

declare -A runs errs
for ((round = 1; round <= ROUNDS; round++)); do
  for mode in unary stream; do
    for target in nginx pingress; do
      port=$NGX; [ "$target" = pingress ] && port=$PX_HTTP
      read -r rate e < <("$TOOL" "$mode" "127.0.0.1:$port" "$BENCH_HOST" "$DURATION" "$CONC" "$BYTES")
      runs[$target-$mode]="${runs[$target-$mode]:-} $rate"
      errs[$target-$mode]=$(( ${errs[$target-$mode]:-0} + e ))
      log "round $round $mode $target: $rate msgs/s, $e errors"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
summary() {
  echo "| mode | nginx msgs/s | pingress msgs/s | pingress / nginx | errors (nginx, pingress) |"
  echo "| --- | --- | --- | --- | --- |"
  for mode in unary stream; do
    n=$(echo "${runs[nginx-$mode]}" | median); p=$(echo "${runs[pingress-$mode]}" | median)
    echo "| $mode | $n | $p | $(awk -v a="$p" -v b="$n" 'BEGIN{printf "%.2f", (b>0?a/b:0)}') | ${errs[nginx-$mode]}, ${errs[pingress-$mode]} |"
  done
}
summary
if [ "${APPEND:-0}" = 1 ]; then
  {
    echo
    echo "## gRPC messages per second (benches/grpc.sh) — $(date -Is)"
    echo
    echo "- machine: $(nproc) cores; uptime: \`$(uptime)\`"
    echo "- commit: \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo "- command: \`DURATION=$DURATION ROUNDS=$ROUNDS CONC=$CONC BYTES=$BYTES bash benches/grpc.sh\` (medians of $ROUNDS rounds)"
    echo
    summary
  } >> "$ROOT/benches/RESULTS.md"
fi
