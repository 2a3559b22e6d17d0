"""The config text a checkpoint stores in ``meta['cfg']`` is data: read without running it unless trusted."""
import glob
import os.path as osp
import subprocess
import textwrap

import pytest
import torch
from mmengine.config import Config

from mmkd.utils import trust_checkpoint
from mmkd.utils.build import UnsafeConfigTextError, checkpoint_config, config_from_checkpoint_text
from ..conftest import CONFIGS, PYTHON, TOOLS, tool_env

# no import statement, so that mmengine parses it as an ordinary (non lazy-import) config and runs it
PAYLOAD = ("open({marker!r}, 'w').write('pwned')\n"
           "model = dict(type='DetFeatureDistiller', student=dict(type='RetinaNet'))\n")


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)))
def test_every_dumped_config_reads_back_as_mmengine_runs_it(config):
    # the reference: mmengine running its own dump, as it did for every checkpoint before
    text = Config.fromfile(config).pretty_text
    assert config_from_checkpoint_text(text, 'ck.pth').to_dict() == Config.fromstring(text, '.py').to_dict()


def test_every_value_form_mmengine_dumps():
    cfg = Config(
        dict(
            a={
                'x.y': 1,
                3: 'b'
            },
            s={1, 2},
            n=-1,
            f=-1.5e-3,
            t=(1, ),
            e=[],
            d={},
            b=True,
            z=None,
            by=b'ab',
            nested=dict(k=[dict(a=-2), (2, 3)])))
    read = config_from_checkpoint_text(cfg.pretty_text, 'ck.pth')
    assert read.to_dict() == cfg.to_dict()
    assert read.a == {'x.y': 1, 3: 'b'} and read.nested.k[0].a == -2 and read.t == (1, )


@pytest.mark.parametrize(
    'text, line, what',
    [
        ("model = dict(type='A')\nimport os\n", 2, 'Import'),
        ("model = dict(type='A')\nx = __import__('os').system('id')\n", 2, 'Call'),
        ('x = os.environ\n', 1, 'Attribute'),
        ('x = y\n', 1, 'Name'),
        ('x = dict(**y)\n', 1, 'keyword arguments'),
        ('x = dict([(1, 2)])\n', 1, 'keyword arguments'),
        ('x = {**y}\n', 1, '\\*\\* expansion'),
        ('x = [i for i in range(3)]\n', 1, 'ListComp'),
        ('x = 1 + 1\n', 1, 'BinOp'),
        ("x = -'a'\n", 1, 'non-number'),
        ('x = lambda: 0\n', 1, 'Lambda'),
        ("x = f'{y}'\n", 1, 'JoinedStr'),
        ('a, b = 1, 2\n', 1, 'only name = value'),
        ('x: int = 1\n', 1, 'AnnAssign'),
        ('x = 1\nif x:\n    y = 2\n', 2, 'If'),
    ],
)
def test_anything_but_plain_data_is_refused_with_its_line(text, line, what):
    with pytest.raises(UnsafeConfigTextError, match=f"'ck.pth'.*{what}.* on line {line}: ") as info:
        config_from_checkpoint_text(text, 'ck.pth')
    assert repr(text.splitlines()[line - 1].strip()) in str(info.value)


def test_syntax_error_names_the_checkpoint():
    with pytest.raises(UnsafeConfigTextError, match="'ck.pth'.*not Python config text"):
        config_from_checkpoint_text('x = (', 'ck.pth')


def test_a_trusted_checkpoint_config_still_runs(tmp_path, monkeypatch):
    path = str(tmp_path / 'trusted.pth')
    with pytest.raises(UnsafeConfigTextError):
        checkpoint_config('x = 1 + 1\n', path)
    monkeypatch.setattr('mmkd.utils.checkpoint._trusted_paths', set())
    trust_checkpoint(path)
    assert checkpoint_config('x = 1 + 1\n', path).x == 2


CALLERS = {
    'build_teacher': """
    from mmdet.registry import MODELS
    from mmkd.utils import build_teacher
    build_teacher({config!r}, CKPT, MODELS)
    """,
    'export_student': """
    from mmkd.utils.export import export_student
    export_student(CKPT, {out!r})
    """,
}


@pytest.mark.parametrize('caller', ['build_teacher', 'export_student', 'tools/export_student.py'])
def test_crafted_checkpoint_config_is_refused_and_never_run(tmp_path, caller):
    marker = str(tmp_path / 'PWNED')
    ckpt = str(tmp_path / 'crafted.pth')
    # weights that fit nothing, so that the teacher loading looks for the prefix the stored config declares
    torch.save(dict(state_dict={'foo.weight': torch.zeros(1)}, meta=dict(cfg=PAYLOAD.format(marker=marker))), ckpt)
    if caller.startswith('tools/'):
        cmd = [PYTHON, osp.join(TOOLS, 'export_student.py'), ckpt, str(tmp_path / 'out')]
    else:
        script = f'CKPT = {ckpt!r}\n' + textwrap.dedent(CALLERS[caller]).format(
            config=osp.join(CONFIGS, 'toy', 'retinanet_tiny-w16_toy.py'), out=str(tmp_path / 'out'))
        cmd = [PYTHON, '-c', script]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)
    assert proc.returncode != 0
    assert not osp.exists(marker), 'the config text stored in the checkpoint was executed'
    assert 'UnsafeConfigTextError' in proc.stderr and f"checkpoint '{ckpt}'" in proc.stderr, proc.stderr[-2000:]
    assert "on line 1: \"open(" in proc.stderr
