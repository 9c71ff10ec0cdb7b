#!/usr/bin/env bash
# CPU per request of the issue-16 features, each paired with the plain route in interleaved
# rounds (loopback only, bounded), and gzip against nginx's gzip level 1 in the same run:
#  1. CORS (enable-cors with an origin list, Origin sent) vs the plain route;
#  2. gzip of a 10 KiB JSON body (use-gzip, gzip-level 1, Accept-Encoding: gzip) vs the same
#     body uncompressed, and vs nginx (1 worker, gzip_comp_level 1, gzip_proxied any) proxying
#     the same backend;
#  3. PROXY protocol v1 (use-proxy-protocol) vs none: one request per connection (Connection:
#     close; the PROXY line leads each), driven by anchors/conn-per-request.py (wrk refuses a
#     request that does not start with a method), on two pingress instances.
# CPU is utime+stime of the process from /proc. Needs wrk, nginx, curl, python3.
# Usage: benches/features-load.sh   (env: ROUNDS=3 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
. "$(dirname "$0")/bench-env.sh"
need wrk nginx curl python3
ROUNDS=${ROUNDS:-3}
ROUND_SECS=${ROUND_SECS:-5}
bench_need_pingress
PORT=$(free_port)
PP_PORT=$(free_port)
NGINX_PORT=$(free_port)
ppdir=$(mktemp -d)
pppidf="$BENCH_RUN_DIR/pingress-pp.pid"
ngpidf="$BENCH_RUN_DIR/gzip-nginx.pid"
bench_stop_on_exit "$pppidf" INT
bench_stop_on_exit "$ngpidf"
bench_remove_on_exit "$ppdir"
bench_start
nx=nginx.ingress.kubernetes.io
# the shared base (IngressClass, Service + EndpointSlice to the backend, Ingress plain.bench),
# then this bench's ConfigMap and the CORS Ingress
features() { # $1: use-proxy-protocol
  cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: pingress, namespace: bench}
data: {use-gzip: "true", gzip-level: "1", use-proxy-protocol: "$1"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: cors
  namespace: bench
  annotations:
    $nx/enable-cors: "true"
    $nx/cors-allow-origin: "https://app.example.com, https://*.example.org"
    $nx/cors-expose-headers: X-Total
spec:
  ingressClassName: pingress
  rules: [{host: cors.bench, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}}]
YAML
}
write_manifests "$dir" 1
write_manifests "$ppdir" 1
features false > "$dir/02-features.yaml"
features true > "$ppdir/02-features.yaml"

PINGRESS_LOG=warn start_pingress main "$dir" "$PORT" "$(free_port)" "$(free_port)" \
  --threads 1 --configmap bench/pingress
RUST_LOG=warn "$PINGRESS_BIN" --manifests "$ppdir" --http-port "$PP_PORT" --bind-address 127.0.0.1 \
  --threads 1 --configmap bench/pingress --https-port "$(free_port)" --healthz-port "$(free_port)" \
  >"$BENCH_RUN_DIR/pingress-pp.log" 2>&1 &
echo $! > "$pppidf"

# nginx's gzip level 1 in front of the same backend (1 worker, upstream keepalive)
{ nginx_http_head gzip-nginx "$ngpidf"; cat <<NGINX
    gzip on;
    gzip_comp_level 1;
    gzip_http_version 1.1;
    gzip_min_length 256;
    gzip_types application/json;
    gzip_proxied any;
    gzip_vary on;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 320; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }
    }
}
NGINX
} > "$BENCH_RUN_DIR/gzip-nginx.conf"
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/gzip-nginx.conf" >>"$BENCH_RUN_DIR/gzip-nginx.out" 2>&1 &
wait_http "http://127.0.0.1:$NGINX_PORT/" 20
for _ in $(seq 1 100); do
  [ "$(printf 'PROXY TCP4 10.0.0.1 127.0.0.1 1234 80\r\nGET / HTTP/1.1\r\nHost: plain.bench\r\nConnection: close\r\n\r\n' \
    | timeout 2 python3 -c 'import socket,sys;s=socket.create_connection(("127.0.0.1",'"$PP_PORT"'));s.sendall(sys.stdin.buffer.read());print(s.recv(100).split(b" ")[1].decode())' 2>/dev/null)" = 200 ] && break
  sleep 0.1
