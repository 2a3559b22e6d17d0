"""S2SD (MSDF) through the stock tools: tools/train.py, tools/test.py and export_student.py on a tiny copy of the toy
MSDF config (tests/data/s2sd_tiny-msdf_toy.py: two epochs of two batches on tiny generated toy retrieval data)."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmkd.datasets import generate_toy_retrieval
from mmkd.evaluation import retrieval_metrics
from mmkd.models.embedding import ImageEmbedder, S2SDEmbedder
from mmkd.registry import DATASETS, MODELS
from ..conftest import PYTHON, ROOT, TOOLS
from .test_train_tools import _run

CONFIG = osp.join(ROOT, 'tests', 'data', 's2sd_tiny-msdf_toy.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _options(root):
    return ['--cfg-options'] + [f'{loader}.dataset.data_root={root}' for loader in LOADERS]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 train species x 4 images (two batches of 2 x 4 per epoch), 4 test species x 4 images; trained two epochs,
    tested, exported."""
    work = tmp_path_factory.mktemp('train_s2sd')
    root = generate_toy_retrieval(str(work / 'toy'), num_classes=8, images_per_class=4, image_size=32)
    _run([PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir', str(work / 'train')] + _options(root), work)
    checkpoint = str(work / 'train' / 'epoch_2.pth')
    test = _run([PYTHON, osp.join(TOOLS, 'test.py'), CONFIG, checkpoint, '--work-dir',
                 str(work / 'test')] + _options(root), work)
    _run([PYTHON, osp.join(TOOLS, 'export_student.py'), checkpoint, str(work / 'export')], work)
    assert 'retrieval/R@1' in test.stdout + test.stderr
    return work, root, checkpoint


def test_feature_distillation_switches_on_at_start_iter(trained):
    work = trained[0]
    scalars = next((work / 'train').glob('*/vis_data/scalars.json'))
    logged = [json.loads(line) for line in open(scalars) if 'loss_feat_distill' in line]
    # one record per iteration (logger interval 1, window 1); 'iter' is 1-based, start_iter=1 is 0-based
    assert [r['iter'] for r in logged] == [1, 2, 3, 4]
    feat = [r['loss_feat_distill'] for r in logged]
    assert feat[0] == 0.0 and min(feat[1:]) > 0
    for r in logged:
        assert all(r[k] > 0 for k in ('loss_base', 'loss_target', 'loss_distill'))
        assert r['loss'] == pytest.approx(
            sum(r[k] for k in ('loss_base', 'loss_target', 'loss_distill', 'loss_feat_distill')), rel=1e-3)
    state = torch.load(trained[2], weights_only=False)['state_dict']
    assert any(k.startswith('target_branches.1.') for k in state)


def _test_batch(root):
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmkd'):
        dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=root))
    return pseudo_collate([dataset[i] for i in range(len(dataset))])


def test_export_and_test_tool_give_the_base_embedders_retrieval(trained):
    """The exported plain ImageEmbedder gives the S2SD model's embeddings (whose branches do not run), and the
    Recall@1 / mAP@R that tools/test.py logged, recomputed here."""
    work, root, checkpoint = trained
    logged = json.loads(open(next((work / 'test').glob('*/*.json'))).readline())

    out = work / 'export'
    exported_cfg = Config.fromfile(str(out / 'student_config.py'))
    assert exported_cfg.model.type == 'ImageEmbedder'
    assert not any('S2SD' in str(h) for h in exported_cfg.get('custom_hooks', []))
    state = torch.load(out / 'student.pth', weights_only=True)['state_dict']
    assert state and not any('target' in k for k in state)
    with DefaultScope.overwrite_default_scope('mmkd'):
        student = MODELS.build(exported_cfg.model)
        trained_model = MODELS.build(Config.fromfile(CONFIG).model)
    assert type(student) is ImageEmbedder and isinstance(trained_model, S2SDEmbedder)
    student.load_state_dict(state)
    trained_model.load_state_dict(torch.load(checkpoint, weights_only=False)['state_dict'])
    student.eval()
    trained_model.eval()
    calls = []
    for branch in trained_model.target_branches:
        branch.register_forward_hook(lambda *args: calls.append(1))

    data = _test_batch(root)
    batch = student.data_preprocessor(data, False)
    with torch.no_grad():
        embeddings = student(batch['inputs'])
        predicted = trained_model.predict(trained_model.data_preprocessor(_test_batch(root), False)['inputs'])
    assert calls == []
    assert torch.equal(embeddings, torch.stack([s.pred_embedding for s in predicted]))
    labels = torch.stack([s.gt_label for s in batch['data_samples']])
    assert embeddings.shape == (16, 8) and len(labels.unique()) == 4
    reference = retrieval_metrics(embeddings, labels, ks=(1, ), metrics=('recall', 'map_at_r'))
    distances = torch.cdist(embeddings.double(), embeddings.double()).fill_diagonal_(float('inf'))
    nearest_same = (labels[distances.argmin(dim=1)] == labels).double().mean().item()
    assert reference['R@1'] == pytest.approx(nearest_same, abs=1e-9)
    assert logged['retrieval/R@1'] == pytest.approx(reference['R@1'], abs=1e-6)
    assert logged['retrieval/mAP@R'] == pytest.approx(reference['mAP@R'], abs=1e-6)
