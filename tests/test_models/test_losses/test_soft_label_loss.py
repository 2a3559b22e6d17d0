"""The soft-label losses of LAD (mmkd/models/losses/soft_label_loss.py) against Eq. (1) of the paper
evaluated independently in float64 numpy, and their mmdet loss contract."""
import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.losses.utils import weight_reduce_loss

from mmkd.models.losses import SoftLabelKLLoss, SoftLabelL1Loss, SoftLabelL2Loss, focal_kl_with_logits

GAMMAS = (0.0, 0.5, 2.0)


def _logits(n=64, c=8, seed=0, dtype=torch.float32):
    """Student and teacher logits (n, c): moderate values mixed with saturated ones (+-30, +-100), and
    some student logits equal to the teacher's."""
    g = torch.Generator().manual_seed(seed)
    saturated = torch.tensor([-100.0, -30.0, 30.0, 100.0], dtype=torch.float64)

    def draw():
        x = torch.randn(n, c, generator=g, dtype=torch.float64) * 4
        pick = torch.rand(n, c, generator=g) < 0.3
        return torch.where(pick, saturated[torch.randint(4, (n, c), generator=g)], x)

    pred, target = draw(), draw()
    same = torch.rand(n, c, generator=g) < 0.1
    pred = torch.where(same, target, pred)
    return pred.to(dtype), target.to(dtype)


def _eq1(pred, target, gamma, eps=0.0):
    """Eq. (1) per anchor and class in float64 numpy, written out from the probabilities; 1 - p is
    formed as 1 / (1 + exp(x)) so that it does not round to 0 for large logits. ``eps > 0``: the
    official implementation's focal term ((p_t - p_s)^2 + eps)^(gamma / 2)."""
    s, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    p_s, p_t = 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-t))
    q_s, q_t = 1 / (1 + np.exp(s)), 1 / (1 + np.exp(t))
    kl = p_t * np.log(p_t / p_s) + q_t * np.log(q_t / q_s)
    w = np.abs(p_t - p_s)**gamma if eps == 0 else ((p_t - p_s)**2 + eps)**(gamma / 2)
    return w * kl


def _probabilities(pred, target):
    s, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-t))


@pytest.mark.parametrize('gamma', GAMMAS)
@pytest.mark.parametrize('eps', [0.0, 1e-6])
def test_kl_matches_eq1_in_float64(gamma, eps):
    pred, target = _logits(dtype=torch.float64)
    ref = _eq1(pred, target, gamma, eps)
    terms = focal_kl_with_logits(pred, target, gamma, eps)
    np.testing.assert_allclose(terms.numpy(), ref, rtol=1e-9, atol=1e-14)  # float64 cancellation where KL ~ 0
    loss = SoftLabelKLLoss(gamma=gamma, eps=eps, reduction='none')(pred, target)
    np.testing.assert_allclose(loss.numpy(), ref.sum(1), rtol=1e-9, atol=1e-14)
    assert loss.dtype == torch.float64


@pytest.mark.parametrize('gamma', GAMMAS)
def test_kl_float32_matches_eq1_with_saturated_logits(gamma):
    pred, target = _logits(seed=1)
    ref = _eq1(pred, target, gamma, eps=1e-6)
    assert np.abs(pred.numpy()).max() == 100 and ref.max() > 50  # saturated, opposite pairs are present
    loss = SoftLabelKLLoss(gamma=gamma)
    per_anchor = loss(pred, target, reduction_override='none')
    assert per_anchor.dtype == torch.float32 and per_anchor.shape == (64, )
    np.testing.assert_allclose(per_anchor.numpy(), ref.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss(pred, target).item(), ref.sum(1).mean(), rtol=1e-5)


def test_kl_keeps_its_relative_accuracy_where_both_logits_saturate_on_one_side():
    # 1 - p_t rounds to 0 in float32 from logit ~17 (and 1 - p_s with it), which would make these tiny
    # KL values negative; they come from the logits instead. Reference: Eq. (1) with 50 digits (mpmath,
    # a dependency of torch), as float64 rounds 1 - p near 1 too coarsely for the last pair.
    mpmath.mp.dps = 50
    pairs = [(25.0, 20.0), (-25.0, -20.0), (18.0, 22.0), (-40.0, -35.0)]
    ref = []
    for s, t in pairs:
        p_s, p_t = 1 / (1 + mpmath.exp(-s)), 1 / (1 + mpmath.exp(-t))
        ref.append(float(p_t * mpmath.log(p_t / p_s) + (1 - p_t) * mpmath.log((1 - p_t) / (1 - p_s))))
    assert min(ref) > 0 and max(ref) < 1e-7
    pred, target = torch.tensor([pairs]).unbind(-1)
    np.testing.assert_allclose(focal_kl_with_logits(pred, target, 0.0)[0].numpy(), ref, rtol=1e-5, atol=0)


