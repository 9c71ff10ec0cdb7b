#!/usr/bin/env bash
# Installs what the end-to-end benchmarks need on a fresh Debian machine (as .ci/setup does for
# the build and tests): nginx with the Lua module (the ingress-nginx anchors), wrk, h2load, jq,
# GNU time, perf when the kernel has a package for it, and oha through cargo.
# Idempotent and quick when everything is already there. benches/e2e-load.sh runs it first.
# MINIMAL=1: only the backend and the load tools (nginx, wrk, h2load; benches/pgo.sh's training).
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${MINIMAL:-0}" != 1 ]; then
  [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua lua-resty-core lua-cjson)
  command -v jq >/dev/null 2>&1 || need+=(jq)
  [ -x /usr/bin/time ] || need+=(time)
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "bench setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "${MINIMAL:-0}" = 1 ] && exit 0
# perf is optional (the profile phase skips itself without it)
command -v perf >/dev/null 2>&1 ||
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
PATH="$PATH:$HOME/.cargo/bin"
command -v oha >/dev/null 2>&1 || {
  echo "bench setup: cargo install oha" >&2
  cargo install oha --locked >&2
}
