#!/usr/bin/env bash
# Idle and slowloris client connections: what they cost pingress and nginx (shaped like
# ingress-nginx), and what legit traffic gets while they are held. One run, both proxies:
#   1. RSS (sum over the process tree) before, with CONNS idle connections (nothing sent), with
#      KEPT kept-alive connections (one request answered, then idle between requests), and
#      with SLOW slowloris connections (a header line every 2 s, never finished);
#   2. legit requests per second (wrk, 8 connections, DURATION s) with the idle connections
#      held, as a ratio to the same proxy without them;
#   3. how many held connections each proxy closed by itself within HOLD s.
# Loopback only, every run time-bounded, free ports picked at run time; stops what it started.
# Env: CONNS=10000 KEPT=5000 SLOW=1000 DURATION=5 HOLD=20 PINGRESS_BIN (target/release/pingress)
# Usage: bash benches/idle-conns.sh   (APPEND=1 appends the summary to benches/RESULTS.md)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-idle.XXXXXX)}
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=$(py_free) NGINX_PORT=$(py_free) NGINX_TLS_PORT=$(py_free)
PX_HTTP=$(py_free); PX_HTTPS=$(py_free); PX_HZ=$(py_free)
export BENCH_HOST=app1.bench.local
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx wrk curl python3
CONNS=${CONNS:-10000}; KEPT=${KEPT:-5000}; SLOW=${SLOW:-1000}; DURATION=${DURATION:-5}; HOLD=${HOLD:-20}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((CONNS + 1000)) ] || die "open files limit $(ulimit -n) is below CONNS=$CONNS + 1000"
[ -x "$PINGRESS_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress >&2)

cleanup() {
  stop_pingress pingress || true
  "$SB/nginx-proxy.sh" stop >/dev/null 2>&1 || true
  "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# hold N connections to PORT for HOLD s; MODE idle (send nothing) or slow (a header line every
# 2 s); prints how many the server closed within HOLD s. Signals readiness by a file.
hold() { # hold PORT N MODE READYFILE
  python3 - "$@" <<'PY'
import asyncio, sys, time
port, n, mode, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
hold = float(__import__("os").environ.get("HOLD", "20"))
closed = 0
async def one(i):
    global closed
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        closed += 1
        return
    if mode == "slow":
        w.write(b"GET / HTTP/1.1\r\nHost: app1.bench.local\r\n"); await w.drain()
    if mode == "kept":
        # one whole request and response, then the connection idles between requests
        try:
            w.write(b"GET / HTTP/1.1\r\nHost: app1.bench.local\r\n\r\n"); await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout=30)
            length = [l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            await asyncio.wait_for(r.readexactly(int(length[0]) if length else 0), timeout=30)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            closed += 1
            return
    end = time.monotonic() + hold
    while time.monotonic() < end:
        try:
            if mode == "slow":
                w.write(b"X-a: b\r\n"); await w.drain()
            data = await asyncio.wait_for(r.read(1), timeout=2.0)
            if data == b"":
                closed += 1
                return
        except asyncio.TimeoutError:
            continue
        except OSError:
            closed += 1
            return
    w.close()
async def main():
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    open(ready, "w").close()
    await asyncio.gather(*tasks)
    print(closed)
asyncio.run(main())
PY
}

count() { case "$1" in idle) echo "$CONNS" ;; kept) echo "$KEPT" ;; *) echo "$SLOW" ;; esac; }
rss() { mem_kb "$@" | cut -d' ' -f1; }
rps() { wrk -t2 -c8 -d"${DURATION}s" -H "Host: $BENCH_HOST" "http://127.0.0.1:$1/" 2>/dev/null | awk '/Requests\/sec/{print $2}'; }

log "machine: $(nproc) cpus, loadavg $(loadavg); run dir $BENCH_RUN_DIR"
"$SB/backend-nginx.sh" start
"$SB/nginx-proxy.sh" start 3 off
write_manifests "$BENCH_RUN_DIR/manifests" 3
start_pingress pingress "$BENCH_RUN_DIR/manifests" "$PX_HTTP" "$PX_HTTPS" "$PX_HZ"

declare -A out
for target in nginx pingress; do
  if [ "$target" = nginx ]; then port=$NGINX_PORT; pids=$(pid_tree "$(cat "$BENCH_RUN_DIR/nginx-proxy.pid")");
  else port=$PX_HTTP; pids=$(cat "$BENCH_RUN_DIR/pingress.pid"); fi
  base_rss=$(rss $pids); base_rps=$(rps "$port")
  for mode in idle kept slow; do
    n=$(count "$mode")
    ready="$BENCH_RUN_DIR/ready-$target-$mode"; rm -f "$ready"
    HOLD=$HOLD hold "$port" "$n" "$mode" "$ready" > "$BENCH_RUN_DIR/closed-$target-$mode" &
    hp=$!
    for ((i = 0; i < 600; i++)); do [ -e "$ready" ] && break; sleep 0.1; done
    held_rss=$(rss $pids)
    held_rps=$(rps "$port")
    wait "$hp" || true
    closed=$(cat "$BENCH_RUN_DIR/closed-$target-$mode")
    out[$target-$mode]="$(awk -v b="$base_rss" -v h="$held_rss" -v n="$n" 'BEGIN{printf "%.1f MiB over %.1f MiB (%.1f KiB/conn)", (h-b)/1024, b/1024, (h-b)/n}') | legit rps $(awk -v a="$held_rps" -v b="$base_rps" 'BEGIN{printf "%.0f (%.2fx of %.0f)", a, (b>0?a/b:0), b}') | closed by the proxy within ${HOLD}s: $closed of $n"
    log "$target $mode x$n: ${out[$target-$mode]}"
  done
done

summary() {
  echo "| proxy | held connections | RSS over baseline | legit traffic while held | closed by the proxy |"
  echo "| --- | --- | --- | --- | --- |"
  for target in nginx pingress; do
    for mode in idle kept slow; do
      n=$(count "$mode")
      IFS='|' read -r mem legit closed <<<"${out[$target-$mode]}"
      echo "| $target | $n $mode |$mem |$legit |$closed |"
    done
  done
}
summary
if [ "${APPEND:-0}" = 1 ]; then
  { results_header "Idle and slowloris connections (benches/idle-conns.sh)" "CONNS=$CONNS KEPT=$KEPT SLOW=$SLOW HOLD=$HOLD bash benches/idle-conns.sh"; summary; } >> "$RESULTS_MD"
fi
