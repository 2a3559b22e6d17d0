import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmkd.models.distillers import DetFeatureDistiller
from mmkd.utils import build_teacher, load_config, model_config
from mmkd.utils.build import build_in_scope
from ..conftest import CONFIGS

STUDENT_CFG = osp.join(CONFIGS, 'toy', 'retinanet_tiny-w16_toy.py')
TEACHER_CFG = osp.join(CONFIGS, 'toy', 'retinanet_tiny-w32_toy.py')


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    torch.manual_seed(1)
    model = build_in_scope(model_config(TEACHER_CFG), MODELS)
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path), model.state_dict()


def _distiller(teacher_ckpt, teacher_cfg=TEACHER_CFG):
    return DetFeatureDistiller(student=model_config(STUDENT_CFG), teacher_cfg=teacher_cfg, teacher_ckpt=teacher_ckpt)


@pytest.mark.parametrize('form', ['path', 'config', 'dict', 'model_dict'])
def test_teacher_from_every_config_form(form, teacher_ckpt):
    cfg = {
        'path': TEACHER_CFG,
        'config': Config.fromfile(TEACHER_CFG),
        'dict': Config.fromfile(TEACHER_CFG).to_dict(),
        'model_dict': Config.fromfile(TEACHER_CFG).model.to_dict(),
    }[form]
    model, _ = build_teacher(cfg, teacher_ckpt[0], MODELS)
    for k, v in model.state_dict().items():
        assert torch.equal(v, teacher_ckpt[1][k]), k


def test_scoped_config_path():
    cfg = load_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    assert cfg.model.backbone.depth == 18
    with pytest.raises(FileNotFoundError, match='no_such'):
        load_config('mmdet::retinanet/no_such.py')


def test_teacher_frozen_hidden_and_moving(teacher_ckpt):
    d = _distiller(teacher_ckpt[0])
    d.train()
    assert not d.teacher.training and d.student.training
    assert all(not p.requires_grad for p in d.teacher.parameters())
    assert not any(k.startswith('teacher') for k in d.state_dict())
    teacher_params = {id(p) for p in d.teacher.parameters()}
    assert not teacher_params & {id(p) for p in d.parameters()}
    optim = build_optim_wrapper(d, dict(optimizer=dict(type='SGD', lr=0.1)))
    assert not teacher_params & {id(p) for g in optim.optimizer.param_groups for p in g['params']}
    d.to(torch.float64)
    assert next(d.teacher.parameters()).dtype == torch.float64
    assert next(d.student.parameters()).dtype == torch.float64


def test_teacher_runs_without_grad_and_keeps_weights(teacher_ckpt, toy_root):
    d = _distiller(teacher_ckpt[0])
    d.train()
    inputs = torch.rand(2, 3, 64, 64) * 255
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for _ in range(2):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(64, 64),
                pad_shape=(64, 64),
                ori_shape=(64, 64),
                scale_factor=(1.0, 1.0),
                batch_input_shape=(64, 64)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 40., 40.]]), labels=torch.tensor([1]))
        samples.append(s)
    data = d.data_preprocessor(dict(inputs=list(inputs), data_samples=samples), True)
    losses = d.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k and torch.is_tensor(v))
    total.backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert any(p.grad is not None for p in d.student.parameters())
    for k, v in d.teacher.state_dict().items():
        assert torch.equal(v, teacher_ckpt[1][k]), k  # BN statistics unchanged: eval mode


def test_missing_teacher_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _distiller(str(tmp_path / 'missing.pth'))


def test_folder_given_as_teacher_checkpoint(tmp_path):
    with pytest.raises(IsADirectoryError, match='is a folder: give the checkpoint file'):
        _distiller(str(tmp_path))


def test_unreadable_teacher_checkpoint(tmp_path):
    bad = tmp_path / 'corrupt.pth'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(RuntimeError, match='corrupt.pth.*could not be read'):
        _distiller(str(bad))


def test_teacher_checkpoint_not_fitting_names_keys(tmp_path):
    student = build_in_scope(model_config(STUDENT_CFG), MODELS)  # a 16-wide model offered as the 32-wide teacher
    path = tmp_path / 'wrong.pth'
    torch.save(dict(state_dict=student.state_dict()), path)
    with pytest.raises(RuntimeError) as info:
        _distiller(str(path))
    message = str(info.value)
    assert 'wrong.pth' in message and 'shape mismatches' in message and 'backbone.conv1.weight' in message
    partial = {
        k: v
        for k, v in build_in_scope(model_config(TEACHER_CFG), MODELS).state_dict().items() if 'neck' not in k
    }
    torch.save(dict(state_dict=partial), path)
    with pytest.raises(RuntimeError, match='missing keys, first: neck'):
        _distiller(str(path))


def _runner_checkpoint(model: torch.nn.Module, model_cfg: dict, path, **cfg) -> str:
    """The weights and, as the runner stores it, the config text in meta."""
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=Config(dict(cfg, model=model_cfg)).pretty_text)), path)
    return str(path)


def test_distiller_checkpoint_reused_as_teacher(tmp_path, teacher_ckpt):
    # a distilled 16-wide student's checkpoint used as the teacher of another run: its student weights load
    d = _distiller(teacher_ckpt[0])
    path = _runner_checkpoint(d, dict(type='DetFeatureDistiller', student=model_config(STUDENT_CFG)),
                              tmp_path / 'distilled.pth')
    model, _ = build_teacher(STUDENT_CFG, path, MODELS)
    for k, v in model.state_dict().items():
        assert torch.equal(v, d.student.state_dict()[k])


