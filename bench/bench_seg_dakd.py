"""The iteration cost of domain-adaptive distillation for segmentation against its parts trained without it.

Issue 13: a ``DomainAdaptiveDistiller`` iteration (KL + MSE + quasi-teacher CE + adversarial) should cost at most
1.1x (student step + teacher forward + discriminator step). Everything runs in one process, on the same two-domain
batch, from the same student and discriminator weights (copied, checked), each mode with its own optimizers.

**Setting** (the paper's, Kothandaraman et al., WACV 2021 Workshops, with mmseg's networks; by default): teacher
DeepLabV3+ R101-D8 and student DeepLabV3+ R18-D8 from mmseg's Cityscapes configs (``mmseg::deeplabv3plus/
deeplabv3plus_r{101,18}-d8_4xb2-80k_cityscapes-512x1024.py``: 19 classes, decode and auxiliary heads; SyncBN
replaced by BN, since one process has no process group; random weights, the ImageNet initialisation dropped: nothing
is downloaded); a batch of 2 source and 2 target 512x1024 crops (uniform random uint8 pixels; source labels uniform
over the classes with 5 % ignored pixels; on ``--device`` as a data loader gives them). Student SGD (Nesterov,
lr 2.5e-4, momentum 0.9, weight decay 1e-4), discriminators Adam (lr 1e-4, betas (0.9, 0.99)), one
``OutputSpaceDiscriminator`` (64 base channels, 5 convolutions) per head, adversarial weights 1e-3 (decode) and 2e-4
(auxiliary). The distiller: paradigm (c), KL 0.1 + MSE 0.01 + quasi-teacher CE 1.0 (Table 1 row (vii)) on the decode
head, on the source and the target batch. ``--teacher`` / ``--student`` (config files), ``--size``,
``--batch-size`` and ``--disc-channels`` / ``--disc-convs`` change the setting; ``--quick`` is a smoke run on the
toy configs (``configs/seg_dakd``: 32-wide teacher, 8-wide student, 7 classes, 64x128, a 16-wide 4-convolution
discriminator).

**Timed** (round-robin: the modes take turns, the first rotating each round; ``--warmup`` unrecorded rounds, then
``--rounds`` recorded ones; the median [min-max]), on the wall clock and, on the CPU, in the process's CPU time:

* (a) the adaptation step: ``SegOutputSpaceAdaptation.train_step`` of the student (preprocessing; the student's
  supervised source step, its target forward and adversarial term; the discriminator step);
* (b) the teacher forward (``no_grad``) on what the distiller's teacher reads: both batches (paradigm (c)), each
  preprocessed the teacher's way, backbone and decode head;
* (c) the distillation step: ``DomainAdaptiveDistiller.train_step`` (all of the above and the distillation terms);
* (d) the distillation terms alone: the distiller's own ``extra_student_losses`` on fixed logits (the student's of
  the batch, leaf tensors with a gradient, and the teacher's, computed once): resizing both to the label size, the
  KL, MSE and CE terms on both domains, and their backward to the student's logits.

Baseline = (a) + (b); the target reads (c) / ((a) + (b)) <= 1.1 (medians; per-round ratios beside). (d) / (c) is the
time share of the distillation terms.

**Peak memory** (unless ``--no-memory``), of one more call of (a), (b) and (c) after the timing: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before; on the CPU the rise of the peak resident set
(``VmHWM``; glibc's mmap threshold pinned as in ``bench_retrieval.py``).

    python bench/bench_seg_dakd.py                                  # the paper's setting (CPU: minutes per round)
    python bench/bench_seg_dakd.py --size 256 512 --rounds 3        # a lighter CPU run
    python bench/bench_seg_dakd.py --device cuda --amp --rounds 20 --out seg_dakd_cuda.json
    python bench/bench_seg_dakd.py --quick                          # smoke run: toy networks, 64x128, 1 round
"""
import argparse
import copy
import os.path as osp
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch
from bench_utils import (check_device, device_name, peak_memory, time_round_robin_clocks, unmap_freed_memory,
                         with_load_average, write_results)
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmkd  # noqa: F401  (registers the distiller, the adaptation model, the discriminator and the losses)
from mmkd.models.segmentation.adaptation import head_logits
from mmkd.registry import SEG_MODELS
from mmkd.utils.build import load_config, model_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER = 'mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024.py'
STUDENT = 'mmseg::deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py'
QUICK_TEACHER = osp.join(ROOT, 'configs', 'seg_dakd', 'deeplabv3plus-w32_toy-scenes-source.py')
QUICK_STUDENT = osp.join(ROOT, 'configs', 'seg_dakd', 'deeplabv3plus-w8_toy-scenes-source.py')
TARGET_RATIO = 1.1  # issue 13: a distillation iteration at most this times (student + discriminator step + teacher)
MODES = ('adaptation step', 'teacher forward', 'distillation step', 'distillation terms')
DISTILL_LOSSES = dict(
    kl=dict(type='PixelKLLoss', loss_weight=0.1),
    mse=dict(type='PixelMSELoss', loss_weight=0.01),
    ce=dict(type='QuasiTeacherCELoss', loss_weight=1.0))
