"""Attacks on the segmentation domain adaptation (issue 13): mixed precision (CPU bfloat16 autocast), configuration
and batch mistakes that must fail with one clear error."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

from mmkd.models.segmentation import DomainAdaptiveDistiller, SegOutputSpaceAdaptation
from . import IGNORE, optim_wrappers, params, pixel_terms, tiny_segmentor, two_domain_batch
from .test_adaptation import ADV, DISC
from .test_dakd import LOSSES, TEACHER, TEMPERATURE, TERMS

# Relative tolerance of a bfloat16-autocast step's losses against the float32 step from the same weights. bfloat16
# keeps 8 significant bits (a rounding of 2^-9 = 2e-3 per operation), and the rounding errors of the convolution and
# batch-norm layers of the ResNet-18 and its heads add up: measured, the largest difference of a loss in one step is
# 0.8 % per-domain passes (up to 2.7 % with joint_forward=True). Terms computed in bfloat16 (not float32) would not
# be caught by this, but by test_distillation_terms_are_computed_in_float32_on_the_bf16_logits.
BF16_RTOL = 3e-2


def build(kind: str):
    torch.manual_seed(0)
    if kind == 'adaptation':
        return SegOutputSpaceAdaptation(student=tiny_segmentor(), discriminator=DISC, adv_weights=ADV).train()
    return DomainAdaptiveDistiller(
        student=tiny_segmentor(),
        teacher_cfg=TEACHER,
        teacher_ckpt=None,
        distill_losses=LOSSES,
        distill_domains=('source', 'target'),
        discriminator=DISC,
        adv_weights=ADV).train()


def amp_wrappers(model):
    """:func:`optim_wrappers` with mixed precision: ``tools/train.py --amp`` on a CPU-only machine."""
    return build_optim_wrapper(
        model,
        dict(
            constructor='MultiNetworkOptimWrapperConstructor',
            student=dict(type='CPUAmpOptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
            discriminator=dict(type='CPUAmpOptimWrapper', optimizer=dict(type='Adam', lr=0.01, betas=(0.9, 0.99)))))


def bf16_step(model, batch, mode: str):
    """One ``train_step`` in bfloat16: by the AMP optimizer wrappers, or under an autocast around the whole step."""
    if mode == 'wrapper':
        return model.train_step(batch, amp_wrappers(model))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        return model.train_step(batch, optim_wrappers(model))


def record_distillation_terms(model) -> list:
    """(student logits, teacher logits, valid, output, autocast on) of every distillation term called."""
    calls = []
    for term, loss in model.distill_losses.items():

        def hook(module, args, output, term=term):
            calls.append((term, *args, output, torch.is_autocast_enabled('cpu')))

        loss.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize('mode', ['wrapper', 'autocast'])
@pytest.mark.parametrize('kind', ['adaptation', 'distiller'])
def test_bf16_step_is_close_to_the_float32_step(kind, mode):
    reference, model = build(kind), build(kind)
    batch = two_domain_batch(3)
    before = params(model)
    expected = reference.train_step(batch, optim_wrappers(reference))
    fp32_update = {n: p - before[n] for n, p in params(reference).items()}
    log_vars = bf16_step(model, two_domain_batch(3), mode)
    after = params(model)

    losses = [k for k in expected if 'loss' in k]
    assert set(log_vars) == set(expected) and len(losses) >= 9
    differences = {}
    for key in losses:
        assert log_vars[key].dtype == torch.float32 and torch.isfinite(log_vars[key]), key
        differences[key] = abs(log_vars[key].item() - expected[key].item()) / abs(expected[key].item())
        assert differences[key] < BF16_RTOL, (key, log_vars[key].item(), expected[key].item())
    assert max(differences.values()) > 1e-5  # the step did run in bfloat16
    # both networks updated, their weights still float32 and finite
    for name, value in after.items():
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
        assert not torch.equal(value, before[name]), f'{name} was not updated'
    # the student's SGD step (its gradient) along the float32 one: closely at the heads; less so in the backbone,
    # whose gradient in bfloat16 deviates as much for a plain mmseg EncoderDecoder on the source batch (cosine 0.89
    # to its float32 gradient, 0.72 at the stem's batch norm, measured)
    for prefix, minimum in (('student.decode_head.', 0.99), ('student.auxiliary_head.', 0.99), ('student.', 0.8)):
        names = [n for n in after if n.startswith(prefix)]
        update = torch.cat([(after[n] - before[n]).flatten() for n in names])
        ref_update = torch.cat([fp32_update[n].flatten() for n in names])
        similarity = F.cosine_similarity(update, ref_update, dim=0).item()
        assert similarity > minimum, prefix


def test_distillation_terms_are_computed_in_float32_on_the_bf16_logits():
    model = build('distiller')
    calls = record_distillation_terms(model)
    bf16_step(model, two_domain_batch(4), 'wrapper')
    weights = {term: (weight, index) for term, _, weight, index in TERMS}
    bf16_errors = []
    assert sorted(call[0] for call in calls) == sorted(['kl', 'kl', 'mse', 'ce'] * 2)  # 2 domains
    for term, student, teacher, valid, output, autocast in calls:
        # what autocast gives: the logits of both networks in bfloat16
        assert autocast and student.dtype == teacher.dtype == torch.bfloat16, term
        assert output.dtype == torch.float32 and torch.isfinite(output), term
        weight, index = weights[term]
        expected = weight * pixel_terms(student.double(), teacher.double(), valid, TEMPERATURE)[index]
        assert output.item() == pytest.approx(expected.item(), rel=1e-5), term
        in_bf16 = weight * pixel_terms(student, teacher, valid, TEMPERATURE)[index]
        bf16_errors.append(abs(in_bf16.item() - expected.item()) / abs(expected.item()))
    # the terms computed in bfloat16 would be this far off: the comparison above can tell
    assert max(bf16_errors) > 1e-3


@pytest.mark.parametrize('kind', ['adaptation', 'distiller'])
def test_saturated_logits_stay_finite_in_bf16(kind):
    """Logits of up to 8e4 (bfloat16 keeps 3 significant digits of them): the softmaxes, the KL, the cross
    entropies and the discriminators' inputs must not overflow."""
    model = build(kind)
    networks = [model.student] + ([model.teacher] if kind == 'distiller' else [])
    for network in networks:
        for head in (network.decode_head, network.auxiliary_head):
            head.conv_seg.weight.data.mul_(1e4)
    logits = model.student.decode_head(model.student.extract_feat(torch.randn(2, 3, 32, 64)))
    assert logits.abs().max() > 1e4
    before = params(model)
    log_vars = bf16_step(model, two_domain_batch(5), 'wrapper')
    assert all(torch.isfinite(value) for value in log_vars.values()), log_vars
    assert log_vars['student.decode.loss_ce'] > 10  # saturated: confidently wrong on most pixels
    for name, value in params(model).items():
        assert torch.isfinite(value).all() and not torch.equal(value, before[name]), name