def test_eps_zero_is_the_paper_focal_term_and_default_is_the_official_one():
    pred, target = _logits(seed=2, dtype=torch.float64)
    p_s, p_t = _probabilities(pred, target)
    for gamma in GAMMAS:
        paper = np.abs(p_t - p_s)**gamma * _eq1(pred, target, 0.0)
        official = ((p_t - p_s)**2 + 1e-6)**(gamma / 2) * _eq1(pred, target, 0.0)
        np.testing.assert_allclose(
            focal_kl_with_logits(pred, target, gamma, eps=0).numpy(), paper, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(focal_kl_with_logits(pred, target, gamma).numpy(), official, rtol=1e-9, atol=1e-14)
    # the two forms differ for gamma > 0 (by at most eps^(gamma / 2) in the focal term for gamma <= 2)
    exact = focal_kl_with_logits(pred, target, 0.5, eps=0)
    smoothed = focal_kl_with_logits(pred, target, 0.5)
    assert (smoothed - exact).abs().max() > 0
    kl = focal_kl_with_logits(pred, target, 0.0)
    assert ((smoothed - exact) <= 1e-6**0.25 * kl + 1e-15).all()


def test_gamma_zero_is_binary_kl_divergence():
    # an independent reference: KL = cross-entropy - entropy, both from torch's BCE with logits
    pred, target = _logits(seed=3, dtype=torch.float64)
    p_t = target.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(pred, p_t, reduction='none')
    entropy = F.binary_cross_entropy_with_logits(target, p_t, reduction='none')
    ref = (cross_entropy - entropy).sum(1)
    torch.testing.assert_close(SoftLabelKLLoss(gamma=0, reduction='none')(pred, target), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(SoftLabelKLLoss(gamma=0)(pred, target), ref.mean(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('gamma', GAMMAS)
def test_finite_values_and_gradients_at_saturation_and_where_p_t_equals_p_s(gamma):
    values = torch.tensor([-100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0])
    # every pair of logits, including equal ones and pairs whose float32 probabilities are equal (30, 100)
    pred = values.repeat_interleave(7).view(7, 7).clone().requires_grad_(True)
    target = values.repeat(7).view(7, 7)
    loss = SoftLabelKLLoss(gamma=gamma, reduction='sum')(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    # identical logits: no loss, and no gradient up to rounding (p_s - p_t is formed by two paths)
    same = values.clone().view(1, 7).requires_grad_(True)
    zero = SoftLabelKLLoss(gamma=gamma, reduction='sum')(same, values.view(1, 7))
    zero.backward()
    assert zero.item() == 0 and same.grad.abs().max().item() < 1e-7
    # -100 against 100 with gamma 0: KL = 200 - log(1 + e^-200) - ... = 200 (float64 reference)
    opposite = SoftLabelKLLoss(gamma=gamma, reduction='sum')(values[:1].view(1, 1), values[-1:].view(1, 1))
    np.testing.assert_allclose(opposite.item(), _eq1([[-100.0]], [[100.0]], gamma, 1e-6).item(), rtol=1e-6)


@pytest.mark.parametrize('gamma', [0.5, 1.0])
def test_eps_zero_has_no_finite_gradient_where_probabilities_are_equal(gamma):
    # documents why eps defaults to 1e-6: the paper's |p_t - p_s|^gamma is not differentiable at 0
    pred = torch.tensor([[0.3]], requires_grad=True)
    SoftLabelKLLoss(gamma=gamma, eps=0)(pred, torch.tensor([[0.3]])).backward()
    assert not torch.isfinite(pred.grad).all()
    pred.grad = None
    SoftLabelKLLoss(gamma=gamma)(pred, torch.tensor([[0.3]])).backward()
    assert abs(pred.grad.item()) < 1e-7


@pytest.mark.parametrize('loss', [
    SoftLabelKLLoss(gamma=0),
    SoftLabelKLLoss(gamma=0.5),
    SoftLabelKLLoss(gamma=2),
    SoftLabelKLLoss(gamma=0.5, eps=0),
    SoftLabelL1Loss(),
    SoftLabelL2Loss()
])
def test_gradcheck_in_float64(loss):
    g = torch.Generator().manual_seed(4)
    pred = (torch.rand(6, 5, generator=g, dtype=torch.float64) * 8 - 4).requires_grad_(True)
    target = torch.rand(6, 5, generator=g, dtype=torch.float64) * 8 - 4
    weight = torch.rand(6, 5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: loss(x, target, weight), (pred, ))
    assert torch.autograd.gradcheck(lambda x: loss(x, target, reduction_override='none'), (pred, ))


def test_teacher_gets_no_gradient_and_student_gradient_is_p_s_minus_p_t():
    pred, target = _logits(seed=5, dtype=torch.float64)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    SoftLabelKLLoss(gamma=0, reduction='sum')(pred, target).backward()
    assert target.grad is None
    # d KL / d s = p_s - p_t for the binary KL of sigmoid outputs
    torch.testing.assert_close(pred.grad, (pred.sigmoid() - target.sigmoid()).detach(), rtol=1e-9, atol=1e-12)
    for loss in (SoftLabelKLLoss(), SoftLabelL1Loss(), SoftLabelL2Loss()):
        teacher = target.detach().clone().requires_grad_(True)
        loss(pred, teacher).backward()
        assert teacher.grad is None


# mmdet refuses avg_factor with reduction 'sum' (see test_invalid_call_arguments)
@pytest.mark.parametrize('reduction, avg_factor', [('none', None), ('mean', None), ('sum', None), ('none', 17.0),
                                                   ('mean', 17.0), ('mean', 0.0)])
@pytest.mark.parametrize('weight_shape', [None, 'anchor', 'anchor_class'])
def test_weight_avg_factor_and_reduction_follow_mmdet(reduction, avg_factor, weight_shape):
    pred, target = _logits(n=32, c=6, seed=6)
    terms = _eq1(pred, target, 0.5, 1e-6)
    g = torch.Generator().manual_seed(7)
    weight = None
    if weight_shape == 'anchor':
        weight = torch.rand(32, generator=g)
        per_anchor = terms.sum(1) * weight.double().numpy()
    elif weight_shape == 'anchor_class':
        weight = torch.rand(32, 6, generator=g)
        per_anchor = (terms * weight.double().numpy()).sum(1)
    else:
        per_anchor = terms.sum(1)
    ref = weight_reduce_loss(torch.from_numpy(per_anchor), None, reduction, avg_factor) * 3.0
    ours = SoftLabelKLLoss(loss_weight=3.0, reduction=reduction)(pred, target, weight, avg_factor)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # the configured reduction can be overridden per call, as in mmdet
    other = SoftLabelKLLoss(loss_weight=3.0, reduction='sum' if reduction != 'sum' else 'none')
    torch.testing.assert_close(other(pred, target, weight, avg_factor, reduction_override=reduction), ours)


def test_avg_factor_may_be_a_tensor_and_keeps_float32():
    pred, target = _logits(n=16, c=4, seed=8)
    loss = SoftLabelKLLoss()
    ref = loss(pred, target, avg_factor=5.0)
    for avg_factor in (torch.tensor(5.0, dtype=torch.float64), torch.tensor(5.0, dtype=torch.bfloat16)):
        out = loss(pred, target, avg_factor=avg_factor)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('cls, elementwise', [(SoftLabelL1Loss, lambda s, t: np.abs(t - s)),
                                              (SoftLabelL2Loss, lambda s, t: (t - s)**2)])
def test_l1_and_l2_match_float64_reference(cls, elementwise):
    pred, target = _logits(seed=9)
    p_s, p_t = _probabilities(pred, target)
    weight = torch.rand(64, generator=torch.Generator().manual_seed(10))
    ref = (elementwise(p_s, p_t).sum(1) * weight.double().numpy()).sum() / (12.0 + np.finfo(np.float32).eps)
    loss = cls(loss_weight=2.0)(pred, target, weight, avg_factor=12.0)
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), 2.0 * ref, rtol=1e-5)
    np.testing.assert_allclose(
        cls(reduction='none')(pred, target).numpy(), elementwise(p_s, p_t).sum(1), rtol=1e-5, atol=1e-6)
    saturated = torch.tensor([[-100.0, 100.0, 30.0]], requires_grad=True)
    out = cls()(saturated, torch.tensor([[100.0, -100.0, 30.0]]))
    out.backward()
    assert out.item() == pytest.approx(2.0) and torch.isfinite(saturated.grad).all()


@pytest.mark.parametrize('loss', [SoftLabelKLLoss(), SoftLabelKLLoss(gamma=2), SoftLabelL1Loss(), SoftLabelL2Loss()])
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32(loss, dtype):
    pred, target = _logits(seed=11)
    pred, target = (pred / 10).to(dtype), (target / 10).to(dtype)  # float16 holds +-10, not +-100 exactly
    out = loss(pred, target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, loss(pred.float(), target.float()), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('loss', [SoftLabelKLLoss(), SoftLabelL1Loss(), SoftLabelL2Loss()])
def test_cpu_bfloat16_autocast_gives_float32(loss):
    # the logits come from a layer run under autocast (bfloat16), as a head's outputs would
    g = torch.Generator().manual_seed(12)
    features = torch.randn(64, 16, generator=g)
    student, teacher = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pred, target = student(features) * 20, teacher(features) * 20
        assert pred.dtype == torch.bfloat16
        out = loss(pred, target, avg_factor=10.0)
        out_float32_inputs = loss(pred.float(), target.float(), avg_factor=10.0)
    assert out.dtype == out_float32_inputs.dtype == torch.float32
    ref = loss(pred.float(), target.float(), avg_factor=10.0)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out_float32_inputs, ref, rtol=0, atol=0)
    out.backward()
    assert student.weight.grad is not None and teacher.weight.grad is None


def test_terms_are_computed_with_autocast_disabled():
    # the precision contract of mmkd's losses (docs/contributing.md), whatever the ops of the terms
    seen = []

    class Recording(SoftLabelKLLoss):

        def _elementwise(self, pred, target):
            seen.append((torch.is_autocast_enabled('cpu'), pred.dtype, target.dtype))
            return super()._elementwise(pred, target)

    pred, target = _logits(n=4, c=3, seed=13)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        Recording()(pred.bfloat16(), target.bfloat16())
    assert seen == [(False, torch.float32, torch.float32)]


@pytest.mark.parametrize('build, message', [
    (lambda: SoftLabelKLLoss(gamma=-0.5), 'SoftLabelKLLoss: gamma must be a number >= 0, got -0.5'),
    (lambda: SoftLabelKLLoss(gamma='0.5'), 'SoftLabelKLLoss: gamma must be a number >= 0'),
    (lambda: SoftLabelKLLoss(gamma=float('nan')), 'SoftLabelKLLoss: gamma must be a number >= 0'),
    (lambda: SoftLabelKLLoss(eps=-1e-6), 'SoftLabelKLLoss: eps must be a number >= 0'),
    (lambda: SoftLabelKLLoss(reduction='avg'), "SoftLabelKLLoss: reduction must be one of ('none', 'mean', 'sum')"),
    (lambda: SoftLabelL1Loss(reduction=None), 'SoftLabelL1Loss: reduction must be one of'),
    (lambda: SoftLabelL2Loss(loss_weight=-1), 'SoftLabelL2Loss: loss_weight must be a number >= 0'),
    (lambda: SoftLabelL2Loss(loss_weight=True), 'SoftLabelL2Loss: loss_weight must be a number >= 0'),
])
def test_invalid_options_fail_at_build(build, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        build()


def test_invalid_call_arguments():
    loss = SoftLabelKLLoss()
    pred = torch.zeros(4, 3)
    with pytest.raises(
            ValueError,
            match=r'SoftLabelKLLoss: pred \(student logits\) \(4, 3\) and target '
            r'\(teacher logits\) \(4, 5\) must have one shape \(N, C\)'):
        loss(pred, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r'pred \(student logits\) \(12,\) and target \(teacher logits\) \(12,\)'):
        loss(pred.flatten(), pred.flatten())
    with pytest.raises(ValueError, match=r'SoftLabelKLLoss: weight \(3,\) must be \(N, \) or \(N, C\) for pred'):
        loss(pred, pred, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"SoftLabelKLLoss: reduction_override must be None or one of"):
        loss(pred, pred, reduction_override='avg')
    with pytest.raises(ValueError, match=r"SoftLabelL1Loss: avg_factor cannot be used with reduction 'sum'"):
        SoftLabelL1Loss(reduction='sum')(pred, pred, avg_factor=2.0)


@pytest.mark.parametrize('cfg, cls', [
    (dict(type='SoftLabelKLLoss', gamma=2.0, eps=0.0, loss_weight=0.5), SoftLabelKLLoss),
    (dict(type='SoftLabelL1Loss', reduction='sum'), SoftLabelL1Loss),
    (dict(type='SoftLabelL2Loss', loss_weight=2.0), SoftLabelL2Loss),
])
def test_build_by_type_name_from_host_registries(cfg, cls):
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS, MODELS):
        loss = registry.build(dict(cfg))
        assert type(loss) is cls
        for key, value in cfg.items():
            if key != 'type':
                assert getattr(loss, key) == value
    assert DET_MODELS.build(dict(type='SoftLabelKLLoss')).gamma == 0.5
