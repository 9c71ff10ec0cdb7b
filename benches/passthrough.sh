#!/usr/bin/env bash
# SSL passthrough (issue 17): what the SNI peek on the HTTPS port costs, in one run of
# interleaved rounds, a new TLS connection per request (anchors/conn-per-request.py --tls, 8 at
# a time; each connection: handshake, one GET, close):
#   terminated       pingress without --enable-ssl-passthrough (no peek), host term.bench.local
#   terminated-peek  pingress with it (a passthrough host exists, so every ClientHello is read
#                    first and put back), the same host: CPU per connection and latency vs above
#   passthrough      the same pingress, host pass.bench.local relayed to a TLS nginx backend
#                    (pingress's CPU per connection; the handshake is the backend's)
#   direct           straight to that TLS backend (the latency reference for passthrough)
# CPU is utime+stime of the pingress process from /proc; latency is the client's mean time per
# connection (seconds x concurrency / connections). Loopback only, bounded. Needs nginx,
# openssl, curl, python3.
# Usage: benches/passthrough.sh   (env: ROUNDS=3 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
BENCH_HOST=term.bench.local
. "$(dirname "$0")/bench-env.sh"
need nginx openssl curl python3
ROUNDS=${ROUNDS:-3}
ROUND_SECS=${ROUND_SECS:-5}
bench_need_pingress
A_HTTP=$(free_port); A_HTTPS=$(free_port); B_HTTP=$(free_port); B_HTTPS=$(free_port)
TLS_BACKEND=$(free_port)
tlspidf="$BENCH_RUN_DIR/tls-backend.pid"
bench_stop_on_exit "$tlspidf"
bench_start peek plain
read -r cert key < <("$SB/gen-cert.sh")
{ nginx_http_head tls-backend "$tlspidf"; cat <<NGINX
    server {
        listen 127.0.0.1:$TLS_BACKEND ssl;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        location / { return 200 "ok\n"; }
    }
}
NGINX
} > "$BENCH_RUN_DIR/tls-backend.conf"
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/tls-backend.conf" >>"$BENCH_RUN_DIR/tls-backend.out" 2>&1 &
write_manifests "$dir" 1
cat > "$dir/02-pass.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: tls-backend, namespace: bench}
spec: {ports: [{name: https, port: 443, targetPort: https}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: tls-backend-1, namespace: bench, labels: {kubernetes.io/service-name: tls-backend}}
addressType: IPv4
ports: [{name: https, port: $TLS_BACKEND}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pass
  namespace: bench
  annotations: {nginx.ingress.kubernetes.io/ssl-passthrough: "true"}
spec:
  ingressClassName: pingress
  rules: [{host: pass.bench.local, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: tls-backend, port: {number: 443}}}}]}}]
YAML
PINGRESS_LOG=warn start_pingress peek "$dir" "$A_HTTP" "$A_HTTPS" "$(free_port)" --threads 1 --enable-ssl-passthrough
PINGRESS_LOG=warn start_pingress plain "$dir" "$B_HTTP" "$B_HTTPS" "$(free_port)" --threads 1
code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "pass.bench.local:$A_HTTPS:127.0.0.1" "https://pass.bench.local:$A_HTTPS/")
[ "$code" = 200 ] || die "passthrough answered $code"
issuer=$(echo | openssl s_client -connect "127.0.0.1:$A_HTTPS" -servername pass.bench.local 2>/dev/null | openssl x509 -noout -subject 2>/dev/null)
case $issuer in *bench.local*) ;; *) die "pass.bench.local was not passed through: $issuer" ;; esac
for p in "$A_HTTPS" "$B_HTTPS"; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "term.bench.local:$p:127.0.0.1" "https://term.bench.local:$p/")
  [ "$code" = 200 ] || die "term.bench.local on $p answered $code"
done
peek=$(cat "$BENCH_RUN_DIR/peek.pid"); plain=$(cat "$BENCH_RUN_DIR/plain.pid")
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
C=8
run_case() {
  case $1 in
    terminated) python3 "$SB/conn-per-request.py" "$B_HTTPS" term.bench.local "$2" $C --tls term.bench.local ;;
    terminated-peek) python3 "$SB/conn-per-request.py" "$A_HTTPS" term.bench.local "$2" $C --tls term.bench.local ;;
    passthrough) python3 "$SB/conn-per-request.py" "$A_HTTPS" pass.bench.local "$2" $C --tls pass.bench.local ;;
    direct) python3 "$SB/conn-per-request.py" "$TLS_BACKEND" pass.bench.local "$2" $C --tls pass.bench.local ;;
  esac
}
cases=(terminated terminated-peek passthrough direct)
declare -A us lat
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2 3; do
    label=${cases[$(((i + r) % 4))]}
    case $label in terminated) p=$plain ;; *) p=$peek ;; esac
    t0=$(cpu_ticks "$p")
    o=$(run_case "$label" "$ROUND_SECS")
    t1=$(cpu_ticks "$p")
    n=$(echo "$o" | awk '/requests in/{print $1}')
    secs=$(echo "$o" | awk '/requests in/{sub("s","",$4); print $4}')
    bad=$(echo "$o" | awk '/Non-2xx/{print $NF}')
    [ -z "$bad" ] || die "$label: $bad failed connections"
    v=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
    l=$(awk -v s="$secs" -v n="$n" -v c="$C" 'BEGIN{printf "%.3f", s*c*1000/n}')
    us[$label]="${us[$label]:-} $v"; lat[$label]="${lat[$label]:-} $l"
    echo "round $r $label: $n connections, ${v} us pingress CPU/connection, ${l} ms/connection"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
m() { echo "${us[$1]}" | median; }
ml() { echo "${lat[$1]}" | median; }
r() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
echo "median pingress CPU/connection (us): terminated $(m terminated), terminated-peek $(m terminated-peek), passthrough $(m passthrough)"
echo "median ms/connection: terminated $(ml terminated), terminated-peek $(ml terminated-peek), passthrough $(ml passthrough), direct $(ml direct)"
echo "SNI peek on terminated connections: CPU $(r "$(m terminated-peek)" "$(m terminated)"), latency $(r "$(ml terminated-peek)" "$(ml terminated)"); passthrough latency vs direct $(r "$(ml passthrough)" "$(ml direct)")"
