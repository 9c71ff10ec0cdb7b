#!/usr/bin/env bash
# Helpers for the pingress benchmarks in benches/ (source it AFTER benches/anchors/lib.sh).
#   free_port                      a free loopback TCP port
#   write_manifests DIR N [tls]    IngressClass + Service + EndpointSlice (-> 127.0.0.1:$BACKEND_PORT)
#                                  + Ingress for $BENCH_HOST + N-1 filler Ingresses (mixed exact and
#                                  wildcard hosts, "/" and "/api" each, like render-nginx-proxy.sh)
#                                  + with "tls": the shared bench cert as a kubernetes.io/tls Secret
#                                  and spec.tls on the $BENCH_HOST Ingress
#   start_pingress NAME DIR HTTP HTTPS HEALTHZ [extra args]
#                                  standalone pingress; pid in $BENCH_RUN_DIR/NAME.pid; waits for
#                                  $BENCH_HOST to answer 200 (prints the start time in ms)
#   stop_pingress NAME             INT (Pingora's fast shutdown), then KILL after 10 s
#   ensure_pingora_min             PINGORA_BIN: the pingora-min reference, built or brought up to date
#   results_header TITLE CMD       a RESULTS.md section header: date, uptime, commit, command
# Loopback only; everything started here is stopped by pid file.
PINGRESS_ROOT="${PINGRESS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PINGRESS_BIN="${PINGRESS_BIN:-$PINGRESS_ROOT/target/release/pingress}"
RESULTS_MD="${RESULTS_MD:-$PINGRESS_ROOT/benches/RESULTS.md}"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# One filler Ingress: name, host, path suffix (for churn). Every 4th host is a wildcard.
filler_ingress() { # filler_ingress I [PATH2]
  local i="$1" p2="${2:-/api}" host
  if [ $((i % 4)) -eq 0 ]; then host="*.w$i.bench.local"; else host="app$i.bench.local"; fi
  cat <<YAML
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fill-$i, namespace: bench}
spec:
  ingressClassName: pingress
  rules:
  - host: "$host"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
      - {path: "$p2", pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
YAML
}

write_manifests() { # write_manifests DIR N [tls]
  local d="$1" n="$2" tls="${3:-}" cert key tls_spec="" ann=""
  mkdir -p "$d"
  cat > "$d/00-base.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec: {ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
YAML
  if [ "$tls" = tls ]; then
    read -r cert key < <("$BENCH_DIR/gen-cert.sh")
    cat >> "$d/00-base.yaml" <<YAML
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: bench}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 < "$cert")
  tls.key: $(base64 -w0 < "$key")
YAML
    tls_spec="  tls: [{hosts: [\"$BENCH_HOST\"], secretName: bench-tls}]"
    # plain-HTTP runs must be proxied like the bench nginx does, not redirected to HTTPS
    ann="  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}"
  fi
  cat > "$d/01-app1.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app1
  namespace: bench
$ann
spec:
  ingressClassName: pingress
$tls_spec
  rules:
  - host: "$BENCH_HOST"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
YAML
  # fillers 2..N, 100 per file (awk: a bash loop over 10k heredocs takes too long); the same
  # document as filler_ingress (the churn tests add their own one-Ingress files)
  awk -v n="$n" -v d="$d" 'BEGIN{
    for (i = 2; i <= n; i++) {
      f = sprintf("%s/fill-%05d.yaml", d, int((i - 2) / 100))
      host = (i % 4 == 0) ? "*.w" i ".bench.local" : "app" i ".bench.local"
      printf "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fill-%d, namespace: bench}\nspec:\n  ingressClassName: pingress\n  rules:\n  - host: \"%s\"\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}\n      - {path: \"/api\", pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}\n", i, host > f
      if ((i - 1) % 100 == 0) close(f)
    }
  }'
}

