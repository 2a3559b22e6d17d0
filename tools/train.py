"""Train a detector, segmentor or distiller from an mmdet / mmseg / mmkd config (mmengine Runner)."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.registry import RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint

from mmkd.utils import prepare_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model with mmkd registered')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest checkpoint in the work dir if none is given')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs such as model.teacher_ckpt=path')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        # mmengine's AmpOptimWrapper needs an accelerator; on a CPU mmkd's wrapper autocasts to bfloat16
        amp_type = 'AmpOptimWrapper' if get_device() != 'cpu' else 'CPUAmpOptimWrapper'
        optim_wrapper = cfg.optim_wrapper
        if optim_wrapper.get('constructor') == 'MultiNetworkOptimWrapperConstructor':
            # one wrapper per network: each network's entry gets mixed precision
            wrappers = [w for k, w in optim_wrapper.items() if k != 'paramwise_cfg' and isinstance(w, dict)]
        else:
            wrappers = [optim_wrapper]
        for wrapper in wrappers:
            wrapper.type = amp_type
            wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config} has no auto_scale_lr.base_batch_size: --auto-scale-lr needs it')
        cfg.auto_scale_lr.enable = True
    nothing_to_resume = False
    if args.resume == 'auto':
        # mmengine would log 'Auto resumed from the latest checkpoint None' and train from scratch
        nothing_to_resume = find_latest_checkpoint(cfg.work_dir) is None
        cfg.resume = not nothing_to_resume
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    # RNG states go into every checkpoint, so that --resume continues exactly (mmkd.engine.RNGStateHook)
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') in ('RNGStateHook', 'mmkd.RNGStateHook') for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RNGStateHook')]
    # crash-safe checkpointing (mmkd.engine.hooks.SafeCheckpointHook) in place of mmengine's CheckpointHook
    default_hooks = cfg.get('default_hooks', None) or {}
    checkpoint_hook = default_hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))
    if checkpoint_hook is not None and checkpoint_hook.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        cfg.default_hooks = dict(default_hooks, checkpoint=dict(checkpoint_hook, type='SafeCheckpointHook'))
    prepare_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if nothing_to_resume:
        runner.logger.warning(f'--resume: no checkpoint to resume from in {cfg.work_dir} (no last_checkpoint '
                              'file): training starts from scratch')
    runner.train()


if __name__ == '__main__':
    main()
