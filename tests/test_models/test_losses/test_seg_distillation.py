import numpy as np
import pytest
import torch

from mmkd.models.losses.seg_distillation import pixel_kl, pixel_mse, quasi_teacher_ce, quasi_teacher_labels


def _softmax64(x, t=1.0):
    x = np.asarray(x, dtype=np.float64) / t
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _inputs(seed=0, n=2, c=5, h=6, w=7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g) * scale
    t = torch.randn(n, c, h, w, generator=g) * scale
    valid = torch.rand(n, h, w, generator=g) > 0.3
    return s, t, valid


def _kl_reference(s, t, valid, temperature):
    p, q = _softmax64(t, temperature), _softmax64(s, temperature)
    total, count = 0.0, 0
    for i in range(s.shape[0]):
        for y in range(s.shape[2]):
            for x in range(s.shape[3]):
                if valid[i, y, x]:
                    total += sum(p[i, c, y, x] * np.log(p[i, c, y, x] / q[i, c, y, x]) for c in range(s.shape[1]))
                    count += 1
    return temperature**2 * total / count


@pytest.mark.parametrize('temperature', [1.0, 0.5, 4.0])
@pytest.mark.parametrize('chunk', [1, 13, 1 << 22])
def test_pixel_kl_matches_float64_loop(temperature, chunk):
    s, t, valid = _inputs()
    value = pixel_kl(s, t, valid, temperature, chunk_elements=chunk)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_kl_reference(s.numpy(), t.numpy(), valid.numpy(), temperature), rel=1e-5)


def test_pixel_kl_gradient_and_ignored_pixels():
    s, t, valid = _inputs(1)
    s64 = s.double().requires_grad_()
    pixel_kl(s64, t.double(), valid, 2.0, chunk_elements=11).backward()
    # autograd of the direct formula in float64
    ref = s.double().requires_grad_()
    log_q = torch.log_softmax(ref / 2.0, 1)
    log_p = torch.log_softmax(t.double() / 2.0, 1)
    direct = ((log_p.exp() * (log_p - log_q)).sum(1) * valid).sum() * 4.0 / valid.sum()
    direct.backward()
    assert torch.allclose(s64.grad, ref.grad, atol=1e-12)
    assert (s64.grad.permute(1, 0, 2, 3)[:, ~valid] == 0).all()
    assert torch.autograd.gradcheck(lambda x: pixel_kl(x,
                                                       t.double()[:1, :, :2, :3], valid[:1, :2, :3], 1.5, 4),
                                    (s.double()[:1, :, :2, :3].requires_grad_(), ))


def test_saturated_logits_stay_finite():
    s = torch.full((1, 3, 2, 2), -1000.0)
    s[:, 0] = 1000.0
    t = torch.full((1, 3, 2, 2), -1000.0)
    t[:, 1] = 1000.0
    s.requires_grad_()
    for term in (pixel_kl(s, t), pixel_mse(s, t), quasi_teacher_ce(s, t)):
        assert torch.isfinite(term)
        (grad, ) = torch.autograd.grad(term, s)
        assert torch.isfinite(grad).all()
    assert pixel_kl(s, t).item() == pytest.approx(2000.0)  # log p_t/q_s at the teacher's class: 2000


def test_mse_and_quasi_ce_match_float64():
    s, t, valid = _inputs(2)
    p, q = _softmax64(t.numpy()), _softmax64(s.numpy())
    v = valid.numpy()
    mse = ((q - p)**2).sum(1)[v].sum() / (v.sum() * s.shape[1])
    assert pixel_mse(s, t, valid).item() == pytest.approx(mse, rel=1e-5)
    labels = t.numpy().argmax(1)
    nll = -np.log(np.take_along_axis(q, labels[:, None], 1)[:, 0])
    assert quasi_teacher_ce(s, t, valid).item() == pytest.approx(nll[v].mean(), rel=1e-5)
    keep = v & (p.max(1) >= 0.6)
    assert quasi_teacher_ce(s, t, valid, threshold=0.6).item() == pytest.approx(nll[keep].mean(), rel=1e-5)
    assert (quasi_teacher_labels(t, valid, 0.6, 255).numpy() == np.where(keep, labels, 255)).all()


