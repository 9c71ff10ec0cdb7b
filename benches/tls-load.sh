#!/usr/bin/env bash
# HTTPS throughput of pingress vs an ingress-nginx-shaped nginx, same certificate, one run:
#   keep-alive (wrk over TLS, h2load over h2) and new handshakes (wrk with Connection: close).
# Uses benches/anchors (BENCH env to override). Loopback only, time-bounded, free ports
# picked at run time; stops only what it started.
#   DURATION=5 ROUNDS=1 bash benches/tls-load.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$here/benches/anchors}"
export DURATION="${DURATION:-5}" ROUNDS="${ROUNDS:-1}"
export BENCH_RUN_DIR="${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-tls-bench.XXXXXX)}"
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=$(free) NGINX_PORT=$(free) NGINX_TLS_PORT=$(free)
PX_HTTP=$(free); PX_HTTPS=$(free)
export BENCH_HOST=app1.bench.local

cargo build --release --manifest-path "$here/Cargo.toml" --bin pingress
cert_key=$(bash "$BENCH/gen-cert.sh"); cert=${cert_key% *}; key=${cert_key#* }

cleanup() {
  [ -s "$BENCH_RUN_DIR/pingress.pid" ] && kill "$(cat "$BENCH_RUN_DIR/pingress.pid")" 2>/dev/null || true
  bash "$BENCH/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  bash "$BENCH/backend-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash "$BENCH/backend-nginx.sh" start
bash "$BENCH/nginx-proxy.sh" start 3 off

# pingress: the same certificate as a kubernetes.io/tls Secret, one Ingress to the backend
m="$BENCH_RUN_DIR/manifests"; mkdir -p "$m"
ind() { sed 's/^/    /' "$1"; }
cat > "$m/bench.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: default}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(ind "$cert")
  tls.key: |
$(ind "$key")
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: default}
spec:
  ingressClassName: pingress
  tls: [{hosts: ["$BENCH_HOST"], secretName: bench-tls}]
  rules:
  - host: "$BENCH_HOST"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}
YAML
"$here/target/release/pingress" --manifests "$m" --bind-address 127.0.0.1 \
  --http-port "$PX_HTTP" --https-port "$PX_HTTPS" --default-ssl-certificate default/bench-tls > "$BENCH_RUN_DIR/pingress.log" 2>&1 &
echo $! > "$BENCH_RUN_DIR/pingress.pid"
for _ in $(seq 100); do
  curl -sk --resolve "$BENCH_HOST:$PX_HTTPS:127.0.0.1" -o /dev/null "https://$BENCH_HOST:$PX_HTTPS/" && break
  sleep 0.1
done

stamp=$(date +%s)
echo "== HTTPS keep-alive (wrk: HTTP/1.1 over TLS; h2load: h2), interleaved"
RUN_ID="tls-keepalive-$stamp" TOOLS="wrk h2load" bash "$BENCH/compare.sh" "$ROUNDS" \
  "nginx|https://127.0.0.1:$NGINX_TLS_PORT/|$BENCH_RUN_DIR/nginx-proxy.pid" \
  "pingress|https://127.0.0.1:$PX_HTTPS/|$BENCH_RUN_DIR/pingress.pid"
bash "$BENCH/summarize.sh" "tls-keepalive-$stamp" 'pingress/nginx'

# run-load.sh has no extra-header option: new handshakes are measured with wrk directly.
# Clients send no SNI (IP URL), so both serve their default certificate: the same RSA-2048 one
# (pingress gets it through --default-ssl-certificate).
echo "== new TLS handshake per request (wrk -H 'Connection: close'), interleaved"
hs() { timeout $((DURATION + 20)) wrk -t2 -c16 -d"${DURATION}s" -H "Host: $BENCH_HOST" \
  -H 'Connection: close' "$1" | awk '/Requests\/sec/ {print $2}'; }
for r in $(seq "$ROUNDS"); do
  n=$(hs "https://127.0.0.1:$NGINX_TLS_PORT/"); p=$(hs "https://127.0.0.1:$PX_HTTPS/")
  echo "round $r: nginx ${n} req/s, pingress ${p} req/s, ratio pingress/nginx $(awk -v a="$p" -v b="$n" 'BEGIN{printf "%.2f", a/b}')"
done
