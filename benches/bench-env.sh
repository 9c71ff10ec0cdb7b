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
