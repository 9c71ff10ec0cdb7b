#!/usr/bin/env bash
# TCP services (issue 17): CPU of pingress's --tcp-services-configmap relay against nginx's
# stream proxy (1 worker, the ngx_stream_module ingress-nginx uses) in front of the same
# backend, in interleaved rounds of one run. The relayed protocol is HTTP (the backend is the
# bench nginx), driven by wrk through the TCP port:
#   bulk:  32 kept-alive connections fetching a 10 KiB body (bytes relayed; CPU per request)
#   short: a new TCP connection per request (Connection: close, 8 at a time; CPU per connection)
# CPU is utime+stime of the proxy process (all its threads) from /proc. Loopback only, bounded.
# Needs wrk, nginx with libnginx-mod-stream, curl, python3.
# Usage: benches/l4.sh   (env: ROUNDS=3 ROUND_SECS=5 PINGRESS_BIN=...)
set -euo pipefail
. "$(dirname "$0")/bench-env.sh"
need wrk nginx curl python3
STREAM_MODULE=${STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
[ -f "$STREAM_MODULE" ] || die "nginx's stream module is missing ($STREAM_MODULE): apt-get install libnginx-mod-stream"
ROUNDS=${ROUNDS:-3}
ROUND_SECS=${ROUND_SECS:-5}
bench_need_pingress
PORT=$(free_port)
TCP_PORT=$(free_port)
NGINX_PORT=$(free_port)
ngpidf="$BENCH_RUN_DIR/stream-nginx.pid"
bench_stop_on_exit "$ngpidf"
bench_start
write_manifests "$dir" 1
cat > "$dir/02-tcp.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: tcp, namespace: bench}
data: {"$TCP_PORT": "bench/backend:80"}
YAML
PINGRESS_LOG=warn start_pingress main "$dir" "$PORT" "$(free_port)" "$(free_port)" \
  --threads 1 --tcp-services-configmap bench/tcp
cat > "$BENCH_RUN_DIR/stream-nginx.conf" <<NGINX
load_module $STREAM_MODULE;
worker_processes 1;
daemon off;
pid $ngpidf;
error_log $BENCH_RUN_DIR/stream-nginx-error.log warn;
events { worker_connections 8192; }
stream {
    upstream backend { server 127.0.0.1:$BACKEND_PORT; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        proxy_pass backend;
        proxy_timeout 600s;
    }
}
NGINX
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/stream-nginx.conf" >>"$BENCH_RUN_DIR/stream-nginx.out" 2>&1 &
for port in "$TCP_PORT" "$NGINX_PORT"; do
  wait_http "http://127.0.0.1:$port/json10k" 20
done
pid=$(cat "$BENCH_RUN_DIR/main.pid"); ngpid=$(pid_tree "$(cat "$ngpidf")" | tr '\n' ' ')
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
run_case() {
  local port
  case $1 in pingress-*) port=$TCP_PORT ;; *) port=$NGINX_PORT ;; esac
  case $1 in
    *-bulk) wrk -t1 -c32 -d"${2}s" "http://127.0.0.1:$port/json10k" ;;
    *-short) wrk -t1 -c8 -d"${2}s" -H 'Connection: close' "http://127.0.0.1:$port/" ;;
  esac
}
cpu_pids() { case $1 in pingress-*) echo "$pid" ;; *) echo "$ngpid" ;; esac; }
cases=(pingress-bulk nginx-bulk pingress-short nginx-short)
declare -A us
paired_rounds "$ROUNDS" "$ROUND_SECS" "${cases[@]}"
echo "median CPU (us): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_median "$k")"; done)"
echo "pingress vs nginx stream: bulk (per 10 KiB request) $(bench_ratio pingress-bulk nginx-bulk); short (per connection) $(bench_ratio pingress-short nginx-short)"
