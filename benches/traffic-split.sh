#!/usr/bin/env bash
# Proxy CPU per request of the traffic-splitting families against a plain route, in interleaved
# rounds (issue 14's benchmark; goal: under 5% extra each):
#   plain    - a route with no annotation
#   canary   - a route whose Service has a canary Ingress (by header, weight 50): the request
#              carries no header, so the weight decides every request
#   sticky   - cookie affinity (balanced), requests carrying a session cookie
#   new      - cookie affinity, requests without a cookie: a new session and Set-Cookie each
#   csticky  - canary + affinity: the primary has cookie affinity, its canary (weight 50) takes
#              it (affinity-canary-behavior sticky); requests carry a session pinned to the canary
#   hashby   - upstream-hash-by $request_uri
# Backend: nginx answering 200 (benches/anchors). CPU from /proc utime+stime of pingress.
# Usage: benches/traffic-split.sh   (env: ROUNDS=3 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=${BACKEND_PORT:-$(free_port)}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d)}
. "$SB/lib.sh"
need wrk nginx curl python3
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
svc() { # name
  cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: bench}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1-1, namespace: bench, labels: {kubernetes.io/service-name: $1}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
YAML
}
ing() { # name host service annotations-json
  cat <<YAML
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: $1, namespace: bench, annotations: $4}
spec:
  ingressClassName: pingress
  rules: [{host: $2, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: $3, port: {number: 80}}}}]}}]
YAML
}
{
  printf 'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: pingress}\nspec: {controller: k8s.io/pingress}\n'
  svc plain; svc primary; svc canary; svc sticky; svc cprimary; svc ccanary; svc hashed
  ing plain plain.bench plain '{}'
  ing main canary.bench primary '{}'
  ing main-canary canary.bench canary "{\"$nx/canary\": \"true\", \"$nx/canary-by-header\": \"X-Canary\", \"$nx/canary-weight\": \"50\"}"
  ing sticky sticky.bench sticky "{\"$nx/affinity\": \"cookie\"}"
  ing cmain csticky.bench cprimary "{\"$nx/affinity\": \"cookie\"}"
  ing cmain-canary csticky.bench ccanary "{\"$nx/canary\": \"true\", \"$nx/canary-by-header\": \"X-Canary\", \"$nx/canary-weight\": \"50\"}"
  ing hashed hash.bench hashed "{\"$nx/upstream-hash-by\": \"\$request_uri\"}"
} > "$dir/all.yaml"

RUST_LOG=warn "$BIN" --manifests "$dir" --http-port "$PORT" --bind-address 127.0.0.1 \
  --threads 1 --healthz-port 0 >"$BENCH_RUN_DIR/pingress.log" 2>&1 &
echo $! > "$pidf"
wait_http "http://127.0.0.1:$PORT/" 20
pid=$(cat "$pidf")
for h in plain.bench canary.bench sticky.bench csticky.bench hash.bench; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h" "http://127.0.0.1:$PORT/")
  [ "$code" = 200 ] || die "$h answered $code"
done
cookie=$(curl -s -D - -o /dev/null -H 'Host: sticky.bench' "http://127.0.0.1:$PORT/" \
  | awk -F'[ ;]' 'tolower($1)=="set-cookie:"{print $2}' | tr -d '\r')
[ -n "$cookie" ] || die "no affinity cookie"
ccookie=$(curl -s -D - -o /dev/null -H 'Host: csticky.bench' -H 'X-Canary: always' "http://127.0.0.1:$PORT/" \
  | awk -F'[ ;]' 'tolower($1)=="set-cookie:"{print $2}' | tr -d '\r')
[ -n "$ccookie" ] || die "no affinity cookie from the canary"
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"

declare -A us
kinds="plain canary sticky new csticky hashby"
for r in $(seq 1 "$ROUNDS"); do
  order=$kinds
  [ $((r % 2)) -eq 0 ] && order=$(echo "$kinds" | tr ' ' '\n' | tac | tr '\n' ' ')
  for k in $order; do
    case $k in
      plain) args=(-H 'Host: plain.bench') ;;
      canary) args=(-H 'Host: canary.bench') ;;
      sticky) args=(-H 'Host: sticky.bench' -H "Cookie: $cookie") ;;
      new) args=(-H 'Host: sticky.bench') ;;
      csticky) args=(-H 'Host: csticky.bench' -H "Cookie: $ccookie") ;;
      hashby) args=(-H 'Host: hash.bench') ;;
    esac
    t0=$(cpu_ticks "$pid")
    o=$(timeout $((ROUND_SECS + 10)) wrk -t1 -c32 -d"${ROUND_SECS}s" "${args[@]}" "http://127.0.0.1:$PORT/")
    t1=$(cpu_ticks "$pid")
    n=$(echo "$o" | awk '/requests in/{print $1}')
    bad=$(echo "$o" | awk '/Non-2xx/{print $NF}')
    [ -z "$bad" ] || die "$k: $bad non-2xx responses"
    v=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t*1e6/hz/n}')
    us[$k]="${us[$k]:-} $v"
    echo "round $r $k: $n requests, ${v} us CPU/request"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
p=$(echo "${us[plain]}" | median)
for k in canary sticky new csticky hashby; do
  v=$(echo "${us[$k]}" | median)
  echo "median CPU/request: plain ${p} us, $k ${v} us, ratio $(awk -v a="$v" -v b="$p" 'BEGIN{printf "%.3f", a/b}') (goal < 1.05)"
done
