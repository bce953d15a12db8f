#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Re-resolve requirements/top-level.txt in a scratch venv and pin the result
# into requirements/lock.txt (run after changing top-level.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON312:-$(ls "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 2>/dev/null | head -1)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q -r "$ROOT/requirements/top-level.txt"
"$TMP/venv/bin/python" "$ROOT/scripts/pin_installed.py" > "$ROOT/requirements/lock.txt"
echo "pinned $(wc -l < "$ROOT/requirements/lock.txt") packages"
