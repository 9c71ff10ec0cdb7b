#!/usr/bin/env bash
# End-to-end annotation benchmarks (loopback only, bounded):
#  1. limit-rps=100 driven for DURATION (10 s) with far more offered load: the admitted
#     rate must be within 5% of 100/s plus the burst (limit-burst-multiplier 5: 500 + 1).
#  2. proxy CPU per request (us, from /proc utime+stime of the pingress process) with every
#     issue-4 annotation active on the route vs none, in interleaved rounds; reports the ratio.
# Uses benches/anchors (lib.sh helpers and the nginx backend). Needs wrk, nginx, curl.
# Usage: benches/annotations-load.sh   (env: DURATION=10 ROUNDS=3 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=${BACKEND_PORT:-$(free_port)}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d)}
. "$SB/lib.sh"
need wrk nginx curl python3
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
ROUND_SECS=${ROUND_SECS:-5}
BIN=${PINGRESS_BIN:-$ROOT/target/release/pingress}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
PORT=$(free_port)
dir=$(mktemp -d)
pidf="$BENCH_RUN_DIR/pingress.pid"
cleanup() { stop_pidfile "$pidf" INT; "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

"$SB/backend-nginx.sh" start
nx=nginx.ingress.kubernetes.io
cat > "$dir/all.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: pingress, namespace: bench}
data: {global-allowed-response-headers: X-Bench}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: hdrs, namespace: bench}
data: {X-Bench: "1"}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: bench}
spec:
  ingressClassName: pingress
  rules: [{host: plain.bench, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: full
  namespace: bench
  annotations:
    $nx/use-regex: "true"
    $nx/rewrite-target: /\$1
    $nx/x-forwarded-prefix: /bench
    $nx/app-root: /app
    $nx/from-to-www-redirect: "true"
    $nx/server-alias: alias.bench
    $nx/limit-rps: "1000000"
    $nx/limit-connections: "100000"
    $nx/whitelist-source-range: 127.0.0.0/8
    $nx/denylist-source-range: 10.0.0.0/8
    $nx/proxy-body-size: 8m
    $nx/proxy-connect-timeout: "5"
    $nx/proxy-read-timeout: "30"
    $nx/proxy-send-timeout: "30"
    $nx/proxy-next-upstream: error timeout http_502
    $nx/proxy-next-upstream-tries: "3"
    $nx/upstream-vhost: internal.bench
    $nx/connection-proxy-header: keep-alive
    $nx/custom-http-errors: "502,503"
    $nx/default-backend: backend
    $nx/custom-headers: hdrs
spec:
  ingressClassName: pingress
  rules: [{host: full.bench, http: {paths: [{path: "/(.*)", pathType: ImplementationSpecific, backend: {service: {name: backend, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  namespace: bench
  annotations: {$nx/limit-rps: "100"}
spec:
  ingressClassName: pingress
  rules: [{host: limited.bench, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}}]
YAML

RUST_LOG=warn "$BIN" --manifests "$dir" --http-port "$PORT" --bind-address 127.0.0.1 \
  --threads 1 --configmap bench/pingress >"$BENCH_RUN_DIR/pingress.log" 2>&1 &
echo $! > "$pidf"
wait_http "http://127.0.0.1:$PORT/" 20
pid=$(cat "$pidf")
for h in plain.bench full.bench limited.bench; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h" "http://127.0.0.1:$PORT/bench/x")
  [ "$code" = 200 ] || die "$h answered $code"
done
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"

# 1. limit-rps admitted rate
out=$(timeout $((DURATION + 10)) wrk -t2 -c16 -d"${DURATION}s" -H 'Host: limited.bench' "http://127.0.0.1:$PORT/bench/x")
total=$(echo "$out" | awk '/requests in/{print $1}')
rejected=$(echo "$out" | awk '/Non-2xx/{print $NF}')
rejected=${rejected:-0}
admitted=$((total - rejected))
burst=501
rate=$(awk -v a="$admitted" -v b="$burst" -v d="$DURATION" 'BEGIN{printf "%.1f", (a-b)/d}')
dev=$(awk -v r="$rate" 'BEGIN{printf "%.1f", (r-100)/100*100}')
echo "limit-rps=100 for ${DURATION}s: offered $total, admitted $admitted (burst $burst), admitted rate after the burst ${rate}/s (${dev}% from 100/s)"

# 2. CPU per request, all annotations vs none, interleaved
declare -A us
for r in $(seq 1 "$ROUNDS"); do
  order="plain.bench full.bench"
  [ $((r % 2)) -eq 0 ] && order="full.bench plain.bench"
  for h in $order; do
    t0=$(cpu_ticks "$pid")
    o=$(timeout $((ROUND_SECS + 10)) wrk -t1 -c32 -d"${ROUND_SECS}s" -H "Host: $h" "http://127.0.0.1:$PORT/bench/x")
    t1=$(cpu_ticks "$pid")
    n=$(echo "$o" | awk '/requests in/{print $1}')
    bad=$(echo "$o" | awk '/Non-2xx/{print $NF}')
    [ -z "$bad" ] || die "$h: $bad non-2xx responses"
    v=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t*1e6/hz/n}')
    us[$h]="${us[$h]:-} $v"
    echo "round $r $h: $n requests, ${v} us CPU/request"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
p=$(echo "${us[plain.bench]}" | median)
f=$(echo "${us[full.bench]}" | median)
ratio=$(awk -v f="$f" -v p="$p" 'BEGIN{printf "%.3f", f/p}')
echo "median CPU/request: none ${p} us, every annotation ${f} us, ratio ${ratio} (goal < 1.10)"
