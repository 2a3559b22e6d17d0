"""S2SDEmbedder: the similarity KL and the loss composition against float64 evaluations of the paper's formulas (Eq. 3
and the F term), the gradients the KL terms give (detached targets, detached pooled features), export of the base
embedder alone, and the checks of the config."""
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement

from mmkd.models.embedding import ImageEmbedder, S2SDEmbedder, cosine_similarities, similarity_kl
from mmkd.registry import MODELS
from mmkd.utils.export import export_student

BACKBONE = dict(type='ResNet', depth=18, base_channels=4, out_indices=(3, ), norm_eval=False)
CHANNELS = 32  # 4 * 8: layer4 of a base-4 ResNet-18
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]


def embedder_cfg(**kwargs) -> dict:
    cfg = dict(
        type='ImageEmbedder',
        backbone=BACKBONE,
        embed_dim=8,
        pooling='avg',
        normalize=True,
        loss=dict(type='MultiSimilarityLoss'))
    cfg.update(kwargs)
    return cfg


def s2sd_cfg(embedder=None, **kwargs) -> dict:
    cfg = dict(type='S2SDEmbedder', embedder=embedder or embedder_cfg(), target_dims=(16, 24))
    cfg.update(kwargs)
    return cfg


def build(cfg: dict):
    with DefaultScope.overwrite_default_scope('mmkd'):
        return MODELS.build(cfg)


def samples(labels):
    out = []
    for label in labels:
        sample = BaseDataElement()
        sample.gt_label = torch.tensor(label)
        out.append(sample)
    return out


