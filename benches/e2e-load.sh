#!/usr/bin/env bash
# End-to-end data-plane benchmark of pingress against the anchors of benches/anchors, all at
# once so every figure is a paired ratio from one run (loopback only, every run time-bounded):
#   direct      the backend nginx alone (the ceiling)
#   nginx       nginx shaped like ingress-nginx (nginx-proxy.sh, 3 hosts, access log off)
#   nginx-lua   the same + ingress-nginx's per-request Lua emulation (LUA=1), if the module is there
#   nginx-10k   the same nginx with 10k hosts (render-nginx-proxy.sh N; exact hosts only)
#   pingora     pingora-min, the minimal Pingora proxy spike (work-stealing runtime, its default)
#   pingora-nows  the same with PINGORA_WORK_STEALING=0 (one runtime per thread, as pingress)
#   pingress    pingress standalone, 3 Ingresses (+ the TLS Secret)
#   pingress-10k  pingress standalone, 10k Ingresses (mixed exact / wildcard hosts)
# Phases (PHASES="h1 tls rate scale profile"; also ablate):
#   h1       HTTP/1.1 keep-alive, CONNS=64, wrk (+ oha), ROUNDS interleaved rounds (compare.sh)
#   tls      HTTPS: h1 over TLS (wrk, oha) and h2 (h2load) against nginx, nginx-lua, pingora-min,
#            pingress
#   rate     p99 at a fixed RATE (5000) req/s, oha -q, RATE_DURATION (10) s: nginx, nginx-lua, pingress, direct
#   scale    h1 with 1 and 2 proxy threads (pingress --threads, nginx workers): rps per core
#   ablate   pingress with and without its access log and request metrics, pingora-min, nginx-lua,
#            and nginx-lua-log (nginx + Lua with ingress-nginx's default access log on)
#   profile  perf record (cpu-clock, flat) of pingress under wrk: top symbols
#   ab       pingress against another build of it, PINGRESS_BIN_B (a before/after, paired rounds;
#            AB_LABEL names it in the summary)
#   syscalls system calls and context switches per request (perf stat) of nginx-lua, pingora-nows,
#            pingress, and over TLS nginx-tls and pingress-tls
# Env: ROUNDS=3 DURATION=8 RATE=5000 RATE_DURATION=10 N_BIG=10000 SHARED_BENCH=benches/anchors
#      PINGORA_BIN (default: built from benches/anchors/pingora-min into ~/.cache; BUILD_PINGORA=0
#      skips the build, and pingora-min with it)
#      PINGRESS_BIN=target/release/pingress BENCH_RUN_DIR (a fresh temp dir by default)
#      PGO=1 (pingress and pingora-min from their profile-guided builds, benches/pgo.sh)
#      APPEND=1 (append the summary to benches/RESULTS.md)
#      BENCH_SETUP=1 (first install what is missing: benches/setup.sh; 0 skips it)
# Usage: bash benches/e2e-load.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-e2e.XXXXXX)}
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# Every port picked free at run time (the shared defaults may be taken by someone else's run).
export BACKEND_PORT=${BACKEND_PORT:-$(py_free)} NGINX_PORT=$(py_free) NGINX_TLS_PORT=$(py_free)
export PINGORA_PORT=$(py_free) PINGORA_TLS_PORT=$(py_free)
LUA_PORT=$(py_free); LUA_TLS_PORT=$(py_free); BIG_PORT=$(py_free); BIG_TLS_PORT=$(py_free)
PX_HTTP=$(py_free); PX_HTTPS=$(py_free); PX_HZ=$(py_free)
PB_HTTP=$(py_free); PB_HTTPS=$(py_free); PB_HZ=$(py_free)
export BENCH_HOST=app1.bench.local
[ "${BENCH_SETUP:-1}" = 1 ] && bash "$ROOT/benches/setup.sh"
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx wrk curl jq python3
PHASES=${PHASES:-"h1 tls rate scale profile"}
ROUNDS=${ROUNDS:-3}; export DURATION=${DURATION:-8}
RATE_Q=${RATE:-5000}; unset RATE; RATE_DURATION=${RATE_DURATION:-10}
N_BIG=${N_BIG:-10000}
cmdline="PHASES='$PHASES' ROUNDS=$ROUNDS DURATION=$DURATION RATE=$RATE_Q RATE_DURATION=$RATE_DURATION N_BIG=$N_BIG bash benches/e2e-load.sh"
export OUT_DIR="$BENCH_RUN_DIR/results"; mkdir -p "$OUT_DIR"
# As in run-all.sh: h2load does not reconnect after nginx's GOAWAY at keepalive_requests 1000.
export CLIENT_KEEPALIVE_REQUESTS=${CLIENT_KEEPALIVE_REQUESTS:-10000}
PATH="$PATH:/tmp/oha-root/bin:$HOME/.cargo/bin"
TOOLS_H1="wrk"; command -v oha >/dev/null && TOOLS_H1="wrk oha"
have_h2load=0; command -v h2load >/dev/null && have_h2load=1
have_lua=0; [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] && have_lua=1
# PGO=1: both Rust proxies' profile-guided builds (benches/pgo.sh; built when missing)
if [ "${PGO:-0}" = 1 ]; then
  PINGRESS_BIN=$PGO_TARGET/release/pingress
  PINGORA_BIN=$(pingora_min_target)-pgo/release/pingora-min
  [ -x "$PINGRESS_BIN" ] || bash "$PINGRESS_ROOT/benches/pgo.sh" pingress
  [ -x "$PINGORA_BIN" ] || bash "$PINGRESS_ROOT/benches/pgo.sh" pingora-min
  export PINGRESS_BIN PINGORA_BIN