def test_teacher_from_the_network_an_mmkd_model_declares(tmp_path):
    from mmkd.registry import MODELS as MMKD_MODELS
    from ..test_models.test_utils.test_deployable import MMKD_MODEL
    model = MMKD_MODELS.build(MMKD_MODEL)
    path = _runner_checkpoint(model, MMKD_MODEL, tmp_path / 'pair.pth', default_scope='mmkd')
    teacher, _ = build_teacher(MMKD_MODEL['embedder'], path, MMKD_MODELS)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, model.embedder.state_dict()[k])
    # the same weights under a prefix that the saved model does not declare are not taken
    renamed = {k.replace('embedder.', 'student.'): v for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=renamed, meta=torch.load(path)['meta']), path)
    with pytest.raises(RuntimeError, match='pair.pth.*missing keys'):
        build_teacher(MMKD_MODEL['embedder'], path, MMKD_MODELS)


def _s2sd_teacher(tmp_path):
    """A tiny S2SDEmbedder's config file and model, trained one step so that the BN statistics are its own."""
    from mmkd.registry import MODELS as MMKD_MODELS
    from ..test_models.test_embedding.test_s2sd import LABELS, inputs, s2sd_cfg, samples
    config = tmp_path / 's2sd.py'
    Config(dict(default_scope='mmkd', model=s2sd_cfg())).dump(str(config))
    torch.manual_seed(0)
    model = MMKD_MODELS.build(Config.fromfile(str(config)).model)
    model.feature_distillation = False
    sum(model.loss(inputs(), samples(LABELS)).values()).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return str(config), model.eval()


def _embedding_distiller(teacher_cfg, teacher_ckpt):
    from mmkd.models.embedding import EmbeddingDistiller
    from ..test_models.test_embedding.test_s2sd import embedder_cfg
    return EmbeddingDistiller(
        student=embedder_cfg(embed_dim=4),
        teacher_cfg=teacher_cfg,
        teacher_ckpt=teacher_ckpt,
        distill_loss=dict(type='RelativeDistanceLoss'))


@pytest.mark.parametrize('saved', ['training', 'training_no_meta', 'exported'])
def test_s2sd_config_as_embedding_teacher_gives_its_base_embedder(tmp_path, saved):
    from mmkd.models.embedding import ImageEmbedder
    from mmkd.utils.export import export_student
    config, s2sd = _s2sd_teacher(tmp_path)
    ckpt = tmp_path / 'iter_1.pth'
    meta = dict(cfg=Config.fromfile(config).pretty_text) if saved != 'training_no_meta' else dict()
    torch.save(dict(state_dict=s2sd.state_dict(), meta=meta), ckpt)
    if saved == 'exported':
        ckpt = export_student(str(ckpt), str(tmp_path / 'export')).checkpoint
    d = _embedding_distiller(config, str(ckpt))
    assert type(d.teacher) is ImageEmbedder and not hasattr(d.teacher, 'target_branches')
    assert d.teacher_model_cfg.type == 'ImageEmbedder'
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = s2sd(images, mode='tensor')
        torch.testing.assert_close(d.teacher.embed(images), expected, rtol=0, atol=0)


def test_distiller_config_as_teacher_gives_its_student(tmp_path, teacher_ckpt):
    # one mechanism for every mmkd model: a detection distiller's config as teacher_cfg is its student
    d = _distiller(teacher_ckpt[0])
    path = tmp_path / 'distilled.pth'
    torch.save(dict(state_dict=d.state_dict(), meta=dict()), path)  # no stored config: the teacher_cfg decides
    teacher_cfg = dict(type='DetFeatureDistiller', student=model_config(STUDENT_CFG), teacher_cfg=TEACHER_CFG)
    model, model_cfg = build_teacher(teacher_cfg, str(path), MODELS)
    assert type(model).__name__ == 'RetinaNet' and model_cfg.backbone == model_config(STUDENT_CFG).backbone
    for k, v in d.student.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_unfitting_teacher_checkpoint_names_the_closest_reading(tmp_path):
    config, s2sd = _s2sd_teacher(tmp_path)
    plain = {k[len('embedder.'):]: v for k, v in s2sd.state_dict().items() if k.startswith('embedder.')}
    # the base embedder's own weights one key short, with the S2SD config in meta (which declares 'embedder.'):
    # read as saved they are one key off, under 'embedder.' all are missing
    plain.pop('embedding.bias')
    path = tmp_path / 'short.pth'
    torch.save(dict(state_dict=plain, meta=dict(cfg=Config.fromfile(config).pretty_text)), path)
    with pytest.raises(RuntimeError) as info:
        _embedding_distiller(Config.fromfile(config).model.embedder, str(path))
    message = str(info.value)
    assert 'short.pth' in message and '1 missing keys, first: embedding.bias [keys as saved' in message
    assert 'unexpected' not in message
    # a training checkpoint one key short: the 'embedder.' reading is the closest
    state = s2sd.state_dict()
    state.pop('embedder.backbone.bn1.num_batches_tracked')
    torch.save(dict(state_dict=state, meta=dict()), path)
    with pytest.raises(
            RuntimeError,
            match=r"1 missing keys, first: backbone.bn1.num_batches_tracked \[keys under "
            r"'embedder.', the prefix stripped \(the closest of the readings tried: as saved, under "
            r"'embedder.'\)\]"):
        _embedding_distiller(config, str(path))
