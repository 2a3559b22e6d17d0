"""CoLAD and LAD with the dynamic switch: the switched assignment against per-network assignments and a loop
reference, the CoLAD losses against LAD's, the joint update, the checks and the export declaration."""
import copy
import warnings

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmkd.models.dense_heads import switched_label_assignment
from mmkd.models.distillers import CoLAD, LADDistiller
from mmkd.models.task_modules import FisherCriterion, StdMeanCriterion, SwitchCriterion
from mmkd.registry import DET_TASK_UTILS
from .test_lad import batch, paa


@DET_TASK_UTILS.register_module(force=True)
class PreferNetworkCriterion(SwitchCriterion):
    """Test criterion: network ``index`` always has the higher rho."""

    def __init__(self, index: int = 0, granularity: str = 'batch') -> None:
        super().__init__(granularity)
        self.index = index
        self._calls = 0

    def unit_statistics(self, costs, units, fit=None):
        stats = torch.zeros(units.num_units, 3, dtype=torch.float64)
        stats[:, 0] = torch.bincount(units.of_candidate, minlength=units.num_units)
        stats[:, 1] = 1.0
        stats[:, 2] = float(self._calls == self.index)
        self._calls = (self._calls + 1) % 2
        return stats

    def rho(self, stats):
        return stats[:, 2]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(*args, **kwargs)


@pytest.fixture(scope='module')
def pair():
    torch.manual_seed(0)
    model = CoLAD(networks=dict(big=paa(16), small=paa(8)))
    quiet(model.init_weights)
    return model


def outputs(model, inputs):
    with torch.no_grad():
        return [model.head_of(k)(getattr(model, k).extract_feat(inputs)) for k in model.trainable_networks]


def annotations(samples):
    return [s.gt_instances for s in samples], [s.metainfo for s in samples]


def assert_same_assignment(got, expected):
    for i, (g, e) in enumerate(zip(got, expected)):
        if isinstance(e, list):
            for gg, ee in zip(g, e):
                torch.testing.assert_close(gg, ee, rtol=0, atol=0)
        elif isinstance(e, torch.Tensor):
            torch.testing.assert_close(g, e, rtol=0, atol=0, msg=f'field {i}')
        else:
            assert g == e, f'field {i}'


@pytest.mark.parametrize('criterion', [StdMeanCriterion('batch'), FisherCriterion('batch')])
def test_batch_granularity_gives_the_winners_own_assignment(pair, criterion):
    inputs, samples = batch(seed=1)
    gts, metas = annotations(samples)
    outs = outputs(pair, inputs)
    heads = [pair.head_of(k) for k in pair.trainable_networks]
    got, decision = switched_label_assignment(heads, outs, criterion, gts, metas)
    winner = int(decision.teacher)
    expected = heads[winner].get_label_assignment(*outs[winner], gts, metas)
    assert_same_assignment(got, expected)
    assert got[6] > 0
    # the winner is the network with the higher rho
    assert decision.rho[winner, 0] >= decision.rho[1 - winner, 0]