def inputs(batch: int = len(LABELS), seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --- float64 references, written from the formulas (no call to the code under test) ---


def ref_cosines(embeddings) -> np.ndarray:
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.sqrt((e * e).sum(axis=1, keepdims=True))
    return e @ e.T


def ref_log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row - row.max()
    return shifted - math.log(sum(math.exp(v) for v in shifted))


def ref_kl(source_sim: np.ndarray, target_sim: np.ndarray, temperature: float) -> float:
    """sum_i KL(softmax(S_target[i] / T) || softmax(S_source[i] / T)) * T^2 / B, one row at a time."""
    batch = len(source_sim)
    total = 0.0
    for i in range(batch):
        log_p = ref_log_softmax(np.asarray(target_sim[i], np.float64) / temperature)
        log_q = ref_log_softmax(np.asarray(source_sim[i], np.float64) / temperature)
        total += sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
    return total * temperature**2 / batch


def ref_forward(model: S2SDEmbedder, images: torch.Tensor):
    """(base, target-branch input, [targets]) in float64 from the backbone's last map and the layers' weights."""
    with torch.no_grad():
        last = model.embedder.backbone(images)[-1].double().numpy()
    avg, mx = last.mean(axis=(2, 3)), last.max(axis=(2, 3))

    def pool(kind):
        return avg + mx if kind == 'avg_max' else avg

    def linear(x, layer):
        return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()

    def unit(x):
        return x / np.sqrt((x * x).sum(axis=1, keepdims=True))

    base = unit(linear(pool(model.embedder.pooling), model.embedder.embedding))
    pooled = pool(model.target_pooling)
    targets = [unit(linear(np.maximum(linear(pooled, branch[0]), 0), branch[2])) for branch in model.target_branches]
    return base, pooled, targets


# --- similarity_kl ---


@pytest.mark.parametrize('temperature', [1.0, 0.5, 2.5])
@pytest.mark.parametrize('kind', ['cosine', 'any'])
def test_similarity_kl_matches_float64_formula(temperature, kind):
    """On cosine similarities, and on any (B, B) scores (not symmetric: a softmax over columns would differ)."""
    generator = torch.Generator().manual_seed(1)
    if kind == 'cosine':
        source = cosine_similarities(torch.randn(7, 5, generator=generator))
        target = cosine_similarities(torch.randn(7, 11, generator=generator))
    else:
        source, target = torch.randn(2, 7, 7, generator=generator) * 3
    expected = ref_kl(source.numpy(), target.numpy(), temperature)
    got = similarity_kl(source, target, temperature)
    assert got.dim() == 0 and expected > 1e-3
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # the T^2 / B scaling: the same rows at T = 1 give a different value unless T = 1
    if temperature != 1.0:
        assert abs(similarity_kl(source, target, 1.0).item() - got.item()) > 1e-3


def test_similarity_kl_direction_and_zero():
    """KL(p_target || q_source): not symmetric, 0 for equal similarities."""
    generator = torch.Generator().manual_seed(2)
    a = cosine_similarities(torch.randn(5, 3, generator=generator))
    b = cosine_similarities(torch.randn(5, 9, generator=generator))
    assert similarity_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert similarity_kl(a, b).item() == pytest.approx(ref_kl(a.numpy(), b.numpy(), 1.0), rel=1e-5)
    assert similarity_kl(b, a).item() == pytest.approx(ref_kl(b.numpy(), a.numpy(), 1.0), rel=1e-5)
    assert abs(similarity_kl(a, b).item() - similarity_kl(b, a).item()) > 1e-3


def test_cosine_similarities_keep_the_diagonal():
    e = torch.randn(4, 6, generator=torch.Generator().manual_seed(3)) * 5
    np.testing.assert_allclose(cosine_similarities(e).numpy(), ref_cosines(e.numpy()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(cosine_similarities(e).numpy()), np.ones(4), atol=1e-6)


def test_similarity_kl_refuses_non_square():
    with pytest.raises(ValueError, match=r'similarity_kl: source \(3, 4\) and target \(3, 4\) must be square'):
        similarity_kl(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r'source \(3, 3\) and target \(4, 4\)'):
        similarity_kl(torch.zeros(3, 3), torch.zeros(4, 4))


# --- the whole objective ---


@pytest.mark.parametrize('target_dims', [(16, ), (16, 24, 12)], ids=['DSD', 'MSD'])
@pytest.mark.parametrize(
    'poolings', [('avg', 'avg'), ('avg', 'avg_max'), ('avg_max', 'avg')], ids=['avg', 'A', 'max-base'])
@pytest.mark.parametrize('temperature', [1.0, 2.0])
def test_loss_composition_matches_float64_formulas(target_dims, poolings, temperature):
    """(L_base + mean L_target) / 2 + gamma * mean_i KL(S_target_i, S_base); the base embedding keeps the
    embedder's pooling, the branches take ``target_pooling``."""
    torch.manual_seed(0)
    base_pooling, target_pooling = poolings
    model = build(
        s2sd_cfg(
            embedder_cfg(pooling=base_pooling),
            target_dims=target_dims,
            target_pooling=target_pooling,
            distill_weight=3.0,
            temperature=temperature))
    images, labels = inputs(), torch.tensor(LABELS)
    base_ref, pooled_ref, targets_ref = ref_forward(model, images)
    base, pooled, targets = model.forward_train(images)
    np.testing.assert_allclose(base.detach().double().numpy(), base_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled.detach().double().numpy(), pooled_ref, rtol=1e-4, atol=1e-5)
    assert [t.shape[1] for t in targets] == list(target_dims)
    for got, ref in zip(targets, targets_ref):
        np.testing.assert_allclose(got.detach().double().numpy(), ref, rtol=1e-4, atol=1e-5)

    # the DML criteria are the model's own modules on its embeddings; the KL terms are recomputed here
    l_base = model.embedder.loss_module(base, labels).item()
    l_targets = [criterion(t, labels).item() for criterion, t in zip(model.target_losses, targets)]
    kls = [ref_kl(ref_cosines(base_ref), ref_cosines(t), temperature) for t in targets_ref]
    expected = dict(loss_base=l_base / 2, loss_target=np.mean(l_targets) / 2, loss_distill=3.0 * np.mean(kls))
    assert l_base > 0 and min(l_targets) > 0 and min(kls) > 1e-4

    losses = model.loss(images, samples(LABELS))
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert losses[key].dtype == torch.float32
        assert losses[key].item() == pytest.approx(value, rel=1e-4, abs=1e-6), key
    total = sum(losses.values()).item()
    assert total == pytest.approx((l_base + np.mean(l_targets)) / 2 + 3.0 * np.mean(kls), rel=1e-4)


@pytest.mark.parametrize('target_pooling', ['avg', 'avg_max'])
def test_feature_distillation_term_matches_float64_formula(target_pooling):
    """F: w_feat * KL(S_feat, S_base) of the L2-normalised pooled features (the branches' input), 0 before the
    switch (a zero that keeps the graph)."""
    torch.manual_seed(0)
    model = build(s2sd_cfg(target_pooling=target_pooling, feat_distill_weight=7.0, temperature=1.5))
    images = inputs()
    base_ref, pooled_ref, targets_ref = ref_forward(model, images)

    model.feature_distillation = True
    on = model.loss(images, samples(LABELS))
    expected = 7.0 * ref_kl(ref_cosines(base_ref), ref_cosines(pooled_ref), 1.5)
    assert expected > 1e-3
    assert on['loss_feat_distill'].item() == pytest.approx(expected, rel=1e-4)
    expected_distill = 50.0 * np.mean([ref_kl(ref_cosines(base_ref), ref_cosines(t), 1.5) for t in targets_ref])
    assert on['loss_distill'].item() == pytest.approx(expected_distill, rel=1e-4)

    model.feature_distillation = False
    off = model.loss(images, samples(LABELS))
    assert off['loss_feat_distill'].item() == 0.0 and off['loss_feat_distill'].requires_grad
    for key in ('loss_base', 'loss_target', 'loss_distill'):
        assert off[key].item() == pytest.approx(on[key].item(), rel=1e-6)

    # without the F variant there is no such term, whatever the switch says
    plain = build(s2sd_cfg(target_pooling=target_pooling))
    plain.load_state_dict(model.state_dict())
    plain.feature_distillation = True
    assert 'loss_feat_distill' not in plain.loss(images, samples(LABELS))


def test_semi_supervised_batch():
    """Unlabelled rows (-1) are left out of the DML criteria but take part in the KL terms."""
    torch.manual_seed(0)
    model = build(s2sd_cfg(target_dims=(16, ), feat_distill_weight=2.0))
    model.feature_distillation = True
    images = inputs()
    labels = [0, 0, 1, 1, -1, -1, 2, -1]
    base_ref, pooled_ref, targets_ref = ref_forward(model, images)
    losses = model.loss(images, samples(labels))
    base, _, targets = model.forward_train(images)
    keep = torch.tensor(labels) != -1
    kept = torch.tensor(labels)[keep]
    assert losses['loss_base'].item() == pytest.approx(
        model.embedder.loss_module(base[keep], kept).item() / 2, rel=1e-5)
    assert losses['loss_target'].item() == pytest.approx(
        model.target_losses[0](targets[0][keep], kept).item() / 2, rel=1e-5)
    # all 8 rows: B = 8 in T^2 / B, and the unlabelled rows' similarities
    assert losses['loss_distill'].item() == pytest.approx(
        50.0 * ref_kl(ref_cosines(base_ref), ref_cosines(targets_ref[0]), 1.0), rel=1e-4)
    assert losses['loss_feat_distill'].item() == pytest.approx(
        2.0 * ref_kl(ref_cosines(base_ref), ref_cosines(pooled_ref), 1.0), rel=1e-4)
    total = sum(losses.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    # an unlabelled batch: the criteria give zeros, the KL still trains the base embedding
    unlabelled = model.loss(images, samples([-1] * len(labels)))
    assert unlabelled['loss_base'].item() == 0.0 and unlabelled['loss_target'].item() == 0.0
    assert unlabelled['loss_distill'].item() == pytest.approx(losses['loss_distill'].item(), rel=1e-5)


# --- gradients ---


def _grads(loss, tensors):
    return [
        torch.zeros_like(t) if g is None else g
        for t, g in zip(tensors, torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True))
    ]


@pytest.mark.parametrize('detach_targets', [True, False])
def test_distillation_gradient_reaches_targets_only_when_not_detached(detach_targets):
    torch.manual_seed(0)
    model = build(s2sd_cfg(detach_targets=detach_targets))
    base, pooled, targets = model.forward_train(inputs())
    losses = model.s2sd_losses(base, pooled, targets, torch.tensor(LABELS), False)
    distill = losses['loss_distill']
    assert distill.item() > 1e-3

    branch_params = list(model.target_branches.parameters())
    branch_grad = sum(g.abs().sum().item() for g in _grads(distill, branch_params))
    target_grad = sum(g.abs().sum().item() for g in _grads(distill, targets))
    base_grad = _grads(distill, [base])[0].abs().sum().item()
    backbone_grad = sum(g.abs().sum().item() for g in _grads(distill, list(model.embedder.backbone.parameters())))
    head_grad = sum(g.abs().sum().item() for g in _grads(distill, list(model.embedder.embedding.parameters())))
    assert base_grad > 1e-4 and backbone_grad > 1e-4 and head_grad > 1e-4
    if detach_targets:
        assert branch_grad == 0.0 and target_grad == 0.0
    else:
        assert branch_grad > 1e-4 and target_grad > 1e-4

    # the branches learn from their own criteria in both settings
    assert sum(g.abs().sum().item() for g in _grads(losses['loss_target'], branch_params)) > 1e-4


def test_distillation_gradient_equals_manual_detached_kl():
    """The base embedding's gradient of the KL is that of gamma * mean KL(S_target.detach(), S_base)."""
    torch.manual_seed(0)
    model = build(s2sd_cfg(distill_weight=4.0, temperature=2.0))
    base, pooled, targets = model.forward_train(inputs())
    got = _grads(model.s2sd_losses(base, pooled, targets, torch.tensor(LABELS), False)['loss_distill'], [base])[0]

    base64 = base.detach().double().requires_grad_()
    source = F.normalize(base64, dim=1) @ F.normalize(base64, dim=1).t()
    manual = 0
    for t in targets:
        t64 = F.normalize(t.detach().double(), dim=1)
        log_p = F.log_softmax(t64 @ t64.t() / 2.0, dim=1)
        log_q = F.log_softmax(source / 2.0, dim=1)
        manual = manual + (log_p.exp() * (log_p - log_q)).sum() * 4.0 / len(base)
    manual = 4.0 * manual / len(targets)
    manual.backward()
    torch.testing.assert_close(got.double(), base64.grad, rtol=1e-4, atol=1e-7)


def test_feature_distillation_detaches_pooled_features():
    """The F term trains the backbone through the base embedding only: no gradient reaches the pooled features,
    and the backbone's gradient is that of w * KL(S_feat.detach(), S_base) computed here."""
    torch.manual_seed(0)
    model = build(s2sd_cfg(feat_distill_weight=5.0))
    images = inputs()
    base, pooled, targets = model.forward_train(images)
    feat = model.s2sd_losses(base, pooled, targets, torch.tensor(LABELS), True)['loss_feat_distill']
    assert feat.item() > 1e-3
    assert _grads(feat, [pooled])[0].abs().sum().item() == 0.0
    backbone = list(model.embedder.backbone.parameters())
    got = _grads(feat, backbone)

    source = cosine_similarities(base)
    pooled_unit = F.normalize(pooled.detach(), dim=1)
    log_p = F.log_softmax(pooled_unit @ pooled_unit.t(), dim=1)
    log_q = F.log_softmax(source, dim=1)
    manual = 5.0 * (log_p.exp() * (log_p - log_q)).sum() / len(base)
    assert manual.item() == pytest.approx(feat.item(), rel=1e-5)
    expected = _grads(manual, backbone)
    assert sum(g.abs().sum().item() for g in expected) > 1e-4
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-8)


# --- inference and export ---


def _count_branch_calls(model):
    calls = []
    for branch in model.target_branches:
        branch.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_export_gives_plain_embedder_with_equal_embeddings(tmp_path):
    torch.manual_seed(0)
    cfg = s2sd_cfg(feat_distill_weight=50.0)
    model = build(cfg)
    # train a step so that the BN statistics and weights are not the initial ones
    model.feature_distillation = True
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(model.loss(inputs(), samples(LABELS)).values()).backward()
    optimizer.step()
    model.eval()
    config = tmp_path / 's2sd.py'
    Config(dict(model=cfg, default_scope='mmkd')).dump(str(config))
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict()), checkpoint)
    assert any(k.startswith('target_branches.') for k in model.state_dict())

    exported = export_student(str(checkpoint), str(tmp_path / 'export'), str(config))
    student_cfg = Config.fromfile(exported.config)
    assert student_cfg.model.type == 'ImageEmbedder' and 'target' not in open(exported.config).read()
    state = torch.load(exported.checkpoint, weights_only=True)['state_dict']
    assert not any('target' in k for k in state)
    assert set(state) == {k[len('embedder.'):] for k in model.state_dict() if k.startswith('embedder.')}
    student = build(student_cfg.model)
    assert type(student) is ImageEmbedder
    student.load_state_dict(state)
    student.eval()

    calls = _count_branch_calls(model)
    images = inputs(5, seed=7)
    batch = model.data_preprocessor(
        dict(inputs=list((images * 40 + 120).to(torch.uint8)), data_samples=samples([0] * 5)), False)
    with torch.no_grad():
        predicted = torch.stack([s.pred_embedding for s in model(batch['inputs'], mode='predict')])
        tensor = model(batch['inputs'])
        exported_embeddings = student(student.data_preprocessor(dict(inputs=batch['inputs']), False)['inputs'])
        exported_predict = torch.stack([s.pred_embedding for s in student.predict(batch['inputs'])])
    assert calls == []
    assert torch.equal(predicted, tensor) and torch.equal(predicted, exported_predict)
    assert torch.equal(student(batch['inputs']), tensor)
    assert exported_embeddings.shape == (5, 8)
    # the training forward does run the branches (the hook counts)
    model.forward_train(batch['inputs'])
    assert len(calls) == 2


