"""DomainAdaptiveDistiller: the distillation terms of paradigms (a)-(c) against float64 evaluations, the adversarial
step with a teacher, the hidden frozen teacher, and configuration mistakes."""
import pytest
import torch

from mmkd.models.segmentation import DomainAdaptiveDistiller
from . import (CANVAS, IGNORE, STRIDE_16, NotASegmentor, capture_grads, copy_model, domain_logits, image_mask,
               optim_wrappers, params, pixel_terms, reference_inputs, reference_labels, student_logits, tiny_segmentor,
               two_domain_batch)
from .test_adaptation import DISC, check_lr_zero, check_step

ADV = dict(decode_head=0.7, auxiliary_head=0.3)
TEMPERATURE = 2.0
# KL on both heads, MSE on the auxiliary head, quasi-teacher CE on the decode head (the default head)
LOSSES = dict(
    kl=dict(type='PixelKLLoss', temperature=TEMPERATURE, loss_weight=0.5, heads=('decode_head', 'auxiliary_head')),
    mse=dict(type='PixelMSELoss', loss_weight=3.0, heads='auxiliary_head'),
    ce=dict(type='QuasiTeacherCELoss', loss_weight=0.7))
TERMS = (('kl', 'decode_head', 0.5, 0), ('kl', 'auxiliary_head', 0.5, 0), ('mse', 'auxiliary_head', 3.0, 1),
         ('ce', 'decode_head', 0.7, 2))  # (term, head, weight, index in pixel_terms)
PREFIX = dict(decode_head='decode', auxiliary_head='aux')
# the teacher: twice as wide, output stride 16 (the student's: 8), auxiliary head on stage 1 (the student's: 2),
# and its own pixel normalisation (raw BGR values)
TEACHER_PIXELS = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr_to_rgb=False)
TEACHER = tiny_segmentor(width=16, stride=STRIDE_16, aux_index=1, **TEACHER_PIXELS)


def distiller(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        student=tiny_segmentor(),
        teacher_cfg=TEACHER,
        teacher_ckpt=None,
        distill_losses=LOSSES,
        discriminator=DISC,
        adv_weights=ADV)
    cfg.update(kwargs)
    return DomainAdaptiveDistiller(**cfg).train()


def reference_terms(ref, batch: dict, domains, s_logits: dict, t_logits: dict, dtype=torch.float32) -> dict:
    """The weighted distillation terms by log key (without ``student.``), from :func:`pixel_terms`: the
    student's logits given, the teacher's computed from its own normalisation of the raw images; valid pixels:
    source labels other than 255 (padding included), target image pixels (its labels are not read)."""
    out = {}
    for domain in domains:
        logits = (s_logits if domain == 'source' else t_logits)
        teacher = student_logits(ref.teacher, reference_inputs(batch[domain], **TEACHER_PIXELS))
        valid = reference_labels(batch['source']) != IGNORE if domain == 'source' else image_mask(batch['target'])
        for term, head, weight, index in TERMS:
            value = pixel_terms(logits[head].to(dtype), teacher[head].to(dtype), valid, TEMPERATURE)[index]
            out[f'{domain}.{PREFIX[head]}.loss_{term}'] = weight * value
    return out


@pytest.mark.parametrize('domains', [('source', ), ('target', ), ('source', 'target')])
def test_distillation_terms_match_float64_evaluations(domains):
    model = distiller(distill_domains=domains)
    ref = copy_model(model)
    batch = two_domain_batch(2, target_labels='random')  # target labels exist but must not count
    log_vars = model.train_step(batch, optim_wrappers(model))

    s_logits, t_logits = domain_logits(ref, reference_inputs(batch['source']), reference_inputs(batch['target']))
    teacher = student_logits(ref.teacher, reference_inputs(batch['source'], **TEACHER_PIXELS))
    # the set-up: teacher and student maps of different sizes, both smaller than the labels
    assert teacher['decode_head'].shape[-2:] == (2, 4) and s_logits['decode_head'].shape[-2:] == (4, 8)
    assert teacher['auxiliary_head'].shape[-2:] == (4, 8)
    assert (reference_labels(batch['source']) == IGNORE).float().mean() > 0.2
    assert not image_mask(batch['target']).all()

    expected = reference_terms(ref, batch, domains, s_logits, t_logits, torch.float64)
    logged = {k[len('student.'):]: v.item() for k, v in log_vars.items() if '.loss_' in k and k.count('.') == 3}
    assert logged.keys() == expected.keys()
    for key, value in expected.items():
        assert value.item() > 1e-3, key  # not a vacuous comparison
        assert logged[key] == pytest.approx(value.item(), rel=2e-5), key


def test_one_step_with_a_teacher_updates_each_network_by_its_own_optimizer():
    """Paradigm (c): the student's gradient is that of supervised + distillation (both domains) + adversarial
    terms; the discriminator's that of its own losses; each stepped by its own optimizer."""
    model = distiller(distill_domains=('source', 'target'))
    batch = two_domain_batch(3)
    ref = copy_model(model)
    teacher_before = params(model.teacher)

    def extra(source, target, s_logits, t_logits):
        return reference_terms(ref, batch, ('source', 'target'), s_logits, t_logits)

    log_vars = check_step(model, batch, ADV, extra)
    assert 'student.target.decode.loss_ce' in log_vars and 'discriminator.aux.loss_target' in log_vars
    for name, value in params(model.teacher).items():
        assert torch.equal(value, teacher_before[name]), name


