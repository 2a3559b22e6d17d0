"""tools/train.py, --resume and export_student.py on the toy SoLAD config (a few iterations)."""
import os.path as osp

import pytest
import torch

from ..conftest import CONFIGS, PYTHON, TOOLS
from .test_train_tools import _options, _run, predict_without_mmkd

CONFIG = osp.join(CONFIGS, 'lad', 'solad_paa-tiny-w32_paa-tiny-w16_toy.py')


@pytest.fixture(scope='module')
def trained(toy_root, tmp_path_factory):
    """SoLAD (random teacher): two epochs straight, and one epoch then a resume to two."""
    work = tmp_path_factory.mktemp('train_lad')
    train = [PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir']
    _run(train + [str(work / 'full')] + _options(toy_root, 2), work)
    _run(train + [str(work / 'part')] + _options(toy_root, 1), work)
    _run(train + [str(work / 'part'), '--resume'] + _options(toy_root, 2), work)
    return work


def test_solad_resume_continues_exactly(trained):
    full = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)
    resumed = torch.load(trained / 'part' / 'epoch_2.pth', weights_only=False)
    assert full['meta']['iter'] == resumed['meta']['iter'] == 8
    assert not any(k.startswith('teacher') for k in full['state_dict'])
    for k, v in full['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][k], v, rtol=0, atol=0, msg=k)
    log = open(next((trained / 'full').glob('*/*.log'))).read()
    assert 'loss_soft_cls' in log and 'loss_distill_bbox' in log


def test_exported_lad_student_is_a_stock_paa(trained, toy_root):
    out = trained / 'export'
    _run([PYTHON, osp.join(TOOLS, 'export_student.py'), str(trained / 'full' / 'epoch_2.pth'), str(out)], trained)
    config_text = open(out / 'student_config.py').read()
    assert "type='PAAHead'" in config_text and 'Batched' not in config_text and 'mmkd' not in config_text
    predict_without_mmkd(out, toy_root + '/val/000000.png', trained)