def test_data_preprocessor_comes_from_the_embedder_and_is_exported():
    preprocessor = dict(type='ImgDataPreprocessor', mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0], bgr_to_rgb=False)
    model = build(s2sd_cfg(embedder_cfg(data_preprocessor=preprocessor)))
    assert model.data_preprocessor.mean.flatten().tolist() == [1.0, 2.0, 3.0]
    # given on the S2SD model only, it is the one the exported embedder gets
    name, embedder = S2SDEmbedder.deployable(s2sd_cfg(data_preprocessor=preprocessor))
    assert name == 'embedder' and embedder['data_preprocessor'] == preprocessor
    # given twice and equal: accepted
    build(s2sd_cfg(embedder_cfg(data_preprocessor=preprocessor), data_preprocessor=dict(preprocessor)))


def test_data_preprocessor_given_twice_in_other_spellings_is_accepted():
    """Lists vs tuples, and a scoped vs a plain type name, are one setting."""
    preprocessor = dict(type='ImgDataPreprocessor', mean=[1, 2, 3], std=[4.0, 5.0, 6.0], bgr_to_rgb=False)
    other = dict(type='mmengine.ImgDataPreprocessor', mean=(1.0, 2.0, 3.0), std=(4, 5, 6), bgr_to_rgb=False)
    model = build(s2sd_cfg(embedder_cfg(data_preprocessor=preprocessor), data_preprocessor=other))
    for module in (model.data_preprocessor, model.embedder.data_preprocessor):
        assert module.mean.flatten().tolist() == [1.0, 2.0, 3.0] and module.std.flatten().tolist() == [4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match='S2SDEmbedder: data_preprocessor differs from embedder.data_preprocessor'):
        build(s2sd_cfg(embedder_cfg(data_preprocessor=preprocessor), data_preprocessor=dict(other, bgr_to_rgb=True)))


