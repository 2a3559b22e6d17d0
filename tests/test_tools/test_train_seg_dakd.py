"""tools/train.py on the toy segmentation domain-adaptation configs (configs/seg_dakd), with a tiny segmentor on
small generated toy scenes: the adapted teacher run, its resume (both optimizers exactly), and a domain-adaptive
distillation run from the teacher's checkpoint."""
import json
import os
import os.path as osp
import signal
import subprocess

import pytest
import torch
from mmengine.config import Config

from mmkd.datasets import generate_toy_scenes
from ..conftest import CONFIGS, PYTHON, ROOT, TOOLS, tool_env
from ..test_engine.checkpoint_toy import train as train_with_fault
from ..test_models.test_segmentation import tiny_segmentor

GENERATE = dict(num_train=8, num_val=4, image_size=(32, 64))
ITERS, HALF = 6, 3

# the run's settings beside a toy config: the generated scenes, a few iterations, a checkpoint halfway
RUN = '''
data = {data!r}
generate = {generate!r}
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(source=dict(data_root=data, generate=generate), target=dict(data_root=data, generate=generate)))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data, generate=generate))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(checkpoint=dict(interval={half}, max_keep_ckpts=-1), logger=dict(interval=1))
randomness = dict(seed=0)
'''
# the toy configs with a 4-wide ResNet-18 FCN student and a small discriminator
ADAPTSEG = '''
_base_ = [{base!r}]
model = dict(student={student!r}, discriminator=dict(type='OutputSpaceDiscriminator', base_channels=8, num_convs=3))
'''
DAKD = '''
_base_ = [{base!r}]
model = dict(
    student={student!r},
    teacher_cfg={adaptseg!r},
    teacher_ckpt={teacher_ckpt!r},
    discriminator=dict(type='OutputSpaceDiscriminator', base_channels=8, num_convs=3))
'''
# in another process (a Runner sets process-wide state): resume from a checkpoint without training, and compare
# each network's optimizer with the checkpoint's; build the distiller and compare its teacher with the student of
# the teacher run's checkpoint
CHECK = '''
import sys, torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmkd.registry import SEG_MODELS
from mmkd.utils.build import build_in_scope

config, work_dir, checkpoint, dakd_config = sys.argv[1:]
cfg = Config.fromfile(config)
cfg.work_dir, cfg.resume, cfg.load_from = work_dir, True, checkpoint
runner = Runner.from_cfg(cfg)
runner.resume(checkpoint)
saved = torch.load(checkpoint, map_location='cpu', weights_only=False)
model = runner.model
for name in ('student', 'discriminator'):
    optimizer = runner.optim_wrapper[name].optimizer
    network = dict(getattr(model, name).named_parameters())
    state, expected = optimizer.state_dict(), saved['optimizer'][name]
    assert state['param_groups'] == expected['param_groups'], name
    assert state['state'].keys() == expected['state'].keys() and len(state['state']) == len(network), name
    for index, values in expected['state'].items():
        for key, value in values.items():
            assert torch.equal(state['state'][index][key], value), (name, index, key)
    # each state belongs to a parameter of its own network, in order: the shapes match one for one
    params = [p for group in optimizer.param_groups for p in group['params']]
    assert {id(p) for p in params} == {id(p) for p in network.values()}, name
    for index, p in enumerate(params):
        tensors = [v for v in optimizer.state[p].values() if v.dim() > 0]
        assert tensors and all(v.shape == p.shape for v in tensors), (name, index)
    print('RESUMED', name, len(state['state']), sorted(state['state'][0]))
dakd_cfg = Config.fromfile(dakd_config).model
teacher = build_in_scope(dakd_cfg, SEG_MODELS).teacher.state_dict()
trained = torch.load(dakd_cfg.teacher_ckpt, map_location='cpu', weights_only=False)['state_dict']
students = {key[len('student.'):]: value for key, value in trained.items() if key.startswith('student.')}
assert students.keys() == teacher.keys()
for key, value in students.items():
    assert torch.equal(teacher[key], value), key
print('TEACHER', len(students))
'''


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _train(config, work_dir, *args):
    return _run([PYTHON, osp.join(TOOLS, 'train.py'), str(config), '--work-dir', str(work_dir), *args], ROOT)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The toy adapted run: 6 iterations straight; 3, then --resume to 6; the distiller from its checkpoint."""
    work = tmp_path_factory.mktemp('train_seg_dakd')
    data = generate_toy_scenes(str(work / 'toy_scenes'), seed=0, **GENERATE) + '/'
    student = work / 'student.py'
    # dropout, as in the toy configs: the resumed run draws from torch's generator too
    student.write_text(f'model = {tiny_segmentor(num_classes=7, width=4, dropout=0.1)!r}\n')
    adaptseg = work / 'adaptseg.py'
    adaptseg.write_text(
        ADAPTSEG.format(
            base=osp.join(CONFIGS, 'seg_dakd', 'adaptseg_deeplabv3plus-w8_toy-scenes.py'), student=str(student)) +
        RUN.format(data=data, generate=GENERATE, iters=ITERS, half=HALF))
    _train(adaptseg, work / 'full')
    _train(adaptseg, work / 'part', '--cfg-options', f'train_cfg.max_iters={HALF}')
    resumed_log = _train(adaptseg, work / 'part', '--resume')
    dakd = work / 'dakd.py'
    dakd.write_text(
        DAKD.format(
            base=osp.join(CONFIGS, 'seg_dakd', 'dakd-c_deeplabv3plus-w32-w8_toy-scenes.py'),
            adaptseg=str(adaptseg),
            student=str(student),
            teacher_ckpt=str(work / 'full' / f'iter_{ITERS}.pth')) +
        RUN.format(data=data, generate=GENERATE, iters=4, half=4))
    dakd_log = _train(dakd, work / 'dakd')
    return dict(work=work, adaptseg=adaptseg, dakd=dakd, resumed_log=resumed_log, dakd_log=dakd_log)


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def _assert_equal(a, b, where=''):
    """Nested dicts / lists of tensors and numbers, equal bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_checkpoint_holds_both_networks_optimizers_and_schedules(trained):
    ckpt = _load(trained['work'] / 'full' / f'iter_{HALF}.pth')
    assert ckpt['meta']['iter'] == HALF and 'mmkd_rng_state' in ckpt
    assert {k.split('.')[0] for k in ckpt['state_dict']} == {'student', 'discriminator'}
    assert set(ckpt['optimizer']) == set(ckpt['param_schedulers']) == {'student', 'discriminator'}
    student, disc = ckpt['optimizer']['student'], ckpt['optimizer']['discriminator']
    assert set(student['state'][0]) == {'momentum_buffer'}  # SGD
    assert set(disc['state'][0]) == {'step', 'exp_avg', 'exp_avg_sq'}  # Adam
    assert {s['step'].item() for s in disc['state'].values()} == {float(HALF)}
    # PolyLR (power 0.9, end=max_iters of the toy schedule: mmengine's reaches eta_min 0 at step end - 1) after HALF
    # steps, from 0.02 and 1e-4
    end = Config.fromfile(osp.join(CONFIGS, '_base_', 'schedules', 'toy_seg.py')).max_iters
    factor = (1 - HALF / (end - 1))**0.9
    assert student['param_groups'][0]['lr'] == pytest.approx(0.02 * factor, rel=1e-6)
    assert disc['param_groups'][0]['lr'] == pytest.approx(1e-4 * factor, rel=1e-6)


