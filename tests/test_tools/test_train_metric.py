"""The metric-learning module through the stock tools: tools/train.py, --resume, tools/test.py and
export_student.py on the toy relative-teacher config (tiny toy retrieval data, a few iterations)."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmkd.datasets import generate_toy_retrieval
from mmkd.evaluation import retrieval_metrics
from mmkd.registry import DATASETS, MODELS
from ..conftest import CONFIGS, PYTHON, TOOLS
from .test_train_tools import _run

CONFIG = osp.join(CONFIGS, 'metric_kd', 'metric-kd-rel_r18-w16-r18-w4_toy.py')


def _options(root, epochs):
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    return [
        '--cfg-options', 'model.teacher_ckpt=None', f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.seed=0'
    ] + [f'{loader}.num_workers=0'
         for loader in loaders] + [f'{loader}.persistent_workers=False' for loader in loaders
                                   ] + [f'{loader}.dataset.data_root={root}' for loader in loaders]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A random teacher, tiny toy data (4 train species x 8 images: one P x K batch per epoch); three epochs
    straight, and one epoch then a resume to three."""
    work = tmp_path_factory.mktemp('train_metric')
    root = generate_toy_retrieval(str(work / 'toy'), num_classes=8, images_per_class=8, image_size=32)
    train = [PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir']
    _run(train + [str(work / 'full')] + _options(root, 3), work)
    _run(train + [str(work / 'part')] + _options(root, 1), work)
    _run(train + [str(work / 'part'), '--resume'] + _options(root, 3), work)
    return work, root


def test_resume_continues_exactly(trained):
    work, _ = trained
    full = torch.load(work / 'full' / 'epoch_3.pth', weights_only=False)
    resumed = torch.load(work / 'part' / 'epoch_3.pth', weights_only=False)
    assert full['meta']['iter'] == resumed['meta']['iter'] == 3
    assert not any(k.startswith('teacher') for k in full['state_dict'])
    for k, v in full['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][k], v, rtol=0, atol=0, msg=k)
    log = open(next((work / 'full').glob('*/*.log'))).read()
    assert 'loss_metric' in log and 'loss_kd' in log


def _embed(model, root):
    """(N, D) embeddings and (N,) labels of the toy test split, computed here without the runner."""
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmkd'):
        dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=root))
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(len(dataset))]), False)
    with torch.no_grad():
        embeddings = model(batch['inputs'])
    return embeddings, torch.stack([s.gt_label for s in batch['data_samples']])


def test_test_tool_and_export_give_the_students_retrieval(trained):
    """tools/test.py prints the Recall@1 / mAP@R of the student's embeddings; the exported plain ImageEmbedder
    gives the same embeddings, whose metrics are recomputed here."""
    work, root = trained
    checkpoint = str(work / 'full' / 'epoch_3.pth')
    test = _run([PYTHON, osp.join(TOOLS, 'test.py'), CONFIG, checkpoint, '--work-dir',
                 str(work / 'test')] + _options(root, 3), work)
    printed = {k: float(v) for k, v in re.findall(r'retrieval/(R@1|mAP@R): ([0-9.]+)', test.stdout + test.stderr)}
    out = work / 'export'
    _run([PYTHON, osp.join(TOOLS, 'export_student.py'), checkpoint, str(out)], work)
    exported = Config.fromfile(str(out / 'student_config.py'))
    assert exported.model.type == 'ImageEmbedder' and 'teacher' not in open(out / 'student_config.py').read()
    with DefaultScope.overwrite_default_scope('mmkd'):
        student = MODELS.build(exported.model)
    state = torch.load(out / 'student.pth', weights_only=True)
    student.load_state_dict(state.get('state_dict', state))
    student.eval()
    embeddings, labels = _embed(student, root)
    distilled = torch.load(checkpoint, weights_only=False)['state_dict']
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, distilled['student.' + k], rtol=0, atol=0)
    reference = retrieval_metrics(embeddings, labels, ks=(1, ), metrics=('recall', 'map_at_r'))
    assert printed['R@1'] == pytest.approx(reference['R@1'], abs=1e-4)
    assert printed['mAP@R'] == pytest.approx(reference['mAP@R'], abs=1e-4)
