"""S2SDFeatureDistillationHook in mmengine's Runner: the F term of S2SD is 0 before ``start_iter`` and on from that
(0-based) iteration, also across a resume; the checks of the model it is given."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch.utils.data import DataLoader, Dataset

from mmkd.engine.hooks import S2SDFeatureDistillationHook
from mmkd.models.embedding import ImageEmbedder, S2SDEmbedder

LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
EMBEDDER = dict(
    type='ImageEmbedder',
    backbone=dict(type='ResNet', depth=18, base_channels=4, out_indices=(3, ), norm_eval=False),
    embed_dim=8,
    normalize=True,
    loss=dict(type='MultiSimilarityLoss'))


def s2sd(feat_distill_weight=5.0):
    return dict(type='S2SDEmbedder', embedder=EMBEDDER, target_dims=(16, ), feat_distill_weight=feat_distill_weight)


class Images(Dataset):
    """Seeded random 32 x 32 uint8 images with the labels ``LABELS``, repeated: mmengine's iteration loop sleeps 2 s at
    the end of each pass over the data, so a test run stays within one pass."""

    repeats = 8

    def __init__(self):
        self.images = torch.randint(
            0, 256, (len(LABELS), 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)

    def __len__(self):
        return len(LABELS) * self.repeats

    def __getitem__(self, index):
        index %= len(LABELS)
        sample = BaseDataElement()
        sample.gt_label = torch.tensor(LABELS[index])
        return dict(inputs=self.images[index], data_samples=sample)


class Recorder(Hook):
    """After each training iteration: (runner.iter, logged loss_feat_distill, the model's switch)."""

    priority = 'LOWEST'

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen.append((runner.iter, outputs['loss_feat_distill'].item(), runner.model.feature_distillation))


def train(work_dir, max_iters, start_iter=2, resume_from=None, model=None, hooks=1):
    recorder = Recorder()
    custom_hooks = [dict(type='S2SDFeatureDistillationHook', start_iter=start_iter + i) for i in range(hooks)]
    runner = Runner(
        model=model or s2sd(),
        work_dir=str(work_dir),
        train_dataloader=DataLoader(Images(), batch_size=len(LABELS), collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=custom_hooks + [recorder],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
        load_from=str(resume_from) if resume_from else None,
        resume=resume_from is not None,
        default_scope='mmkd',
        randomness=dict(seed=0),
        # one name per runner: two runners of one second would otherwise share mmengine's logger and visualizer
        experiment_name=f'{work_dir.name}-{max_iters}-{"resumed" if resume_from else "new"}',
        log_level='WARNING')
    runner.train()
    return recorder.seen


def _check_switch(seen, start_iter):
    for it, feat, switch in seen:
        if it < start_iter:
            assert feat == 0.0 and switch is False, (it, feat, switch)
        else:
            assert feat > 1e-4 and switch is True, (it, feat, switch)


def test_switches_at_start_iter(tmp_path):
    seen = train(tmp_path, max_iters=4, start_iter=2)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    _check_switch(seen, 2)


def test_start_iter_zero_switches_on_from_the_first_iteration(tmp_path):
    seen = train(tmp_path, max_iters=2, start_iter=0)
    assert [s[0] for s in seen] == [0, 1]
    _check_switch(seen, 0)


@pytest.mark.parametrize('stop', [3, 1], ids=['past-the-switch', 'before-the-switch'])
def test_resume_keeps_the_switch_of_an_uninterrupted_run(tmp_path, stop):
    first = train(tmp_path, max_iters=stop, start_iter=2)
    assert [s[0] for s in first] == list(range(stop))
    resumed = train(tmp_path, max_iters=4, start_iter=2, resume_from=tmp_path / f'iter_{stop}.pth')
    assert [s[0] for s in resumed] == list(range(stop, 4))
    _check_switch(first + resumed, 2)


def test_model_refuses_to_train_without_the_hook(tmp_path):
    with pytest.raises(RuntimeError, match='feat_distill_weight > 0 but no S2SDFeatureDistillationHook'):
        train(tmp_path, max_iters=1, hooks=0)


def test_refuses_two_hooks(tmp_path):
    """Two hooks in custom_hooks would each set the switch, the last one silently winning every iteration."""
    with pytest.raises(ValueError, match=r'S2SDFeatureDistillationHook: the runner has 2 of these hooks'):
        train(tmp_path, max_iters=1, hooks=2)


def _log_text(work_dir) -> str:
    logs = list(work_dir.glob('*/*.log'))
    assert len(logs) == 1, logs
    return logs[0].read_text()


@pytest.mark.parametrize('start_iter', [2, 5])
def test_warns_when_start_iter_is_past_the_run(tmp_path, start_iter):
    seen = train(tmp_path, max_iters=2, start_iter=start_iter)
    assert [s[1:] for s in seen] == [(0.0, False), (0.0, False)]
    assert f'start_iter={start_iter} >= max_iters=2 of this run' in _log_text(tmp_path)


def test_no_warning_when_the_switch_happens(tmp_path):
    train(tmp_path, max_iters=2, start_iter=1)
    assert 'S2SDFeatureDistillationHook' not in _log_text(tmp_path)


def _fake_runner(model, it=0):
    return SimpleNamespace(model=model, iter=it, hooks=[], max_iters=100)


def test_refuses_a_model_without_feature_distillation():
    model = S2SDEmbedder(EMBEDDER, target_dims=(16, ))
    hook = S2SDFeatureDistillationHook(start_iter=3)
    with pytest.raises(ValueError, match='the model has feat_distill_weight=0'):
        hook.before_train(_fake_runner(model))
    with pytest.raises(ValueError, match='the model has feat_distill_weight=0'):
        hook.before_train_iter(_fake_runner(model), 0)
    assert model.feature_distillation is None


def test_refuses_a_model_that_is_not_s2sd():
    hook = S2SDFeatureDistillationHook(start_iter=3)
    embedder = ImageEmbedder(**{k: v for k, v in EMBEDDER.items() if k != 'type'})
    with pytest.raises(TypeError, match='needs an S2SDEmbedder model, got ImageEmbedder'):
        hook.before_train(_fake_runner(embedder))


def test_sets_the_switch_from_the_runners_iteration():
    model = S2SDEmbedder(EMBEDDER, target_dims=(16, ), feat_distill_weight=5.0)
    hook = S2SDFeatureDistillationHook(start_iter=3)
    switches = []
    for it in (0, 2, 3, 7, 1):
        hook.before_train_iter(_fake_runner(model, it), 0)
        switches.append(model.feature_distillation)
    assert switches == [False, False, True, True, False]


def test_unwraps_a_distributed_model():
    """The switch goes to the S2SD model inside mmengine's DDP wrapper (built here without a process group)."""
    model = S2SDEmbedder(EMBEDDER, target_dims=(16, ), feat_distill_weight=5.0)
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    hook = S2SDFeatureDistillationHook(start_iter=1)
    hook.before_train(_fake_runner(wrapper))
    hook.before_train_iter(_fake_runner(wrapper, 1), 0)
    assert model.feature_distillation is True and not hasattr(wrapper, 'feature_distillation')


@pytest.mark.parametrize('start_iter', [-1, 1.5, True, '1000', None])
def test_bad_start_iter_refused(start_iter):
    with pytest.raises(ValueError, match=r'S2SDFeatureDistillationHook: start_iter must be an int >= 0, got '):
        S2SDFeatureDistillationHook(start_iter=start_iter)