ADV_WEIGHTS = dict(decode_head=1e-3, auxiliary_head=2e-4)
IGNORE_SHARE = 0.05


def _plain_bn(cfg):
    """``cfg`` with every SyncBN replaced by BN (SyncBN needs a process group in training mode)."""
    if isinstance(cfg, dict):
        return {k: ('BN' if k == 'type' and v == 'SyncBN' else _plain_bn(v)) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_plain_bn(v) for v in cfg)
    return cfg


def segmentor_config(path: str, size: Sequence[int]) -> dict:
    """The ``EncoderDecoder`` config of ``path`` for random-weight benchmarking: BN for SyncBN, no pretrained
    initialisation, the data preprocessor's canvas ``size`` (H, W)."""
    cfg = model_config(load_config(path, 'bench_seg_dakd: segmentor config'), 'bench_seg_dakd: segmentor config')
    cfg = _plain_bn(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    if cfg.get('type') != 'EncoderDecoder':
        raise ValueError(f'bench_seg_dakd: {path} must configure an mmseg EncoderDecoder, got {cfg.get("type")!r}')
    cfg['pretrained'] = None
    cfg['backbone'].pop('init_cfg', None)
    cfg['data_preprocessor'] = dict(cfg['data_preprocessor'], size=tuple(size))
    return cfg


def distill_losses(args) -> dict:
    """The distiller's terms, the KL's ``chunk_elements`` from ``--kl-chunk`` when given."""
    losses = copy.deepcopy(DISTILL_LOSSES)
    if args.kl_chunk is not None:
        losses['kl']['chunk_elements'] = args.kl_chunk
    return losses


def build_models(args, device: str):
    """(SegOutputSpaceAdaptation, DomainAdaptiveDistiller) with the same student and discriminator weights, and the
    teacher, in training mode on ``device``."""
    teacher_cfg = segmentor_config(args.teacher, args.size)
    student_cfg = segmentor_config(args.student, args.size)
    discriminator = dict(type='OutputSpaceDiscriminator', base_channels=args.disc_channels, num_convs=args.disc_convs)
    torch.manual_seed(args.seed)
    adaptation = SEG_MODELS.build(
        dict(
            type='SegOutputSpaceAdaptation',
            student=copy.deepcopy(student_cfg),
            discriminator=discriminator,
            adv_weights=ADV_WEIGHTS))
    distiller = SEG_MODELS.build(
        dict(
            type='DomainAdaptiveDistiller',
            student=copy.deepcopy(student_cfg),
            teacher_cfg=teacher_cfg,
            teacher_ckpt=None,
            distill_losses=distill_losses(args),
            distill_domains=('source', 'target'),
            discriminator=discriminator,
            adv_weights=ADV_WEIGHTS))
    distiller.load_state_dict(adaptation.state_dict())  # the teacher is not in the state dict: strict still holds
    reference, copied = adaptation.state_dict(), distiller.state_dict()
    if copied.keys() != reference.keys() or not all(torch.equal(copied[k], reference[k]) for k in reference):
        raise RuntimeError("bench_seg_dakd: the distiller's student and discriminator do not have the adaptation "
                           "model's weights")
    return adaptation.to(device).train(), distiller.to(device).train()


def optim_wrappers(model, args) -> OptimWrapperDict:
    """The paper's optimizers: SGD (Nesterov) for the student, Adam for the discriminators."""
    wrapper = AmpOptimWrapper if args.amp else OptimWrapper
    student = torch.optim.SGD(model.student.parameters(), lr=2.5e-4, momentum=0.9, nesterov=True, weight_decay=1e-4)
    disc = torch.optim.Adam(model.discriminator.parameters(), lr=1e-4, betas=(0.9, 0.99))
    return OptimWrapperDict(student=wrapper(optimizer=student), discriminator=wrapper(optimizer=disc))


def random_batch(args, num_classes: int, device: str, labelled: bool, seed: int) -> dict:
    """A data loader's batch of one domain: (3, H, W) uint8 images on ``device`` and data samples; the source's
    with (1, H, W) labels uniform over the classes, ``IGNORE_SHARE`` of them 255."""
    gen = torch.Generator().manual_seed(seed)
    h, w = args.size
    inputs, samples = [], []
    for _ in range(args.batch_size):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8).to(device))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        if labelled:
            label = torch.randint(0, num_classes, (1, h, w), generator=gen)
            label[torch.rand(1, h, w, generator=gen) < IGNORE_SHARE] = 255
            sample.gt_sem_seg = PixelData(data=label.to(device))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _stats(times: List[float]) -> dict:
    return dict(median=statistics.median(times), min=min(times), max=max(times))