def test_std_mean_gt_level_against_a_loop_reference(pair):
    """The official code's rule, as a loop over GT boxes and levels: torch.std / mean per network, the teacher's
    (first network's) costs where its ratio is at least the other's, the lower mean for a single candidate; PAA's
    selection then runs on the mixed costs."""
    inputs, samples = batch(seed=2, num_gts=(6, 9))
    gts, metas = annotations(samples)
    outs = outputs(pair, inputs)
    heads = [pair.head_of(k) for k in pair.trainable_networks]
    got, decision = switched_label_assignment(heads, outs, StdMeanCriterion('gt_level'), gts, metas)

    head = heads[0]
    pre = head.pre_assign(outs[0][0], gts, metas)
    costs = [
        h.candidate_costs(pre.anchor_list, o[0], o[1], pre.labels, pre.labels_weight, pre.bboxes_target,
                          pre.bboxes_weight, pre.pos_inds) for h, o in zip(heads, outs)
    ]
    level_ends = torch.tensor([a.size(0) for a in pre.anchor_list[0]]).cumsum(0)
    mixed, from_second = [], 0
    for i in range(len(samples)):
        image_costs = costs[0][i].clone()
        level = torch.bucketize(pre.pos_inds[i], level_ends, right=True)
        for gt in pre.pos_gt_index[i].unique().tolist():
            for lvl in level.unique().tolist():
                sel = (pre.pos_gt_index[i] == gt) & (level == lvl)
                t, s = costs[0][i][sel], costs[1][i][sel]
                if sel.sum() == 0:
                    continue
                if sel.sum() > 1:
                    use_first = t.std() / t.mean() >= s.std() / s.mean()
                else:
                    use_first = not t.mean() > s.mean()
                if not use_first:
                    image_costs[sel] = s
                    from_second += 1
        mixed.append(image_costs)
    labels, labels_weight, _, num_pos = head.reassign(mixed, pre.labels, pre.labels_weight, pre.bboxes_weight,
                                                      pre.pos_inds, pre.pos_gt_index, pre.anchor_list)
    expected = head.assignment_result(pre, labels, labels_weight, sum(num_pos))
    assert_same_assignment(got, expected)
    assert 0 < from_second == int((decision.teacher[decision.has_candidates] == 1).sum())
    assert from_second < int(decision.has_candidates.sum())  # both networks taught some units


def test_fisher_gt_takes_each_boxs_winner_labels(pair):
    inputs, samples = batch(seed=3, num_gts=(6, 9))
    gts, metas = annotations(samples)
    outs = outputs(pair, inputs)
    heads = [pair.head_of(k) for k in pair.trainable_networks]
    got, decision = switched_label_assignment(heads, outs, FisherCriterion('gt'), gts, metas)
    own = [h.get_label_assignment(*o, gts, metas)[0] for h, o in zip(heads, outs)]
    pre = heads[0].pre_assign(outs[0][0], gts, metas)
    num_anchors = pre.labels[0].numel()
    rows_per_image = decision.teacher.numel() // len(samples)
    winners = set()
    for i in range(len(samples)):
        for gt in pre.pos_gt_index[i].unique().tolist():
            anchors = pre.pos_inds[i][pre.pos_gt_index[i] == gt] + i * num_anchors
            winner = int(decision.teacher[i * rows_per_image + gt])
            winners.add(winner)
            torch.testing.assert_close(got[0][anchors], own[winner][anchors], rtol=0, atol=0)
    assert winners == {0, 1}


def _optim(model, lrs):
    return build_optim_wrapper(
        model,
        dict(
            constructor='MultiNetworkOptimWrapperConstructor',
            **{
                k: dict(optimizer=dict(type='SGD', lr=lr))
                for k, lr in lrs.items()
            }))


def test_colad_losses_are_lad_losses_of_the_pair(tmp_path):
    """Whoever assigns: the other network's losses are LAD's with the assigner as a fixed teacher, and the assigner's
    are its own PAA assignment's with LAD's plain-average box loss."""
    torch.manual_seed(0)
    model = CoLAD(networks=dict(big=paa(16), small=paa(8)), switch=dict(type='PreferNetworkCriterion', index=0))
    quiet(model.init_weights)
    ckpt = tmp_path / 'big.pth'
    torch.save(dict(state_dict=model.big.state_dict()), ckpt)
    lad = LADDistiller(student=paa(8), teacher_cfg=paa(16), teacher_ckpt=str(ckpt))
    lad.student.load_state_dict(model.small.state_dict())
    model.train(), lad.train()
    model.big.eval()  # BN on running statistics, as LAD's frozen teacher
    inputs, samples = batch(seed=4)
    got = quiet(model, inputs, copy.deepcopy(samples), mode='loss')
    expected_small = quiet(lad.loss, inputs, copy.deepcopy(samples))
    for key, value in expected_small.items():
        torch.testing.assert_close(got[f'small.{key}'], value, rtol=1e-6, atol=1e-7, msg=key)
    gts, metas = annotations(samples)
    expected_big = quiet(
        model.head_of('big').loss_by_feat,
        *model.head_of('big')(model.big.extract_feat(inputs)), gts, metas)
    for key, value in expected_big.items():
        torch.testing.assert_close(got[f'big.{key}'], value, rtol=1e-6, atol=1e-7, msg=key)
    assert float(got['switch.share.big']) == 1.0 and float(got['switch.share.small']) == 0.0


