#!/usr/bin/env bash
# The frameworks' own test suites, untracked and tracked: prints the tests that fail only when tracked.
# Run by hand (not in the default CI): bash compat/run_peer_suites.sh [mcp|fastmcp|all] [default observe enforce]
# It takes the installed versions of mcp and fastmcp, fetches their released source packages, installs their
# test dependencies into its own venv (with this checkout), and compares JUnit reports test by test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WHICH=${1:-all}
shift || true
MODES=${*:-default}
WORK=${COMPAT_WORK:-/tmp/mcp-tracking-compat}
PY=${PYTHON:-python3}
mkdir -p "$WORK"
MCP_V=$("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))')
FM_V=$("$PY" -c 'import importlib.metadata as m; print(m.version("fastmcp"))' 2>/dev/null || echo "")
echo "== mcp $MCP_V, fastmcp ${FM_V:-not installed}; modes: $MODES"
cd "$WORK"
[ -d venv ] || "$PY" -m venv venv
venv/bin/pip install -q "mcp==$MCP_V" ${FM_V:+"fastmcp==$FM_V"} -e "$ROOT" pytest anyio trio inline-snapshot dirty-equals \
  pytest-xdist pytest-examples pillow opentelemetry-sdk pytest-asyncio pytest-env pytest-timeout pytest-retry psutil \
  fastapi httpx hypothesis blockbuster pytest-flakefinder pytest-pretty logfire typer python-dotenv rich
venv/bin/pip download -q --no-binary :all: --no-deps "mcp==$MCP_V" ${FM_V:+"fastmcp==$FM_V"} -d sdists
status=0
run_suite() {  # name dir extra-pytest-args...
  local name=$1 dir=$2; shift 2
  for mode in untracked $MODES; do
    local plug=""
    [ "$mode" = untracked ] || plug="-p tracking_plugin"
    echo "== $name: $mode"
    (cd "$dir" && MCP_TRACKING_COMPAT_MODE=$mode PYTHONPATH="$ROOT/compat" "$WORK/venv/bin/python" -m pytest \
      -q -p no:cacheprovider -n 2 $plug --junitxml="$WORK/$name-$mode.xml" "$@" > "$WORK/$name-$mode.log" 2>&1) || true
    tail -n 1 "$WORK/$name-$mode.log"
  done
  for mode in $MODES; do
    echo "== $name: fails only when tracked ($mode)"
    venv/bin/python "$ROOT/compat/compare_junit.py" "$WORK/$name-untracked.xml" "$WORK/$name-$mode.xml" \
      --allow "$ROOT/compat/allowlist.txt" || { [ "$mode" = default ] && status=1; }
  done
}
if [ "$WHICH" = mcp ] || [ "$WHICH" = all ]; then
  [ -d "mcp-$MCP_V" ] || tar xzf "sdists/mcp-$MCP_V.tar.gz"
  run_suite mcp "mcp-$MCP_V" tests -p no:asyncio -o log_cli=false
fi
if { [ "$WHICH" = fastmcp ] || [ "$WHICH" = all ]; } && [ -n "$FM_V" ]; then
  [ -d "fastmcp-$FM_V" ] || tar xzf "sdists/fastmcp-$FM_V.tar.gz"
  run_suite fastmcp "fastmcp-$FM_V" tests/server tests/client tests/tools -m "not integration and not client_process"
fi
exit $status