def run(args, device: str) -> dict:
    """Build, time, measure; the JSON content (see the module docstring)."""
    adaptation, distiller = build_models(args, device)
    teacher = distiller.teacher
    num_classes = distiller.num_classes
    data = dict(
        source=random_batch(args, num_classes, device, True, args.seed),
        target=random_batch(args, num_classes, device, False, args.seed + 1))
    optims = {'adaptation step': optim_wrappers(adaptation, args), 'distillation step': optim_wrappers(distiller, args)}
    distilled = distiller.teacher_read_heads
    autocast = dict(device_type=device.split(':')[0], enabled=args.amp)

    def teacher_forward() -> Dict[str, torch.Tensor]:
        with torch.no_grad(), torch.autocast(**autocast):
            return {
                domain:
                head_logits(teacher, distiller.teacher_heads, distilled,
                            teacher.data_preprocessor(data[domain], False)['inputs'])
                for domain in ('source', 'target')
            }

    # the terms alone: the distiller's extra_student_losses on fixed student logits (leaves) and teacher logits
    with torch.no_grad():
        batches = {domain: distiller._preprocess(data[domain]) for domain in ('source', 'target')}
        with torch.autocast(**autocast):
            fixed_teacher = {domain: distiller.teacher_logits(batches[domain]) for domain in batches}
            fixed_student = {
                domain: head_logits(distiller.student, distiller.student_heads, distilled, batches[domain]['inputs'])
                for domain in batches
            }
    lookup = {id(batches[domain]): fixed_teacher[domain] for domain in batches}

    def terms() -> Dict[str, torch.Tensor]:
        logits = {d: {h: t.detach().requires_grad_() for h, t in heads.items()} for d, heads in fixed_student.items()}
        with torch.autocast(**autocast):
            losses = distiller.extra_student_losses(batches, logits)
        sum(losses.values()).backward()
        return losses

    first = {}

    def step(mode: str) -> None:
        if mode == 'adaptation step':
            log_vars = adaptation.train_step(data, optims[mode])
        elif mode == 'distillation step':
            log_vars = distiller.train_step(data, optims[mode])
        elif mode == 'teacher forward':
            log_vars = {}
            teacher_forward()
        else:
            distiller.teacher_logits = lambda batch: lookup[id(batch)]  # shadows the method: no teacher forward
            try:
                log_vars = terms()
            finally:
                del distiller.teacher_logits
        first.setdefault(mode, {k: float(v.detach()) for k, v in log_vars.items()})

    clocks = {'wall': time.perf_counter}
    if device == 'cpu':
        clocks['cpu'] = time.process_time
    timings = time_round_robin_clocks({mode: (lambda m=mode: step(m))
                                       for mode in MODES}, device, args.warmup, args.rounds, clocks)
    timing = {}
    for clock, times in timings.items():
        baseline = [a + b for a, b in zip(times['adaptation step'], times['teacher forward'])]
        ms = {mode: _stats(t) for mode, t in times.items()}
        ms['baseline'] = _stats(baseline)
        base_median = ms['adaptation step']['median'] + ms['teacher forward']['median']
        distill_median = ms['distillation step']['median']
        timing[clock] = dict(
            times_ms=times,
            ms=ms,
            ratio=distill_median / base_median,
            per_round_ratio=_stats([c / b for c, b in zip(times['distillation step'], baseline)]),
            terms_share=ms['distillation terms']['median'] / distill_median,
            rest_ms=distill_median - base_median - ms['distillation terms']['median'])
    memory = {}
    if not args.no_memory:
        memory['adaptation step'] = peak_memory(lambda: adaptation.train_step(data, optims['adaptation step']),
                                                device)[1]
        memory['teacher forward'] = peak_memory(teacher_forward, device)[1]
        memory['distillation step'] = peak_memory(lambda: distiller.train_step(data, optims['distillation step']),
                                                  device)[1]
    logits_shape = {d: {h: list(t.shape) for h, t in heads.items()} for d, heads in fixed_student.items()}
    return dict(
        setting=dict(
            teacher=args.teacher,
            student=args.student,
            teacher_backbone=f'{type(teacher.backbone).__name__}-{getattr(teacher.backbone, "depth", "?")}',
            student_backbone=(f'{type(distiller.student.backbone).__name__}-'
                              f'{getattr(distiller.student.backbone, "depth", "?")}'),
            num_classes=num_classes,
            batch_size=args.batch_size,
            size=list(args.size),
            discriminator=dict(base_channels=args.disc_channels, num_convs=args.disc_convs),
            distill_losses={
                k: v['loss_weight']
                for k, v in distill_losses(args).items()
            },
            distill_domains=['source', 'target'],
            adv_weights=ADV_WEIGHTS,
            student_logits=logits_shape['source'],
            amp=args.amp,
            quick=args.quick),
        parameters={
            'teacher': sum(p.numel() for p in teacher.parameters()),
            'student': sum(p.numel() for p in distiller.student.parameters()),
            'discriminator': sum(p.numel() for p in distiller.discriminator.parameters())
        },
        first_iteration=first,
        timing=timing,
        peak_memory_bytes=memory)


