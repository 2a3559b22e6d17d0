"""tools/quickstart.py and mmkd.quickstart: method registry, command line, stage records and reuse, tables.

The stages run with a fake Runner (a stage "trains" by writing its checkpoint file and "tests" by returning
metrics computed from its seed), so that reuse and retraining are checked in a fraction of a second."""
import dataclasses
import hashlib
import io
import json
import os.path as osp
import statistics
import subprocess
import types

import pytest
import torch
from mmengine.config import Config

from mmkd.quickstart import METHODS, Method, Stage, main, parse_args
from mmkd.quickstart import stages as stages_module
from ..conftest import PYTHON, ROOT, TOOLS, tool_env


def fake_ap(cfg) -> float:
    """The AP (a fraction) the fake runner reports: depends on the stage, its seed and its epochs."""
    distilled = 0.05 if 'teacher_ckpt' in cfg.model else 0.0
    return 0.3 + 0.01 * cfg.randomness.seed + distilled + 0.001 * cfg.train_cfg.max_epochs


class FakeRunner:
    """Stands in for mmengine's Runner: records what it trains, writes the final checkpoint, reports AP."""
    trained = []
    fail = False
    metrics = None  # when set, what test() returns

    def __init__(self, cfg):
        self.cfg = cfg
        self.hooks = []
        self.model = types.SimpleNamespace(predict_network=None)  # a multi-network model tests this network

    @classmethod
    def from_cfg(cls, cfg):
        return cls(cfg)

    def train(self):
        if FakeRunner.fail:
            raise RuntimeError('simulated crash in training')
        print('fake runner output')  # the runner's own output goes to the stage's console.log
        FakeRunner.trained.append(self.cfg)
        open(osp.join(self.cfg.work_dir, f'epoch_{self.cfg.train_cfg.max_epochs}.pth'), 'w').close()

    def test(self):
        if FakeRunner.metrics is not None:
            return FakeRunner.metrics
        ap = fake_ap(self.cfg) + {None: 0.0, 'w32': 0.03, 'w16': 0.02}[self.model.predict_network]
        return {key: ap for _, key in METHODS['ssim'].metrics}


def use_fakes(monkeypatch, tmp_path, name):
    """The real method ``name`` with its data step replaced (no images generated) and a fake Runner."""
    FakeRunner.trained, FakeRunner.fail, FakeRunner.metrics = [], False, None
    data_root = str(tmp_path / 'data') + '/'
    method = dataclasses.replace(METHODS[name], prepare_data=lambda args: data_root)
    monkeypatch.setitem(METHODS, name, method)
    monkeypatch.setattr(stages_module, 'Runner', FakeRunner)
    return tmp_path


@pytest.fixture
def fake(monkeypatch, tmp_path):
    return use_fakes(monkeypatch, tmp_path, 'ssim')


@pytest.fixture
def fake_lad(monkeypatch, tmp_path):
    return use_fakes(monkeypatch, tmp_path, 'lad')


def run(work_dir, *argv):
    stream = io.StringIO()
    results = main(ROOT, ['--work-dir', str(work_dir), *argv], stream=stream)
    return results, stream.getvalue()


def trained_folders():
    return sorted(osp.basename(cfg.work_dir) for cfg in FakeRunner.trained)


