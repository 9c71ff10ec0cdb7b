#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: user-space instructions of
# the proxy process only (the kernel's half of the CPU is not in it), the same count whatever
# else the machine is doing. The before/after of a change that wall-clock CPU ratios on a shared
# 2-core machine cannot resolve (a 2% change is inside their round-to-round spread).
#
#   bash benches/instructions.sh                       pingress and pingora-min
#   PINGRESS_BIN_B=<other build> bash benches/instructions.sh   and that build (the A/B)
#   TLS=1 bash benches/instructions.sh                 the same over HTTPS (HTTP/1.1 over TLS)
#
# Each proxy runs alone under callgrind with one proxy thread (pingress --threads 1,
# pingora-min PM_THREADS=1, per-thread runtime), in front of the bench nginx backend; h2load
# sends WARM keep-alive GETs (pool, caches, the metric series), the counters are zeroed, then
# N more requests (4 connections), and the dump's total is divided by N.
# Over TLS the counted part holds the 4 measured connections' handshakes (RSA-2048 with the
# bench certificate: about 10k instructions per request at N=4000; raise N to shrink it).
# Env: N (4000), WARM (500), TLS (0), APPEND (1: append the table to benches/RESULTS.md), AB_LABEL.
. "$(dirname "$0")/anchors/lib.sh"
. "$(dirname "$0")/lib-pingress.sh"
bash "$(dirname "$0")/setup.sh"
command -v valgrind >/dev/null 2>&1 || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
}
need valgrind callgrind_control h2load curl
N="${N:-4000}"
WARM="${WARM:-500}"
TLS="${TLS:-0}"
SCHEME=http; TLS_MANIFESTS=""; OVER=""
[ "$TLS" = 1 ] && { SCHEME=https; TLS_MANIFESTS=tls; OVER=", over HTTPS"; }
R="$(mktemp -d "${TMPDIR:-/tmp}/pingress-instr.XXXXXX")"
export BENCH_RUN_DIR="$R"
BACKEND_PORT=$(free_port); export BACKEND_PORT
"$BENCH_DIR/backend-nginx.sh" start
write_manifests "$R/m" 3 $TLS_MANIFESTS
read -r cert key < <("$BENCH_DIR/gen-cert.sh")
vg_pid=""
cleanup() {
  [ -n "$vg_pid" ] && kill -INT "$vg_pid" 2>/dev/null || true
  "$BENCH_DIR/backend-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# count LABEL PORT CMD...: instructions per request of CMD (which serves $SCHEME on PORT)
count() {
  local label="$1" url="$SCHEME://127.0.0.1:$2/" out="$R/cg.$1" code="" i ir
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" "$@" >"$R/$label.log" 2>&1 &
  vg_pid=$!
  for ((i = 0; i < 900; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -k -H "Host: $BENCH_HOST" "$url" || true)
    [ "$code" = 200 ] && break
    [ -d "/proc/$vg_pid" ] || die "$label exited under valgrind (see $R/$label.log)"
    sleep 0.2
  done
  [ "$code" = 200 ] || die "$label never answered 200 under valgrind"
  h2load --h1 -n "$WARM" -c 4 -H ":authority: $BENCH_HOST" "$url" >/dev/null
  callgrind_control -z "$vg_pid" >/dev/null
  h2load --h1 -n "$N" -c 4 -H ":authority: $BENCH_HOST" "$url" > "$R/$label.h2load"
  callgrind_control -d "$vg_pid" >/dev/null
  kill -INT "$vg_pid"; wait "$vg_pid" || true; vg_pid=""
  grep -q "status codes: $N 2xx" "$R/$label.h2load" || die "$label: not every request answered 2xx ($R/$label.h2load)"
  # the zeroed-then-dumped part
  ir=$(awk '/^summary:/{print $2}' "$(ls "$out".*.1 | head -1)")
  echo "$label $ir" >> "$R/counts"
  log "$label: $((ir / N)) instructions per request"
}

px_args=(--manifests "$R/m" --bind-address 127.0.0.1 --threads 1)
[ "$TLS" = 1 ] && px_args+=(--default-ssl-certificate bench/bench-tls)
# run_pingress LABEL BIN: the HTTP or the HTTPS port is the one counted
run_pingress() {
  local hp hsp
  hp=$(free_port); hsp=$(free_port)
  RUST_LOG=warn count "$1" "$([ "$TLS" = 1 ] && echo "$hsp" || echo "$hp")" "$2" "${px_args[@]}" \
    --http-port "$hp" --https-port "$hsp" --healthz-port "$(free_port)"
}
run_pingress pingress "$PINGRESS_BIN"
[ -x "${PINGRESS_BIN_B:-}" ] && run_pingress pingress-b "$PINGRESS_BIN_B"
# pingora-min on the same patched crates, in e2e-load.sh's cache
ensure_pingora_min
PM_BIN="$PINGORA_BIN"
if [ -x "$PM_BIN" ]; then
  P=$(free_port); PT=$(free_port)
  PM_LISTEN="127.0.0.1:$P" PM_TLS_LISTEN="127.0.0.1:$PT" PM_CERT="$cert" PM_KEY="$key" \
    PM_UPSTREAM="127.0.0.1:$BACKEND_PORT" PM_THREADS=1 PM_WORK_STEALING=0 PM_HEADERS=1 \
    PM_PID="$R/pm.internal.pid" PM_UPGRADE_SOCK="$R/pm-upgrade.sock" \
    count pingora-min "$([ "$TLS" = 1 ] && echo "$PT" || echo "$P")" "$PM_BIN"
fi

table() {
  echo "| proxy | instructions per request | ratio to pingora-min |"
  echo "|---|---|---|"
  awk -v n="$N" '{ir[$1] = $2; order[NR] = $1} END {
    for (i = 1; i <= NR; i++) { l = order[i]
      r = ("pingora-min" in ir) ? sprintf("%.3f", ir[l] / ir["pingora-min"]) : "-"
      printf "| %s | %.0f | %s |\n", l, ir[l] / n, r }
    if ("pingress-b" in ir) printf "\npingress / pingress-b (%s): %.4f\n", ENVIRON["AB_LABEL"] ? ENVIRON["AB_LABEL"] : "another build", ir["pingress"] / ir["pingress-b"] }' "$R/counts"
}
table
if [ "${APPEND:-1}" = 1 ]; then
  {
    results_header "Instructions per request (callgrind, user space, one proxy thread$OVER)" \
      "${OVER:+TLS=1 }N=$N bash benches/instructions.sh${PINGRESS_BIN_B:+ (PINGRESS_BIN_B: ${AB_LABEL:-another build})}"
    echo; table; echo
  } >> "$RESULTS_MD"
fi
