#!/usr/bin/env bash
# User and system CPU per request, pingress against nginx shaped like ingress-nginx (no Lua),
# over plain HTTP/1.1 and over TLS: where a CPU ratio of benches/e2e-load.sh comes from (the
# proxy's own instructions, or the kernel's share of the same system calls).
#
#   bash benches/cpu-split.sh            ROUNDS (2) rounds of wrk -t2 -c64 for SECS (8) each
#
# utime and stime come from /proc/<pid>/stat (nginx: master and workers) around each wrk run.
# Env: ROUNDS, SECS, APPEND (1: append the table to benches/RESULTS.md), BENCH_SETUP (1).
. "$(dirname "$0")/anchors/lib.sh"
. "$(dirname "$0")/lib-pingress.sh"
[ "${BENCH_SETUP:-1}" = 1 ] && bash "$(dirname "$0")/setup.sh"
need wrk nginx curl
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-8}"
[ -x "$PINGRESS_BIN" ] || die "no pingress at $PINGRESS_BIN (cargo build --release --locked --bin pingress)"
R="$(mktemp -d "${TMPDIR:-/tmp}/pingress-split.XXXXXX")"
export BENCH_RUN_DIR="$R"
BACKEND_PORT=$(free_port); NGINX_PORT=$(free_port); NGINX_TLS_PORT=$(free_port)
export BACKEND_PORT NGINX_PORT NGINX_TLS_PORT
cleanup() {
  stop_pingress pingress >/dev/null 2>&1 || true
  "$BENCH_DIR/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  "$BENCH_DIR/backend-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$BENCH_DIR/backend-nginx.sh" start
"$BENCH_DIR/nginx-proxy.sh" start 3 off
write_manifests "$R/m" 3 tls
PH=$(free_port); PS=$(free_port)
start_pingress pingress "$R/m" "$PH" "$PS" "$(free_port)" --default-ssl-certificate bench/bench-tls >/dev/null

hz=$(getconf CLK_TCK)
# run LABEL URL PID...: one wrk run; appends "label requests utime stime" to $R/split
run() {
  local label=$1 url=$2 u0 s0 u1 s1 n
  shift 2
  read -r u0 s0 < <(cpu_ticks_split "$@")
  n=$(wrk -t2 -c64 -d"${SECS}s" -H "Host: $BENCH_HOST" "$url" | awk '/requests in/{print $1}')
  read -r u1 s1 < <(cpu_ticks_split "$@")
  echo "$label $n $((u1 - u0)) $((s1 - s0))" >> "$R/split"
  log "$label: $n requests"
}
for ((r = 1; r <= ROUNDS; r++)); do
  run nginx "http://127.0.0.1:$NGINX_PORT/" $(pid_tree "$(cat "$R/nginx-proxy.pid")")
  run pingress "http://127.0.0.1:$PH/" "$(cat "$R/pingress.pid")"
  run nginx-tls "https://127.0.0.1:$NGINX_TLS_PORT/" $(pid_tree "$(cat "$R/nginx-proxy.pid")")
  run pingress-tls "https://127.0.0.1:$PS/" "$(cat "$R/pingress.pid")"
done

table() {
  echo "| proxy | requests (all rounds) | user us/req | system us/req | total us/req |"
  echo "|---|---|---|---|---|"
  awk -v hz="$hz" '{n[$1] += $2; u[$1] += $3; s[$1] += $4; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
    END { for (i = 1; i <= k; i++) { l = order[i]; us = 1e6 / hz / n[l]
      printf "| %s | %d | %.2f | %.2f | %.2f |\n", l, n[l], u[l] * us, s[l] * us, (u[l] + s[l]) * us } }' "$R/split"
}
table
if [ "${APPEND:-1}" = 1 ]; then
  {
    results_header "User and system CPU per request (wrk -t2 -c64, ${ROUNDS} x ${SECS}s)" \
      "ROUNDS=$ROUNDS SECS=$SECS bash benches/cpu-split.sh"
    table; echo
  } >> "$RESULTS_MD"
fi