@pytest.mark.parametrize('frozen', ['student', 'discriminator'])
def test_lr_zero_keeps_that_network_exactly(frozen):
    check_lr_zero(distiller(distill_domains=('source', 'target')), frozen)


@pytest.mark.parametrize('domains', [('source', ), ('target', )])
def test_without_discriminator(domains):
    """No adversarial term: one optimizer; the target is read only for target distillation."""
    model = distiller(distill_domains=domains, discriminator=None, adv_weights=None)
    assert model.discriminator is None and model.trainable_networks == ('student', )
    ref = copy_model(model)
    batch = two_domain_batch(4)
    optim = optim_wrappers(model)
    assert list(optim.keys()) == ['student']
    seen = capture_grads(model, optim)
    log_vars = model.train_step(batch, optim)
    source, target = reference_inputs(batch['source']), reference_inputs(batch['target'])
    s_logits, t_logits = domain_logits(ref, source, target, need_target='target' in domains)
    expected = reference_terms(ref, batch, domains, s_logits, t_logits, torch.float64)
    for key, value in expected.items():
        assert log_vars['student.' + key].item() == pytest.approx(value.item(), rel=2e-5), key
    assert not any('adv' in k or k.startswith('discriminator') for k in log_vars)
    assert len(seen['student']) == 1


def test_target_labels_are_never_read():
    model = distiller(distill_domains=('target', ))
    results = []
    for labels in ('none', 'ignore', 'random'):
        copy = copy_model(model)
        log_vars = copy.train_step(two_domain_batch(5, target_labels=labels), optim_wrappers(copy))
        results.append((log_vars, params(copy)))
    assert results[0][0]['student.target.decode.loss_ce'] > 0
    for log_vars, weights in results[1:]:
        assert log_vars.keys() == results[0][0].keys()
        for key in log_vars:
            assert torch.equal(log_vars[key], results[0][0][key]), key
        for name in weights:
            assert torch.equal(weights[name], results[0][1][name]), name


def test_teacher_is_hidden_frozen_and_loaded(tmp_path):
    torch.manual_seed(1)
    teacher = DomainAdaptiveDistiller(tiny_segmentor(), TEACHER).teacher  # any weights to load
    torch.save(dict(state_dict=teacher.state_dict()), tmp_path / 'teacher.pth')
    model = distiller(teacher_ckpt=str(tmp_path / 'teacher.pth'))
    for name, value in teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[name], value), name
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert {k.split('.')[0] for k in model.state_dict()} == {'student', 'discriminator'}
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    optim = optim_wrappers(model)
    assert not teacher_ids & {id(p) for w in optim.values() for g in w.param_groups for p in g['params']}
    model.train()
    assert not model.teacher.training
    assert model.deployable_network is model.student


@pytest.mark.parametrize(
    'kwargs, error, message', [
        (dict(distill_losses=dict(kl=dict(type='PixelKLLoss', heads=('head_x', )))), KeyError,
         "distill_losses.kl is applied to head 'head_x', which the student does not have"),
        (dict(
            teacher_cfg=tiny_segmentor(width=16, with_aux=False),
            distill_losses=dict(mse=dict(type='PixelMSELoss', heads=('auxiliary_head', )))), KeyError,
         "head 'auxiliary_head', which the teacher does not have"),
        (dict(teacher_cfg=tiny_segmentor(num_classes=5)), ValueError, 'the student predicts 4 classes, the teacher 5'),
        (dict(distill_domains='source'), ValueError, r"distill_domains must be \('source',\), \('target',\)"),
        (dict(distill_domains=()), ValueError, 'distill_domains must be'),
        (dict(distill_domains=('source', 'validation')), ValueError, 'distill_domains must be'),
        (dict(distill_domains=('target', 'target')), ValueError, 'distill_domains must be'),
        (dict(distill_losses={}), ValueError, 'distill_losses must name at least one term'),
        (dict(distill_losses=dict(kl='PixelKLLoss')), TypeError, 'distill_losses.kl must be a loss config dict'),
        (dict(adv_weights=None), ValueError, 'discriminator and adv_weights go together'),
        (dict(discriminator=None), ValueError, 'discriminator and adv_weights go together'),
        (dict(adv_weights=dict(auxiliary_head=float('nan'))), ValueError, 'must be a finite number >= 0'),
        (dict(student=NotASegmentor()), TypeError, 'the student must be an mmseg EncoderDecoder'),
    ],
    ids=[
        'unknown_head', 'head_missing_in_teacher', 'class_count', 'domains_str', 'domains_empty', 'domains_unknown',
        'domains_repeated', 'no_terms', 'term_not_a_dict', 'discriminator_without_weights',
        'weights_without_discriminator', 'nan_weight', 'not_encoder_decoder'
    ])
def test_configuration_mistakes(kwargs, error, message):
    with pytest.raises(error, match=message):
        distiller(**kwargs)


def test_loss_mode_is_refused_and_the_canvas_is_the_label_size():
    model = distiller()
    with pytest.raises(RuntimeError, match='trains through train_step'):
        model(None, None, mode='loss')
    data = model.data_preprocessor(two_domain_batch()['source'], True)
    assert tuple(data['inputs'].shape[-2:]) == CANVAS
    assert tuple(data['data_samples'][1].gt_sem_seg.shape) == CANVAS
