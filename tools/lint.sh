#!/usr/bin/env bash
# Lint the tree as CI does: flake8, isort and yapf with the settings in setup.cfg.
#   bash tools/lint.sh          # check (non-zero exit and the offending lines when something is off)
#   bash tools/lint.sh --fix    # rewrite imports and formatting in place, then check
# Needs the tools of requirements/lint.txt (pip install -r requirements/lint.txt).
set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python || command -v python3)}
PATHS=(mmkd tools tests bench configs setup.py)
if [ "${1:-}" = "--fix" ]; then
    "$PY" -m isort "${PATHS[@]}" >/dev/null
    "$PY" -m yapf -i -r "${PATHS[@]}"
fi
status=0
"$PY" -m flake8 "${PATHS[@]}" || status=1
"$PY" -m isort --check-only --diff "${PATHS[@]}" || status=1
out=$("$PY" -m yapf --diff -r "${PATHS[@]}") || status=1
[ -z "$out" ] || { printf '%s\n' "$out"; echo "yapf: the files above are not formatted (bash tools/lint.sh --fix)"; }
[ "$status" = 0 ] && echo "lint: clean" || echo "lint: problems found (bash tools/lint.sh --fix rewrites imports and formatting)"
exit $status
