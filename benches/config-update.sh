#!/usr/bin/env bash
# Config-update benchmark of pingress with a 10k-Ingress table (standalone mode, loopback only,
# every step time-bounded):
#  (a) latency from writing one changed Ingress file (write to a temp name + atomic rename) to
#      the first request routed by the new rule (a new Exact path on host probe.bench.local),
#      measured by a bounded keep-alive polling client (1 ms between polls), REPS (20) times;
#      p50 / p99 / max. The nginx analogue (nginx -s reload with 10k hosts until the new host
#      answers) comes from benches/anchors/route-scale.sh (NGINX_SCALE=1).
#  (b) under full load (wrk -t2 -c64, LOAD_SECS=20): first without updates, then with UPDATE_HZ
#      (10) rewrites per second of one-Ingress filler files; wrk's non-2xx / socket errors (must be
#      0), request rate and pingress CPU us/request for both, and the table rebuilds pingress logged.
#  (c) RSS / PSS of pingress with 10k Ingresses (at rest after start, and after (a)+(b)) vs nginx
#      with 10k hosts (route-scale.sh: master + workers).
#  (d) perf profile (flat) of pingress over 3 rebuilds (PROFILE=1).
# Env: N=10000 REPS=20 LOAD_SECS=20 UPDATE_HZ=10 NGINX_SCALE=1 SHARED_BENCH=benches/anchors
#      PINGRESS_BIN BENCH_RUN_DIR APPEND=1
# Usage: bash benches/config-update.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-cfg.XXXXXX)}
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=${BACKEND_PORT:-$(py_free)}
export BENCH_HOST=app1.bench.local
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx wrk curl python3 awk
N=${N:-10000}; REPS=${REPS:-20}; LOAD_SECS=${LOAD_SECS:-20}; UPDATE_HZ=${UPDATE_HZ:-10}; NGINX_SCALE=${NGINX_SCALE:-1}
cmdline="N=$N REPS=$REPS LOAD_SECS=$LOAD_SECS UPDATE_HZ=$UPDATE_HZ NGINX_SCALE=$NGINX_SCALE bash benches/config-update.sh"
R="$BENCH_RUN_DIR"; out="$R/config-update.md"; : > "$out"
HTTP=$(py_free); HTTPS=$(py_free); HZ=$(py_free)
hz=$(getconf CLK_TCK)
cleanup() { stop_pingress pingress-10k || true; "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$SB/backend-nginx.sh" start
m="$R/m"; rm -rf "$m"
write_manifests "$m" $((N - 11))            # app1 + fillers; + probe + 10 churn files = N Ingresses
probe_doc() { # probe_doc K: one Ingress whose only rule is the Exact path /vK on probe.bench.local
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: probe, namespace: bench}
spec:
  ingressClassName: pingress
  rules:
  - host: probe.bench.local
    http:
      paths:
      - {path: /v$1, pathType: Exact, backend: {service: {name: backend, port: {number: 80}}}}
YAML
}
probe_doc 0 > "$m/probe.yaml"
for j in $(seq 0 9); do
  sed -e "s/name: churn-x/name: churn-$j/" -e "s/churnX/churn$j/" -e "s#@P@#/api-0#" > "$m/churn-$j.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: churn-x, namespace: bench}
spec:
  ingressClassName: pingress
  rules:
  - host: churnX.bench.local
    http:
      paths:
      - {path: "@P@", pathType: Exact, backend: {service: {name: backend, port: {number: 80}}}}