def test_train_step_updates_each_network_with_its_own_optimizer():
    torch.manual_seed(0)
    model = CoLAD(networks=dict(big=paa(16), small=paa(8)))
    quiet(model.init_weights)
    model.train()
    optim = _optim(model, dict(big=0.01, small=0.0))
    before = copy.deepcopy(model.state_dict())
    inputs, samples = batch(seed=5)
    data = dict(inputs=list((inputs * 40 + 120).clamp(0, 255)), data_samples=samples)
    log_vars = quiet(model.train_step, data, optim)
    assert {'big.loss', 'small.loss', 'big.loss_cls', 'switch.share.big', 'switch.share.small'} <= set(log_vars)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith('big.bbox_head.atss_cls') for k in changed)
    # lr 0: the small network's parameters stay (its BN running statistics move with its forward pass)
    assert not any(k.startswith('small.') and 'running' not in k and 'num_batches' not in k for k in changed)
    # the switch state: units assigned by each network since the start
    assert 'switch_units' in after and int(after['switch_units'].sum()) > 0
    assert float(log_vars['switch.share.big'] + log_vars['switch.share.small']) == pytest.approx(1.0)


@pytest.mark.parametrize('index', [0, 1])
def test_lad_with_switch_is_lad_or_self_distillation(tmp_path, index):
    torch.manual_seed(0)
    teacher = CoLAD(networks=dict(t=paa(16), s=paa(8))).t
    ckpt = tmp_path / 't.pth'
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    switched = LADDistiller(paa(8), paa(16), str(ckpt), switch=dict(type='PreferNetworkCriterion', index=index))
    plain = LADDistiller(paa(8), paa(16), str(ckpt))
    plain.student.load_state_dict(switched.student.state_dict())
    switched.train(), plain.train()
    inputs, samples = batch(seed=6)
    got = quiet(switched.loss, inputs, copy.deepcopy(samples))
    if index == 0:  # the teacher assigns: LAD
        expected = quiet(plain.loss, inputs, copy.deepcopy(samples))
    else:  # the student assigns its own labels, trained as LAD's head trains
        gts, metas = annotations(samples)
        head = plain.student_head
        expected = quiet(head.loss_by_feat, *head(plain.student.extract_feat(inputs)), gts, metas)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert float(got[f'switch.share.{("teacher", "student")[index]}']) == 1.0


def test_lad_with_std_mean_switch_logs_both_rhos(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / 't.pth'
    torch.save(dict(state_dict=CoLAD(networks=dict(t=paa(16), s=paa(8))).t.state_dict()), ckpt)
    model = LADDistiller(paa(8), paa(16), str(ckpt), switch=dict(type='StdMeanCriterion'))
    inputs, samples = batch(seed=7)
    losses = quiet(model.loss, inputs, samples)
    assert {'switch.rho.teacher', 'switch.rho.student', 'switch.share.teacher'} <= set(losses)
    loss, log_vars = model.parse_losses(losses)  # the switch scalars are logged, not summed into the loss
    torch.testing.assert_close(loss, losses['loss_cls'] + losses['loss_bbox'] + losses['loss_iou'])
    with pytest.raises(ValueError, match="dynamic switch .* needs assign_by='teacher'"):
        LADDistiller(
            paa(8),
            paa(16),
            str(ckpt),
            assign_by='student',
            soft_label_loss=dict(type='SoftLabelKLLoss'),
            switch=dict(type='StdMeanCriterion'))


def test_checks_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match='two or more networks'):
        CoLAD(networks=dict(a=paa(8)))
    with pytest.raises(ValueError, match='needs a switch criterion'):
        CoLAD(networks=dict(a=paa(8), b=paa(8)), switch=None)
    with pytest.raises(KeyError, match=r"checkpoints names \['c'\]"):
        CoLAD(networks=dict(a=paa(8), b=paa(8)), checkpoints=dict(c='x.pth'))
    other_anchors = paa(8)
    other_anchors['bbox_head']['anchor_generator']['octave_base_scale'] = 4
    with pytest.raises(ValueError, match='a and b must predict on the same anchors.*base anchors at level 0'):
        CoLAD(networks=dict(a=paa(8), b=other_anchors))
    other_topk = paa(8)
    other_topk['bbox_head']['topk'] = 5
    with pytest.raises(ValueError, match='bbox_head.topk 9 vs 5'):
        CoLAD(networks=dict(a=paa(8), b=other_topk))
    other_norm = paa(8)
    other_norm['data_preprocessor']['mean'] = [0, 0, 0]
    with pytest.raises(ValueError, match='data_preprocessor must agree, but mean differs'):
        CoLAD(networks=dict(a=paa(8), b=other_norm))
    with pytest.raises(ValueError, match="needs gmm_backend='torch'"):
        CoLAD(networks=dict(a=paa(8), b=paa(8)), gmm_backend='sklearn')
    retina = paa(8)
    retina['bbox_head']['type'] = 'RetinaHead'
    with pytest.raises(ValueError, match='networks.b model.bbox_head.type must be one of'):
        CoLAD(networks=dict(a=paa(8), b=retina))
    with pytest.raises(FileNotFoundError, match="networks.b file 'missing.py' does not exist"):
        CoLAD(networks=dict(a=paa(8), b='missing.py'))


