"""SegOutputSpaceAdaptation (AdaptSegNet): one two-domain iteration updates the student and the discriminator, each
by its own optimizer and each from its own losses only."""
import pytest
import torch
import torch.nn.functional as F

from mmkd.models.segmentation import OutputSpaceDiscriminator, SegOutputSpaceAdaptation
from . import (IGNORE, NUM_CLASSES, NotASegmentor, assert_grads_close, capture_grads, copy_model, domain_logits,
               optim_wrappers, params, reference_inputs, reference_labels, tiny_segmentor, two_domain_batch, upsample)

ADV = dict(decode_head=0.7, auxiliary_head=0.3)  # large weights: the adversarial gradient must not be negligible
DISC = dict(type='OutputSpaceDiscriminator', base_channels=8, num_convs=3)


def adaptation(**kwargs):
    torch.manual_seed(0)
    kwargs = dict(dict(student=tiny_segmentor(), discriminator=DISC, adv_weights=ADV), **kwargs)
    return SegOutputSpaceAdaptation(**kwargs).train()


def reference_step(ref, batch, adv_weights, extra=None):
    """The student's and the discriminators' losses of one iteration, from the definitions, on a copy of the
    model taken before the step; and their gradients (``torch.autograd.grad``) with respect to each network's own
    parameters.

    Returns:
        tuple: (student losses by log key, student gradients by parameter name, discriminator losses by log key,
        discriminator gradients by parameter name).
    """
    source, target = reference_inputs(batch['source']), reference_inputs(batch['target'])
    labels = reference_labels(batch['source'])
    s_logits, t_logits = domain_logits(ref, source, target)
    losses = {}
    for head, prefix, weight in (('decode_head', 'decode', 1.0), ('auxiliary_head', 'aux', 0.4)):
        losses[f'{prefix}.loss_ce'] = weight * F.cross_entropy(upsample(s_logits[head]), labels, ignore_index=IGNORE)
    if extra is not None:
        losses.update(extra(source, target, s_logits, t_logits))
    d_losses, kept = {}, {}
    for head, weight in adv_weights.items():
        prefix = 'decode' if head == 'decode_head' else 'aux'
        disc = ref.discriminator[head]
        p_s, p_t = upsample(s_logits[head]).softmax(1), upsample(t_logits[head]).softmax(1)
        d = disc(p_t)
        losses[f'{prefix}.loss_adv'] = weight * F.binary_cross_entropy_with_logits(d, torch.zeros_like(d))
        kept[prefix] = (disc, p_s.detach(), p_t.detach())
    student = dict(ref.student.named_parameters())
    total = sum(losses.values())
    grads = torch.autograd.grad(total, list(student.values()))
    s_grads = {f'student.{n}': g for n, g in zip(student, grads)}
    for prefix, (disc, p_s, p_t) in kept.items():
        d_s, d_t = disc(p_s), disc(p_t)
        d_losses[f'{prefix}.loss_source'] = F.binary_cross_entropy_with_logits(d_s, torch.zeros_like(d_s)) / 2
        d_losses[f'{prefix}.loss_target'] = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t)) / 2
    d_grads = {}
    if d_losses:
        discs = dict(ref.discriminator.named_parameters())
        grads = torch.autograd.grad(sum(d_losses.values()), list(discs.values()))
        d_grads = {f'discriminator.{n}': g for n, g in zip(discs, grads)}
    return losses, s_grads, d_losses, d_grads