def test_resume_restores_both_optimizers_exactly(trained):
    work = trained['work']
    checkpoint = work / 'part' / f'iter_{HALF}.pth'
    out = _run(
        [PYTHON, '-c', CHECK,
         str(trained['adaptseg']),
         str(work / 'check'),
         str(checkpoint),
         str(trained['dakd'])], ROOT)
    assert 'RESUMED student' in out and "RESUMED discriminator" in out and 'TEACHER' in out
    assert 'RNGStateHook: RNG states restored from the resumed checkpoint' in trained['resumed_log']


def test_interrupted_and_resumed_run_ends_as_the_uninterrupted_one(trained):
    work = trained['work']
    for it in (HALF, ITERS):
        full, part = _load(work / 'full' / f'iter_{it}.pth'), _load(work / 'part' / f'iter_{it}.pth')
        assert full['meta']['iter'] == part['meta']['iter'] == it
        for key in ('state_dict', 'optimizer', 'param_schedulers'):
            _assert_equal(full[key], part[key], f'iter {it} {key}')
    halfway, end = _load(work / 'full' / f'iter_{HALF}.pth'), _load(work / 'full' / f'iter_{ITERS}.pth')
    for prefix in ('student.', 'discriminator.'):
        key = next(k for k in end['state_dict'] if k.startswith(prefix) and k.endswith('weight'))
        assert not torch.equal(halfway['state_dict'][key], end['state_dict'][key]), key


