"""Export of the deployable network for every model kind: detection, segmentation, mmkd's own scope."""
import os.path as osp
import runpy
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config

from mmkd.models.distillers import DetFeatureDistiller
from mmkd.registry import DET_MODELS, MODELS, SEG_MODELS
from mmkd.utils import model_config
from mmkd.utils.build import build_in_scope
from mmkd.utils.export import export_student
from ..conftest import CONFIGS, PYTHON, TOOLS, tool_env
from ..test_models.test_distillers.test_base_distiller import tiny_segmentor
from ..test_models.test_utils.test_deployable import MMKD_MODEL

SEG_CLASSES = ('background', 'thing', 'stuff')


def _save(model: torch.nn.Module, cfg: Config, path, **meta) -> str:
    """A checkpoint as the runner writes it: the weights and the config text in meta."""
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text, **meta)), path)
    return str(path)


def test_detection_distiller_exports_a_stock_detector(tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, 'ssim_kd', 'ssim_retinanet_tiny-w32-w16_toy.py'))
    cfg.model.teacher_ckpt = None
    # as tools/train.py runs it: mmkd's crash-safe checkpoint hook and RNG state hook, and --amp on a CPU
    cfg.default_hooks.checkpoint.type = 'SafeCheckpointHook'
    cfg.custom_hooks = [dict(type='RNGStateHook')]
    cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    d = build_in_scope(cfg.model, DET_MODELS)
    assert isinstance(d, DetFeatureDistiller)
    exported = export_student(_save(d, cfg, tmp_path / 'epoch_1.pth'), str(tmp_path / 'out'))
    assert exported.network == 'student' and exported.mmkd_types == []
    out = Config.fromfile(exported.config)
    assert out.model.type == 'RetinaNet' and 'custom_imports' not in out
    assert out.train_dataloader.dataset.type == 'CocoDataset'  # ToyShapesDataset's stock ancestor
    assert out.default_hooks.checkpoint.type == 'CheckpointHook' and out.custom_hooks == []
    assert out.optim_wrapper.type == 'AmpOptimWrapper'  # mmkd's CPU wrapper's stock ancestor
    weights = torch.load(exported.checkpoint)['state_dict']
    assert weights.keys() == d.student.state_dict().keys()


def test_segmentation_distiller_exports_a_stock_segmentor(tmp_path):
    teacher = dict(
        tiny_segmentor(16), data_preprocessor=dict(tiny_segmentor(16)['data_preprocessor'], bgr_to_rgb=False))
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(32, 32), keep_ratio=False),
        dict(type='PackSegInputs')
    ]
    cfg = Config(
        dict(
            default_scope='mmseg',
            custom_imports=dict(imports=['mmkd'], allow_failed_imports=False),
            model=dict(type='PixelKLTestDistiller', student=tiny_segmentor(8), teacher_cfg=dict(model=teacher)),
            test_dataloader=dict(
                batch_size=1,
                dataset=dict(type='BaseSegDataset', pipeline=pipeline, metainfo=dict(classes=SEG_CLASSES))),
            visualizer=dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])))
    torch.manual_seed(0)
    d = build_in_scope(cfg.model, SEG_MODELS)
    d.eval()
    ckpt = _save(d, cfg, tmp_path / 'iter_10.pth', dataset_meta=dict(classes=SEG_CLASSES))
    exported = export_student(ckpt, str(tmp_path / 'out'))
    assert exported.mmkd_types == []
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    torch.save(image, tmp_path / 'image.pth')
    with torch.no_grad():
        expected = d.student._forward(d.student.data_preprocessor(dict(inputs=list(image)), False)['inputs'])
    # stock mmseg alone: the student builds with mmseg's registry, loads strictly and predicts as it did
    script = textwrap.dedent(f'''
        import sys, torch
        from mmengine.config import Config
        from mmseg.apis import MMSegInferencer
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
        register_all_modules()
        cfg = Config.fromfile({exported.config!r})
        model = MODELS.build(cfg.model).eval()
        model.load_state_dict(torch.load({exported.checkpoint!r})['state_dict'], strict=True)
        image = torch.load({str(tmp_path / 'image.pth')!r})
        with torch.no_grad():
            logits = model._forward(model.data_preprocessor(dict(inputs=list(image)), False)['inputs'])
        torch.save(logits, {str(tmp_path / 'logits.pth')!r})
        inferencer = MMSegInferencer(model={exported.config!r}, weights={exported.checkpoint!r}, device='cpu')
        result = inferencer(image[0].permute(1, 2, 0).numpy(), return_datasamples=True)
        assert 'mmkd' not in sys.modules, 'mmkd was imported'
        print('PREDICTION', tuple(result.pred_sem_seg.data.shape))
    ''')
    proc = subprocess.run([PYTHON, '-c', script],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          env=dict(tool_env(), PYTHONPATH=''),
                          timeout=300)
    assert proc.returncode == 0 and 'PREDICTION (1, 32, 32)' in proc.stdout, proc.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / 'logits.pth'), expected, rtol=0, atol=0)