start_pingress() { # start_pingress NAME DIR HTTP HTTPS HEALTHZ [extra args...]
  local name="$1" dir="$2" http="$3" https="$4" hz="$5"; shift 5
  local pidf="$BENCH_RUN_DIR/$name.pid" t0 i code
  stop_pingress "$name"
  [ -x "$PINGRESS_BIN" ] || die "no pingress binary at $PINGRESS_BIN (cargo build --release --locked --bin pingress)"
  local hzarg=(--healthz-port "$hz")   # older builds have no health port
  "$PINGRESS_BIN" --help 2>/dev/null | grep -q -- --healthz-port || hzarg=()
  t0=$(date +%s.%N)
  RUST_LOG="${PINGRESS_LOG:-info}" "$PINGRESS_BIN" --manifests "$dir" --http-port "$http" --https-port "$https" \
    "${hzarg[@]}" --bind-address 127.0.0.1 "$@" >>"$BENCH_RUN_DIR/$name.log" 2>&1 &
  echo $! > "$pidf"
  for ((i = 0; i < 1200; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $BENCH_HOST" "http://127.0.0.1:$http/" || true)
    [ "$code" = 200 ] && break
    [ -d "/proc/$(cat "$pidf")" ] || die "$name exited (see $BENCH_RUN_DIR/$name.log)"
    sleep 0.05
  done
  [ "$code" = 200 ] || die "$name: $BENCH_HOST never answered 200 on :$http (last $code)"
  log "$name up: pid $(cat "$pidf") on :$http/:$https healthz :$hz ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", (b-a)*1000}') ms to first 200)"
}

stop_pingress() { stop_pidfile "$BENCH_RUN_DIR/$1.pid" INT; }

# ensure_pingora_min: sets and exports PINGORA_BIN. Unless it was given, pingora-min
# (benches/anchors/pingora-min) is built into a cache dir and brought up to date on every call
# (the carried patches change under it; cargo does nothing when it is current);
# BUILD_PINGORA=0 skips the build. The caller checks that the binary exists.
# pingora_min_target: the cargo target folder pingora-min is built into (its profile-guided
# build, benches/pgo.sh pingora-min, goes beside it with a -pgo suffix).
pingora_min_target() { echo "${PINGORA_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/pingress-bench/pingora-min-target}"; }
# The cargo target folder of pingress's profile-guided build (benches/pgo.sh).
PGO_TARGET="$PINGRESS_ROOT/target/pgo"
ensure_pingora_min() {
  local target
  target=$(pingora_min_target)
  if [ -z "${PINGORA_BIN:-}" ]; then
    PINGORA_BIN="$target/release/pingora-min"
    if [ "${BUILD_PINGORA:-1}" = 1 ]; then
      CARGO_TARGET_DIR="$target" "$BENCH_DIR/pingora-min.sh" build || true
    fi
  fi
  export PINGORA_BIN
}

results_header() { # results_header TITLE COMMAND
  {
    echo
    echo "## $1 — $(date -Is)"
    echo
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); uptime: \`$(uptime)\`"
    echo "- commit: \`$(git -C "$PINGRESS_ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)\` ($(git -C "$PINGRESS_ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null || echo ?)); last commit touching src/ or Cargo.*: \`$(git -C "$PINGRESS_ROOT" log -1 --format=%h -- src Cargo.toml Cargo.lock 2>/dev/null || echo ?)\`"
    echo "- command: \`$2\`"
    echo
  }
}

# Paired CPU rounds: `paired_rounds ROUNDS SECS CASE...` runs every case once per round, in an
# order rotated each round, through the script's `run_case LABEL SECS` (wrk or a compatible
# client: "N requests in", "Non-2xx") and measures the CPU (utime+stime, /proc) of the pids
# `cpu_pids LABEL` prints, per request; the values go to the associative array `us` (declared
# by the caller: `declare -A us`). `bench_median LABEL` and `bench_ratio A B` read it.
paired_rounds() {
  local rounds=$1 secs=$2 r i label p t0 t1 o n bad v l
  shift 2
  local cases=("$@") count=$#
  for r in $(seq 1 "$rounds"); do
    for i in $(seq 0 $((count - 1))); do
      label=${cases[$(((i + r) % count))]}
      p=$(cpu_pids "$label")
      # shellcheck disable=SC2086
      t0=$(cpu_ticks $p)
      o=$(run_case "$label" "$secs")
      # shellcheck disable=SC2086
      t1=$(cpu_ticks $p)
      n=$(echo "$o" | awk '/requests in/{print $1}')
      bad=$(echo "$o" | awk '/Non-2xx/{print $NF}')
      [ -z "$bad" ] || die "$label: $bad non-2xx responses"
      v=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t*1e6/hz/n}')
      us[$label]="${us[$label]:-} $v"
      # wrk --latency: the 99th percentile in ms, kept when the caller declared `p99`
      l=$(echo "$o" | awk '$1=="99%"{v=$2; u=v; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v); f=(u=="us")?0.001:(u=="s")?1000:1; printf "%.3f", v*f}')
      if [ -n "$l" ] && declare -p p99 >/dev/null 2>&1; then p99[$label]="${p99[$label]:-} $l"; fi
      echo "round $r $label: $n requests, ${v} us CPU/request${l:+, p99 ${l} ms}"
    done
  done
}
bench_p99() { echo "${p99[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
bench_median() { echo "${us[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
bench_ratio() { awk -v a="$(bench_median "$1")" -v b="$(bench_median "$2")" 'BEGIN{printf "%.3f", a/b}'; }

# The top of a one-worker nginx configuration for a bench side server: pid, error log, events,
# and the opening of an `http` block with every temp path under $BENCH_RUN_DIR/NAME-*.
# Usage: { nginx_http_head NAME PIDFILE; cat <<NGINX ...the rest, closing `http`... NGINX } > FILE
nginx_http_head() { # nginx_http_head NAME PIDFILE
  local n=$1
  cat <<NGINX
worker_processes 1;
daemon off;
pid $2;
error_log $BENCH_RUN_DIR/$n-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $BENCH_RUN_DIR/$n-body;
    proxy_temp_path $BENCH_RUN_DIR/$n-proxy;
    fastcgi_temp_path $BENCH_RUN_DIR/$n-fastcgi;
    uwsgi_temp_path $BENCH_RUN_DIR/$n-uwsgi;
    scgi_temp_path $BENCH_RUN_DIR/$n-scgi;
NGINX
}