def test_teacher_gets_no_gradient_and_no_valid_pixel_gives_zero():
    s, t, _ = _inputs(3)
    s.requires_grad_(), t.requires_grad_()
    none = torch.zeros(2, 6, 7, dtype=torch.bool)
    for fn in (pixel_kl, pixel_mse, quasi_teacher_ce):
        (fn(s, t) + fn(s, t, none)).backward()
        assert fn(s, t, none).item() == 0
    assert t.grad is None


def test_autocast_computes_in_float32():
    s, t, valid = _inputs(4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        values = [fn(s.bfloat16(), t.bfloat16(), valid) for fn in (pixel_kl, pixel_mse, quasi_teacher_ce)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in values)


def test_shape_errors_name_the_tensors():
    s, t, valid = _inputs()
    with pytest.raises(ValueError, match=r'pixel_kl: student \(2, 5, 6, 7\) and teacher \(2, 5, 6, 8\)'):
        pixel_kl(s, torch.zeros(2, 5, 6, 8))
    with pytest.raises(ValueError, match=r'pixel_mse: valid \(2, 6\)'):
        pixel_mse(s, t, valid[:, :, 0])


def test_registered_wrappers_weight_the_functions():
    from mmengine.registry import MODELS

    import mmkd  # noqa: F401  (registers the losses)
    s, t, valid = _inputs(5)
    kl = MODELS.build(dict(type='PixelKLLoss', temperature=2.0, loss_weight=0.1, chunk_elements=7))
    mse = MODELS.build(dict(type='PixelMSELoss', loss_weight=0.01))
    ce = MODELS.build(dict(type='QuasiTeacherCELoss', threshold=0.5, loss_weight=1.0))
    assert kl(s, t, valid).item() == pytest.approx(0.1 * pixel_kl(s, t, valid, 2.0).item(), rel=1e-6)
    assert mse(s, t, valid).item() == pytest.approx(0.01 * pixel_mse(s, t, valid).item(), rel=1e-6)
    assert ce(s, t, valid).item() == pytest.approx(quasi_teacher_ce(s, t, valid, 0.5).item(), rel=1e-6)


@pytest.mark.parametrize('cfg, message', [
    (dict(type='PixelKLLoss', temperature=0), 'temperature must be a finite number > 0'),
    (dict(type='PixelKLLoss', temperature=float('inf')), 'temperature must be a finite number > 0'),
    (dict(type='PixelKLLoss', chunk_elements=0), 'chunk_elements must be None or an int >= 1'),
    (dict(type='PixelMSELoss', loss_weight=-1), 'loss_weight must be a number >= 0'),
    (dict(type='QuasiTeacherCELoss', threshold=1.5), r'threshold must be None or a probability in \[0, 1\]'),
])
def test_wrapper_arguments_are_checked(cfg, message):
    from mmengine.registry import MODELS

    import mmkd  # noqa: F401
    with pytest.raises(ValueError, match=message):
        MODELS.build(cfg)


def test_pixel_kl_slice_size_follows_the_device_type(monkeypatch):
    """Without ``chunk_elements`` the slice size is the student's device type's entry of DEFAULT_CHUNK_ELEMENTS
    (2^22 logits on CUDA, measured 5x faster there than the CPU's 2^19), the CPU's for a device type it does not
    name; an explicit size wins."""
    from mmkd.models.losses import seg_distillation
    seen = []
    monkeypatch.setattr(seg_distillation._PixelKL, 'apply', lambda s, t, v, temp, chunk: seen.append(chunk) or s.sum())
    assert seg_distillation.DEFAULT_CHUNK_ELEMENTS == dict(cpu=1 << 19, cuda=1 << 22)
    student, teacher = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    pixel_kl(student, teacher)
    pixel_kl(student.to('meta'), teacher.to('meta'))
    monkeypatch.setitem(seg_distillation.DEFAULT_CHUNK_ELEMENTS, 'meta', 123)
    pixel_kl(student.to('meta'), teacher.to('meta'))
    pixel_kl(student.to('meta'), teacher.to('meta'), chunk_elements=7)
    assert seen == [1 << 19, 1 << 19, 123, 7]
