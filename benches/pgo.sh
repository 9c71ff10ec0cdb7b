#!/usr/bin/env bash
# Profile-guided release build (issue 21, the build profile): the `release` profile (fat LTO, one
# codegen unit) built a second time with the branch and call counts of a training run, so the
# hot paths (Pingora's HTTP/1 parse and write, the proxy phases, TLS records) are laid out and
# inlined for how a proxy actually runs.
#
#   bash benches/pgo.sh              -> target/pgo/release/pingress
#   bash benches/pgo.sh pingora-min  -> the minimal Pingora proxy built the same way, for the
#                                       benchmarks' like-for-like reference (PINGORA_BIN=...)
#
# 1. an instrumented build (-Cprofile-generate);
# 2. the training run, over loopback against the bench backend: HTTP/1.1 keep-alive, HTTP/1.1
#    over TLS, HTTP/2 over TLS, a new connection per request, TRAIN_SECS each, and for pingress
#    a route with the common annotation families on (the instrumented binary writes its counts
#    when it exits);
# 3. llvm-profdata merge (rustup's llvm-tools, installed when missing);
# 4. the optimised build (-Cprofile-use).
# Run a benchmark on it with PINGRESS_BIN=target/pgo/release/pingress, or PGO=1 bash
# benches/e2e-load.sh (both proxies' profile-guided builds). Each run trains again and rebuilds
# the optimised build whole (a new profile is a new -Cprofile-use); run it again after a code
# change. Env: TRAIN_SECS (5).
set -euo pipefail
# before bench-env.sh, which picks ports with python3
MINIMAL=1 bash "$(dirname "$0")/setup.sh"
. "$(dirname "$0")/bench-env.sh"
need wrk h2load nginx curl cargo rustc
TRAIN_SECS=${TRAIN_SECS:-5}
WHAT=${1:-pingress}

profdata() {
  local bin
  bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | awk '/^host:/{print $2}')/bin/llvm-profdata"
  [ -x "$bin" ] || rustup component add llvm-tools >&2
  [ -x "$bin" ] || die "no llvm-profdata at $bin (rustup component add llvm-tools)"
  echo "$bin"
}
PROFDATA=$(profdata)

# train HTTP_PORT HTTPS_PORT: the workloads, through a proxy already listening on both
train() {
  wrk -t2 -c32 -d"${TRAIN_SECS}s" -H "Host: $BENCH_HOST" "http://127.0.0.1:$1/" | grep 'Requests/sec'
  wrk -t2 -c32 -d"${TRAIN_SECS}s" -H "Host: $BENCH_HOST" "https://127.0.0.1:$2/" | grep 'Requests/sec'
  h2load -D "$TRAIN_SECS" -c 16 -m 10 -H ":authority: $BENCH_HOST" "https://127.0.0.1:$2/" |
    grep -E '^requests:'
  wrk -t2 -c8 -d"${TRAIN_SECS}s" -H "Host: $BENCH_HOST" -H 'Connection: close' \
    "http://127.0.0.1:$1/" | grep 'Requests/sec'
}

