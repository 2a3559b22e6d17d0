"""EmbeddingDistiller: which inputs each network sees, which rows each loss uses, and what gets gradients."""
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmkd.models.embedding import EmbeddingDistiller, ImageEmbedder
from mmkd.registry import MODELS

CAFFE = dict(type='ImgDataPreprocessor', mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)


def embedder_cfg(width=8, depth=18, **kwargs) -> dict:
    cfg = dict(
        type='ImageEmbedder',
        backbone=dict(type='ResNet', depth=depth, base_channels=width, out_indices=(3, ), norm_eval=False),
        embed_dim=16,
        loss=dict(type='BatchHardTripletLoss', margin=0.1))
    cfg.update(kwargs)
    return cfg


def build(distill_loss=dict(type='AbsoluteEmbeddingLoss', loss_weight=1.0), teacher=None, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='EmbeddingDistiller',
            student=embedder_cfg(),
            teacher_cfg=teacher or embedder_cfg(width=16),
            teacher_ckpt=None,
            distill_loss=distill_loss,
            **kwargs))


def samples(labels, teacher_imgs=None):
    out = []
    for i, label in enumerate(labels):
        sample = BaseDataElement()
        sample.gt_label = torch.tensor(label)
        if teacher_imgs is not None and teacher_imgs[i] is not None:
            sample.teacher_img = teacher_imgs[i]
        out.append(sample)
    return out


def batch(labels, size=32, teacher_imgs=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    raw = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in labels]
    return dict(inputs=raw, data_samples=samples(labels, teacher_imgs))


def test_absolute_teacher_on_the_same_images():
    model = build()
    data = model.data_preprocessor(batch([0, 0, 1, 1]), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {'loss_metric', 'loss_kd'}
    with torch.no_grad():
        s = model.student.embed(data['inputs']).double()
        t = model.teacher.embed(data['inputs']).double()
    torch.testing.assert_close(losses['loss_kd'].double(), (s - t).norm(dim=1).mean(), rtol=1e-5, atol=1e-6)


def test_teacher_gets_its_own_normalisation_and_no_gradient():
    model = build(teacher=embedder_cfg(width=16, data_preprocessor=CAFFE))
    data = batch([0, 0, 1, 1])
    raw = torch.stack(data['inputs']).float()
    out = model.data_preprocessor(data, training=True)
    losses = model.loss(out['inputs'], out['data_samples'])
    caffe = raw - torch.tensor([103.53, 116.28, 123.675]).view(1, 3, 1, 1)
    with torch.no_grad():
        s = model.student.embed(out['inputs']).double()
        t = model.teacher.embed(caffe).double()
    torch.testing.assert_close(losses['loss_kd'].double(), (s - t).norm(dim=1).mean(), rtol=1e-5, atol=1e-6)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.student.parameters() if p.requires_grad)


