"""The training-step cost of S2SD: an MSDFA step against the baseline step of the same embedder.

Issue 12: an S2SD training step (four target branches, their criteria, the similarity distillation) should cost at
most 1.15x the baseline step (Roth et al., ICML 2021: the branches are small MLPs on the pooled feature, next to a
ResNet-50's forward and backward). Everything runs in one process, on the same batch, with the same embedder.

**Setting** (the paper's, supplementary Sec. A, by default): an ``ImageEmbedder`` with mmdet's ResNet-50
(``norm_eval=True``: BatchNorm frozen in eval mode, as the paper's; nothing frozen otherwise), global average
pooling, a 128-d L2-normalised embedding, the margin loss with distance-weighted sampling (margin 0.2, one learnable
beta of 1.2 shared by the classes), Adam (lr 1e-5, weight decay 3e-4); a batch of 112 = 56 classes x 2 images of
224x224 (uniform random uint8 pixels, on ``--device`` as a data loader gives them). From random weights (nothing
is downloaded). The S2SD model is MSDFA: ``S2SDEmbedder`` of the same embedder (its weights copied from the
baseline's, checked) with target branches of 512 / 1024 / 1536 / 2048 dimensions, each with its own margin loss,
``target_pooling='avg_max'``, gamma 50, and feature distillation (weight 50) switched on, as past the hook's
``start_iter``. ``--backbone-depth``, ``--base-channels``, ``--batch-size``, ``--image-size`` change the setting.

**Timed** (round-robin: the modes take turns, the first rotating each round; ``--warmup`` unrecorded rounds, then
``--iters`` recorded ones; the median [min-max]), on the wall clock and, on the CPU, in the process's CPU time:

* (a) the baseline step: ``train_step`` (data preprocessor, forward, margin loss, backward, Adam step);
* (b) the S2SD step: the same for the MSDFA model;
* (c) the head alone, on fixed backbone features (the last map of one backbone forward of the batch, computed
  once): the model's own ``loss`` with its backbone replaced by those features, backward, and an Adam step of the
  head's parameters: for the baseline pooling, embedding and margin loss; for S2SD also the four branches, their
  criteria and the five KL terms. (c) S2SD - (c) baseline is what S2SD adds to a step.

**Peak memory** (unless ``--no-memory``), of one more step of each model after the timing: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before; on the CPU the rise of the peak resident set
(``VmHWM``, reset before the step; glibc's mmap threshold pinned as in ``bench_retrieval.py``).

    python bench/bench_s2sd.py                                   # CPU, the paper's setting, 2 + 5 rounds
    python bench/bench_s2sd.py --device cuda --amp --iters 20 --out s2sd_cuda.json
    python bench/bench_s2sd.py --batch-size 32 --image-size 128  # a lighter CPU run
    python bench/bench_s2sd.py --quick                           # smoke run: ResNet-18 w8, batch 8 of 32x32

The last line reads the wall-clock ratio (b) / (a) against the 1.15x target; after ``--quick`` it only reports it:
there the tiny backbone costs less than the target branches, so the ratio says nothing about the paper's setting.
"""
import argparse
import copy
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from bench_utils import (check_device, device_name, peak_memory, time_round_robin_clocks, unmap_freed_memory,
                         with_load_average, write_results)
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import BaseDataElement

import mmkd  # noqa: F401  (registers ImageEmbedder, S2SDEmbedder and the metric losses)
from mmkd.registry import MODELS

TARGET_DIMS = (512, 1024, 1536, 2048)
TARGET_RATIO = 1.15  # issue 12: the S2SD step at most this times the baseline step (wall clock)
MODES = ('baseline step', 'S2SD step', 'baseline head', 'S2SD head')
S2SD_TERMS = ('loss_base', 'loss_target', 'loss_distill', 'loss_feat_distill')