def test_built_embedder_brings_its_data_preprocessor():
    """A built embedder's preprocessor is the model's (training and export preprocess alike); another one given
    beside it is refused."""
    preprocessor = dict(type='ImgDataPreprocessor', mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0], bgr_to_rgb=False)
    embedder = build(embedder_cfg(data_preprocessor=preprocessor))
    model = S2SDEmbedder(embedder, target_dims=(16, ), target_loss=dict(type='MultiSimilarityLoss'))
    assert model.data_preprocessor is embedder.data_preprocessor
    assert model.data_preprocessor.mean.flatten().tolist() == [1.0, 2.0, 3.0]
    for given in (preprocessor, dict(preprocessor, mean=[0.0, 0.0, 0.0])):
        with pytest.raises(ValueError, match='S2SDEmbedder: data_preprocessor given with a built embedder'):
            S2SDEmbedder(
                build(embedder_cfg()),
                target_dims=(16, ),
                target_loss=dict(type='MultiSimilarityLoss'),
                data_preprocessor=given)


@pytest.mark.parametrize(
    'model_cfg, error, message', [
        (dict(target_dims=(16, )), KeyError, "the model config has no 'embedder' key"),
        (dict(embedder='ImageEmbedder'), TypeError, "the model config's 'embedder' must be a config dict .* got str"),
        (dict(embedder=None), TypeError, "the model config's 'embedder' must be a config dict .* got NoneType"),
    ],
    ids=['missing', 'str', 'none'])