# ------------------------------------------------------------------------ configuration and batch mistakes
def test_adv_weights_that_are_not_a_dict_are_refused():
    with pytest.raises(TypeError, match=r"adv_weights must be a dict head name -> weight.*got \['decode_head'\]"):
        SegOutputSpaceAdaptation(student=tiny_segmentor(), discriminator=DISC, adv_weights=['decode_head'])


def _batch(change) -> dict:
    batch = two_domain_batch(num_classes=7)
    for domain in ('source', 'target'):
        for i, sample in enumerate(batch[domain]['data_samples']):
            sample.set_metainfo(dict(img_path=f'{domain}/images/train/{i:06d}.png'))
    change(batch)
    return batch


def _drop_labels(batch):
    del batch['source']['data_samples'][1].gt_sem_seg


@pytest.mark.parametrize(
    'change, error, message',
    [
        # a dataloader of one domain's dataset: the plain batch of mmseg
        (lambda b: b.update(b.pop('source')) or b.pop('target'), KeyError,
         r"each batch must be dict\(source=..., target=...\).*got \['data_samples', 'inputs'\]"),
        (lambda b: b.update(source=b['source']['inputs']), KeyError,
         r'the source batch must be dict\(inputs=..., data_samples=...\).*got list'),
        (lambda b: b['target'].pop('data_samples'), KeyError,
         r"the target batch must be dict\(inputs=..., data_samples=...\).*got \['inputs'\]"),
        # a source pipeline without LoadAnnotations
        (_drop_labels, KeyError, r'no label \(gt_sem_seg\) for source/images/train/000001.png: the source pipeline '
         r"needs dict\(type='LoadAnnotations'\)"),
    ],
    ids=['plain_batch', 'source_not_a_batch', 'target_without_samples', 'source_without_labels'])
def test_malformed_batches_are_refused_before_any_computation(change, error, message):
    model = SegOutputSpaceAdaptation(student=tiny_segmentor(num_classes=7), discriminator=DISC, adv_weights=ADV)
    before = params(model)
    with pytest.raises(error, match=message):
        model.train_step(_batch(change), optim_wrappers(model))
    assert all(torch.equal(value, before[name]) for name, value in params(model).items())


@pytest.mark.parametrize('kind', ['adaptation', 'distiller'])
def test_labels_of_more_classes_than_the_student_are_refused(kind):
    """A source dataset of more classes than the student (GTA5's 19 with the 7-class student of the toy configs):
    torch's cross entropy would fail with 'Target 13 is out of bounds', naming neither the image nor the cause."""
    model = build(kind)  # 4 classes
    batch = two_domain_batch(num_classes=19)
    batch['source']['data_samples'][0].set_metainfo(
        dict(img_path='gta5/images/00001.png', seg_map_path='gta5/labels/00001_labelTrainIds.png'))
    label = batch['source']['data_samples'][0].gt_sem_seg.data
    wrong = label[(label != IGNORE) & (label >= 4)]
    assert wrong.numel()
    message = (f'the source label gta5/labels/00001_labelTrainIds.png holds class {wrong[0].item()}; the student '
               r"predicts 4 classes \(0-3, ignore index 255\): the dataset's classes and the student's num_classes "
               'must agree')
    with pytest.raises(ValueError, match=message):
        model.train_step(batch, optim_wrappers(model))
    batch['source']['data_samples'][0].gt_sem_seg.data[...] = IGNORE  # ignored pixels are not classes
    label = batch['source']['data_samples'][1].gt_sem_seg.data
    label[(label != IGNORE) & (label >= 4)] = 3
    model.train_step(batch, optim_wrappers(model))