def embedder_config(args) -> dict:
    """The baseline ``ImageEmbedder`` config of the setting."""
    return dict(
        type='ImageEmbedder',
        backbone=dict(
            type='ResNet',
            depth=args.backbone_depth,
            base_channels=args.base_channels,
            out_indices=(3, ),
            frozen_stages=-1,
            norm_eval=True),
        embed_dim=args.embed_dim,
        pooling='avg',
        normalize=True,
        loss=dict(type='MarginLoss', margin=0.2, beta=1.2, learn_beta=True))


def build_models(args, device: str):
    """(baseline ImageEmbedder, MSDFA S2SDEmbedder) with the same embedder weights, in ``train()`` mode."""
    cfg = embedder_config(args)
    torch.manual_seed(args.seed)
    baseline = MODELS.build(copy.deepcopy(cfg))
    baseline.init_weights()
    s2sd = MODELS.build(
        dict(
            type='S2SDEmbedder',
            embedder=copy.deepcopy(cfg),
            target_dims=TARGET_DIMS,
            target_pooling='avg_max',
            distill_weight=50.0,
            feat_distill_weight=50.0))
    s2sd.init_weights()
    s2sd.embedder.load_state_dict(baseline.state_dict())
    reference, copied = baseline.state_dict(), s2sd.embedder.state_dict()
    if copied.keys() != reference.keys() or not all(torch.equal(copied[k], reference[k]) for k in reference):
        raise RuntimeError('bench_s2sd: the S2SD model\'s embedder does not have the baseline\'s weights')
    s2sd.feature_distillation = True  # F on, as after S2SDFeatureDistillationHook's start_iter
    return baseline.to(device).train(), s2sd.to(device).train()


def optim_wrapper(params, args):
    optimizer = torch.optim.Adam(params, lr=1e-5, weight_decay=3e-4)
    return AmpOptimWrapper(optimizer=optimizer) if args.amp else OptimWrapper(optimizer=optimizer)