def test_deployable_names_a_bad_embedder_key(model_cfg, error, message):
    with pytest.raises(error, match='S2SDEmbedder.deployable: ' + message):
        S2SDEmbedder.deployable(dict(type='S2SDEmbedder', **model_cfg))


# --- config checks ---


@pytest.mark.parametrize(
    'overrides, error, message', [
        (dict(embedder=embedder_cfg(normalize=False)), ValueError, 'must have normalize=True'),
        (dict(embedder=embedder_cfg(loss=None)), ValueError, 'needs a metric loss .* got loss=None'),
        (dict(target_dims=()), ValueError, r'target_dims must be a non-empty list of positive ints, got \(\)'),
        (dict(target_dims=16), ValueError, 'target_dims must be a non-empty list of positive ints, got 16'),
        (dict(target_dims=(16, 0)), ValueError, r'got \(16, 0\)'),
        (dict(target_dims=(16.0, )), ValueError, r'got \(16.0,\)'),
        (dict(target_dims=(True, )), ValueError, r'got \(True,\)'),
        (dict(target_pooling='max'), ValueError, r"target_pooling must be one of \('avg', 'avg_max'\), got 'max'"),
        (dict(distill_weight=-1.0), ValueError, 'distill_weight must be a finite number >= 0, got -1.0'),
        (dict(distill_weight=float('nan')), ValueError, 'distill_weight must be a finite number >= 0, got nan'),
        (dict(distill_weight='50'), ValueError, "distill_weight must be a finite number >= 0, got '50'"),
        (dict(feat_distill_weight=-5), ValueError, 'feat_distill_weight must be a finite number >= 0, got -5'),
        (dict(distill_weight=math.inf), ValueError, 'distill_weight must be a finite number >= 0, got inf'),
        (dict(feat_distill_weight=math.inf), ValueError, 'feat_distill_weight must be a finite number >= 0, got inf'),
        (dict(temperature=math.inf), ValueError, 'temperature must be a finite number > 0, got inf'),
        (dict(temperature=0), ValueError, 'temperature must be a finite number > 0, got 0'),
        (dict(temperature=-1.0), ValueError, 'temperature must be a finite number > 0, got -1.0'),
        (dict(detach_targets=1), ValueError, 'detach_targets must be a bool, got 1'),
        (dict(target_loss='MultiSimilarityLoss'), TypeError, 'target_loss must be a loss config'),
        (dict(target_loss=dict(type='mmdet.MSELoss')), TypeError,
         r"target_loss .* type='mmdet.MSELoss' builds MSELoss, which is not a metric-learning loss.* labels \(B, \)"),
        (dict(embedder=embedder_cfg(loss=dict(type='AbsoluteEmbeddingLoss'))), TypeError,
         r"target_loss \(default: the embedder's loss\) type='AbsoluteEmbeddingLoss' builds AbsoluteEmbeddingLoss"),
        (dict(embedder=dict(type='TinyNet')), TypeError, 'embedder must be an ImageEmbedder, got TinyNet'),
        (dict(
            embedder=embedder_cfg(data_preprocessor=dict(type='ImgDataPreprocessor')),
            data_preprocessor=dict(type='ImgDataPreprocessor', mean=[0.0] * 3, std=[1.0] * 3)), ValueError,
         'data_preprocessor differs from embedder.data_preprocessor'),
    ],
    ids=lambda v: None)
