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


def _s2sd_checkpoint(path, embed_dim: int = 8, base_channels: int = 4, **state) -> str:
    """A training checkpoint of a tiny S2SDEmbedder (base embedder ``embedder.*``, target branches), its config
    in meta; ``state`` entries replace (a tensor) or drop (``None``) weights."""
    from ..test_models.test_embedding.test_s2sd import BACKBONE, embedder_cfg, s2sd_cfg
    model_cfg = s2sd_cfg(embedder_cfg(backbone=dict(BACKBONE, base_channels=base_channels), embed_dim=embed_dim))
    torch.manual_seed(0)
    weights = MODELS.build(model_cfg).state_dict()
    for key, value in state.items():
        weights.pop(key) if value is None else weights.__setitem__(key, value)
    cfg = Config(dict(default_scope='mmkd', model=model_cfg))
    torch.save(dict(state_dict=weights, meta=dict(cfg=cfg.pretty_text)), path)
    return str(path)


def test_weights_that_do_not_fit_the_given_config_are_refused(tmp_path):
    # a 4-wide, 8-d S2SD checkpoint exported with the config of a 16-wide, 32-d one (the stored config fits)
    ckpt = _s2sd_checkpoint(tmp_path / 'epoch_2.pth')
    exported = export_student(ckpt, str(tmp_path / 'good'))
    assert exported.network == 'embedder'
    wrong = str(tmp_path / 's2sd_w16-d32.py')
    cfg = Config.fromstring(torch.load(ckpt)['meta']['cfg'], '.py')
    cfg.model.embedder.backbone.base_channels = 16
    cfg.model.embedder.embed_dim = 32
    cfg.dump(wrong)
    with pytest.raises(RuntimeError) as info:
        export_student(ckpt, str(tmp_path / 'out'), config=wrong)
    message = str(info.value)
    assert ckpt in message and wrong in message
    assert 'backbone.conv1.weight: checkpoint (4, 3, 7, 7) vs model (16, 3, 7, 7)' in message
    narrow = MODELS.build(Config.fromstring(torch.load(ckpt)['meta']['cfg'], '.py').model.embedder).state_dict()
    wide = MODELS.build(cfg.model.embedder).state_dict()
    resized = sum(narrow[k].shape != v.shape for k, v in wide.items())
    assert wide.keys() == narrow.keys() and f'{resized} shape mismatches, first: backbone.conv1.weight' in message
    assert not osp.exists(tmp_path / 'out')  # nothing written


@pytest.mark.parametrize(
    'tamper, expected',
    [
        (dict(embed_dim=9), r"embedding.weight: checkpoint \(8, 32\) vs model \(9, 32\)"),
        (dict(state={'embedder.embedding.bias': None}), '1 missing keys, first: embedding.bias$'),
        (dict(state={'embedder.extra': torch.zeros(1)}), '1 unexpected keys, first: extra$'),
        # BN buffers are part of the network's state: a checkpoint without them does not fit either
        (dict(state={'embedder.backbone.bn1.num_batches_tracked': None}),
         '1 missing keys, first: backbone.bn1.num_batches_tracked$'),
    ])
def test_tampered_stored_config_or_weights_are_refused(tmp_path, tamper, expected):
    ckpt = _s2sd_checkpoint(tmp_path / 'epoch_2.pth', **tamper.get('state', {}))
    if 'embed_dim' in tamper:  # the stored config says 9-d, the weights are 8-d
        saved = torch.load(ckpt)
        cfg = Config.fromstring(saved['meta']['cfg'], '.py')
        cfg.model.embedder.embed_dim = tamper['embed_dim']
        saved['meta']['cfg'] = cfg.pretty_text
        torch.save(saved, ckpt)
    with pytest.raises(RuntimeError, match=expected) as info:
        export_student(ckpt, str(tmp_path / 'out'))
    assert f"checkpoint '{ckpt}' with the config stored in its meta['cfg']" in str(info.value)


@pytest.mark.parametrize('tamper, expected', [
    (lambda model: model.pop('embedder'),
     r"S2SDEmbedder model config does not give its deployable network \(KeyError: .*'embedder'.*"
     r"the model keys are \['target_dims', 'type'\]"),
    (lambda model: model.__setitem__('embedder', 'ImageEmbedder'),
     r"S2SDEmbedder model config does not give its deployable network \(\w+Error: .*str"),
    (lambda model: model.embedder.__setitem__('type', 'NoSuchEmbedder'),
     r"deployable network 'embedder' \(NoSuchEmbedder\) cannot be built: KeyError"),
])
def test_stored_model_config_without_a_deployable_network_is_a_clear_error(tmp_path, monkeypatch, tamper, expected):
    ckpt = _s2sd_checkpoint(tmp_path / 'epoch_2.pth')
    saved = torch.load(ckpt)
    cfg = Config.fromstring(saved['meta']['cfg'], '.py')
    tamper(cfg.model)
    saved['meta']['cfg'] = cfg.pretty_text
    torch.save(saved, ckpt)
    # through the tool, as a user runs it: one error that names the checkpoint
    monkeypatch.setattr(sys, 'argv', ['export_student.py', ckpt, str(tmp_path / 'out')])
    with pytest.raises((ValueError, RuntimeError), match=expected) as info:
        runpy.run_path(osp.join(TOOLS, 'export_student.py'), run_name='__main__')
    assert str(info.value).startswith(f"checkpoint '{ckpt}' with the config stored in its meta['cfg']")