def random_batch(args, device: str) -> dict:
    """A data loader's batch: (B, 3, H, W) uint8 images on ``device`` and data samples with ``gt_label``, 2 per
    class."""
    gen = torch.Generator().manual_seed(args.seed)
    size = args.image_size
    inputs = torch.randint(0, 256, (args.batch_size, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(args.batch_size // 2).repeat_interleave(2)
    samples = [BaseDataElement(gt_label=label) for label in labels.to(device)]
    return dict(inputs=inputs.to(device), data_samples=samples)


def head_step(model, embedder, feats, optim, batch: dict) -> Callable[[], Dict[str, float]]:
    """A step of ``model``'s head (its own ``loss``) on fixed backbone ``feats``: ``embedder``'s backbone (the
    model's own, or the model itself for the baseline) is replaced by a lookup of ``feats`` in this copy."""
    embedder.extract_feat = lambda inputs: feats

    def step() -> Dict[str, float]:
        with optim.optim_context(model):
            losses = model.loss(batch['inputs'], batch['data_samples'])
        loss, log_vars = model.parse_losses(losses)
        optim.update_params(loss)
        return log_vars

    return step


def _stats(times: List[float]) -> dict:
    return dict(median=statistics.median(times), min=min(times), max=max(times))


def run(args, device: str) -> dict:
    """Build, time, measure; the JSON content (see the module docstring)."""
    baseline, s2sd = build_models(args, device)
    data = random_batch(args, device)
    models = {'baseline step': baseline, 'S2SD step': s2sd}
    optims = {mode: optim_wrapper(model.parameters(), args) for mode, model in models.items()}

    # the heads: copies of the models whose backbone is replaced by the batch's fixed last feature map
    with torch.no_grad():
        batch = baseline.data_preprocessor(data, True)
        with optims['baseline step'].optim_context(baseline):
            feats = tuple(f.detach() for f in baseline.extract_feat(batch['inputs']))
    head_models = {'baseline head': copy.deepcopy(baseline), 'S2SD head': copy.deepcopy(s2sd)}
    heads = {}
    for mode, model in head_models.items():
        embedder = model.embedder if mode == 'S2SD head' else model
        params = [p for name, p in model.named_parameters() if '.backbone.' not in f'.{name}']
        heads[mode] = head_step(model, embedder, feats, optim_wrapper(params, args), batch)

    first = {}

    def step(mode: str) -> None:
        if mode in heads:
            log_vars = heads[mode]()
        else:
            log_vars = models[mode].train_step(data, optims[mode])
        first.setdefault(mode, {k: float(v.detach()) for k, v in log_vars.items()})

    clocks = {'wall': time.perf_counter}
    if device == 'cpu':
        clocks['cpu'] = time.process_time
    timings = time_round_robin_clocks({mode: (lambda m=mode: step(m))
                                       for mode in MODES}, device, args.warmup, args.iters, clocks)
    timing = {}
    for clock, times in timings.items():
        ms = {mode: _stats(t) for mode, t in times.items()}
        step_ratios = [s / b for s, b in zip(times['S2SD step'], times['baseline step'])]
        head_added = [s - b for s, b in zip(times['S2SD head'], times['baseline head'])]
        timing[clock] = dict(
            times_ms=times,
            ms=ms,
            ratio=ms['S2SD step']['median'] / ms['baseline step']['median'],
            per_round_ratio=_stats(step_ratios),
            head_added_ms=_stats(head_added),
            head_added_fraction=statistics.median(head_added) / ms['baseline step']['median'])
    memory = {}
    if not args.no_memory:
        for mode in ('baseline step', 'S2SD step'):
            _, memory[mode] = peak_memory(lambda m=mode: models[m].train_step(data, optims[m]), device)
    return dict(
        setting=dict(
            backbone=f'ResNet-{args.backbone_depth}',
            base_channels=args.base_channels,
            embed_dim=args.embed_dim,
            target_dims=list(TARGET_DIMS),
            batch_size=args.batch_size,
            image_size=args.image_size,
            feature_shape=list(feats[-1].shape),
            amp=args.amp,
            quick=args.quick),
        parameters={
            'baseline': sum(p.numel() for p in baseline.parameters()),
            'S2SD': sum(p.numel() for p in s2sd.parameters())
        },
        first_iteration=first,
        timing=timing,
        peak_memory_bytes=memory)


# ---------------------------------------------------------------------------------------------- report
CLOCKS = {'wall': 'wall clock', 'cpu': 'process CPU time'}


def _cell(stat: dict, unit: str = ' ms') -> str:
    return f'{stat["median"]:.1f}{unit} [{stat["min"]:.1f}-{stat["max"]:.1f}]'


def report(result: dict) -> str:
    """Print the tables; returns the one-line summary (also printed last)."""
    s = result['setting']
    print(f'== {s["backbone"]} (base channels {s["base_channels"]}, BN frozen), {s["embed_dim"]}-d, margin loss, '
          f'Adam; batch {s["batch_size"]} x {s["image_size"]}x{s["image_size"]} (2 per class){", AMP" * s["amp"]}; '
          f'S2SD: MSDFA, targets {s["target_dims"]}, avg+max pooling, F on; last feature map {s["feature_shape"]}')
    print('parameters: ' + ', '.join(f'{k} {v / 1e6:.2f} M' for k, v in result['parameters'].items()))
    print('first iteration: ' + '; '.join(f'{mode}: ' + ', '.join(f'{k} {v:.4g}' for k, v in logs.items())
                                          for mode, logs in result['first_iteration'].items()))
    for clock, name in CLOCKS.items():
        if clock not in result['timing']:
            continue
        t = result['timing'][clock]
        ms = t['ms']
        print(f'| {name} | median [min-max] | S2SD / baseline: medians | per round: median [min-max] |')
        print('|---|---|---|---|')
        print(f'| (a) baseline step | {_cell(ms["baseline step"])} | 1.00x | |')
        pr = t['per_round_ratio']
        print(f'| (b) S2SD MSDFA step | {_cell(ms["S2SD step"])} | **{t["ratio"]:.3f}x** | '
              f'{pr["median"]:.3f}x [{pr["min"]:.3f}-{pr["max"]:.3f}] |')
        print(f'| (c) baseline head | {_cell(ms["baseline head"])} | | |')
        print(f'| (c) S2SD head | {_cell(ms["S2SD head"])} | | |')
        print(f'| (c) S2SD - baseline head, per round | {_cell(t["head_added_ms"])} | '
              f'{t["head_added_fraction"]:+.3f} of (a) | |')
    memory = result['peak_memory_bytes']
    if memory:
        base, s2sd = memory['baseline step'], memory['S2SD step']
        print(f'peak memory of a step: baseline {base / 2**20:.1f} MiB, S2SD {s2sd / 2**20:.1f} MiB '
              f'({s2sd / max(base, 1):.3f}x)')
    wall = result['timing']['wall']
    measured = (f'S2SD / baseline step {wall["ratio"]:.3f}x wall, head adds {wall["head_added_ms"]["median"]:.1f} ms = '
                f'{wall["head_added_fraction"]:+.3f} of the baseline step')
    if s.get('quick'):
        # an 8-wide ResNet-18 on 32x32 images costs less than the four target branches: no reading of the target
        line = (f'result (smoke run, --quick: not comparable with the {TARGET_RATIO}x target, the tiny backbone makes '
                f'the target branches dominate the step): {measured}')
    else:
        verdict = 'met' if wall['ratio'] <= TARGET_RATIO else 'missed'
        line = f'result: {measured}; target S2SD / baseline step <= {TARGET_RATIO}x: {verdict}'
    print(line)
    return line


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--batch-size', type=int, default=112, help='images per batch, 2 per class (even)')
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--backbone-depth', type=int, default=50, choices=(18, 34, 50, 101, 152))
    parser.add_argument('--base-channels', type=int, default=64, help="the ResNet's first-stage width")
    parser.add_argument('--embed-dim', type=int, default=128, help='the base embedding dimension')
    parser.add_argument('--warmup', type=int, default=2, help='unrecorded rounds before timing')
    parser.add_argument('--iters', type=int, default=5, help='recorded rounds (each mode once per round)')
    parser.add_argument('--amp', action='store_true', help="mmengine's AmpOptimWrapper (CUDA only)")
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory steps')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: ResNet-18 of base width 8, batch 8 of 32x32, 0 + 1 rounds (its ratio is not read against '
        'the target)')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone_depth, args.base_channels, args.batch_size, args.image_size = 18, 8, 8, 32
        args.warmup, args.iters = 0, 1
    if args.batch_size < 4 or args.batch_size % 2:
        parser.error(f'--batch-size must be even and >= 4 (2 images per class), got {args.batch_size}')
    if args.iters < 1 or args.warmup < 0:
        parser.error(f'--iters must be >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}')
    if args.image_size < 32 or args.base_channels < 1 or args.embed_dim < 1:
        parser.error('--image-size must be >= 32 (ResNet strides 32), --base-channels and --embed-dim >= 1')
    check_device(parser, args.device)
    if args.amp and not args.device.startswith('cuda'):
        parser.error("--amp needs --device cuda (mmengine's AmpOptimWrapper)")
    return args


def main():
    args = parse_args()
    if args.device == 'cpu' and not args.no_memory:
        unmap_freed_memory()
    init_default_scope('mmkd')
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights' per-parameter report
    if args.threads:
        torch.set_num_threads(args.threads)
    name = device_name(args.device)
    print(
        f'== {name}; torch {torch.__version__}; {args.warmup} warm-up round(s), {args.iters} timed rounds, '
        'round-robin',
        flush=True)
    result, load_average = with_load_average(lambda: run(args, args.device))
    report(result)
    if args.out:
        write_results(args.out, name, args, load_average, result)


if __name__ == '__main__':
    main()
