#!/usr/bin/env bash
# Upload throughput through pingress and nginx shaped like ingress-nginx, one run: a SIZE_MB
# body (1 GiB by default) POSTed with Content-Length and chunked over HTTP/1.1, and over h2 (TLS,
# both proxies' default certificate paths), ROUNDS interleaved rounds, to the backend nginx that
# reads it whole (buffered to a temp file in RAM) before it answers. proxy-body-size / client_max_body_size are 0 (unlimited) on both.
# Both buffer the whole body first (proxy-request-buffering on, ingress-nginx's default): nginx
# to a temp file, pingress to an unlinked temp file in $TMPDIR (both in the run dir, in RAM when
# /dev/shm exists). Reported: MB/s per proxy and mode, and pingress/nginx.
# Loopback only, every transfer time-bounded, free ports picked at run time.
# Env: SIZE_MB=1024 ROUNDS=3 PINGRESS_BIN (target/release/pingress)
# Usage: bash benches/upload.sh   (APPEND=1 appends the summary to benches/RESULTS.md)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
# in RAM when possible: nginx (the proxy and the backend) buffers every body to a temp file
shm=/dev/shm; [ -d "$shm" ] && [ -w "$shm" ] || shm=/tmp
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d "$shm/pingress-upload.XXXXXX")}
chmod 755 "$BENCH_RUN_DIR"   # nginx workers (another user) write their temp files under it
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=$(py_free) NGINX_PORT=$(py_free) NGINX_TLS_PORT=$(py_free)
PX_HTTP=$(py_free); PX_HTTPS=$(py_free); PX_HZ=$(py_free)
export BENCH_HOST=app1.bench.local BODY_SIZE=0
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx curl python3
SIZE_MB=${SIZE_MB:-1024}; ROUNDS=${ROUNDS:-3}
[ -x "$PINGRESS_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress >&2)

cleanup() {
  stop_pingress pingress || true
  "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true
  rm -f "$BENCH_RUN_DIR/body.bin"
}
trap cleanup EXIT

log "machine: $(nproc) cpus, loadavg $(loadavg); run dir $BENCH_RUN_DIR"
dd if=/dev/urandom of="$BENCH_RUN_DIR/body.bin" bs=1M count="$SIZE_MB" status=none
"$SB/backend-nginx.sh" start
"$SB/nginx-proxy.sh" start 3 off
write_manifests "$BENCH_RUN_DIR/manifests" 3 tls
# the bench Ingress without a body limit (ingress-nginx: proxy-body-size "0")
sed -i 's#nginx.ingress.kubernetes.io/ssl-redirect: "false"}#nginx.ingress.kubernetes.io/ssl-redirect: "false", nginx.ingress.kubernetes.io/proxy-body-size: "0"}#' \
  "$BENCH_RUN_DIR/manifests/01-app1.yaml"
grep -q 'proxy-body-size: "0"' "$BENCH_RUN_DIR/manifests/01-app1.yaml" || die "could not set proxy-body-size on the bench Ingress"
# pingress's buffered bodies go where nginx's temp files go
export TMPDIR="$BENCH_RUN_DIR"
start_pingress pingress "$BENCH_RUN_DIR/manifests" "$PX_HTTP" "$PX_HTTPS" "$PX_HZ"

# one upload; prints MB/s, or "fail" (curl error or a status other than 200)
upload() { # upload PLAIN_PORT TLS_PORT MODE
  local args=(-s -o /dev/null --max-time 300 -w '%{http_code} %{speed_upload}' -X POST)
  case "$3" in
    h1-length) args+=(--http1.1 -T "$BENCH_RUN_DIR/body.bin" "http://127.0.0.1:$1/upload") ;;
    h1-chunked) args+=(--http1.1 -H "Transfer-Encoding: chunked" -T - "http://127.0.0.1:$1/upload") ;;
    h2-length) args+=(-k --http2 -T "$BENCH_RUN_DIR/body.bin" --resolve "$BENCH_HOST:$2:127.0.0.1" "https://$BENCH_HOST:$2/upload") ;;
    h2-stream) args+=(-k --http2 -T - --resolve "$BENCH_HOST:$2:127.0.0.1" "https://$BENCH_HOST:$2/upload") ;;
  esac
  local out
  out=$(curl "${args[@]}" -H "Host: $BENCH_HOST" < "$BENCH_RUN_DIR/body.bin" || echo "000 0")
  read -r code speed <<<"$out"
  if [ "$code" = 200 ]; then awk -v s="$speed" 'BEGIN{printf "%.0f", s/1e6}'; else echo "fail($code)"; fi
}

declare -A sum cnt
modes="h1-length h1-chunked h2-length h2-stream"
for ((r = 1; r <= ROUNDS; r++)); do
  for mode in $modes; do
    for target in nginx pingress; do
      if [ "$target" = nginx ]; then v=$(upload "$NGINX_PORT" "$NGINX_TLS_PORT" "$mode");
      else v=$(upload "$PX_HTTP" "$PX_HTTPS" "$mode"); fi
      log "round $r $mode $target: $v MB/s"
      case "$v" in fail*) continue ;; esac
      sum[$target-$mode]=$(( ${sum[$target-$mode]:-0} + v )); cnt[$target-$mode]=$(( ${cnt[$target-$mode]:-0} + 1 ))
    done
  done
done

summary() {
  echo "| mode | nginx MB/s | pingress MB/s | pingress / nginx |"
  echo "| --- | --- | --- | --- |"
  for mode in $modes; do
    n=${cnt[nginx-$mode]:-0}; p=${cnt[pingress-$mode]:-0}
    a=$([ "$n" -gt 0 ] && echo $(( sum[nginx-$mode] / n )) || echo fail)
    b=$([ "$p" -gt 0 ] && echo $(( sum[pingress-$mode] / p )) || echo fail)
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{ if (a+0 > 0 && b+0 > 0) printf "%.2f", b/a; else print "-" }')
    echo "| $mode | $a | $b | $ratio |"
  done
}
summary
if [ "${APPEND:-0}" = 1 ]; then
  { results_header "Uploads of ${SIZE_MB} MiB (benches/upload.sh)" "SIZE_MB=$SIZE_MB ROUNDS=$ROUNDS bash benches/upload.sh"; summary; } >> "$RESULTS_MD"
fi