fi
ensure_pingora_min
have_pingora=0; [ -x "$PINGORA_BIN" ] && have_pingora=1
R="$BENCH_RUN_DIR"; stamp=$(date +%Y%m%d-%H%M%S)
notes=()

cleanup() {
  stop_pingress pingress || true; stop_pingress pingress-bare || true; stop_pingress pingress-b || true; stop_pingress pingress-10k || true
  for w in 1 2; do stop_pingress pingress-t$w || true; NGINX_INSTANCE=nginx-w$w "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true; done
  [ "$have_pingora" = 1 ] && { "$SB/pingora-min.sh" stop >/dev/null 2>&1 || true; PINGORA_INSTANCE=pingora-nows "$SB/pingora-min.sh" stop >/dev/null 2>&1 || true; }
  NGINX_INSTANCE=nginx-lua "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  NGINX_INSTANCE=nginx-lua-log "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  NGINX_INSTANCE=nginx-10k "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "machine: $(nproc) cpus, loadavg $(loadavg); run dir $R"
"$SB/backend-nginx.sh" start
"$SB/nginx-proxy.sh" start 3 off
if [ "$have_lua" = 1 ]; then
  NGINX_INSTANCE=nginx-lua NGINX_PORT=$LUA_PORT NGINX_TLS_PORT=$LUA_TLS_PORT LUA=1 "$SB/nginx-proxy.sh" start 3 off
else notes+=("nginx-lua not measured: no ngx_http_lua_module (apt-get install libnginx-mod-http-lua lua-resty-core lua-cjson)"); fi
PM0_PORT=$(py_free)
if [ "$have_pingora" = 1 ]; then
  "$SB/pingora-min.sh" start
  # the same spike with one single-threaded runtime per thread, as pingress runs by default
  PINGORA_INSTANCE=pingora-nows PINGORA_PORT=$PM0_PORT PINGORA_TLS_PORT=$(py_free) PINGORA_WORK_STEALING=0 "$SB/pingora-min.sh" start
else notes+=("pingora-min not measured: no binary at $PINGORA_BIN"); fi
write_manifests "$R/m-small" 3 tls
start_pingress pingress "$R/m-small" "$PX_HTTP" "$PX_HTTPS" "$PX_HZ" --default-ssl-certificate bench/bench-tls
if [ "$N_BIG" -gt 0 ]; then
  NGINX_INSTANCE=nginx-10k NGINX_PORT=$BIG_PORT NGINX_TLS_PORT=$BIG_TLS_PORT "$SB/nginx-proxy.sh" start "$N_BIG" off
  write_manifests "$R/m-big" "$N_BIG"
  start_pingress pingress-10k "$R/m-big" "$PB_HTTP" "$PB_HTTPS" "$PB_HZ"
  notes+=("nginx-10k has $N_BIG exact hosts (render-nginx-proxy.sh has no wildcard hosts); pingress-10k has 3/4 exact and 1/4 wildcard hosts; both route app1.bench.local")
fi
for p in "$PX_HTTP" "$PB_HTTP"; do
  [ "$N_BIG" -gt 0 ] || [ "$p" = "$PX_HTTP" ] || continue
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $BENCH_HOST" "http://127.0.0.1:$p/api/x"); [ "$c" = 200 ] || die ":$p /api answered $c"
done

direct="direct|http://127.0.0.1:$BACKEND_PORT/|$R/backend.pid"
ngx="nginx|http://127.0.0.1:$NGINX_PORT/|$R/nginx-proxy.pid"
ngxlua="nginx-lua|http://127.0.0.1:$LUA_PORT/|$R/nginx-lua.pid"
ngxbig="nginx-10k|http://127.0.0.1:$BIG_PORT/|$R/nginx-10k.pid"
pgr="pingora|http://127.0.0.1:$PINGORA_PORT/|$R/pingora-min.pid"
pgr0="pingora-nows|http://127.0.0.1:$PM0_PORT/|$R/pingora-nows.pid"
px="pingress|http://127.0.0.1:$PX_HTTP/|$R/pingress.pid"
pxbig="pingress-10k|http://127.0.0.1:$PB_HTTP/|$R/pingress-10k.pid"
ngxtls="nginx-tls|https://127.0.0.1:$NGINX_TLS_PORT/|$R/nginx-proxy.pid"
pgrtls="pingora-tls|https://127.0.0.1:$PINGORA_TLS_PORT/|$R/pingora-min.pid"
pxtls="pingress-tls|https://127.0.0.1:$PX_HTTPS/|$R/pingress.pid"

summary="$OUT_DIR/e2e-$stamp.md"
: > "$summary"
for phase in $PHASES; do
  case "$phase" in
  h1)
    t=("$direct" "$ngx" "$px"); pairs=('pingress/nginx' 'pingress/direct' 'nginx/direct')
    [ "$have_lua" = 1 ] && { t+=("$ngxlua"); pairs+=('pingress/nginx-lua' 'nginx-lua/nginx'); }
    [ "$have_pingora" = 1 ] && { t+=("$pgr" "$pgr0"); pairs+=('pingress/pingora' 'pingress/pingora-nows' 'pingora-nows/pingora' 'pingora/nginx' 'pingora-nows/nginx-lua'); }
    [ "$N_BIG" -gt 0 ] && { t+=("$ngxbig" "$pxbig"); pairs+=('pingress-10k/nginx-10k' 'pingress-10k/pingress' 'nginx-10k/nginx'); }
    RUN_ID="h1-$stamp" TOOLS="$TOOLS_H1" "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
    { echo "### HTTP/1.1 keep-alive, ${CONNS:-64} connections, ${DURATION}s x $ROUNDS interleaved rounds, tools: $TOOLS_H1"; echo
      "$SB/summarize.sh" "h1-$stamp" "${pairs[@]}"; echo; } >> "$summary"
    ;;
  tls)
    t=("$ngxtls" "$pxtls"); pairs=('pingress-tls/nginx-tls')
    # nginx + the Lua emulation over TLS: ingress-nginx's own data plane, the like-for-like peer
    [ "$have_lua" = 1 ] && { t+=("nginx-lua-tls|https://127.0.0.1:$LUA_TLS_PORT/|$R/nginx-lua.pid"); pairs+=('pingress-tls/nginx-lua-tls'); }
    [ "$have_pingora" = 1 ] && { t+=("$pgrtls"); pairs+=('pingress-tls/pingora-tls' 'pingora-tls/nginx-tls'); }
    tools="$TOOLS_H1"; [ "$have_h2load" = 1 ] && tools="$tools h2load"
    RUN_ID="tls-$stamp" TOOLS="$tools" "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
    { echo "### HTTPS (wrk/oha: HTTP/1.1 over TLS keep-alive; h2load: h2 via ALPN, ${H2_STREAMS:-10} streams/conn; h2load's p50 column is its mean), ${DURATION}s x $ROUNDS rounds"; echo
      "$SB/summarize.sh" "tls-$stamp" "${pairs[@]}"; echo; } >> "$summary"
    ;;
  ablate)
    # what pingress's own per-request work costs: the same pingress without the access log and
    # request metrics (pingress-bare), against pingora-min on the same patched crates, rustls
    # and allocator (pingora-nows: one runtime per thread, as pingress)
    cp -r "$R/m-small" "$R/m-bare"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: bench}\ndata: {disable-access-log: "true"}\n' > "$R/m-bare/02-configmap.yaml"
    AB_PX=$(py_free)
    start_pingress pingress-bare "$R/m-bare" "$AB_PX" "$(py_free)" "$(py_free)" --configmap bench/pingress --enable-metrics=false --default-ssl-certificate bench/bench-tls
    t=("$px" "pingress-bare|http://127.0.0.1:$AB_PX/|$R/pingress-bare.pid"); pairs=('pingress/pingress-bare')
    [ "$have_pingora" = 1 ] && { t+=("$pgr0"); pairs+=('pingress/pingora-nows' 'pingress-bare/pingora-nows'); }
    [ "$have_lua" = 1 ] && { t+=("$ngxlua"); pairs+=('pingress/nginx-lua' 'pingress-bare/nginx-lua'); }
    [ "$have_pingora" = 1 ] && [ "$have_lua" = 1 ] && pairs+=('pingora-nows/nginx-lua')
    # ingress-nginx logs every request by default (access-log-path, the upstreaminfo format):
    # nginx + Lua with that log on is the like-for-like peer of pingress's defaults
    if [ "$have_lua" = 1 ]; then
      LOG_PORT=$(py_free)
      NGINX_INSTANCE=nginx-lua-log NGINX_PORT=$LOG_PORT NGINX_TLS_PORT=$(py_free) LUA=1 "$SB/nginx-proxy.sh" start 3 on
      t+=("nginx-lua-log|http://127.0.0.1:$LOG_PORT/|$R/nginx-lua-log.pid"); pairs+=('pingress/nginx-lua-log' 'nginx-lua-log/nginx-lua')
    fi
    RUN_ID="ablate-$stamp" TOOLS=wrk "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
    { echo "### pingress's own cost: access log and request metrics off (pingress-bare), HTTP/1.1 keep-alive, ${CONNS:-64} connections, ${DURATION}s x $ROUNDS rounds"; echo
      "$SB/summarize.sh" "ablate-$stamp" "${pairs[@]}"; echo; } >> "$summary"
    stop_pingress pingress-bare
    NGINX_INSTANCE=nginx-lua-log "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
    ;;
  ab)
    # the same load against pingress and another build of it (PINGRESS_BIN_B, e.g. the commit
    # before a change): the before/after of a patch, paired by round
    if [ -x "${PINGRESS_BIN_B:-}" ]; then
      AB_B=$(py_free)
      PINGRESS_BIN="$PINGRESS_BIN_B" start_pingress pingress-b "$R/m-small" "$AB_B" "$(py_free)" "$(py_free)" --default-ssl-certificate bench/bench-tls
      t=("$px" "pingress-b|http://127.0.0.1:$AB_B/|$R/pingress-b.pid"); pairs=('pingress/pingress-b')
      RUN_ID="ab-$stamp" TOOLS=wrk "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
      { echo "### pingress against pingress-b (${AB_LABEL:-another build}), HTTP/1.1 keep-alive, ${CONNS:-64} connections, ${DURATION}s x $ROUNDS rounds"; echo
        "$SB/summarize.sh" "ab-$stamp" "${pairs[@]}"; echo; } >> "$summary"
      stop_pingress pingress-b
    else notes+=("ab phase skipped: PINGRESS_BIN_B is not an executable"); fi
    ;;
  rate)
    if command -v oha >/dev/null; then
      t=("$ngx" "$px" "$direct"); pairs=('pingress/nginx' 'nginx/direct' 'pingress/direct')
      # the issue's p99 goal is against nginx + ingress-nginx's Lua
      [ "$have_lua" = 1 ] && { t+=("$ngxlua"); pairs+=('pingress/nginx-lua' 'nginx-lua/nginx'); }
      RUN_ID="rate-$stamp" RATE="$RATE_Q" DURATION="$RATE_DURATION" TOOLS=oha "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
      { echo "### Fixed rate: oha -q $RATE_Q --latency-correction, ${RATE_DURATION}s, 64 connections, $ROUNDS rounds"; echo
        "$SB/summarize.sh" "rate-$stamp" "${pairs[@]}"; echo; } >> "$summary"
    else notes+=("fixed-rate p99 not measured: no oha (cargo install oha --locked)"); fi
    ;;
  scale)
    # the same h1 load against 1 and 2 proxy threads / nginx workers: requests per second per
    # core used (rps / proxy CPU cores), the figure that carries to bigger machines
    for w in 1 2; do
      eval "SC_NGX_$w=\$(py_free) SC_PX_$w=\$(py_free)"
      NGINX_INSTANCE=nginx-w$w WORKERS=$w NGINX_PORT=$(eval echo "\$SC_NGX_$w") NGINX_TLS_PORT=$(py_free) "$SB/nginx-proxy.sh" start 3 off
      start_pingress pingress-t$w "$R/m-small" "$(eval echo "\$SC_PX_$w")" "$(py_free)" "$(py_free)" --threads "$w" --default-ssl-certificate bench/bench-tls
    done
    t=("nginx-w1|http://127.0.0.1:$SC_NGX_1/|$R/nginx-w1.pid" "nginx-w2|http://127.0.0.1:$SC_NGX_2/|$R/nginx-w2.pid"
       "pingress-t1|http://127.0.0.1:$SC_PX_1/|$R/pingress-t1.pid" "pingress-t2|http://127.0.0.1:$SC_PX_2/|$R/pingress-t2.pid")
    RUN_ID="scale-$stamp" TOOLS=wrk "$SB/compare.sh" "$ROUNDS" "${t[@]}" >/dev/null
    { echo "### Scale-out: HTTP/1.1 keep-alive, ${CONNS:-64} connections, 1 and 2 proxy threads (pingress --threads) / nginx workers, ${DURATION}s x $ROUNDS rounds"; echo
      "$SB/summarize.sh" "scale-$stamp" 'pingress-t1/nginx-w1' 'pingress-t2/nginx-w2' 'pingress-t2/pingress-t1' 'nginx-w2/nginx-w1'; echo
      echo "| label | requests/s per proxy core (median of rounds) |"; echo "|---|---|"
      jq -rs --arg id "scale-$stamp" 'map(select(.run_id == $id)) | group_by(.target)[]
        | "| \(.[0].target) | \([.[] | select(.cpu_cores > 0) | .rps / .cpu_cores] | sort | .[(length - 1) / 2 | floor] | floor) |"' "$OUT_DIR/results.jsonl"
      echo; } >> "$summary"
    for w in 1 2; do stop_pingress pingress-t$w; NGINX_INSTANCE=nginx-w$w "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true; done
    ;;
  syscalls)
    # system calls and context switches per request (perf stat over one wrk run per target):
    # where the kernel half of the CPU goes, the same count for every proxy
    if perf stat -e 'syscalls:sys_enter_read' -o /dev/null -- true >/dev/null 2>&1; then
      { echo "### System calls and context switches per request (perf stat -p over wrk -t2 -c${CONNS:-64} -d${DURATION}s, process tree of each proxy)"; echo
        echo "| label | requests | cs/req | syscalls/req | top syscalls per request |"; echo "|---|---|---|---|---|"; } >> "$summary"
      st=("$ngxlua" "$pgr0" "$px" "$ngxtls" "$pxtls"); ev=""
      # the calls a proxy makes per request (one counter per event and thread: all 360 would
      # exhaust the descriptor limit)
      for c in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl futex sched_yield getrandom accept4 close ioctl sendfile64 pread64 getpeername; do
        [ -e "/sys/kernel/tracing/events/syscalls/sys_enter_$c" ] || [ -e "/sys/kernel/debug/tracing/events/syscalls/sys_enter_$c" ] || continue
        ev="$ev -e syscalls:sys_enter_$c"; done
      for e in "${st[@]}"; do
        IFS='|' read -r name url pidf <<<"$e"
        [ -f "$pidf" ] || continue
        pids=$({ cat "$pidf"; pgrep -P "$(cat "$pidf")" || true; } | sort -u | paste -sd, -)
        out="$R/perf-stat-$name.csv"
        perf stat -x, $ev -e context-switches -p "$pids" -o "$out" &
        spid=$!; sleep 0.5
        n=$(timeout $((DURATION + 20)) wrk -t2 -c"${CONNS:-64}" -d"${DURATION}s" -H "Host: $BENCH_HOST" "$url" | awk '/requests in/{print $1}')
        kill -INT "$spid"; wait "$spid" || true
        [ "${n:-0}" -gt 0 ] || continue
        awk -F, -v n="$n" -v name="$name" '$3 ~ /^syscalls:sys_enter_/ && $1+0 > 0 { sub("syscalls:sys_enter_", "", $3); c[$3] += $1; tot += $1 }
          $3 == "context-switches" { cs = $1 }
          END { m = ""; k = 0
            while (k < 6) { best = ""; for (s in c) if (best == "" || c[s] > c[best]) best = s
              if (best == "" || c[best] / n < 0.01) break; m = m sprintf("%s%s %.2f", (k ? ", " : ""), best, c[best] / n); delete c[best]; k++ }
            printf "| %s | %d | %.2f | %.2f | %s |\n", name, n, cs / n, tot / n, m }' "$out" >> "$summary"
      done
      echo >> "$summary"
    else notes+=("no syscall counts: perf cannot read syscall tracepoints here"); fi
    ;;
  profile)
    if perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
      pid=$(cat "$R/pingress.pid"); pdata="$R/perf-pingress.data"
      timeout 40 wrk -t2 -c64 -d12s -H "Host: $BENCH_HOST" "http://127.0.0.1:$PX_HTTP/" > "$R/perf-wrk.txt" 2>&1 &
      wpid=$!; sleep 2
      timeout 30 perf record -e cpu-clock -F 1999 -p "$pid" -o "$pdata" -- sleep 8 >"$R/perf-record.out" 2>&1 || true
      wait "$wpid" || true
      { echo "### perf profile of pingress (3 Ingresses) under wrk -t2 -c64 (cpu-clock, 1999 Hz, 8 s, flat self time)"; echo
        echo '```'; echo "by shared object:"
        perf report -i "$pdata" --no-children --sort dso --stdio > "$R/perf-dso.txt" 2>/dev/null || true
        perf report -i "$pdata" --no-children --sort dso,symbol --stdio > "$R/perf-sym.txt" 2>/dev/null || true
        clean() { grep -v '^#' | grep -v '^$' | sed -e 's/ *- *- *$//' -e 's/ *$//' | cut -c1-200; }
        clean < "$R/perf-dso.txt" | head -8 || true
        echo; echo "top symbols (all):"
        clean < "$R/perf-sym.txt" | head -40 || true
        echo; echo "pingress's own code (pingress:: symbols):"
        clean < "$R/perf-sym.txt" | grep 'pingress::' | head -15 || true
        echo; echo "malloc/free family total: $(clean < "$R/perf-sym.txt" | grep -E '\[\.\] (_int_malloc|malloc|_int_free|cfree|free|unlink_chunk|malloc_consolidate|realloc|_int_realloc|calloc|__libc_malloc|__libc_free|tcache|_?mi_[a-z_]*(malloc|free|alloc|page|find))' | awk '{s+=$1} END{printf "%.1f%%", s}')"
        echo '```'; echo; } >> "$summary"
    else notes+=("no profile: perf cannot sample here"); fi
    ;;
  *) die "unknown phase $phase" ;;
  esac