def test_config_checks(overrides, error, message):
    import tests.test_models._tiny_nets  # noqa: F401  (registers TinyNet)
    with pytest.raises(error, match='S2SDEmbedder: .*' + message):
        build(s2sd_cfg(**overrides))


def _capture_warnings():
    """The WARNING records of mmengine's current logger (where print_log(logger='current') writes) from now on."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    MMLogger.get_current_instance().addHandler(handler)
    return records, handler


def test_small_temperature_warns_and_its_kl_vanishes():
    records, handler = _capture_warnings()
    try:
        build(s2sd_cfg(temperature=1.0))
        build(s2sd_cfg(temperature=0.1))
        assert records == []
        build(s2sd_cfg(temperature=0.05))
    finally:
        MMLogger.get_current_instance().removeHandler(handler)
    assert len(records) == 1 and 'S2SDEmbedder: temperature=0.05 < 0.1' in records[0].getMessage()
    # why: the same random similarities give a KL 1e-20 times smaller at T = 0.01 than at T = 1 (float64 reference)
    generator = torch.Generator().manual_seed(0)
    source, target = (ref_cosines(torch.randn(8, 16, generator=generator).numpy()) for _ in range(2))
    assert ref_kl(source, target, 0.01) < 1e-20 * ref_kl(source, target, 1.0)


def test_built_embedder_needs_target_loss():
    embedder = ImageEmbedder(backbone=BACKBONE, embed_dim=8, normalize=True, loss=torch.nn.Identity())
    with pytest.raises(ValueError, match='S2SDEmbedder: give target_loss'):
        S2SDEmbedder(embedder, target_dims=(16, ))
    model = S2SDEmbedder(embedder, target_dims=(16, ), target_loss=dict(type='MultiSimilarityLoss'))
    assert model.embedder is embedder


def test_loss_refuses_feature_distillation_without_switch():
    model = build(s2sd_cfg(feat_distill_weight=50.0))
    with pytest.raises(RuntimeError, match='feat_distill_weight > 0 but no S2SDFeatureDistillationHook'):
        model.loss(inputs(), samples(LABELS))


# --- criteria of the branches ---


def test_proxy_anchor_gets_one_embedding_size_per_branch():
    torch.manual_seed(0)
    loss = dict(type='ProxyAnchorLoss', num_classes=3, embedding_size=8)
    model = build(s2sd_cfg(embedder_cfg(loss=loss), target_dims=(16, 24)))
    assert model.embedder.loss_module.loss.proxies.shape == (3, 8)
    assert [c.embedding_size for c in model.target_losses] == [16, 24]
    assert [tuple(c.loss.proxies.shape) for c in model.target_losses] == [(3, 16), (3, 24)]
    # an explicit target criterion gets the branch sizes as well
    model = build(s2sd_cfg(target_dims=(12, ), target_loss=dict(loss, num_classes=3)))
    assert tuple(model.target_losses[0].loss.proxies.shape) == (3, 12)
    losses = model.loss(inputs(), samples(LABELS))
    sum(losses.values()).backward()
    assert model.target_losses[0].loss.proxies.grad.abs().sum() > 0
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())


def test_each_branch_has_its_own_margin_beta():
    """A learnable MarginLoss beta per criterion (base and each branch), all trained by the model's optimizer."""
    torch.manual_seed(0)
    loss = dict(type='MarginLoss', beta=1.2, learn_beta=True, num_classes=3)
    model = build(s2sd_cfg(embedder_cfg(loss=loss), target_dims=(16, 24)))
    betas = [model.embedder.loss_module.loss.beta] + [c.loss.beta for c in model.target_losses]
    assert len({id(b) for b in betas}) == 3 and len({b.data_ptr() for b in betas}) == 3
    names = dict(model.named_parameters())
    for key in ('embedder.loss_module.loss.beta', 'target_losses.0.loss.beta', 'target_losses.1.loss.beta'):
        assert key in names and names[key].shape == (3, )
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = model.loss(inputs(), samples(LABELS))
    sum(losses.values()).backward()
    optimizer.step()
    after = [b.detach().clone() for b in betas]
    assert all(not torch.equal(b, torch.full((3, ), 1.2)) for b in after)
    assert not torch.equal(after[1], after[2])


