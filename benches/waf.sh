#!/usr/bin/env bash
# ModSecurity's cost (issue 19): CPU per request and p99 of a route with the OWASP CRS at
# paranoia level 1 and `SecRuleEngine On` (ingress-nginx's default configuration included, so
# request and response bodies are inspected) against the same route without the WAF, and the
# same pair on nginx with Debian's ModSecurity connector (libnginx-mod-http-modsecurity, the
# same libmodsecurity 3.0.9 and CRS), paired in interleaved rounds in one run.
# wrk --latency, 32 keep-alive connections (closed loop: p99 at each side's own throughput),
# benign browser-like GETs; 1 pingress thread, 1 nginx worker; CPU is utime+stime from /proc.
# Loopback only, bounded. Needs wrk, nginx with libnginx-mod-http-modsecurity, modsecurity-crs,
# curl, python3 (apt-get install -y wrk nginx-light libnginx-mod-http-modsecurity modsecurity-crs).
# Usage: benches/waf.sh   (env: ROUNDS=5 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
. "$(dirname "$0")/bench-env.sh"
need wrk nginx curl python3
ROUNDS=${ROUNDS:-5}
ROUND_SECS=${ROUND_SECS:-5}
MODULE=${MODSEC_MODULE:-/usr/lib/nginx/modules/ngx_http_modsecurity_module.so}
[ -f "$MODULE" ] || die "missing $MODULE: apt-get install -y libnginx-mod-http-modsecurity"
[ -d /usr/share/modsecurity-crs/rules ] || die "missing the CRS: apt-get install -y modsecurity-crs"
bench_need_pingress
PORT=$(free_port)
NGINX_PORT=$(free_port)
ngpidf="$BENCH_RUN_DIR/waf-nginx.pid"
bench_stop_on_exit "$ngpidf" QUIT
bench_start
nx=nginx.ingress.kubernetes.io
write_manifests "$dir" 1
cat > "$dir/02-waf.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: pingress, namespace: bench}
data:
  allow-snippet-annotations: "true"
  annotations-risk-level: Critical
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: waf
  namespace: bench
  annotations:
    $nx/enable-modsecurity: "true"
    $nx/enable-owasp-core-rules: "true"
    $nx/modsecurity-snippet: |
      Include /etc/nginx/modsecurity/modsecurity.conf
      SecRuleEngine On
      SecAuditLog /dev/null
spec:
  ingressClassName: pingress
  rules: [{host: waf.bench, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}}]
YAML
# nginx with the connector: the same rules (pingress's default configuration, the CRS, On)
sed -e 's#^SecAuditLog .*#SecAuditLog /dev/null#' "$ROOT/src/waf/modsecurity.conf" > "$BENCH_RUN_DIR/modsec.conf"
cat >> "$BENCH_RUN_DIR/modsec.conf" <<CONF
Include /etc/modsecurity/crs/crs-setup.conf
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include /usr/share/modsecurity-crs/rules/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
SecRuleEngine On
CONF
{ echo "load_module $MODULE;"; nginx_http_head waf-nginx "$ngpidf"; cat <<NGINX
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 320; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name waf.bench;
        modsecurity on;
        modsecurity_rules_file $BENCH_RUN_DIR/modsec.conf;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name plain.bench;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }
    }
}
NGINX
} > "$BENCH_RUN_DIR/waf-nginx.conf"
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/waf-nginx.conf" >>"$BENCH_RUN_DIR/waf-nginx.out" 2>&1 &
wait_http "http://127.0.0.1:$NGINX_PORT/" 20
PINGRESS_LOG=warn start_pingress main "$dir" "$PORT" "$(free_port)" "$(free_port)" \
  --threads 1 --configmap bench/pingress
pid=$(cat "$BENCH_RUN_DIR/main.pid"); ngpid=$(pid_tree "$(cat "$ngpidf")" | tr '\n' ' ')
UA='Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
code() { curl -s -o /dev/null -w '%{http_code}' -A "$UA" -H 'Accept: */*' -H "Host: $2" "http://127.0.0.1:$1$3"; }
# both WAFs block an attack and pass the benchmark's request; the plain routes pass both
for p in "$PORT" "$NGINX_PORT"; do
  [ "$(code "$p" waf.bench '/?id=1%27%20OR%20%271%27%3D%271')" = 403 ] || die "port $p: the WAF did not block a SQL injection"
  [ "$(code "$p" plain.bench '/?id=1%27%20OR%20%271%27%3D%271')" = 200 ] || die "port $p: plain.bench is inspected"
  [ "$(code "$p" waf.bench '/?q=hello')" = 200 ] || die "port $p: the WAF blocks the benign request"
done
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
run_case() {
  local port=$PORT host=plain.bench
  case $1 in nginx*) port=$NGINX_PORT ;; esac
  case $1 in *waf) host=waf.bench ;; esac
  wrk -t1 -c32 -d"${2}s" --latency -H "Host: $host" -H "User-Agent: $UA" -H 'Accept: */*' \
    "http://127.0.0.1:$port/?q=hello"
}
cpu_pids() { case $1 in nginx*) echo "$ngpid" ;; *) echo "$pid" ;; esac; }
cases=(plain waf nginx nginx-waf)
declare -A us p99
paired_rounds "$ROUNDS" "$ROUND_SECS" "${cases[@]}"
echo "median CPU/request (us): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_median "$k")"; done)"
echo "median p99 (ms): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_p99 "$k")"; done)"
echo "pingress CRS vs no WAF: CPU $(bench_ratio waf plain); nginx CRS vs no WAF: CPU $(bench_ratio nginx-waf nginx)"
echo "pingress+CRS vs nginx+CRS: CPU $(bench_ratio waf nginx-waf); p99 $(awk -v a="$(bench_p99 waf)" -v b="$(bench_p99 nginx-waf)" 'BEGIN{printf "%.3f", a/b}')"