def test_relative_teacher_uses_all_rows_metric_loss_only_labelled():
    model = build(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3, reduction='mean'))
    labels = [0, 0, 1, 1, -1, -1]
    out = model.data_preprocessor(batch(labels), training=True)
    losses = model.loss(out['inputs'], out['data_samples'])
    with torch.no_grad():
        s = model.student.embed(out['inputs']).double()
        t = model.teacher.embed(out['inputs']).double()
    d_s, d_t = torch.cdist(s, s), torch.cdist(t, t)
    off = ~torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(losses['loss_kd'].double(), 0.3 * (d_s - d_t).abs()[off].mean(), rtol=1e-5, atol=1e-6)
    # the metric loss of the labelled rows alone: the unlabelled rows are not in it
    labelled = model.student.metric_loss(s[:4].float(), torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(losses['loss_metric'], labelled, rtol=1e-5, atol=1e-6)


def test_kd_only_student_without_metric_loss():
    model = MODELS.build(
        dict(
            type='EmbeddingDistiller',
            student=embedder_cfg(loss=None),
            teacher_cfg=embedder_cfg(width=16),
            teacher_ckpt=None,
            distill_loss=dict(type='RelativeDistanceLoss')))
    out = model.data_preprocessor(batch([-1, -1, -1]), training=True)
    assert set(model.loss(out['inputs'], out['data_samples'])) == {'loss_kd'}


def test_cross_quality_teacher_embeds_its_own_views():
    model = build(teacher=embedder_cfg(width=16, data_preprocessor=CAFFE))
    g = torch.Generator().manual_seed(5)
    views = [torch.randint(0, 256, (3, 48, 48), generator=g, dtype=torch.uint8) for _ in range(4)]
    out = model.data_preprocessor(batch([0, 0, 1, 1], teacher_imgs=views), training=True)
    losses = model.loss(out['inputs'], out['data_samples'])
    caffe = torch.stack(views).float() - torch.tensor([103.53, 116.28, 123.675]).view(1, 3, 1, 1)
    with torch.no_grad():
        s = model.student.embed(out['inputs']).double()
        t = model.teacher.embed(caffe).double()
    torch.testing.assert_close(losses['loss_kd'].double(), (s - t).norm(dim=1).mean(), rtol=1e-5, atol=1e-6)
    partial = batch([0, 0, 1, 1], teacher_imgs=[views[0], None, None, None])
    out = model.data_preprocessor(partial, training=True)
    with pytest.raises(KeyError, match='teacher_img'):
        model.loss(out['inputs'], out['data_samples'])


def test_feature_losses_on_named_maps():
    hint = dict(student='backbone.layer2', teacher='backbone.layer2', loss=dict(type='AttentionTransferLoss'))
    model = build(feature_losses=[hint])
    out = model.data_preprocessor(batch([0, 0, 1, 1]), training=True)
    losses = model.loss(out['inputs'], out['data_samples'])
    assert set(losses) == {'loss_metric', 'loss_kd', 'loss_attention_transfer_backbone_layer2'}

    def layer2(backbone, x):  # mmdet ResNet's stem and first two stages, written out
        return backbone.layer2(backbone.layer1(backbone.maxpool(backbone.relu(backbone.norm1(backbone.conv1(x))))))

    with torch.no_grad():
        s, t = layer2(model.student.backbone, out['inputs']), layer2(model.teacher.backbone, out['inputs'])

    def attention(x):
        a = x.double().pow(2).sum(1).flatten(1)
        return a / a.norm(dim=1, keepdim=True)

    expected = (attention(s) - attention(t)).norm(dim=1).mean()
    torch.testing.assert_close(
        losses['loss_attention_transfer_backbone_layer2'].double(), expected, rtol=1e-5, atol=1e-6)


def test_configuration_errors():
    with pytest.raises(ValueError, match='distill_loss, feature_losses'):
        build(distill_loss=None)
    with pytest.raises(KeyError, match=r"feature_losses\[0\] lacks \['loss'\]"):
        build(feature_losses=[dict(student='backbone.layer1', teacher='backbone.layer1')])
    with pytest.raises(KeyError, match='no submodule'):
        build(feature_losses=[dict(student='backbone.layer9', teacher='backbone.layer1', loss=dict(type='HintLoss'))])


def test_deploys_the_student():
    model = build()
    assert isinstance(model.deployable_network, ImageEmbedder)
    prefix, cfg = EmbeddingDistiller.deployable(dict(type='EmbeddingDistiller', student=embedder_cfg()))
    assert prefix == 'student' and cfg['type'] == 'ImageEmbedder'
    assert not any(k.startswith('teacher') for k in model.state_dict())


def test_feature_loss_names_must_be_new():
    at = dict(type='AttentionTransferLoss')
    pair = dict(student='backbone.layer2', teacher='backbone.layer2', loss=at)
    with pytest.raises(ValueError, match="named 'loss_at', a name already taken"):
        build(feature_losses=[dict(pair, name='loss_at'), dict(pair, student='backbone.layer3', name='loss_at')])
    with pytest.raises(ValueError, match="named 'loss_kd'"):
        build(feature_losses=[dict(pair, name='loss_kd')])


def test_absolute_teacher_needs_equal_embedding_sizes_at_build():
    with pytest.raises(ValueError, match='student embeds in 16 dimensions and the teacher in 32'):
        build(teacher=embedder_cfg(width=16, embed_dim=32))
    build(teacher=embedder_cfg(width=16, embed_dim=32), distill_loss=dict(type='RelativeDistanceLoss'))


def test_feature_pair_on_a_tuple_output_is_named():
    model = build(feature_losses=[dict(student='backbone', teacher='backbone', loss=dict(type='HintLoss'))])
    out = model.data_preprocessor(batch([0, 0, 1, 1]), training=True)
    with pytest.raises(TypeError, match="student submodule 'backbone' outputs a tuple"):
        model.loss(out['inputs'], out['data_samples'])