def check_step(model, batch, adv_weights, extra=None, student_lr=0.1, discriminator_lr=0.01):
    """One ``train_step`` against :func:`reference_step`; returns the log variables."""
    ref = copy_model(model)
    before = params(model)
    optim = optim_wrappers(model, student_lr, discriminator_lr)
    seen = capture_grads(model, optim)
    log_vars = model.train_step(batch, optim)
    losses, s_grads, d_losses, d_grads = reference_step(ref, batch, adv_weights, extra)

    # the logged losses are the hand computations
    for key, value in losses.items():
        assert log_vars[f'student.{key}'].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-8), key
    for key, value in d_losses.items():
        assert log_vars[f'discriminator.{key}'].item() == pytest.approx(value.item(), rel=1e-5), key
    student_keys = {k for k in log_vars if k.startswith('student.') and 'loss' in k}
    assert student_keys == {f'student.{k}' for k in losses} | {'student.loss'}

    # each network's optimizer steps once, on the gradient of that network's own losses only
    assert len(seen['student']) == len(seen['discriminator']) == 1
    at_student, at_disc = seen['student'][0], seen['discriminator'][0]
    assert_grads_close({n: g for n, g in at_student.items() if n.startswith('student.')}, s_grads)
    assert all(g is None for n, g in at_student.items() if n.startswith('discriminator.')), \
        'the student\'s adversarial term gave the discriminator a gradient'
    assert_grads_close({n: g for n, g in at_disc.items() if n.startswith('discriminator.')}, d_grads)
    assert all(g is None for n, g in at_disc.items() if n.startswith('student.')), \
        'the discriminator\'s loss gave the student a gradient'

    # SGD (momentum, first step): p - lr * g; Adam (first step): moments of g
    after = params(model)
    for name, grad in s_grads.items():
        torch.testing.assert_close(after[name], before[name] - student_lr * at_student[name], rtol=1e-6, atol=1e-7)
    sgd = optim['student'].optimizer
    s_ids = {id(p) for p in model.student.parameters()}
    assert {id(p) for g in sgd.param_groups for p in g['params']} == s_ids
    assert set(map(id, sgd.state)) == s_ids
    for name, p in model.student.named_parameters():
        torch.testing.assert_close(sgd.state[p]['momentum_buffer'], at_student['student.' + name], rtol=0, atol=0)
    adam = optim['discriminator'].optimizer
    d_ids = {id(p) for p in model.discriminator.parameters()}
    assert {id(p) for g in adam.param_groups for p in g['params']} == set(map(id, adam.state)) == d_ids
    for name, p in model.discriminator.named_parameters():
        assert adam.state[p]['step'].item() == 1
        torch.testing.assert_close(adam.state[p]['exp_avg'], 0.1 * at_disc['discriminator.' + name])
        # Adam's first step (bias-corrected moments m = g, v = g^2): -lr * g / (|g| + eps)
        grad = at_disc['discriminator.' + name]
        torch.testing.assert_close(
            after['discriminator.' + name] - before['discriminator.' + name],
            -discriminator_lr * grad / (grad.abs() + 1e-8),
            rtol=1e-4,
            atol=1e-8)
    return log_vars


@pytest.mark.parametrize('joint_forward', [True, False])
def test_one_step_updates_each_network_by_its_own_optimizer_and_losses(joint_forward):
    model = adaptation(joint_forward=joint_forward)
    assert isinstance(model.discriminator['decode_head'], OutputSpaceDiscriminator)
    log_vars = check_step(model, two_domain_batch(), ADV)
    assert set(log_vars) >= {
        'student.decode.loss_adv', 'student.aux.loss_adv', 'discriminator.decode.loss_source',
        'discriminator.decode.loss_target', 'discriminator.aux.loss_source', 'discriminator.aux.loss_target'
    }


def test_one_adversarial_head():
    model = adaptation(adv_weights=dict(auxiliary_head=0.5))
    assert list(model.discriminator) == ['auxiliary_head']
    log_vars = check_step(model, two_domain_batch(1), dict(auxiliary_head=0.5))
    assert 'student.decode.loss_adv' not in log_vars and 'discriminator.decode.loss_source' not in log_vars


def check_lr_zero(model, frozen: str) -> None:
    """With learning rate 0 for network ``frozen`` (SGD for the student, Adam for the discriminator), one
    ``train_step`` leaves its parameters exactly as they were and changes every parameter of the other."""
    before = params(model)
    lrs = dict(
        student_lr=0.0 if frozen == 'student' else 0.1, discriminator_lr=0.0 if frozen == 'discriminator' else 0.01)
    model.train_step(two_domain_batch(), optim_wrappers(model, **lrs))
    after = params(model)
    for name in before:
        if name.startswith(frozen + '.'):
            assert torch.equal(before[name], after[name]), name
    other = 'discriminator' if frozen == 'student' else 'student'
    unchanged = [n for n in before if n.startswith(other + '.') and torch.equal(before[n], after[n])]
    assert not unchanged and any(n.startswith(other + '.') for n in before)