# One Ingress with the common annotation families on (rewrite, forwarded prefix, allow and deny
# lists, rate and connection limits, body size, retries, upstream vhost, CORS, affinity, and a
# canary by cookie that this traffic does not take), so their phases are in the profile too.
features_ingress() {
  local nx=nginx.ingress.kubernetes.io
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: features
  namespace: bench
  annotations:
    $nx/use-regex: "true"
    $nx/rewrite-target: /\$1
    $nx/x-forwarded-prefix: /f
    $nx/limit-rps: "1000000"
    $nx/limit-connections: "100000"
    $nx/whitelist-source-range: 127.0.0.0/8
    $nx/denylist-source-range: 10.0.0.0/8
    $nx/proxy-body-size: 8m
    $nx/proxy-next-upstream: error timeout http_502
    $nx/proxy-next-upstream-tries: "3"
    $nx/upstream-vhost: internal.bench
    $nx/enable-cors: "true"
    $nx/cors-allow-origin: https://app.bench
    $nx/affinity: cookie
spec:
  ingressClassName: pingress
  rules: [{host: features.bench, http: {paths: [{path: "/f/(.*)", pathType: ImplementationSpecific, backend: {service: {name: backend, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: features-canary
  namespace: bench
  annotations:
    $nx/canary: "true"
    $nx/canary-by-cookie: canary
    $nx/use-regex: "true"
    $nx/rewrite-target: /\$1
spec:
  ingressClassName: pingress
  rules: [{host: features.bench, http: {paths: [{path: "/f/(.*)", pathType: ImplementationSpecific, backend: {service: {name: backend, port: {number: 80}}}}]}}]
YAML
}

# merge PROFILE_DIR: the raw counts of the training run into one profile, PROFILE
merge() {
  ls "$1"/raw/*.profraw >/dev/null 2>&1 || die "the instrumented build wrote no profile into $1/raw"
  "$PROFDATA" merge -o "$1/merged.profdata" "$1"/raw/*.profraw
  # named by its content: cargo rebuilds when RUSTFLAGS change, not when a file they name does
  PROFILE=$1/$(sha256sum "$1/merged.profdata" | cut -c1-16).profdata
  mv "$1/merged.profdata" "$PROFILE"
  log "profile: $(du -h "$PROFILE" | cut -f1)"
}

bench_start train
case $WHAT in
  pingress)
    GEN=$PGO_TARGET-gen USE=$PGO_TARGET PROF=$PGO_TARGET-data
    log "instrumented build ($GEN)"
    (cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$PROF/raw" \
      cargo build --release --locked --bin pingress --target-dir "$GEN")
    # build scripts of the instrumented build wrote counts of their own
    rm -rf "$PROF"; mkdir -p "$PROF/raw"
    log "training run"
    write_manifests "$dir" 3 tls
    features_ingress > "$dir/02-features.yaml"
    PH=$(free_port); PS=$(free_port)
    PINGRESS_BIN=$GEN/release/pingress PINGRESS_LOG=warn start_pingress train "$dir" "$PH" "$PS" \
      "$(free_port)" --default-ssl-certificate bench/bench-tls
    train "$PH" "$PS"
    # the annotation families' request and response phases, not only the plain route
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: features.bench' -H 'Origin: https://app.bench' \
      "http://127.0.0.1:$PH/f/x")
    [ "$code" = 200 ] || die "features.bench answered $code"
    wrk -t2 -c32 -d"${TRAIN_SECS}s" -H 'Host: features.bench' -H 'Origin: https://app.bench' \
      -H 'Accept-Encoding: gzip' -H 'Cookie: canary=never' "http://127.0.0.1:$PH/f/x" | grep 'Requests/sec'
    stop_pingress train
    merge "$PROF"
    log "optimised build ($USE)"
    (cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$PROFILE" \
      cargo build --release --locked --bin pingress --target-dir "$USE")
    log "done: $USE/release/pingress"
    ;;
  pingora-min)
    base=$(pingora_min_target)
    GEN=$base-pgo-gen USE=$base-pgo PROF=$base-pgo-data
    log "instrumented build ($GEN)"
    RUSTFLAGS="-Cprofile-generate=$PROF/raw" CARGO_TARGET_DIR="$GEN" "$SB/pingora-min.sh" build
    rm -rf "$PROF"; mkdir -p "$PROF/raw"
    log "training run"
    PINGORA_PORT=$(free_port) PINGORA_TLS_PORT=$(free_port)
    export PINGORA_PORT PINGORA_TLS_PORT
    bench_stop_on_exit "$BENCH_RUN_DIR/pingora-min.pid" INT
    PINGORA_BIN=$GEN/release/pingora-min PINGORA_WORK_STEALING=0 "$SB/pingora-min.sh" start
    train "$PINGORA_PORT" "$PINGORA_TLS_PORT"
    "$SB/pingora-min.sh" stop
    merge "$PROF"
    log "optimised build ($USE)"
    RUSTFLAGS="-Cprofile-use=$PROFILE" CARGO_TARGET_DIR="$USE" "$SB/pingora-min.sh" build
    log "done: $USE/release/pingora-min (PINGORA_BIN=$USE/release/pingora-min)"
    ;;
  *) die "usage: $0 [pingress|pingora-min]" ;;
esac
