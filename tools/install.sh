#!/usr/bin/env bash
# One-command set-up of mmkd into the active Python environment.
#
#   bash tools/install.sh
#
# Installs, in order: torch (an installed torch is kept; otherwise torch==${MMKD_TORCH_VERSION:-2.13.0}),
# mmengine, mmcv 2.1.0 with compiled ops (CUDA ops when torch has CUDA), mmdet, mmsegmentation and their
# missing runtime dependencies, then mmkd itself in editable mode with its test extras.
#
# Environment:
#   MMKD_WHEELHOUSE     folder of prebuilt wheels tried first for mmcv (e.g. ../shared/wheels/cpu)
#   MMKD_TORCH_VERSION  torch version installed when none is present (default 2.13.0)
#   MMKD_EXTRAS         extras of mmkd to install (default "tests")
#   PYTHON              interpreter to use (default: python, else python3); a distribution's Python
#                       marked externally managed (PEP 668) is refused outside a virtual environment
#
# On failure the script exits non-zero and prints one line naming the failed step and the reason;
# the full output of every step is kept in the log file it names.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$(command -v python || command -v python3)}
TORCH_VERSION=${MMKD_TORCH_VERSION:-2.13.0}
EXTRAS=${MMKD_EXTRAS:-tests}
LOG=${MMKD_INSTALL_LOG:-$(mktemp -t mmkd-install.XXXXXX.log)}
CONSTRAINTS=$(mktemp -t mmkd-constraints.XXXXXX.txt)
trap 'rm -f "$CONSTRAINTS"' EXIT

say() { printf '[mmkd install] %s\n' "$*"; }

# run STEP CMD...: runs CMD with its output in the log; on failure prints one line and exits.
run() {
    local step=$1
    shift
    say "$step ..."
    printf '\n### %s\n### %s\n' "$step" "$*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        local why
        why=$(grep -E 'ERROR|Error|error:' "$LOG" | grep -v '^###' | tail -n 1 | cut -c1-300)
        [ -n "$why" ] || why=$(tail -n 1 "$LOG" | cut -c1-300)
        printf 'mmkd install: step "%s" failed: %s (full log: %s)\n' "$step" "$why" "$LOG" >&2
        exit 1
    fi
}

pip_install() { "$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@"; }

[ -n "$PY" ] || { echo 'mmkd install: step "python" failed: no python or python3 on PATH' >&2; exit 1; }
say "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])')), log: $LOG"
run "check python >= 3.8" "$PY" -c 'import sys; assert sys.version_info >= (3, 8), sys.version'

# PEP 668: pip refuses to install into a distribution's own Python (Debian / Ubuntu) outside a virtual
# environment; say what works instead rather than let pip fail at the first install with its long error.
# PIP_BREAK_SYSTEM_PACKAGES, pip's own override, skips the check.
externally_managed() {
    "$PY" -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.isfile(marker) and sys.prefix == sys.base_prefix else 1)'
}
if [ -z "${PIP_BREAK_SYSTEM_PACKAGES:-}" ] && externally_managed; then
    printf 'mmkd install: step "python" failed: %s is externally managed (PEP 668), pip cannot install into it; %s\n' \
        "$PY" "run instead: python3 -m venv .venv && . .venv/bin/activate && bash $0" >&2
    exit 1
fi

# 1. torch: keep what is installed, so that a CUDA build chosen by the user is not replaced.
if "$PY" -c 'import torch' >/dev/null 2>&1; then
    say "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept"
else
    run "install torch==$TORCH_VERSION" "$PY" -m pip install --disable-pip-version-check "torch==$TORCH_VERSION"
fi
TORCH_INSTALLED=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')
# Every later pip call is constrained to this torch, so that no dependency pulls another build.
echo "torch==$TORCH_INSTALLED" >"$CONSTRAINTS"

# 2. build tools for mmcv (it is compiled against the installed torch, hence no build isolation).
#    mmcv 2.1.0 only builds with setuptools<70; recent torch asks for setuptools>=77, so pip may warn about
#    the conflict here: step 5 puts a setuptools back that suits both torch and mmengine (<81).
run "install build tools (setuptools<70, wheel, ninja)" pip_install "setuptools<70" wheel ninja packaging

# 3. mmengine and mmcv's own runtime dependencies.
run "install mmengine==0.10.7" pip_install "mmengine==0.10.7" addict numpy pillow pyyaml yapf opencv-python

# 4. mmcv 2.1.0 with ops: from the wheelhouse when one is given and it fits, else compiled from source.
mmcv_ok() { "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0", mmcv.__version__' >/dev/null 2>&1; }
if mmcv_ok; then
    say "mmcv 2.1.0 with ops already installed: kept"
else
    installed=no
    if [ -n "${MMKD_WHEELHOUSE:-}" ]; then
        if [ -d "$MMKD_WHEELHOUSE" ]; then
            say "trying mmcv==2.1.0 from wheelhouse $MMKD_WHEELHOUSE"
            if pip_install --no-index --no-deps --find-links "$MMKD_WHEELHOUSE" "mmcv==2.1.0" >>"$LOG" 2>&1 && mmcv_ok; then
                installed=yes
            else
                say "no usable mmcv 2.1.0 wheel in $MMKD_WHEELHOUSE: building from source"
                "$PY" -m pip uninstall -y mmcv >>"$LOG" 2>&1 || true
            fi
        else
            say "MMKD_WHEELHOUSE=$MMKD_WHEELHOUSE is not a folder: building mmcv from source"
        fi
    fi
    if [ "$installed" = no ]; then
        cuda=$("$PY" -c 'import torch; print(int(torch.cuda.is_available() or torch.version.cuda is not None))')
        [ "$cuda" = 1 ] && say "torch has CUDA: mmcv is built with CUDA ops"
        say "compiling mmcv 2.1.0 from source (about 9 minutes on 2 cores)"
        run "build mmcv==2.1.0 from source" env MMCV_WITH_OPS=1 FORCE_CUDA="$cuda" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" --no-build-isolation "mmcv==2.1.0"
    fi
    run "check mmcv ops import" "$PY" -c 'import mmcv.ops; print(mmcv.__version__)'
fi

# 5. mmdet, mmseg and the rest of the runtime requirements.
run "install mmdet, mmsegmentation and runtime requirements" pip_install -r "$ROOT/requirements/runtime.txt"

# 6. mmkd itself, editable, with its extras.
run "install mmkd (editable, extras: $EXTRAS)" pip_install --no-build-isolation -e "$ROOT[$EXTRAS]"
run "check import mmkd" "$PY" -c 'import mmkd; print(mmkd.__version__)'
say "done: mmkd $("$PY" -c 'import mmkd; print(mmkd.__version__)') with torch $TORCH_INSTALLED"