@pytest.mark.parametrize('frozen', ['student', 'discriminator'])
def test_lr_zero_keeps_that_network_exactly(frozen):
    check_lr_zero(adaptation(), frozen)


def test_target_labels_are_never_read():
    model = adaptation()
    results = []
    for labels in ('none', 'ignore', 'random'):
        copy = copy_model(model)
        log_vars = copy.train_step(two_domain_batch(target_labels=labels), optim_wrappers(copy))
        results.append((log_vars, params(copy)))
    for log_vars, weights in results[1:]:
        assert log_vars.keys() == results[0][0].keys()
        for key in log_vars:
            assert torch.equal(log_vars[key], results[0][0][key]), key
        for name in weights:
            assert torch.equal(weights[name], results[0][1][name]), name


def test_one_discriminator_per_adversarial_head_with_the_class_count():
    model = adaptation(student=tiny_segmentor(num_classes=5))
    assert sorted(model.discriminator) == ['auxiliary_head', 'decode_head']
    assert {d.in_channels for d in model.discriminator.values()} == {5}
    keys = model.state_dict().keys()
    assert any(k.startswith('discriminator.decode_head.layers.0.') for k in keys)
    assert {k.split('.')[0] for k in keys} == {'student', 'discriminator'}
    assert model.trainable_networks == ('student', 'discriminator')
    assert model.deployable_network is model.student


@pytest.mark.parametrize(
    'kwargs, error, message', [
        (dict(discriminator=None), ValueError, 'without a discriminator is plain source training'),
        (dict(adv_weights=None), ValueError, 'discriminator and adv_weights go together'),
        (dict(adv_weights=dict(decode_head=1e-3, head_x=1.0)), KeyError, "names head 'head_x'; the student has"),
        (dict(adv_weights=dict(decode_head=-1.0)), ValueError, r"adv_weights\['decode_head'\] must be a finite"),
        (dict(adv_weights=dict(decode_head=float('inf'))), ValueError, 'must be a finite number >= 0'),
        (dict(adv_weights=dict(decode_head=True)), ValueError, 'must be a finite number >= 0'),
        (dict(discriminator=dict(DISC, in_channels=4)), KeyError, 'in_channels is the number of classes'),
    ],
    ids=['no_discriminator', 'no_weights', 'unknown_head', 'negative', 'infinite', 'bool', 'in_channels'])
def test_configuration_mistakes(kwargs, error, message):
    with pytest.raises(error, match=message):
        adaptation(**kwargs)


def test_student_must_be_an_encoder_decoder():
    with pytest.raises(TypeError, match='the student must be an mmseg EncoderDecoder'):
        adaptation(student=NotASegmentor())


def test_batches_of_one_domain_and_loss_mode_are_refused():
    model = adaptation()
    batch = two_domain_batch()
    with pytest.raises(KeyError, match=r"dict\(source=..., target=...\).*got \['source'\]"):
        model.train_step(dict(source=batch['source']), optim_wrappers(model))
    with pytest.raises(KeyError, match="the config needs optim_wrapper=dict.constructor='MultiNetworkOptimWrapper"):
        model.train_step(batch, optim_wrappers(model)['student'])
    with pytest.raises(RuntimeError, match="mode='loss' has no meaning"):
        model(None, None, mode='loss')


def test_student_from_a_config_path(tmp_path):
    path = tmp_path / 'student.py'
    path.write_text(f'model = {tiny_segmentor(num_classes=3)!r}\n')
    model = adaptation(student=str(path))
    assert model.num_classes == 3 and model.student.decode_head.out_channels == 3
    name, cfg = SegOutputSpaceAdaptation.deployable(dict(student=str(path)))
    assert name == 'student' and cfg['decode_head']['num_classes'] == 3


def test_predict_is_the_students():
    model = adaptation().eval()
    batch = two_domain_batch()['target']
    batch['inputs'] = [img[:, :32, :64] for img in batch['inputs'][:1]]
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        ours = model(data['inputs'], data['data_samples'], mode='tensor')
        alone = model.student(data['inputs'], data['data_samples'], mode='tensor')
    assert ours.shape == (1, NUM_CLASSES, 4, 8)
    torch.testing.assert_close(ours, alone, rtol=0, atol=0)
