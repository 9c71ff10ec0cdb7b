# The common start of the loopback benchmark scripts (source it first; set BENCH_HOST before
# it when the script's main host is not plain.bench): ROOT, SB (benches/anchors), a private
# BENCH_RUN_DIR (own_run_dir: remove it on exit), an ephemeral BACKEND_PORT, then
# anchors/lib.sh and lib-pingress.sh.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB=${SHARED_BENCH:-$ROOT/benches/anchors}
own_run_dir=
if [ -z "${BENCH_RUN_DIR:-}" ]; then BENCH_RUN_DIR=$(mktemp -d); own_run_dir=$BENCH_RUN_DIR; fi
export BENCH_RUN_DIR
BACKEND_PORT=${BACKEND_PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
export BACKEND_PORT BENCH_HOST=${BENCH_HOST:-plain.bench}
# shellcheck source=/dev/null
. "$SB/lib.sh"
# shellcheck source=/dev/null
. "$ROOT/benches/lib-pingress.sh"

# The common set-up of a script's run: `bench_start [NAME...]` makes the manifest folder $dir,
# starts the backend and, on exit, stops the pingress instances NAME (default: main), every pid
# file given to `bench_stop_on_exit FILE [SIGNAL]`, the backend, and removes $dir, the folders
# given to `bench_remove_on_exit`, and a private BENCH_RUN_DIR.
bench_instances=(main); bench_pidfiles=(); bench_signals=(); bench_dirs=()
bench_stop_on_exit() { bench_pidfiles+=("$1"); bench_signals+=("${2:-TERM}"); }
bench_remove_on_exit() { bench_dirs+=("$@"); }
bench_cleanup() {
  local n i
  for n in "${bench_instances[@]}"; do stop_pingress "$n"; done
  for i in "${!bench_pidfiles[@]}"; do stop_pidfile "${bench_pidfiles[$i]}" "${bench_signals[$i]}"; done
  "$SB/backend-nginx.sh" stop >/dev/null 2>&1 || true
  rm -rf "${dir:-}" "${bench_dirs[@]}" ${own_run_dir:+"$own_run_dir"}
}
bench_start() {
  [ $# -gt 0 ] && bench_instances=("$@")
  dir=$(mktemp -d)
  trap bench_cleanup EXIT
  "$SB/backend-nginx.sh" start
}
# The release binary, built when missing.
bench_need_pingress() { [ -x "$PINGRESS_BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress); }
