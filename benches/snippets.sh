#!/usr/bin/env bash
# CPU per request of a route with a 5-directive configuration-snippet against the same
# behaviour expressed by annotations, paired in interleaved rounds in one run (issue 18; goal:
# under 5% apart), with the plain route as the reference:
#   snippet:      more_set_headers (2 headers), deny 10.0.0.0/8, client_max_body_size 8m,
#                 proxy_read_timeout 30, rewrite ^/app/(.*)$ /$1 break
#   annotations:  custom-headers (the same 2 headers), denylist-source-range, proxy-body-size,
#                 proxy-read-timeout, use-regex + rewrite-target on /app/(.*)
# wrk, 32 keep-alive connections, 1 pingress thread; CPU is utime+stime of the process from
# /proc. Loopback only, bounded. Needs wrk, nginx (the backend), curl, python3.
# Usage: benches/snippets.sh   (env: ROUNDS=5 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
. "$(dirname "$0")/bench-env.sh"
need wrk nginx curl python3
ROUNDS=${ROUNDS:-5}
ROUND_SECS=${ROUND_SECS:-5}
bench_need_pingress
PORT=$(free_port)
bench_start
nx=nginx.ingress.kubernetes.io
write_manifests "$dir" 1
cat > "$dir/02-snippets.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: pingress, namespace: bench}
data:
  allow-snippet-annotations: "true"
  annotations-risk-level: Critical
  global-allowed-response-headers: "X-Frame-Options,X-Content-Type-Options"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: sec-headers, namespace: bench}
data: {X-Frame-Options: DENY, X-Content-Type-Options: nosniff}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: snip
  namespace: bench
  annotations:
    $nx/configuration-snippet: |
      more_set_headers "X-Frame-Options: DENY" "X-Content-Type-Options: nosniff";
      deny 10.0.0.0/8;
      client_max_body_size 8m;
      proxy_read_timeout 30;
      rewrite ^/app/(.*)\$ /\$1 break;
spec:
  ingressClassName: pingress
  rules: [{host: snip.bench, http: {paths: [{path: /app, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: annot
  namespace: bench
  annotations:
    $nx/custom-headers: bench/sec-headers
    $nx/denylist-source-range: 10.0.0.0/8
    $nx/proxy-body-size: 8m
    $nx/proxy-read-timeout: "30"
    $nx/use-regex: "true"
    $nx/rewrite-target: /\$1
spec:
  ingressClassName: pingress
  rules: [{host: annot.bench, http: {paths: [{path: /app/(.*), pathType: ImplementationSpecific, backend: {service: {name: backend, port: {number: 80}}}}]}}]
YAML
PINGRESS_LOG=warn start_pingress main "$dir" "$PORT" "$(free_port)" "$(free_port)" \
  --threads 1 --configmap bench/pingress
pid=$(cat "$BENCH_RUN_DIR/main.pid")
# both routes answer alike: 200, the two headers, the rewritten path reaches the backend
for h in snip.bench annot.bench; do
  head=$(curl -s -o /dev/null -D - -H "Host: $h" "http://127.0.0.1:$PORT/app/x" | tr -d '\r')
  echo "$head" | grep -q '^HTTP/1.1 200' || die "$h answered: $(echo "$head" | head -1)"
  echo "$head" | grep -qi '^x-frame-options: DENY' || die "$h: no X-Frame-Options"
  echo "$head" | grep -qi '^x-content-type-options: nosniff' || die "$h: no X-Content-Type-Options"
done
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
run_case() {
  case $1 in
    plain) wrk -t1 -c32 -d"${2}s" -H 'Host: plain.bench' "http://127.0.0.1:$PORT/app/x" ;;
    snippet) wrk -t1 -c32 -d"${2}s" -H 'Host: snip.bench' "http://127.0.0.1:$PORT/app/x" ;;
    annotations) wrk -t1 -c32 -d"${2}s" -H 'Host: annot.bench' "http://127.0.0.1:$PORT/app/x" ;;
  esac
}
cpu_pids() { echo "$pid"; }
declare -A us
paired_rounds "$ROUNDS" "$ROUND_SECS" plain snippet annotations
m() { bench_median "$1"; }
echo "median CPU/request (us): plain $(m plain), snippet $(m snippet), annotations $(m annotations)"
echo "snippet vs annotations: $(bench_ratio snippet annotations); snippet vs plain: $(bench_ratio snippet plain); annotations vs plain: $(bench_ratio annotations plain)"
