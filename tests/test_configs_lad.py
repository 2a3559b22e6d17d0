"""The COCO configs of configs/lad reproduce the settings of the LAD paper's Tables 2 and 3 (Nguyen et al.,
WACV 2022, Sec. 3.3 and 4.1): who teaches whom, which loss, the schedule, and the (*) rows' longer warm-up.
The expected values are typed from the paper; the teacher checkpoints are checked against mmdet's own PAA
metafile. These tests only parse the configs (tests/test_configs.py builds them)."""
import glob
import os.path as osp
import re

import mmdet
import pytest
import yaml
from mmengine.config import Config

from .conftest import CONFIGS

LAD_DIR = osp.join(CONFIGS, 'lad')
NAME = re.compile(r'^(?P<method>[a-z0-9.-]+)_paa-r(?P<teacher>\d+)_paa-r(?P<student>\d+)_fpn_1x_coco$')

# config name -> (paper table, paper box AP, the row is marked (*) = 3000-iteration warm-up)
PAPER = {
    'lad_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 41.6, False),
    'solad_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 42.4, False),
    'solabel-kl-g0_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 39.8, True),
    'solabel-kl-g0.5_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 41.3, True),
    'solabel-kl-g2_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 39.6, False),
    'solabel-l1_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 40.4, True),
    'solabel-l2_paa-r101_paa-r50_fpn_1x_coco': ('Table 2', 41.0, False),
    'lad_paa-r50_paa-r101_fpn_1x_coco': ('Table 3', 43.3, False),
    'solabel-kl-g0.5_paa-r50_paa-r101_fpn_1x_coco': ('Table 3', 40.4, False),
}
# the soft-label loss a method name stands for: (registered type, gamma or None)
SOFT_LABEL = {
    'solabel-kl-g0': ('SoftLabelKLLoss', 0.0),
    'solabel-kl-g0.5': ('SoftLabelKLLoss', 0.5),
    'solabel-kl-g2': ('SoftLabelKLLoss', 2.0),
    'solabel-l1': ('SoftLabelL1Loss', None),
    'solabel-l2': ('SoftLabelL2Loss', None),
    'solad': ('SoftLabelKLLoss', 0.5),
}
COCO_CONFIGS = sorted(glob.glob(osp.join(LAD_DIR, '*_coco.py')))


def _name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def _mmdet_paa_weights() -> dict:
    """Model name -> checkpoint URL, from the PAA metafile that mmdet ships."""
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'paa', 'metafile.yml')
    with open(path) as f:
        return {m['Name']: m['Weights'] for m in yaml.safe_load(f)['Models']}


def test_every_paper_row_has_a_config():
    assert sorted(_name(p) for p in COCO_CONFIGS) == sorted(PAPER)


@pytest.mark.parametrize('path', COCO_CONFIGS, ids=[_name(p) for p in COCO_CONFIGS])
def test_coco_config_matches_paper(path):
    name = _name(path)
    match = NAME.match(name)
    assert match, f'{name} does not follow <method>_paa-r<teacher depth>_paa-r<student depth>_fpn_1x_coco'
    method, teacher, student = match['method'], int(match['teacher']), int(match['student'])
    cfg = Config.fromfile(path)
    model = cfg.model
    assert cfg.custom_imports == dict(imports=['mmkd'], allow_failed_imports=False)

    assert model.type == ('SoLADDistiller' if method == 'solad' else 'LADDistiller')
    assert model.student.type == 'PAA' and model.student.bbox_head.type == 'PAAHead'
    assert model.student.backbone.type == 'ResNet' and model.student.backbone.depth == student
    assert model.student.backbone.init_cfg.checkpoint == f'torchvision://resnet{student}'
    assert model.teacher_cfg == f'mmdet::paa/paa_r{teacher}_fpn_1x_coco.py'
    assert model.teacher_ckpt == _mmdet_paa_weights()[f'paa_r{teacher}_fpn_1x_coco']
    assert model.get('gmm_backend', 'torch') == 'torch'

    # soft-label-only rows keep the student's own PAA assignment; LAD and SoLAD take the teacher's
    assert model.assign_by == ('student' if method.startswith('solabel') else 'teacher')
    if method == 'lad':
        assert model.get('soft_label_loss') is None and model.get('box_distill_loss') is None
    else:
        loss_type, gamma = SOFT_LABEL[method]
        loss = model.soft_label_loss
        assert loss.type == loss_type and loss.loss_weight == 1.0
        assert loss.get('gamma') == gamma
        # Sec. 3.1: boxes are distilled only where the prediction has IoU > 0.5 with its nearest ground truth
        assert model.box_distill_loss == dict(type='GIoULoss', loss_weight=1.3)
        assert model.distill_iou_thr == 0.5

    # Sec. 4.1: SGD lr 0.01, momentum 0.9, weight decay 1e-4, 1x = 12 epochs with steps at 8 and 11, batch 16
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
    assert cfg.train_cfg.max_epochs == 12
    warmup, steps = cfg.param_scheduler
    assert steps.type == 'MultiStepLR' and steps.by_epoch and steps.milestones == [8, 11] and steps.gamma == 0.1
    assert warmup.type == 'LinearLR' and not warmup.by_epoch and warmup.begin == 0
    starred = PAPER[name][2]
    assert warmup.end == (3000 if starred else 500), f'{name}: (*) rows warm up for 3000 iterations, others 500'
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    resize, flip = cfg.train_pipeline[2], cfg.train_pipeline[3]
    assert resize.type == 'Resize' and resize.scale == (1333, 800) and resize.keep_ratio
    assert flip.type == 'RandomFlip' and flip.prob == 0.5


def test_metafile_and_readme_give_the_paper_numbers():
    with open(osp.join(LAD_DIR, 'metafile.yml')) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    with open(osp.join(LAD_DIR, 'README.md')) as f:
        readme_rows = [line for line in f if line.startswith('| `')]
    for name, (table, ap, _) in PAPER.items():
        model = models[name]
        assert model['Metadata']['Results Source'] == table, name
        assert model['Results'][0]['Metrics']['box AP'] == ap, name
        rows = [row for row in readme_rows if f'`{name}.py`' in row]
        assert len(rows) == 1, f'README.md should have one table row for {name}.py, found {len(rows)}'
        assert f'| {ap} |' in rows[0], f'README.md row of {name}.py should give the paper AP {ap}'