done
[ "$(printf 'PROXY TCP4 10.0.0.1 127.0.0.1 1234 80\r\nGET / HTTP/1.1\r\nHost: plain.bench\r\nConnection: close\r\n\r\n' \
  | timeout 2 python3 -c 'import socket,sys;s=socket.create_connection(("127.0.0.1",'"$PP_PORT"'));s.sendall(sys.stdin.buffer.read());print(s.recv(100).split(b" ")[1].decode())' 2>/dev/null)" = 200 ] \
  || die "the PROXY protocol instance does not answer: $(tail -5 "$BENCH_RUN_DIR/pingress-pp.log")"
pid=$(cat "$BENCH_RUN_DIR/main.pid"); pppid=$(cat "$pppidf"); ngpid=$(pid_tree "$(cat "$ngpidf")" | tr '\n' ' ')
for h in plain.bench cors.bench; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h" "http://127.0.0.1:$PORT/")
  [ "$code" = 200 ] || die "$h answered $code"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: cors.bench" -H "Origin: https://a.example.org" "http://127.0.0.1:$PORT/")
[ "$code" = 200 ] || die "cors.bench with an Origin answered $code"
enc=$(curl -s -o /dev/null -D - -H 'Host: plain.bench' -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/json10k" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
[ "$enc" = gzip ] || die "pingress did not gzip /json10k"
enc=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://127.0.0.1:$NGINX_PORT/json10k" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
[ "$enc" = gzip ] || die "nginx did not gzip /json10k"
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"

# each case: its load run (wrk, 32 keep-alive connections; a connection per request: 8 at a
# time), and
# the process whose CPU it costs
run_case() {
  local label=$1 secs=$2
  local u="http://127.0.0.1"
  case $label in
    plain) wrk -t1 -c32 -d"${secs}s" -H 'Host: plain.bench' "$u:$PORT/" ;;
    cors) wrk -t1 -c32 -d"${secs}s" -H 'Host: cors.bench' -H 'Origin: https://a.example.org' "$u:$PORT/" ;;
    json) wrk -t1 -c32 -d"${secs}s" -H 'Host: plain.bench' "$u:$PORT/json10k" ;;
    json-gzip) wrk -t1 -c32 -d"${secs}s" -H 'Host: plain.bench' -H 'Accept-Encoding: gzip' "$u:$PORT/json10k" ;;
    nginx-json-gzip) wrk -t1 -c32 -d"${secs}s" -H 'Accept-Encoding: gzip' "$u:$NGINX_PORT/json10k" ;;
    close) python3 "$SB/conn-per-request.py" "$PORT" plain.bench "$secs" 8 ;;
    close-proxy-protocol) python3 "$SB/conn-per-request.py" "$PP_PORT" plain.bench "$secs" 8 --proxy-v1 ;;
  esac
}
cpu_pids() {
  case $1 in
    nginx-json-gzip) echo "$ngpid" ;;
    close-proxy-protocol) echo "$pppid" ;;
    *) echo "$pid" ;;
  esac
}
cases=(plain cors json json-gzip nginx-json-gzip close close-proxy-protocol)
declare -A us
paired_rounds "$ROUNDS" "$ROUND_SECS" "${cases[@]}"
echo "median CPU/request (us): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_median "$k")"; done)"
echo "CORS vs plain: $(bench_ratio cors plain)"
echo "gzip 10 KiB JSON vs uncompressed: $(bench_ratio json-gzip json); pingress gzip vs nginx gzip level 1: $(bench_ratio json-gzip nginx-json-gzip)"
echo "PROXY protocol v1 vs none (a connection per request): $(bench_ratio close-proxy-protocol close)"