def test_stage_records_reuse_and_retrain(fake):
    work = fake / 'work'
    results, out = run(work, '--seeds', '0', '1')
    assert trained_folders() == ['baseline_seed0', 'baseline_seed1', 'ssim_seed0', 'ssim_seed1', 'teacher']
    # the distilled students get the teacher's model config and final checkpoint
    teacher_record = json.load(open(work / 'teacher' / 'quickstart_record.json'))
    assert teacher_record['checkpoint'] == str(work / 'teacher' / 'epoch_12.pth')
    for cfg in FakeRunner.trained:
        if osp.basename(cfg.work_dir).startswith('ssim'):
            assert cfg.model.teacher_ckpt == teacher_record['checkpoint']
            assert cfg.model.teacher_cfg['backbone']['base_channels'] == 32
            assert cfg.model.student.backbone.base_channels == 16
        assert cfg.test_evaluator.ann_file == str(fake / 'data' / 'annotations' / 'instances_val.json')
        assert cfg.randomness.seed == (0 if 'teacher' in cfg.work_dir else int(cfg.work_dir[-1]))
    assert '[1/5] teacher: configs/toy/retinanet_tiny-w32_toy.py' in out
    assert '[5/5] SSIM student, seed 1: configs/ssim_kd/ssim_retinanet_tiny-w32-w16_toy.py' in out
    assert out.count('[SSIM s1] reused from') == 0 and out.count('[SSIM s1] trained in') == 1

    # the table: AP in %, one row per run, mean ± std of each student over the seeds
    baseline = [round(100 * (0.3 + 0.01 * s + 0.012), 1) for s in (0, 1)]
    distilled = [round(100 * (0.3 + 0.01 * s + 0.05 + 0.012), 1) for s in (0, 1)]
    assert [r['metrics']['AP'] for r in results['runs']] == [31.2, baseline[0], distilled[0], baseline[1], distilled[1]]
    assert results['ap_gain_per_seed'] == [5.0, 5.0]
    mean, std = statistics.fmean(distilled), statistics.stdev(distilled)
    assert results['summary']['SSIM student']['AP'] == dict(mean=round(mean, 2), std=round(std, 2))
    table = open(work / 'results.md').read()
    assert '| model | seed | AP | AP50 | AP75 | AP_S | AP_M | AP_L |' in table
    assert f'| SSIM student | mean ± std (2) | {mean:.1f} ± {std:.1f} |' in table
    assert json.load(open(work / 'results.json'))['ap_gain_per_seed'] == [5.0, 5.0]
    assert 'SSIM student - baseline student, AP per seed: +5.0, +5.0' in out
    assert 'fake runner output' not in out and 'fake runner output' in open(work / 'teacher' / 'console.log').read()

    # same configs: every stage is reused, the table is the same
    FakeRunner.trained = []
    again, out = run(work, '--seeds', '0', '1')
    assert FakeRunner.trained == [] and out.count('reused from') == 5
    assert [r['metrics'] for r in again['runs']] == [r['metrics'] for r in results['runs']]

    # another teacher seed changes the teacher's config: the teacher and the students it teaches retrain
    FakeRunner.trained = []
    run(work, '--seeds', '0', '1', '--teacher-seed', '1')
    assert trained_folders() == ['ssim_seed0', 'ssim_seed1', 'teacher']

    # other epochs change every config; --force retrains unchanged ones
    FakeRunner.trained = []
    run(work, '--seeds', '0', '--epochs', '2')
    assert trained_folders() == ['baseline_seed0', 'ssim_seed0', 'teacher']
    FakeRunner.trained = []
    run(work, '--seeds', '0', '--epochs', '2', '--force')
    assert trained_folders() == ['baseline_seed0', 'ssim_seed0', 'teacher']


def test_a_lost_checkpoint_retrains(fake):
    run(fake / 'work')
    (fake / 'work' / 'baseline_seed0' / 'epoch_12.pth').unlink()
    FakeRunner.trained = []
    run(fake / 'work')
    assert trained_folders() == ['baseline_seed0']


def test_failed_stage_names_its_log(fake):
    FakeRunner.fail = True
    stream = io.StringIO()
    with pytest.raises(RuntimeError, match='simulated crash'):
        main(ROOT, ['--work-dir', str(fake / 'work')], stream=stream)
    log = fake / 'work' / 'teacher' / 'console.log'
    assert f'[teacher] failed: the full output is in {log}' in stream.getvalue()
    assert 'simulated crash in training' in log.read_text()
    assert not (fake / 'work' / 'teacher' / 'quickstart_record.json').exists()


def test_missing_metrics(fake):
    FakeRunner.metrics = {}  # what CocoMetric returns when nothing is detected
    results, out = run(fake / 'work')
    assert results['runs'][0]['metrics'] == dict(AP=0.0, AP50=0.0, AP75=0.0, AP_S=0.0, AP_M=0.0, AP_L=0.0)
    assert 'every metric is 0' in out
    FakeRunner.metrics = {'coco/bbox_mAP': 0.5}
    with pytest.raises(KeyError, match="'coco/bbox_mAP_50'"):
        run(fake / 'work', '--force')


