import os
import os.path as osp
import sys
import tempfile

import pytest

import mmkd  # noqa: F401  (registers mmkd and installs the checkpoint allow-list)

# the SSIM filter's path choices (mmkd.models.losses.gaussian_filter) go to a cache of the test session,
# also for the tools run in subprocesses, not to the user's ~/.cache/mmkd
os.environ.setdefault('MMKD_CACHE_DIR', tempfile.mkdtemp(prefix='mmkd-test-cache-'))

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
TOOLS = osp.join(ROOT, 'tools')


@pytest.fixture(scope='module', autouse=True)
def _no_default_scope_leaks_from_modules():
    """The same across test modules: a module-scoped fixture that sets a default scope (e.g. ``init_default_scope(
    'mmseg')`` before building an mmseg model) must not make it current for the modules after it."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)


@pytest.fixture(autouse=True)
def _no_default_scope_leaks():
    """A Runner built in one test leaves its default scope current for the whole process (mmengine's
    DefaultScope is global): every test starts from the scopes that existed before it."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """A small toy shapes dataset shared by the tests (16 train, 8 val images)."""
    from mmkd.datasets import generate_toy_shapes
    root = str(tmp_path_factory.mktemp('data') / 'toy_shapes')
    generate_toy_shapes(root, seed=0, num_train=16, num_val=8, image_size=128)
    return root


def tool_env():
    """Environment for running tools/ in a subprocess: the checkout importable, single-threaded."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = '1'
    env['PYTHONWARNINGS'] = 'ignore'
    return env


PYTHON = sys.executable