# --- mixed precision ---


def test_autocast_gives_float32_losses_close_to_float32():
    torch.manual_seed(0)
    model = build(s2sd_cfg(feat_distill_weight=5.0))
    model.feature_distillation = True
    images = inputs()
    full = model.loss(images, samples(LABELS))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = model.loss(images, samples(LABELS))
    assert set(mixed) == set(full)
    for key, value in mixed.items():
        assert value.dtype == torch.float32 and math.isfinite(value.item()), key
        assert value.item() == pytest.approx(full[key].item(), rel=0.1, abs=0.02), key
    sum(mixed.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    # the similarities and KL terms are float32 computations of the bfloat16 embeddings
    with torch.autocast('cpu', dtype=torch.bfloat16):
        base, pooled, targets = model.forward_train(images)
        losses = model.s2sd_losses(base, pooled, targets, torch.tensor(LABELS), True)
    assert base.dtype == torch.bfloat16
    base64 = ref_cosines(base.detach().double().numpy())
    expected = 50.0 * np.mean([ref_kl(base64, ref_cosines(t.detach().double().numpy()), 1.0) for t in targets])
    assert losses['loss_distill'].item() == pytest.approx(expected, rel=1e-4)
    expected = 5.0 * ref_kl(base64, ref_cosines(pooled.detach().double().numpy()), 1.0)
    assert losses['loss_feat_distill'].item() == pytest.approx(expected, rel=1e-4)