def test_list_and_default():
    stream = io.StringIO()
    assert main(ROOT, ['--list'], stream=stream) is None
    names = [line.split()[0] for line in stream.getvalue().splitlines()]
    assert {'lad', 'ssim'} <= set(names) and names == sorted(names)
    args = parse_args([])
    assert args.method == 'ssim' and args.work_dir == 'work_dirs/quickstart' and args.seeds == [0]
    # the CLI is a thin wrapper: --list works from a shell, in a few seconds, without training anything
    proc = subprocess.run([PYTHON, osp.join(TOOLS, 'quickstart.py'), '--list'],
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert 'LAD' in lines['lad'] and 'SSIM' in lines['ssim'], proc.stdout


@pytest.mark.parametrize('argv, message', [
    (['colad_not_yet'], "unknown method 'colad_not_yet'; the methods are: colad, lad, metric, s2sd, seg, ssim"),
    (['--seeds', 'one'], "invalid int value: 'one'"),
    (['--no-such-option'], 'unrecognized arguments: --no-such-option'),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        parse_args(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_method_definitions_are_checked():
    common = dict(summary='', metrics=(('m', 'm'), ), metric_note='', prepare_data=None, use_data=None)
    with pytest.raises(ValueError, match="stage 'student' takes its teacher from 'teacher', which is not an earlier"):
        Method('x', stages=(Stage('student', 's', 'a.py', teacher='teacher'), Stage('teacher', 't', 'b.py')), **common)
    with pytest.raises(ValueError, match="two stages have the key 'a'"):
        Method('x', stages=(Stage('a', 'a', 'a.py'), Stage('a', 'b', 'b.py')), **common)
    with pytest.raises(ValueError, match="compare names 'c'"):
        Method('x', stages=(Stage('a', 'a', 'a.py'), ), compare=('a', 'c'), **common)
    with pytest.raises(ValueError, match='compare needs a baseline and at least one method stage'):
        Method('x', stages=(Stage('a', 'a', 'a.py'), ), compare=('a', ), **common)
    with pytest.raises(ValueError, match="runs once but its teacher 'a' runs per seed"):
        Method('x', stages=(Stage('a', 'a', 'a.py'), Stage('b', 'b', 'b.py', per_seed=False, teacher='a')), **common)


def test_every_method_config_exists():
    for method in METHODS.values():
        for stage in method.stages:
            assert osp.isfile(osp.join(ROOT, stage.config)), f'{method.name}: {stage.config}'


def test_records_of_stages_without_teacher_keep_their_earlier_digest():
    # tools/quickstart.py before the shared module hashed the config alone: its teacher and baseline records
    # stay valid; a stage with a teacher also hashes the teacher's digest
    cfg = Config(dict(model=dict(type='RetinaNet', depth=18), randomness=dict(seed=0)))
    earlier = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=repr).encode()).hexdigest()[:16]
    assert stages_module.config_hash(cfg) == earlier
    assert stages_module.config_hash(cfg, ['0123456789abcdef']) != earlier


def test_lad_method_trains_teacher_baseline_lad_solad(fake_lad):
    work = fake_lad / 'work'
    results, out = run(work, 'lad', '--seeds', '0', '1')
    assert trained_folders() == [
        'baseline_seed0', 'baseline_seed1', 'lad_seed0', 'lad_seed1', 'solad_seed0', 'solad_seed1', 'teacher'
    ]
    assert '[1/7] teacher: configs/toy/paa_tiny-w32_toy.py' in out
    assert '[3/7] LAD student, seed 0: configs/lad/lad_paa-tiny-w32_paa-tiny-w16_toy.py' in out
    assert '[7/7] SoLAD student, seed 1: configs/lad/solad_paa-tiny-w32_paa-tiny-w16_toy.py' in out
    teacher_ckpt = str(work / 'teacher' / 'epoch_10.pth')
    by_folder = {osp.basename(cfg.work_dir): cfg for cfg in FakeRunner.trained}
    assert by_folder['teacher'].model.type == 'PAA' and by_folder['teacher'].model.backbone.base_channels == 32
    for seed in (0, 1):
        baseline = by_folder[f'baseline_seed{seed}']
        assert baseline.model.type == 'PAA' and baseline.model.bbox_head.type == 'PAAHead'
        for key, distiller in (('lad', 'LADDistiller'), ('solad', 'SoLADDistiller')):
            cfg = by_folder[f'{key}_seed{seed}']
            # the quickstart's own teacher replaces the config's default path and checkpoint
            assert cfg.model.type == distiller and cfg.model.teacher_ckpt == teacher_ckpt
            assert cfg.model.teacher_cfg == by_folder['teacher'].model.to_dict()
            # the distilled students differ from the baseline by the distillation only: same model, same schedule
            assert cfg.model.student.to_dict() == baseline.model.to_dict()
            for part in ('train_cfg', 'param_scheduler', 'optim_wrapper', 'train_dataloader', 'randomness'):
                assert cfg[part] == baseline[part], (key, part)
    assert [r['stage'] for r in results['runs']] == ['teacher'] + ['baseline', 'lad', 'solad'] * 2
    assert results['ap_gain_per_seed'] == [5.0, 5.0]
    assert results['ap_gains_per_seed'] == {'lad': [5.0, 5.0], 'solad': [5.0, 5.0]}
    assert 'LAD student - baseline student, AP per seed: +5.0, +5.0' in out
    assert 'SoLAD student - baseline student, AP per seed: +5.0, +5.0' in out
    table = open(work / 'results.md').read()
    for name in ('baseline student', 'LAD student', 'SoLAD student'):
        assert f'| {name} | mean ± std (2) |' in table
    assert parse_args(['lad']).work_dir == 'work_dirs/quickstart_lad'


def test_lad_toy_configs():
    """The toy PAA has mmdet's PAA head and assignment settings on the toy sizes; the LAD configs run alone with
    tools/train.py from the toy teacher's default work dir, the SoLAD one adds the soft-label losses only."""
    paa = Config.fromfile(osp.join(ROOT, 'configs/toy/paa_tiny-w16_toy.py')).model
    head = paa.bbox_head
    assert (head.type, head.num_classes, head.topk, head.score_voting, head.reg_decoded_bbox) == \
        ('PAAHead', 5, 9, True, True)
    assert head.loss_bbox.type == 'GIoULoss' and head.anchor_generator.ratios == [1.0]
    assert head.anchor_generator.scales_per_octave == 1
    assigner = paa.train_cfg.assigner
    assert (assigner.pos_iou_thr, assigner.neg_iou_thr, assigner.min_pos_iou) == (0.1, 0.1, 0)
    teacher = Config.fromfile(osp.join(ROOT, 'configs/toy/paa_tiny-w32_toy.py')).model
    assert teacher.backbone.base_channels == 32 and teacher.neck.in_channels == [32, 64, 128, 256]
    assert {k: v for k, v in teacher.items() if k not in ('backbone', 'neck')} == \
        {k: v for k, v in paa.items() if k not in ('backbone', 'neck')}

    lad = Config.fromfile(osp.join(ROOT, 'configs/lad/lad_paa-tiny-w32_paa-tiny-w16_toy.py')).model
    solad = Config.fromfile(osp.join(ROOT, 'configs/lad/solad_paa-tiny-w32_paa-tiny-w16_toy.py')).model
    assert lad.student == paa and solad.student == paa
    assert lad.teacher_cfg == solad.teacher_cfg == osp.join(ROOT, 'configs/lad/../toy/paa_tiny-w32_toy.py')
    assert lad.teacher_ckpt == solad.teacher_ckpt == 'work_dirs/paa_tiny-w32_toy/epoch_10.pth'
    assert 'soft_label_loss' not in lad and 'box_distill_loss' not in lad
    assert (lad.type, solad.type) == ('LADDistiller', 'SoLADDistiller')
    # the losses of configs/lad/solad_paa-r101_paa-r50_fpn_1x_coco.py
    distill = dict(
        soft_label_loss=dict(type='SoftLabelKLLoss', gamma=0.5, loss_weight=1.0),
        box_distill_loss=dict(type='GIoULoss', loss_weight=1.3),
        distill_iou_thr=0.5)
    assert {k: solad.pop(k) for k in distill} == distill
    assert dict(solad, type=None) == dict(lad, type=None)


@pytest.mark.parametrize('config, epochs, milestones', [
    ('configs/toy/retinanet_tiny-w16_toy.py', 6, [4, 6]),
    ('configs/toy/paa_tiny-w16_toy.py', 10, [7, 9]),
    ('configs/toy/paa_tiny-w16_toy.py', 12, [8, 11]),
    ('configs/toy/paa_tiny-w16_toy.py', 20, [14, 18]),
])
def test_epochs_scale_the_lr_steps_of_the_config(config, epochs, milestones, tmp_path):
    """--epochs moves the lr steps to the same fractions of the new length as in the config's own schedule
    (the toy PAA trains 10 epochs, stepping after 7 and 9; the toy RetinaNet 12, stepping after 8 and 11)."""
    cfg = stages_module.stage_config(osp.join(ROOT, config), str(tmp_path), seed=0, epochs=epochs)
    assert cfg.train_cfg.max_epochs == epochs
    step = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR'][0]
    assert step.milestones == milestones and step.end == epochs


def test_colad_method_tests_each_network_of_the_pair(monkeypatch, tmp_path):
    work = use_fakes(monkeypatch, tmp_path, 'colad') / 'work'
    results, out = run(work, 'colad', '--seeds', '0', '1')
    assert trained_folders() == [
        'alone_w16_seed0', 'alone_w16_seed1', 'alone_w32_seed0', 'alone_w32_seed1', 'colad_seed0', 'colad_seed1'
    ]
    by_folder = {osp.basename(cfg.work_dir): cfg for cfg in FakeRunner.trained}
    pair = by_folder['colad_seed1']
    assert pair.model.type == 'CoLAD' and list(pair.model.networks) == ['w32', 'w16']
    # the method's 8 epochs, applied to every network's schedule (milestones 7, 9 of 10 -> 6, 7 of 8)
    assert all(cfg.train_cfg.max_epochs == 8 for cfg in FakeRunner.trained)
    for schedule in pair.param_scheduler.values():
        assert schedule[1].milestones == [6, 7] and schedule[1].end == 8
    rows = [(r['model'], r['seed'], r['metrics']['AP']) for r in results['runs']]
    base = [round(100 * (0.3 + 0.01 * s + 0.008), 1) for s in (0, 1)]
    assert rows == [('w32 alone', 0, base[0]), ('w16 alone', 0, base[0]), ('CoLAD w32', 0, round(base[0] + 3, 1)),
                    ('CoLAD w16', 0, round(base[0] + 2, 1)), ('w32 alone', 1, base[1]), ('w16 alone', 1, base[1]),
                    ('CoLAD w32', 1, round(base[1] + 3, 1)), ('CoLAD w16', 1, round(base[1] + 2, 1))]
    assert results['ap_gains_per_seed'] == {'colad.w16': [2.0, 2.0], 'colad.w32': [3.0, 3.0]}
    assert results['ap_gain_per_seed'] == [2.0, 2.0]
    assert 'CoLAD w16 - w16 alone, AP per seed: +2.0, +2.0' in out
    assert 'CoLAD w32 - w32 alone, AP per seed: +3.0, +3.0' in out
    assert set(results['summary']) == {'w32 alone', 'w16 alone', 'CoLAD w32', 'CoLAD w16'}
    assert '| CoLAD w16 | mean ± std (2) |' in open(work / 'results.md').read()
    # a finished pair is reused with both networks' metrics
    FakeRunner.trained = []
    again, out = run(work, 'colad', '--seeds', '0', '1')
    assert FakeRunner.trained == [] and [r['metrics'] for r in again['runs']] == [r['metrics'] for r in results['runs']]


def test_compare_groups_are_checked():
    common = dict(summary='', metrics=(('AP', 'ap'), ), metric_note='', prepare_data=None, use_data=None)
    pair = Stage('pair', 'pair', 'p.py', networks=(('a', 'A'), ('b', 'B')))
    method = Method('x', stages=(Stage('alone', 'alone', 'a.py'), pair), compare=(('alone', 'pair.a'), ), **common)
    assert method.compare_groups() == (('alone', 'pair.a'), )
    with pytest.raises(ValueError, match=r"compare names 'pair', which is not a per-seed stage"):
        Method('x', stages=(Stage('alone', 'alone', 'a.py'), pair), compare=(('alone', 'pair'), ), **common)
    with pytest.raises(ValueError, match='compare needs a baseline and at least one'):
        Method('x', stages=(Stage('alone', 'alone', 'a.py'), pair), compare=(('alone', ), ), **common)


@pytest.mark.parametrize('outputs, shown', [
    (dict(loss=0.5, loss_cls=0.3), 'loss 0.500 '),
    ({
        'w32.loss': 1.0,
        'w32.loss_cls': 0.4,
        'w16.loss': 2.0
    }, 'loss w32 1.000 / w16 2.000 '),
    (dict(acc=1.0), 'loss nan '),
])
def test_progress_line_shows_every_networks_loss(outputs, shown):
    stream = io.StringIO()
    hook = stages_module.QuickstartProgressHook('x')
    hook.stream = stream
    runner = types.SimpleNamespace(iter=0, max_iters=4, epoch=0, max_epochs=1, train_dataloader=[0] * 4)
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, outputs={k: torch.tensor(v) for k, v in outputs.items()})
    assert shown in stream.getvalue()


def test_each_method_has_its_default_data_root():
    assert parse_args([]).data_root == 'data/toy_shapes/'
    assert parse_args(['metric']).data_root == 'data/toy_retrieval/'
    assert parse_args(['s2sd']).data_root == 'data/toy_retrieval/'
    assert parse_args(['metric', '--data-root', 'elsewhere/']).data_root == 'elsewhere/'