YAML
done
nfiles=$(ls "$m" | wc -l); ning=$(cat "$m"/*.yaml | grep -c '^kind: Ingress$')
log "manifests: $ning Ingresses in $nfiles files, $(du -sk "$m" | cut -f1) KiB"

t0=$(date +%s.%N)
start_pingress pingress-10k "$m" "$HTTP" "$HTTPS" "$HZ"
start_ms=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", (b-a)*1000}')
pid=$(cat "$R/pingress-10k.pid")
sleep 2
read -r rss0 pss0 < <(mem_kb "$pid")
plog="$R/pingress-10k.log"
first_build=$(grep 'route table published' "$plog" | head -1 | grep -o 'elapsed_ms=[0-9.]*' | cut -d= -f2 | xargs printf '%.1f')
log "pingress-10k: first 200 after ${start_ms} ms (table compile ${first_build} ms), RSS ${rss0} KiB PSS ${pss0} KiB, load $(loadavg)"

# ---- (a) one changed Ingress -> first request routed by it
load_a=$(loadavg)
lines_before=$(wc -l < "$plog")
python3 - "$HTTP" "$m" "$REPS" > "$R/update-latency.txt" <<'PY'
import http.client, os, sys, time
port, d, reps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def doc(k):
    return ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: probe, namespace: bench}\n"
            "spec:\n  ingressClassName: pingress\n  rules:\n  - host: probe.bench.local\n    http:\n      paths:\n"
            "      - {path: /v%d, pathType: Exact, backend: {service: {name: backend, port: {number: 80}}}}\n" % k)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
def get(path):
    global c
    try:
        c.request("GET", path, headers={"Host": "probe.bench.local"})
        r = c.getresponse(); r.read(); return r.status
    except Exception:
        c.close(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); return -1
assert get("/v0") == 200, "probe /v0 not routed at start"
for k in range(1, reps + 1):
    path = "/v%d" % k
    assert get(path) == 404, "%s routed before the change" % path
    tmp = os.path.join(d, ".probe.tmp")          # dot name: not read by pingress
    with open(tmp, "w") as f: f.write(doc(k))
    t0 = time.monotonic()
    os.rename(tmp, os.path.join(d, "probe.yaml"))
    polls, deadline = 0, t0 + 10
    while True:
        polls += 1
        if get(path) == 200: break
        if time.monotonic() > deadline: print("TIMEOUT", k); sys.exit(1)
        time.sleep(0.001)
    print("%.1f %d" % ((time.monotonic() - t0) * 1000, polls), flush=True)
    time.sleep(1.0)                               # past the 500 ms max holdoff
PY
read -r a_p50 a_p99 a_max a_min < <(awk '{print $1}' "$R/update-latency.txt" | sort -n | awk '{a[NR]=$1} END{
  p99=a[int(NR*0.99+0.999)]; printf "%s %s %s %s\n", a[int((NR+1)/2)], p99, a[NR], a[1]}')
a_all=$(awk '{printf "%s ", $1}' "$R/update-latency.txt")
builds_a=$(tail -n +"$((lines_before + 1))" "$plog" | { grep 'route table published' || true; } | { grep -o 'elapsed_ms=[0-9.]*' || true; } | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END{printf "%d rebuilds, compile ms median %.1f max %.1f", NR, a[int((NR+1)/2)], a[NR]}')
{ echo "### (a) one changed Ingress among $ning -> first request routed by the new rule ($REPS reps, loadavg $load_a)"; echo
  echo "| p50 ms | p99 ms | max ms | min ms | goal |"; echo "|---|---|---|---|---|"
  echo "| $a_p50 | $a_p99 | $a_max | $a_min | p99 < 100 ms |"; echo
  echo "all (ms): $a_all"; echo
  echo "pingress log over (a): $builds_a (elapsed_ms of the publish step: incremental compile + swap + drop of the old table; re-parsing the changed file and the 20 ms notify holdoff come on top)"; echo; } >> "$out"

# ---- (b) full load, without and with UPDATE_HZ updates per second
wrk_run() { # wrk_run LABEL CHURN(0|1)
  local label="$1" churn="$2" raw="$R/wrk-$1.txt" c0 c1 t0 t1 cpid= lb la lines
  lb=$(loadavg); lines=$(wc -l < "$plog")
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  timeout $((LOAD_SECS + 20)) wrk -t2 -c64 -d"${LOAD_SECS}s" --latency -H "Host: $BENCH_HOST" "http://127.0.0.1:$HTTP/" > "$raw" 2>&1 &
  local wpid=$!
  if [ "$churn" = 1 ]; then
    python3 - "$m" "$UPDATE_HZ" "$LOAD_SECS" > "$R/churn.txt" <<'PY' &
import os, sys, time
d, hz, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
doc = ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: churn-%d, namespace: bench}\n"
       "spec:\n  ingressClassName: pingress\n  rules:\n  - host: churn%d.bench.local\n    http:\n      paths:\n"
       "      - {path: \"/api-%d\", pathType: Exact, backend: {service: {name: backend, port: {number: 80}}}}\n")
t0 = time.monotonic(); k = 0
while True:
    nxt = t0 + k / hz
    now = time.monotonic()
    if nxt - t0 >= secs - 0.5: break
    if nxt > now: time.sleep(nxt - now)
    k += 1; j = k % 10
    tmp = os.path.join(d, ".churn.tmp")
    with open(tmp, "w") as f: f.write(doc % (j, j, k))
    os.rename(tmp, os.path.join(d, "churn-%d.yaml" % j))
print(k, k % 10, flush=True)
PY
    cpid=$!
  fi
  wait "$wpid" || true
  if [ -n "$cpid" ]; then wait "$cpid"; fi
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); la=$(loadavg)
  local rps reqs non2xx sockerr p50 p99 us cores rebuilds upd="-" routed="-"
  rps=$(awk '/^Requests\/sec:/{print $2}' "$raw"); reqs=$(awk '/requests in/{print $1}' "$raw")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$raw"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/{gsub(/,/,""); print $4+$6+$8+$10}' "$raw"); sockerr=${sockerr:-0}
  p50=$(to_ms "$(awk '$1=="50%"{print $2}' "$raw")"); p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$raw")")
  us=$(awk -v c="$((c1 - c0))" -v n="$reqs" -v hz="$hz" 'BEGIN{printf "%.1f", c/hz*1e6/n}')
  cores=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", c/hz/(b-a)}')
  rebuilds=$(tail -n +"$((lines + 1))" "$plog" | { grep 'route table published' || true; } | { grep -o 'elapsed_ms=[0-9.]*' || true; } | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END{if (NR) printf "%d (compile ms median %.1f, max %.1f)", NR, a[int((NR+1)/2)], a[NR]; else print 0}')
  if [ "$churn" = 1 ]; then
    read -r upd last_j < "$R/churn.txt"
    # the last update must land: poll (bounded, 15 s) from the end of the load until it routes
    local ts code=000 i
    ts=$(date +%s.%N)
    for ((i = 0; i < 1500; i++)); do
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: churn$last_j.bench.local" "http://127.0.0.1:$HTTP/api-$upd" || true)
      [ "$code" = 200 ] && break; sleep 0.01
    done
    routed="$code after $(awk -v a="$ts" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", (b-a)*1000}') ms"
  fi
  echo "| $label | $upd | $rps | $reqs | $non2xx | $sockerr | $p50 | $p99 | $cores | $us | $rebuilds | $routed | $lb / $la |" >> "$out"
}
{ echo "### (b) full load: wrk -t2 -c64 -d${LOAD_SECS}s on $BENCH_HOST, with and without $UPDATE_HZ Ingress-file rewrites per second"; echo
  echo "| run | updates written | rps | requests | non-2xx | socket errors | p50 ms | p99 ms | pingress CPU cores | CPU us/req | table rebuilds | last update routed (status, time after the load ended) | loadavg before / after |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"; } >> "$out"
wrk_run no-updates 0
sleep 2
wrk_run "${UPDATE_HZ}-updates-per-s" 1
{ echo; awk -F'|' '/^\| no-updates/{r0=$4; p0=$9; u0=$11} /updates-per-s/{r1=$4; p1=$9; u1=$11}
  END{printf "ratios with updates / without: rps %.3f, p99 %.2f, pingress CPU us/req %.3f\n", r1/r0, p1/p0, u1/u0}' "$out"; echo; } >> "$out"

# ---- (d) where a rebuild's time goes: perf (cpu-clock, flat) over 3 rebuilds, no load
if [ "${PROFILE:-1}" = 1 ] && perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
  pdata="$R/perf-rebuild.data"
  timeout 30 perf record -e cpu-clock -F 999 -p "$pid" -o "$pdata" -- sleep 9 >"$R/perf-rebuild.out" 2>&1 &
  ppid_=$!; sleep 0.5
  for k in 1 2 3; do probe_doc "p$k" > "$m/.probe.tmp"; mv "$m/.probe.tmp" "$m/probe.yaml"; sleep 2.8; done
  wait "$ppid_" || true
  perf report -i "$pdata" --no-children --sort dso,symbol --stdio > "$R/perf-rebuild.txt" 2>/dev/null || true
  { echo "### (d) perf profile of pingress over 3 rebuilds of the $ning-Ingress table (cpu-clock 999 Hz, 9 s, flat self time, top 25)"; echo
    echo '```'; grep -v '^#' "$R/perf-rebuild.txt" | grep -v '^$' | sed -e 's/ *- *- *$//' -e 's/ *$//' | cut -c1-180 | head -25 || true
    echo '```'; echo; } >> "$out"
fi

# ---- (c) memory
read -r rss1 pss1 < <(mem_kb "$pid")
{ echo "### (c) memory (KiB; pingress one process, nginx master + 2 workers)"; echo
  echo "| what | RSS KiB | PSS KiB | goal |"; echo "|---|---|---|---|"
  echo "| pingress, $ning Ingresses, at rest after start | $rss0 | $pss0 | RSS < 200 MiB (204800) |"
  echo "| pingress, $ning Ingresses, after (a), (b) and (d) | $rss1 | $pss1 | |"; } >> "$out"
stop_pingress pingress-10k
if [ "$NGINX_SCALE" = 1 ]; then
  RELOADS=3 TESTS=1 SCALE_PORT=$(py_free) SCALE_TLS_PORT=$(py_free) OUT_DIR="$R/results" "$SB/route-scale.sh" "$N" > "$R/route-scale.json"
  j=$(tail -1 "$R/route-scale.json")
  echo "$j" | jq -r '"| nginx (ingress-nginx shaped), \(.hosts) hosts x 2 locations | \(.rss_kb) | \(.pss_kb) | |"' >> "$out"
  { echo; echo "nginx with $N hosts (route-scale.sh, RELOADS=3 TESTS=1): $(echo "$j" | jq -r '"nginx -t \(.nginx_t_ms) ms, cold start \(.cold_start_ms) ms, nginx -s reload -> new host answers: median \(.reload_to_new_route_ms_median) ms (all: \(.reload_ms_all)), RSS after reloads \(.rss_after_reloads_kb) KiB"')"; } >> "$out"
else
  echo "| nginx with $N hosts | not measured (NGINX_SCALE=0) | | |" >> "$out"
fi
{ echo; echo "pingress cold start with $ning Ingresses: ${start_ms} ms from exec to the first 200 (first table compile ${first_build} ms). Manifests: $nfiles files; a rebuild re-parses only the files that changed."
  echo; echo "loadavg at end: $(loadavg); raw files in $R"; } >> "$out"
cat "$out"
if [ "${APPEND:-1}" = 1 ]; then
  { results_header "config-update.sh" "$cmdline"; cat "$out"; } >> "$RESULTS_MD"
  log "appended to $RESULTS_MD"
fi