def test_networks_from_files_checkpoints_and_export_declaration(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'small.py'
    Config(dict(model=paa(8))).dump(str(cfg_file))
    torch.manual_seed(1)
    source = CoLAD(networks=dict(a=paa(16), b=str(cfg_file)))
    ckpt = tmp_path / 'b.pth'
    torch.save(dict(state_dict=source.b.state_dict()), ckpt)
    model = CoLAD(networks=dict(a=paa(16), b=str(cfg_file)), checkpoints=dict(b=str(ckpt)))
    quiet(model.init_weights)  # the checkpoint is loaded after the network's own initialisation
    for key, value in source.b.state_dict().items():
        torch.testing.assert_close(model.b.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert type(model.b.bbox_head).__name__ == 'BatchedLADHead'
    name, network = CoLAD.deployable(dict(type='CoLAD', networks=dict(a=paa(16), b=str(cfg_file)), predict_network='b'))
    assert name == 'b' and network['bbox_head']['type'] == 'PAAHead' and network['backbone']['base_channels'] == 8
    assert CoLAD.deployable(dict(type='CoLAD', networks=dict(a=paa(16), b=paa(8))))[0] == 'a'


def test_bfloat16_autocast(pair):
    inputs, samples = batch(seed=8)
    pair.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = quiet(pair, inputs, copy.deepcopy(samples), mode='loss')
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
    assert losses['big.loss_cls'].dtype == torch.float32


def test_detached_outputs_give_no_gradient_across_networks(pair):
    inputs, samples = batch(seed=9)
    pair.train()
    pair.zero_grad(set_to_none=True)
    losses = quiet(pair, inputs, copy.deepcopy(samples), mode='loss')
    sum(v for k, v in losses.items() if k.startswith('small.loss_')).backward()
    assert all(p.grad is None for p in pair.big.parameters())
    assert any(p.grad is not None for p in pair.small.parameters())


@pytest.mark.parametrize('num_gts', [(0, 0), (0, 3)])
@pytest.mark.parametrize('criterion', [StdMeanCriterion(g) for g in ('batch', 'image', 'gt', 'gt_level')] +
                         [FisherCriterion(g) for g in ('batch', 'image', 'gt')])
def test_images_without_boxes(pair, criterion, num_gts):
    """Every criterion and granularity on batches with an empty image or no box at all: finite losses, shares
    that sum to 1 over the units that have candidates (0 when there are none)."""
    inputs, samples = batch(seed=10, num_gts=num_gts)
    pair.train()
    pair.switch = criterion
    try:
        losses = quiet(pair, inputs, copy.deepcopy(samples), mode='loss')
    finally:
        pair.switch = StdMeanCriterion()
    assert all(torch.isfinite(v).all() for v in losses.values())
    shares = float(losses['switch.share.big'] + losses['switch.share.small'])
    assert shares == (0.0 if sum(num_gts) == 0 else pytest.approx(1.0))
