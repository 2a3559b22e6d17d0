"""tools/install.sh meets a distribution's externally managed Python (PEP 668) outside a virtual environment.

The interpreter is a wrapper around a real Python whose ``sysconfig`` stdlib folder is redirected to one that
holds (or not) the EXTERNALLY-MANAGED marker, and whose ``-m pip`` fails at once: nothing is ever installed."""
import os
import os.path as osp
import stat
import subprocess
import sys
import textwrap

import pytest

from ..conftest import ROOT

INSTALL = osp.join(ROOT, 'tools', 'install.sh')
ADVICE = 'run instead: python3 -m venv .venv && . .venv/bin/activate && bash tools/install.sh'


def fake_python(tmp_path, interpreter: str, externally_managed: bool) -> str:
    """A PYTHON for install.sh: ``interpreter`` with its stdlib folder seen as ``tmp_path/stdlib``."""
    stdlib = tmp_path / 'stdlib'
    stdlib.mkdir()
    if externally_managed:
        (stdlib / 'EXTERNALLY-MANAGED').write_text('[externally-managed]\nError=use a virtual environment\n')
    site = tmp_path / 'site'
    site.mkdir()
    (site / 'sitecustomize.py').write_text(
        textwrap.dedent(f"""\
        import sysconfig
        _get_path = sysconfig.get_path
        sysconfig.get_path = lambda name, *a, **k: {str(stdlib)!r} if name == 'stdlib' else _get_path(name, *a, **k)
        """))
    wrapper = tmp_path / 'python'
    wrapper.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = -m ] && [ "$2" = pip ]; then echo 'ERROR: pip is disabled in this test' >&2; exit 1; fi
        PYTHONPATH={site} exec {interpreter} "$@"
        """))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


def run_install(python: str, tmp_path, **extra_env):
    env = {k: v for k, v in os.environ.items() if k != 'PIP_BREAK_SYSTEM_PACKAGES'}
    env.update(PYTHON=python, MMKD_INSTALL_LOG=str(tmp_path / 'install.log'), **extra_env)
    return subprocess.run(['bash', 'tools/install.sh'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# the interpreter this venv was made from: outside any virtual environment, like a system python
BASE_PYTHON = osp.join(sys.base_prefix, 'bin', 'python3')


@pytest.mark.skipif(not osp.isfile(BASE_PYTHON), reason='no base interpreter beside the virtual environment')
def test_externally_managed_python_outside_a_venv_gets_one_line(tmp_path):
    proc = run_install(fake_python(tmp_path, BASE_PYTHON, externally_managed=True), tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'is externally managed (PEP 668)' in lines[0] and lines[0].endswith(ADVICE)
    assert 'install torch' not in proc.stdout


@pytest.mark.skipif(not osp.isfile(BASE_PYTHON), reason='no base interpreter beside the virtual environment')
def test_pip_override_skips_the_check(tmp_path):
    # PIP_BREAK_SYSTEM_PACKAGES: the script goes on to pip (disabled here, so it stops at its first pip step)
    proc = run_install(
        fake_python(tmp_path, BASE_PYTHON, externally_managed=True), tmp_path, PIP_BREAK_SYSTEM_PACKAGES='1')
    assert proc.returncode == 1 and 'externally managed' not in proc.stderr
    assert 'ERROR: pip is disabled in this test' in proc.stderr


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason='the tests do not run in a virtual environment')
def test_marker_inside_a_venv_is_no_obstacle(tmp_path):
    # the venv's interpreter: torch is there (kept), the next step is the first pip call
    proc = run_install(fake_python(tmp_path, sys.executable, externally_managed=True), tmp_path)
    assert proc.returncode == 1 and 'externally managed' not in proc.stderr
    assert 'step "install build tools' in proc.stderr and 'ERROR: pip is disabled in this test' in proc.stderr