done
{ echo "Memory at the end (RSS / PSS KiB, master+workers): nginx $(mem_kb $(pid_tree "$(cat "$R/nginx-proxy.pid")")), pingress $(mem_kb "$(cat "$R/pingress.pid")")$( [ "$N_BIG" -gt 0 ] && echo ", nginx-10k $(mem_kb $(pid_tree "$(cat "$R/nginx-10k.pid")")), pingress-10k $(mem_kb "$(cat "$R/pingress-10k.pid")")")"
  echo; echo "pingress runs with its defaults: access log on (to its log file), per-request metrics on, one runtime per proxy thread (--work-stealing=false); nginx runs with access_log off. pingora = pingora-min with work stealing (its default), pingora-nows = pingora-min with PINGORA_WORK_STEALING=0. pingress and pingora-min use rustls, mimalloc and the carried Pingora patches (vendor/); nginx uses OpenSSL. CLIENT_KEEPALIVE_REQUESTS=$CLIENT_KEEPALIVE_REQUESTS for nginx (as run-all.sh)."
  echo; echo "Binaries: pingress ${PINGRESS_BIN#"$PINGRESS_ROOT"/}, pingora-min ${PINGORA_BIN/#"$HOME"/\~} (a build under target/pgo or ending in -pgo is profile-guided: benches/pgo.sh)."
  for n in "${notes[@]}"; do echo; echo "Not measured / note: $n"; done
  echo; echo "loadavg at end: $(loadavg); raw results: $OUT_DIR/results.jsonl"; } >> "$summary"
cat "$summary"
if [ "${APPEND:-1}" = 1 ]; then
  { results_header "e2e-load.sh ($PHASES)" "$cmdline"; cat "$summary"; } >> "$RESULTS_MD"
  log "appended to $RESULTS_MD"
fi
