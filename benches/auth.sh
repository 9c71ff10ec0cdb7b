#!/usr/bin/env bash
# The cost of authentication in pingress, paired in one run: the same pingress serves four
# hosts to the same backend nginx (`return 200`):
#   none.bench.local   no auth (the reference)
#   ext.bench.local    auth-url -> a second nginx on loopback answering 200 (oauth2-proxy's role)
#   cached.bench.local the same with auth-cache-key (one key: every request after the first is a hit)
#   basic.bench.local  basic auth, bcrypt cost 10, the same valid credentials every request
#                      (the verification cache's case: the goal is within 10% of no auth)
# plus the latency of one uncached bcrypt check (a new wrong password each time), from curl.
# wrk drives each host ROUNDS times, interleaved, for DURATION seconds at CONNS connections.
# Reported per host: requests/s, pingress CPU per request (utime+stime ticks / requests), p99;
# and each as a ratio to "none" from the same rounds. Loopback only, free ports at run time.
# Env: ROUNDS=3 DURATION=10 CONNS=32 THREADS=2 PINGRESS_BIN (target/release/pingress)
# Usage: bash benches/auth.sh   (APPEND=1 appends the summary to benches/RESULTS.md)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/pingress-auth.XXXXXX)}
py_free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
export BACKEND_PORT=$(py_free)
AUTH_PORT=$(py_free); PX_HTTP=$(py_free); PX_HTTPS=$(py_free); PX_HZ=$(py_free)
export BENCH_HOST=none.bench.local
. "$SB/lib.sh"
. "$ROOT/benches/lib-pingress.sh"
need nginx curl wrk python3
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; CONNS=${CONNS:-32}; THREADS=${THREADS:-2}
[ -x "$PINGRESS_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress >&2)

auth_pid="$BENCH_RUN_DIR/auth-nginx.pid"
cleanup() {
  stop_pingress pingress || true
  "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true
  stop_pidfile "$auth_pid" || true
}
trap cleanup EXIT

log "machine: $(nproc) cpus, loadavg $(loadavg); run dir $BENCH_RUN_DIR"
"$SB/backend-nginx.sh" start
# the auth service: a second backend nginx on its own port
sed -e "s#@RUN_DIR@#$BENCH_RUN_DIR#g" -e "s#@BACKEND_PORT@#$AUTH_PORT#g" \
  -e "s#backend.pid#auth-nginx.pid#g" "$SB/backend-nginx.conf" > "$BENCH_RUN_DIR/auth-nginx.conf"
nginx -p "$BENCH_RUN_DIR" -c "$BENCH_RUN_DIR/auth-nginx.conf" >>"$BENCH_RUN_DIR/auth.out" 2>&1 &
wait_http "http://127.0.0.1:$AUTH_PORT/" 10

# htpasswd line for bench:s3cret, bcrypt cost 10
HASH='$2y$10$F3OLDWqFMhboNy3QR8YBIONqTieyZu1vdoRg/p8TtEnWsPjTLKNAi'
M="$BENCH_RUN_DIR/manifests"; mkdir -p "$M"
write_manifests "$M" 1
ing() { # ing NAME HOST ANNOTATIONS
  cat <<YAML
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $1
  namespace: bench
  annotations: {$3}
spec:
  ingressClassName: pingress
  rules:
  - host: "$2"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
YAML
}
{
  cat <<YAML
apiVersion: v1
kind: Secret
metadata: {name: htpasswd, namespace: bench, resourceVersion: "1"}
stringData:
  auth: 'bench:$HASH'
YAML
  ing ext ext.bench.local "nginx.ingress.kubernetes.io/auth-url: \"http://127.0.0.1:$AUTH_PORT/\""
  ing cached cached.bench.local "nginx.ingress.kubernetes.io/auth-url: \"http://127.0.0.1:$AUTH_PORT/\", nginx.ingress.kubernetes.io/auth-cache-key: \"\$host\""
  ing basic basic.bench.local 'nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: htpasswd'
} > "$M/02-auth.yaml"
start_pingress pingress "$M" "$PX_HTTP" "$PX_HTTPS" "$PX_HZ"
px_pid=$(cat "$BENCH_RUN_DIR/pingress.pid")
CRED="Authorization: Basic $(printf 'bench:s3cret' | base64 -w0)"
for h in ext cached basic; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h.bench.local" -H "$CRED" "http://127.0.0.1:$PX_HTTP/")
  [ "$code" = 200 ] || die "$h.bench.local answered $code, not 200"
done

# one uncached bcrypt check: each wrong password is new to the verification cache
miss_ms=$(for i in 1 2 3 4 5; do
  curl -s -o /dev/null -w '%{time_total}\n' -H "Host: basic.bench.local" \
    -H "Authorization: Basic $(printf 'bench:wrong%s' "$i" | base64 -w0)" "http://127.0.0.1:$PX_HTTP/"
done | sort -n | awk '{a[NR]=$1} END{printf "%.1f", a[int((NR+1)/2)]*1000}')

declare -A rps cpu p99 cnt
run() { # run HOST -> "rps ticks_per_10k_req p99_ms"
  local extra=() t0 t1 out
  [ "$1" = basic.bench.local ] && extra=(-H "$CRED")
  t0=$(cpu_ticks "$px_pid")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $1" "${extra[@]}" "http://127.0.0.1:$PX_HTTP/" 2>&1)
  t1=$(cpu_ticks "$px_pid")
  local req p
  req=$(awk '/requests in/{print $1}' <<<"$out")
  p=$(awk '$1=="99%"{print $2}' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && die "$1: non-2xx answers under load: $out"
  awk -v r="$req" -v d="$DURATION" -v t="$((t1 - t0))" -v p="$(to_ms "$p")" \
    'BEGIN{printf "%.0f %.2f %.2f", r/d, t*10000/r, p}'
}
hosts="none.bench.local ext.bench.local cached.bench.local basic.bench.local"
for ((r = 1; r <= ROUNDS; r++)); do
  for h in $hosts; do
    read -r a b c <<<"$(run "$h")"
    log "round $r $h: $a req/s, $b ticks/10k req, p99 $c ms"
    rps[$h]=$(awk -v x="${rps[$h]:-0}" -v y="$a" 'BEGIN{print x+y}')
    cpu[$h]=$(awk -v x="${cpu[$h]:-0}" -v y="$b" 'BEGIN{print x+y}')
    p99[$h]=$(awk -v x="${p99[$h]:-0}" -v y="$c" 'BEGIN{print x+y}')
    cnt[$h]=$(( ${cnt[$h]:-0} + 1 ))
  done
done

summary() {
  local n=${cnt[none.bench.local]}
  local r0 c0 q0
  r0=$(awk -v x="${rps[none.bench.local]}" -v n="$n" 'BEGIN{print x/n}')
  c0=$(awk -v x="${cpu[none.bench.local]}" -v n="$n" 'BEGIN{print x/n}')
  q0=$(awk -v x="${p99[none.bench.local]}" -v n="$n" 'BEGIN{print x/n}')
  echo "| host | req/s | CPU ticks / 10k req | p99 ms | req/s vs none | CPU/req vs none | p99 vs none |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for h in $hosts; do
    awk -v h="$h" -v r="${rps[$h]}" -v c="${cpu[$h]}" -v q="${p99[$h]}" -v n="${cnt[$h]}" \
      -v r0="$r0" -v c0="$c0" -v q0="$q0" \
      'BEGIN{r/=n; c/=n; q/=n; printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", h, r, c, q, r/r0, c/c0, q/q0}'
  done
  echo
  echo "One uncached bcrypt (cost 10) check through pingress: median ${miss_ms} ms per request (curl, 5 new wrong passwords)."
}
summary
if [ "${APPEND:-0}" = 1 ]; then
  { results_header "Authentication cost (benches/auth.sh)" "ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS bash benches/auth.sh"; summary; } >> "$RESULTS_MD"
fi
