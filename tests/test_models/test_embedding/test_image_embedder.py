"""ImageEmbedder: pooling, embedding, normalisation, predict and the metric loss, against direct evaluations."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement

from mmkd.models.embedding import ImageEmbedder
from mmkd.models.utils import FeatureRecorder
from mmkd.registry import MODELS


def tiny_embedder(**kwargs) -> ImageEmbedder:
    cfg = dict(
        type='ImageEmbedder',
        backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(3, ), norm_eval=False),
        embed_dim=16)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(labels):
    out = []
    for label in labels:
        sample = BaseDataElement()
        sample.gt_label = torch.tensor(label)
        out.append(sample)
    return out


@pytest.mark.parametrize('pooling', ['avg', 'avg_max'])
@pytest.mark.parametrize('normalize', [False, True])
def test_embedding_is_linear_map_of_pooled_last_map(pooling, normalize):
    torch.manual_seed(0)
    model = tiny_embedder(pooling=pooling, normalize=normalize).eval()
    inputs = torch.randn(3, 3, 64, 64)
    last = model.backbone(inputs)[-1].double()
    pooled = last.mean(dim=(2, 3))
    if pooling == 'avg_max':
        pooled = pooled + last.amax(dim=(2, 3))
    expected = pooled @ model.embedding.weight.double().t() + model.embedding.bias.double()
    if normalize:
        expected = expected / expected.norm(dim=1, keepdim=True)
    got = model(inputs)
    assert got.shape == (3, 16)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    if normalize:
        torch.testing.assert_close(got.norm(dim=1), torch.ones(3))


def test_channels_probed_for_resnet_and_mobilenet():
    assert tiny_embedder().embedding.in_features == 64  # 8 * 8 (layer4 of a base-8 ResNet-18)
    r50 = tiny_embedder(backbone=dict(type='ResNet', depth=50, base_channels=8, out_indices=(3, )))
    assert r50.embedding.in_features == 256  # 8 * 8 * 4 (bottleneck expansion)
    mobile = tiny_embedder(backbone=dict(type='MobileNetV2', widen_factor=0.25, out_indices=(7, )))
    assert mobile.embedding.in_features == 1280


def test_predict_puts_embeddings_in_data_samples():
    model = tiny_embedder().eval()
    inputs = torch.randn(2, 3, 32, 32)
    data_samples = samples([0, 1])
    out = model.predict(inputs, data_samples)
    assert out[0] is data_samples[0]
    torch.testing.assert_close(torch.stack([s.pred_embedding for s in out]), model(inputs))
    assert not out[0].pred_embedding.requires_grad
    assert len(model.predict(inputs)) == 2


def test_loss_calls_metric_loss_with_labels():
    seen = {}

    class Recording(torch.nn.Module):

        def forward(self, embeddings, labels):
            seen['labels'] = labels
            seen['embeddings'] = embeddings
            return embeddings.sum()

    model = tiny_embedder(loss=Recording())
    losses = model.loss(torch.randn(4, 3, 32, 32), samples([3, 3, -1, 0]))
    assert seen['labels'].tolist() == [3, 3, -1, 0] and seen['labels'].dtype == torch.long
    torch.testing.assert_close(losses['loss_metric'], seen['embeddings'].sum())


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='pooling'):
        tiny_embedder(pooling='max')
    with pytest.raises(ValueError, match='embed_dim'):
        tiny_embedder(embed_dim=0)
    model = tiny_embedder()
    with pytest.raises(RuntimeError, match='no metric-learning loss'):
        model.loss(torch.randn(2, 3, 32, 32), samples([0, 0]))
    with pytest.raises(KeyError, match='gt_label'):
        model.loss(torch.randn(1, 3, 32, 32), [BaseDataElement()])


def test_intermediate_maps_by_name():
    model = tiny_embedder().eval()
    recorder = FeatureRecorder(model, ['backbone.layer1', 'backbone.layer3'])
    with recorder:
        model(torch.randn(2, 3, 64, 64))
    assert recorder['backbone.layer1'].shape == (2, 8, 16, 16)
    assert recorder['backbone.layer3'].shape == (2, 32, 4, 4)
    assert F.relu(recorder['backbone.layer1']).equal(recorder['backbone.layer1'])


def test_predicted_embeddings_do_not_hold_the_batch():
    """A predicted sample is saved (tools/test.py --out) and gathered across ranks by pickling: its embedding must
    be its own (D,) storage, not a view of the (B, D) batch."""
    import pickle
    model = tiny_embedder().eval()
    out = model.predict(torch.randn(64, 3, 32, 32))
    assert out[0].pred_embedding.untyped_storage().nbytes() == 16 * 4
    assert len(pickle.dumps(out[0].pred_embedding)) < len(pickle.dumps(torch.zeros(64, 16))) / 8


def test_hint_and_attention_terms_have_their_own_names():
    from mmkd.models.embedding.embedding_distiller import default_feature_loss_name
    assert default_feature_loss_name(dict(type='HintLoss'), 'backbone.layer1') == 'loss_hint_backbone_layer1'
    assert default_feature_loss_name(dict(type='AttentionTransferLoss'),
                                     'backbone.layer1') == 'loss_attention_transfer_backbone_layer1'
