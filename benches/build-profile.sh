#!/usr/bin/env bash
# The release build profile (issue 21 item 2): CPU per request of the `release` binary (`lto =
# "fat"`, `codegen-units = 1`) against the `release-quick` one (cargo's default release
# settings: thin-local LTO, 16 codegen units), both serving the same manifests,
# paired in interleaved rounds in one run: HTTP/1.1 keep-alive, HTTPS (HTTP/1.1 over TLS,
# keep-alive), and a new connection per request. 1 proxy thread each; CPU is utime+stime from
# /proc. Loopback only, bounded. Needs wrk, nginx (the backend), curl, python3.
# PGO=1 compares the profile-guided build (benches/pgo.sh, target/pgo) with the release one.
# Usage: benches/build-profile.sh   (env: ROUNDS=5 ROUND_SECS=5 PGO=0; builds what is missing)
set -euo pipefail
. "$(dirname "$0")/bench-env.sh"
need wrk nginx curl python3
ROUNDS=${ROUNDS:-5}
ROUND_SECS=${ROUND_SECS:-5}
if [ "${PGO:-0}" = 1 ]; then
  A=release B=pgo A_BIN=$ROOT/target/release/pingress B_BIN=$PGO_TARGET/release/pingress
  [ -x "$A_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
  [ -x "$B_BIN" ] || bash "$ROOT/benches/pgo.sh"
else
  A=quick B=lto A_BIN=$ROOT/target/release-quick/pingress B_BIN=$ROOT/target/release/pingress
  [ -x "$A_BIN" ] || (cd "$ROOT" && cargo build --profile release-quick --locked --bin pingress)
  [ -x "$B_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
fi
bench_start "$A" "$B"
write_manifests "$dir" 1 tls
P_A=$(free_port); S_A=$(free_port); P_B=$(free_port); S_B=$(free_port)
PINGRESS_BIN=$A_BIN PINGRESS_LOG=warn start_pingress "$A" "$dir" "$P_A" "$S_A" "$(free_port)" --threads 1
PINGRESS_BIN=$B_BIN PINGRESS_LOG=warn start_pingress "$B" "$dir" "$P_B" "$S_B" "$(free_port)" --threads 1
pid_a=$(cat "$BENCH_RUN_DIR/$A.pid"); pid_b=$(cat "$BENCH_RUN_DIR/$B.pid")
for p in "$S_A" "$S_B"; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "$BENCH_HOST:$p:127.0.0.1" "https://$BENCH_HOST:$p/")
  [ "$code" = 200 ] || die "HTTPS on $p answered $code"
done
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
run_case() {
  local port plain tls
  case $1 in *-"$A") plain=$P_A tls=$S_A ;; *) plain=$P_B tls=$S_B ;; esac
  case $1 in
    h1-*) wrk -t1 -c32 -d"${2}s" -H "Host: $BENCH_HOST" "http://127.0.0.1:$plain/" ;;
    # wrk sends the URL's host as SNI: the bench host resolves to loopback through the Host
    # header only, so SNI falls to the default certificate path; the cost measured is the same
    tls-*) wrk -t1 -c32 -d"${2}s" -H "Host: $BENCH_HOST" "https://127.0.0.1:$tls/" ;;
    close-*) python3 "$SB/conn-per-request.py" "$plain" "$BENCH_HOST" "$2" 8 ;;
  esac
}
cpu_pids() { case $1 in *-"$A") echo "$pid_a" ;; *) echo "$pid_b" ;; esac; }
cases=("h1-$A" "h1-$B" "tls-$A" "tls-$B" "close-$A" "close-$B")
declare -A us
paired_rounds "$ROUNDS" "$ROUND_SECS" "${cases[@]}"
echo "median CPU/request (us): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_median "$k")"; done)"
echo "$B vs $A: h1 $(bench_ratio "h1-$B" "h1-$A"), https $(bench_ratio "tls-$B" "tls-$A"), connection per request $(bench_ratio "close-$B" "close-$A")"