# ---------------------------------------------------------------------------------------------- report
CLOCKS = {'wall': 'wall clock', 'cpu': 'process CPU time'}


def _cell(stat: dict) -> str:
    return f'{stat["median"]:.1f} ms [{stat["min"]:.1f}-{stat["max"]:.1f}]'


def report(result: dict) -> str:
    """Print the tables; returns the one-line summary (also printed last)."""
    s = result['setting']
    h, w = s['size']
    print(f'== teacher {s["teacher_backbone"]}, student {s["student_backbone"]} (DeepLabV3+ configs: {s["teacher"]}, '
          f'{s["student"]}), {s["num_classes"]} classes; batch {s["batch_size"]} source + {s["batch_size"]} target x '
          f'{h}x{w}{", AMP" * s["amp"]}; paradigm (c), KL / MSE / CE {list(s["distill_losses"].values())} on the '
          f'decode head; discriminator {s["discriminator"]["base_channels"]} x {s["discriminator"]["num_convs"]} '
          f'convs per head; student decode logits {s["student_logits"]["decode_head"]}')
    print('parameters: ' + ', '.join(f'{k} {v / 1e6:.2f} M' for k, v in result['parameters'].items()))
    print('first iteration: ' + '; '.join(f'{mode}: ' + ', '.join(f'{k} {v:.4g}' for k, v in logs.items())
                                          for mode, logs in result['first_iteration'].items() if logs))
    for clock, name in CLOCKS.items():
        if clock not in result['timing']:
            continue
        t = result['timing'][clock]
        ms = t['ms']
        pr = t['per_round_ratio']
        print(f'| {name} | median [min-max] | / baseline |')
        print('|---|---|---|')
        print(f'| (a) adaptation step (student + discriminator) | {_cell(ms["adaptation step"])} | |')
        print(f'| (b) teacher forward, source + target | {_cell(ms["teacher forward"])} | |')
        print(f'| baseline (a) + (b), per round | {_cell(ms["baseline"])} | 1.00x |')
        print(f'| (c) distillation step | {_cell(ms["distillation step"])} | **{t["ratio"]:.3f}x** (per round '
              f'{pr["median"]:.3f}x [{pr["min"]:.3f}-{pr["max"]:.3f}]) |')
        print(f'| (d) distillation terms (KL + MSE + CE, both domains, fwd + bwd) | {_cell(ms["distillation terms"])} '
              f'| {t["terms_share"]:.3f} of (c) |')
        print(f'| (c) - (a) - (b) - (d) | {t["rest_ms"]:.1f} ms | |')
    memory = result['peak_memory_bytes']
    if memory:
        print('peak memory: ' + ', '.join(f'{mode} {v / 2**20:.1f} MiB' for mode, v in memory.items()))
    wall = result['timing']['wall']
    measured = (f'distillation / (adaptation step + teacher forward) {wall["ratio"]:.3f}x wall, distillation terms '
                f'{wall["terms_share"]:.3f} of the distillation step')
    if s.get('quick'):
        line = (f'result (smoke run, --quick: toy networks at 64x128, not comparable with the {TARGET_RATIO}x '
                f'target): {measured}')
    else:
        verdict = 'met' if wall['ratio'] <= TARGET_RATIO else 'missed'
        line = f'result: {measured}; target <= {TARGET_RATIO}x: {verdict}'
    print(line)
    return line


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--teacher', default=TEACHER, help='config of the teacher EncoderDecoder')
    parser.add_argument('--student', default=STUDENT, help='config of the student EncoderDecoder')
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'), help='crop size (512 1024)')
    parser.add_argument('--batch-size', type=int, default=2, help='images per domain')
    parser.add_argument('--disc-channels', type=int, default=None, help="discriminator base channels (64)")
    parser.add_argument('--disc-convs', type=int, default=None, help='discriminator convolutions (5)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--warmup', type=int, default=1, help='unrecorded rounds before timing')
    parser.add_argument('--rounds', type=int, default=3, help='recorded rounds (each mode once per round)')
    parser.add_argument('--amp', action='store_true', help="mmengine's AmpOptimWrapper and autocast (CUDA only)")
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory calls')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--kl-chunk', type=int, default=None, help="PixelKLLoss chunk_elements (default: the loss's)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: the toy configs (32-wide teacher, 8-wide student), 64x128, a 16-wide 4-conv discriminator, '
        '0 + 1 rounds (its ratio is not read against the target)')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args(argv)
    if args.quick:
        args.teacher = QUICK_TEACHER if args.teacher == TEACHER else args.teacher
        args.student = QUICK_STUDENT if args.student == STUDENT else args.student
        args.size = args.size or [64, 128]
        args.disc_channels, args.disc_convs = args.disc_channels or 16, args.disc_convs or 4
        args.warmup, args.rounds = 0, 1
    args.size = args.size or [512, 1024]
    args.disc_channels, args.disc_convs = args.disc_channels or 64, args.disc_convs or 5
    if args.batch_size < 1 or min(args.size) < 32:
        parser.error(f'--batch-size must be >= 1 and --size at least 32 x 32, got {args.batch_size} and {args.size}')
    if args.rounds < 1 or args.warmup < 0:
        parser.error(f'--rounds must be >= 1 and --warmup >= 0, got {args.rounds} and {args.warmup}')
    if min(args.size) < 2**args.disc_convs:
        parser.error(f'--size {args.size} is smaller than the discriminator\'s stride 2**{args.disc_convs}')
    check_device(parser, args.device)
    if args.amp and not args.device.startswith('cuda'):
        parser.error("--amp needs --device cuda (mmengine's AmpOptimWrapper)")
    return args


def main():
    args = parse_args()
    if args.device == 'cpu' and not args.no_memory:
        unmap_freed_memory()
    init_default_scope('mmseg')
    MMLogger.get_current_instance().setLevel('WARNING')
    if args.threads:
        torch.set_num_threads(args.threads)
    name = device_name(args.device)
    print(
        f'== {name}; torch {torch.__version__}; {args.warmup} warm-up round(s), {args.rounds} timed rounds, '
        'round-robin',
        flush=True)
    result, load_average = with_load_average(lambda: run(args, args.device))
    report(result)
    if args.out:
        write_results(args.out, name, args, load_average, result)


if __name__ == '__main__':
    main()