def test_adaptation_logs_both_networks(trained):
    scalars = next((trained['work'] / 'full').glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    logged = set().union(*records)
    assert {
        'student.decode.loss_ce', 'student.aux.loss_ce', 'student.decode.loss_adv', 'student.aux.loss_adv',
        'discriminator.decode.loss_source', 'discriminator.decode.loss_target', 'discriminator.aux.loss_source',
        'discriminator.aux.loss_target', 'student.lr', 'discriminator.lr', 'mIoU'
    } <= logged
    # ln 2 / 2 each at the start: the discriminator cannot tell the domains apart yet
    first = records[0]
    assert first['discriminator.decode.loss_source'] == pytest.approx(0.3466, abs=0.02)


def test_distiller_trains_end_to_end_from_the_teacher_checkpoint(trained):
    work = trained['work']
    ckpt = _load(work / 'dakd' / 'iter_4.pth')
    assert {k.split('.')[0] for k in ckpt['state_dict']} == {'student', 'discriminator'}  # no teacher
    assert set(ckpt['optimizer']) == {'student', 'discriminator'}
    assert 'teacher_ckpt is None' not in trained['dakd_log']
    scalars = next((work / 'dakd').glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    logged = set().union(*records)
    for domain in ('source', 'target'):
        assert {f'student.{domain}.decode.loss_{term}' for term in ('kl', 'mse', 'ce')} <= logged
    assert 'mIoU' in logged and 'discriminator.decode.loss_target' in logged
    assert all(r['student.loss'] == r['student.loss'] for r in records if 'student.loss' in r)  # no NaN


def test_run_killed_while_saving_resumes_from_the_last_good_checkpoint(trained):
    """kill -9 of the adapted run as it writes its second checkpoint: the first (both networks, both optimizers)
    stays the one to resume from, and the resumed run ends as the uninterrupted one."""
    work, full = trained['work'] / 'killed', trained['work'] / 'full'
    work.mkdir()
    proc = train_with_fault(str(trained['adaptseg']), str(work), fault=('write', f'iter_{ITERS}.pth', 1))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (work / f'iter_{ITERS}.pth').exists()
    assert (work / 'last_checkpoint').read_text() == str(work / f'iter_{HALF}.pth')
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _assert_equal(_load(work / f'iter_{HALF}.pth')[key], _load(full / f'iter_{HALF}.pth')[key], key)
    proc = train_with_fault(str(trained['adaptseg']), str(work), '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'resumed epoch: 0, iter: {HALF}' in proc.stdout + proc.stderr
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _assert_equal(_load(work / f'iter_{ITERS}.pth')[key], _load(full / f'iter_{ITERS}.pth')[key], key)
    assert not [name for name in os.listdir(work) if name.endswith('.tmp')]  # the killed write's leftover


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (bfloat16) path of --amp')
def test_amp_trains_the_distiller_on_the_cpu(trained):
    """tools/train.py --amp: both networks' wrappers in mixed precision (bfloat16 autocast on the CPU)."""
    work = trained['work'] / 'dakd_amp'
    _train(trained['dakd'], work, '--amp', '--cfg-options', 'train_cfg.max_iters=2')
    checkpoint = _load(work / 'iter_2.pth')
    assert set(checkpoint['optimizer']) == {'student', 'discriminator'}
    assert all('loss_scaler' in state for state in checkpoint['optimizer'].values())  # AMP wrappers trained
    scalars = next(work.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in scalars.read_text().splitlines() if 'student.loss' in line]
    assert len(records) == 2
    terms = ('kl', 'mse', 'ce')
    distillation = {f'student.{domain}.decode.loss_{term}' for domain in ('source', 'target') for term in terms}
    for record in records:
        losses = {k: v for k, v in record.items() if '.loss' in k}
        assert distillation <= set(losses)
        assert 'discriminator.decode.loss_target' in losses
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), record