def test_mmkd_scope_model_exports_its_declared_network(tmp_path, capsys, monkeypatch):
    cfg = Config(
        dict(
            default_scope='mmkd',
            custom_imports=dict(imports=['mmkd'], allow_failed_imports=False),
            model=MMKD_MODEL,
            train_dataloader=dict(batch_size=2, dataset=dict(type='TinyVectorsTestDataset'))))
    model = MODELS.build(MMKD_MODEL)
    ckpt = _save(model, cfg, tmp_path / 'epoch_3.pth')
    monkeypatch.setattr(sys, 'argv', ['export_student.py', ckpt, str(tmp_path / 'out')])
    runpy.run_path(osp.join(TOOLS, 'export_student.py'), run_name='__main__')
    printed = capsys.readouterr().out
    assert 'exported network: embedder' in printed
    assert 'needs mmkd: the config names TinyEmbedderTestNet, TinyVectorsTestDataset' in printed
    out = Config.fromfile(str(tmp_path / 'out' / 'student_config.py'))
    assert out.model == MMKD_MODEL['embedder'] and out.custom_imports.imports == ['mmkd']
    assert out.train_dataloader.dataset.type == 'TinyVectorsTestDataset'  # no stock equivalent: kept
    weights = torch.load(tmp_path / 'out' / 'student.pth')['state_dict']
    embedder = MODELS.build(out.model)
    embedder.load_state_dict(weights, strict=True)  # the auxiliary network's weights are not exported
    for k, v in model.embedder.state_dict().items():
        assert torch.equal(weights[k], v)


def test_plain_checkpoint_is_not_exported(tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, 'toy', 'retinanet_tiny-w16_toy.py'))
    model = build_in_scope(model_config(cfg), DET_MODELS)
    with pytest.raises(TypeError, match='RetinaNet is not an mmkd model.*needs no export'):
        export_student(_save(model, cfg, tmp_path / 'plain.pth'), str(tmp_path / 'out'))


def test_a_network_of_a_pair_exports_with_its_own_optimizer_and_schedule(tmp_path):
    from mmkd.models import MultiNetworkModel
    from ..test_models import _tiny_nets  # noqa: F401  (registers TinyNet)
    net_b_optim = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
    cfg = Config(
        dict(
            default_scope='mmkd',
            model=dict(
                type='MultiNetworkModel',
                networks=dict(net_a=dict(type='TinyNet'), net_b=dict(type='TinyNet', in_dim=2)),
                predict_network='net_b'),
            optim_wrapper=dict(
                constructor='MultiNetworkOptimWrapperConstructor',
                net_a=dict(type='CPUAmpOptimWrapper', optimizer=dict(type='SGD', lr=0.01)),
                net_b=net_b_optim),
            param_scheduler=dict(net_a=[dict(type='ConstantLR', factor=0.5)], net_b=[dict(type='LinearLR')])))
    model = MultiNetworkModel(**{k: v for k, v in cfg.model.items() if k != 'type'})
    exported = export_student(_save(model, cfg, tmp_path / 'pair.pth'), str(tmp_path / 'out'))
    out = Config.fromfile(exported.config)
    assert exported.network == 'net_b' and out.model.to_dict() == dict(type='TinyNet', in_dim=2)
    assert out.optim_wrapper.to_dict() == net_b_optim
    assert [s.to_dict() for s in out.param_scheduler] == [dict(type='LinearLR')]
