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
  A=release B=pgo REL=$ROOT/target/release/pingress LTO=$ROOT/target/pgo/release/pingress
  [ -x "$REL" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
  [ -x "$LTO" ] || bash "$ROOT/benches/pgo.sh"
else
  A=quick B=lto REL=$ROOT/target/release-quick/pingress LTO=$ROOT/target/release/pingress
  [ -x "$REL" ] || (cd "$ROOT" && cargo build --profile release-quick --locked --bin pingress)
  [ -x "$LTO" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
fi
bench_start "$A" "$B"
write_manifests "$dir" 1 tls
P_REL=$(free_port); S_REL=$(free_port); P_LTO=$(free_port); S_LTO=$(free_port)
PINGRESS_BIN=$REL PINGRESS_LOG=warn start_pingress "$A" "$dir" "$P_REL" "$S_REL" "$(free_port)" --threads 1
PINGRESS_BIN=$LTO PINGRESS_LOG=warn start_pingress "$B" "$dir" "$P_LTO" "$S_LTO" "$(free_port)" --threads 1
pid_rel=$(cat "$BENCH_RUN_DIR/$A.pid"); pid_lto=$(cat "$BENCH_RUN_DIR/$B.pid")
for p in "$S_REL" "$S_LTO"; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "$BENCH_HOST:$p:127.0.0.1" "https://$BENCH_HOST:$p/")
  [ "$code" = 200 ] || die "HTTPS on $p answered $code"
done
log "machine: $(nproc) cores, load $(loadavg), pingress $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)"
run_case() {
  local port plain tls
  case $1 in *-"$A") plain=$P_REL tls=$S_REL ;; *) plain=$P_LTO tls=$S_LTO ;; esac
  case $1 in
    h1-*) wrk -t1 -c32 -d"${2}s" -H "Host: $BENCH_HOST" "http://127.0.0.1:$plain/" ;;
    # wrk sends the URL's host as SNI: the bench host resolves to loopback through the Host
    # header only, so SNI falls to the default certificate path; the cost measured is the same
    tls-*) wrk -t1 -c32 -d"${2}s" -H "Host: $BENCH_HOST" "https://127.0.0.1:$tls/" ;;
    close-*) python3 "$SB/conn-per-request.py" "$plain" "$BENCH_HOST" "$2" 8 ;;
  esac
}
cpu_pids() { case $1 in *-"$A") echo "$pid_rel" ;; *) echo "$pid_lto" ;; esac; }
cases=("h1-$A" "h1-$B" "tls-$A" "tls-$B" "close-$A" "close-$B")
declare -A us
paired_rounds "$ROUNDS" "$ROUND_SECS" "${cases[@]}"
echo "median CPU/request (us): $(for k in "${cases[@]}"; do printf '%s %s, ' "$k" "$(bench_median "$k")"; done)"
echo "$B vs $A: h1 $(bench_ratio "h1-$B" "h1-$A"), https $(bench_ratio "tls-$B" "tls-$A"), connection per request $(bench_ratio "close-$B" "close-$A")"
