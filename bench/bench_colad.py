"""The cost of a CoLAD iteration against the two networks' own PAA training steps, and of the switched assignment.

Issue 10, item 7: a CoLAD iteration should cost at most 1.1 x the two networks' own training steps (each with its own
batched assignment). Everything runs in one process, on the same batch, with the same two PAA networks.

**Settings** (``--settings``, both by default), each the networks and optimizers of one of this project's CoLAD
configs, from random weights (an ImageNet ``Pretrained`` init of a backbone is dropped: nothing is downloaded):

* ``toy``: ``configs/colad/colad_paa-tiny-w32_paa-tiny-w16_toy.py``, the 32-wide and 16-wide toy PAA detectors
  (ResNet-18 layout, 5 classes, 2 stacked head convolutions of 64 channels), AdamW with gradient clipping; a batch
  of 8 images of 256x256 (the toy data loader's) with 4 GT boxes each.
* ``coco``: ``configs/colad/colad_paa-r50_paa-r18_fpn_1x_coco.py``, mmdet's PAA-R50 1x and its ResNet-18 variant
  (80 classes, 4 stacked head convolutions of 256 channels with GroupNorm, the backbones' BatchNorm frozen as the
  configs say: ``norm_eval=True``, stage 1 frozen), SGD with momentum; a reduced COCO-like batch of 2 images of
  512x512 with 20 GT boxes each (the CPU cost of 1333x800 would make the run take tens of minutes).

``--num-images``, ``--num-gts`` and ``--size`` override the batch of every chosen setting. Images: uniform random
uint8 pixels, given to the data preprocessor as a data loader gives them (already on ``--device``); GT boxes
COCO-like (``bench_utils.random_gts``: square roots of the areas log-uniform in 16-512 px, at most 3/4 of the
shorter side, aspect ratios 1/2-2), labels uniform over the classes. Every model is in ``train()`` mode.

**Weights.** Under ``torch.manual_seed(--seed)`` one ``CoLAD`` is built and initialised (``init_weights``) per
switch criterion; the script checks that their state dicts are identical. The reference networks are the same two
detectors as stock PAA detectors with mmkd's ``BatchedPAAHead`` (PAA's own loss: IoU-weighted box loss), loaded
from the first CoLAD's weights. Each mode trains its own copy, with its own optimizer state.

**Timed** (round-robin: the modes take turns, the first one rotating each round; ``--warmup`` unrecorded rounds,
then ``--repeat`` recorded ones; the median [min-max] of each), on the wall clock and, on the CPU, also in the
process's CPU time (``time.process_time``: all its threads). With one thread, other jobs on a shared machine
disturb it far less than the wall clock (time the process waits descheduled does not count); with several, OpenMP
threads spinning while a peer is descheduled count, and it is as unreliable as the wall clock under load:

* (a) reference: network A's own training step (``BaseModel.train_step``: data preprocessor, forward, its own
  batched PAA assignment, PAA losses, backward, optimizer step), timed alone, then network B's; their sum per
  round;
* (b) the CoLAD step: ``CoLAD.train_step`` with the ``OptimWrapperDict`` that ``MultiNetworkOptimWrapperConstructor``
  builds from the config (data preprocessor once, both forwards, the switched assignment, both networks' LAD
  losses, both backwards and optimizer steps), with ``StdMeanCriterion('gt_level')`` and with
  ``FisherCriterion('gt')``;
* (c) the assignment alone, under ``no_grad`` on the same head outputs (the freshly initialised networks' on the
  preprocessed batch): ``switched_label_assignment`` for the pair, per criterion, against the two heads'
  ``get_label_assignment`` (one per network) and their sum per round.

Printed: the tables; the ratios (b) / (a) per criterion (issue target <= 1.1) and (c) switched / two own
assignments, as the ratio of the medians and as the median [min-max] of the per-round ratios (the modes of a round
run back to back: less sensitive to a load that changes between rounds); the positives and the switch shares of the
assignments on the initial weights, and every mode's losses (and switch scalars) of its first iteration.

    python bench/bench_colad.py --threads 1                     # CPU: toy and COCO-like settings
    python bench/bench_colad.py --settings toy --threads 2
    python bench/bench_colad.py --device cuda --settings coco --size 800 1344 --out colad_cuda.json
    python bench/bench_colad.py --quick                         # smoke run: toy networks, 2 images x 3 GT, 128x128
"""
import argparse
import copy
import os
import os.path as osp
import statistics
import time
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from bench_utils import check_device, device_name, random_gts, time_round_robin_clocks, write_results
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import mmkd  # noqa: F401  (registers CoLAD, the batched heads, the criteria and the optimizer constructor)
from mmkd.models.dense_heads import detached, switched_label_assignment
from mmkd.models.task_modules import build_switch
from mmkd.utils.build import model_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class Setting(NamedTuple):
    """A CoLAD config (relative to the repository root) and the batch it is timed on."""
    config: str
    num_images: int
    num_gts: int  # GT boxes per image
    size: Tuple[int, int]  # H, W


SETTINGS = {
    'toy': Setting('configs/colad/colad_paa-tiny-w32_paa-tiny-w16_toy.py', 8, 4, (256, 256)),
    'coco': Setting('configs/colad/colad_paa-r50_paa-r18_fpn_1x_coco.py', 2, 20, (512, 512)),
}
CRITERIA = {
    'std/mean gt_level': dict(type='StdMeanCriterion', granularity='gt_level'),
    'Fisher gt': dict(type='FisherCriterion', granularity='gt'),
}


# ---------------------------------------------------------------------------------------------- models
def _without_pretrained(cfg):
    """A copy of a model config without ``Pretrained`` initialisations (at any depth): random weights, no
    download."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        inits = init if isinstance(init, list) else [init]
        drop = any(isinstance(i, dict) and i.get('type') == 'Pretrained' for i in inits)
        return type(cfg)({k: (None if k == 'init_cfg' and drop else _without_pretrained(v)) for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_without_pretrained(v) for v in cfg)
    return cfg


def network_configs(cfg: Config) -> Dict[str, ConfigDict]:
    """The CoLAD config's networks as model config dicts (files and ``mmdet::`` paths read), without
    ``Pretrained`` initialisations."""
    networks = {}
    for key, network in cfg.model.networks.items():
        if not (isinstance(network, dict) and 'type' in network):
            network = model_config(network, f'model.networks.{key}')
        networks[key] = ConfigDict(_without_pretrained(copy.deepcopy(network.to_dict())))
    return networks


def build_colad(networks: Dict[str, ConfigDict], predict_network: str, switch: dict, seed: int, device: str):
    """A CoLAD of ``networks`` with the ``switch`` criterion, initialised under ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='CoLAD', networks=networks, switch=switch, predict_network=predict_network))
    model.init_weights()
    return model.to(device).train()


def build_own_network(network: ConfigDict, state_dict: dict, device: str):
    """The network as a stock PAA detector with mmkd's batched head (its own assignment and PAA's loss)."""
    cfg = copy.deepcopy(network)
    cfg.bbox_head.update(type='BatchedPAAHead', gmm_backend='torch')
    model = MODELS.build(cfg)
    model.load_state_dict(state_dict)
    return model.to(device).train()


def random_batch(num_imgs: int, num_gts: int, size: Sequence[int], num_classes: int, seed: int, device: str) -> dict:
    """A data loader's batch: uint8 images [3, H, W] and data samples with GT boxes, on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    inputs, samples = [], []
    for gt in random_gts(num_imgs, num_gts, size, num_classes, gen):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8).to(device))
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=gt.bboxes.to(device), labels=gt.labels.to(device))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _median(times: List[float]) -> dict:
    return dict(median=statistics.median(times), min=min(times), max=max(times))


def time_modes(fns: Dict[str, Callable], device: str, args, parts: Sequence[str], total: str,
               compared: Dict[str, str]) -> Dict[str, dict]:
    """Round-robin timings of ``fns``, with ``total`` = the per-round sum of the modes ``parts``, and the ratios
    of the modes ``compared`` (criterion -> mode) to ``total``.

    Returns:
        dict: per clock (``'wall'``; on the CPU also ``'cpu'``: the process's CPU time over all its threads, which
        other jobs on the machine disturb less), ``times_ms`` {mode: [ms per round]}, ``ms`` {mode: median, min,
        max}, ``ratio`` {criterion: ratio of the medians} and ``per_round_ratio`` {criterion: median, min, max of
        the ratios within a round, whose modes run back to back}.
    """
    clocks = {'wall': time.perf_counter}
    if device == 'cpu':
        clocks['cpu'] = time.process_time
    out = {}
    for clock, times in time_round_robin_clocks(fns, device, args.warmup, args.repeat, clocks).items():
        times[total] = [sum(ts) for ts in zip(*(times[part] for part in parts))]
        stats = {k: _median(v) for k, v in times.items()}
        out[clock] = {
            'times_ms': times,
            'ms': stats,
            'ratio': {
                c: stats[mode]['median'] / stats[total]['median']
                for c, mode in compared.items()
            },
            'per_round_ratio': {
                c: _median([t / r for t, r in zip(times[mode], times[total])])
                for c, mode in compared.items()
            },
        }
    return out


def _floats(log_vars: dict) -> Dict[str, float]:
    return {k: float(v) for k, v in log_vars.items()}


# ---------------------------------------------------------------------------------------------- one setting
def bench_setting(name: str, args, device: str) -> dict:
    """(a), (b) and (c) of one setting of ``SETTINGS`` (see the module docstring), with the first iteration's
    losses of every mode and the positives and switch shares on the initial weights."""
    spec = SETTINGS[name]._replace(
        **{
            key: tuple(value) if key == 'size' else value
            for key, value in (('num_images', args.num_images), ('num_gts', args.num_gts), ('size', args.size))
            if value is not None
        })
    cfg = Config.fromfile(osp.join(ROOT, spec.config))
    networks = network_configs(cfg)
    keys = list(networks)
    predict_network = cfg.model.get('predict_network') or keys[0]

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        colads = {c: build_colad(networks, predict_network, CRITERIA[c], args.seed, device) for c in CRITERIA}
        first = next(iter(colads.values()))
        reference = first.state_dict()
        for criterion, colad in colads.items():
            state = colad.state_dict()
            if state.keys() != reference.keys() or not all(torch.equal(state[k], reference[k]) for k in state):
                raise RuntimeError(f'bench_colad: the CoLAD built with {criterion} under torch.manual_seed('
                                   f'{args.seed}) does not have the weights of the first one')
        own = {key: build_own_network(networks[key], getattr(first, key).state_dict(), device) for key in keys}
        optims = {c: build_optim_wrapper(colad, copy.deepcopy(cfg.optim_wrapper)) for c, colad in colads.items()}
        own_optims = {key: build_optim_wrapper(own[key], copy.deepcopy(cfg.optim_wrapper[key])) for key in keys}

    num_classes = first.head_of(keys[0]).num_classes
    data = random_batch(spec.num_images, spec.num_gts, spec.size, num_classes, args.seed, device)
    assignment = bench_assignment(first, keys, data, device, args)

    first_logs = {}

    def step(mode: str, model, optim_wrapper) -> None:
        log_vars = model.train_step(data, optim_wrapper)
        first_logs.setdefault(mode, _floats(log_vars))

    fns = {f'{key} own step': (lambda k=key: step(f'{k} own step', own[k], own_optims[k])) for key in keys}
    fns.update({f'CoLAD {c}': (lambda c=c: step(f'CoLAD {c}', colads[c], optims[c])) for c in CRITERIA})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        training = time_modes(fns, device, args, [f'{key} own step' for key in keys], 'reference (a)',
                              {c: f'CoLAD {c}'
                               for c in CRITERIA})
    return {
        'setting': name,
        'config': spec.config,
        'networks': keys,
        'images': spec.num_images,
        'gts_per_image': spec.num_gts,
        'size': list(spec.size),
        'first_iteration': first_logs,
        'training': training,
        'assignment': assignment,
    }


def bench_assignment(colad, keys: List[str], data: dict, device: str, args) -> dict:
    """(c): the switched assignment of the pair per criterion against one ``get_label_assignment`` per head."""
    with torch.no_grad():
        batch = colad.data_preprocessor(data, True)
        gts, ignore, metas = unpack_gt_instances(batch['data_samples'])
        heads = [colad.head_of(key) for key in keys]
        outs = [detached(head(getattr(colad, key).extract_feat(batch['inputs']))) for key, head in zip(keys, heads)]
    criteria = {c: build_switch(cfg) for c, cfg in CRITERIA.items()}

    def own(i):
        with torch.no_grad():
            return heads[i].get_label_assignment(*outs[i], gts, metas, ignore)

    def switched(criterion):
        with torch.no_grad():
            return switched_label_assignment(heads, outs, criteria[criterion], gts, metas, ignore)

    positives = {f'{key} own': int(own(i)[6]) for i, key in enumerate(keys)}
    shares = {}
    for c in CRITERIA:
        result, decision = switched(c)
        positives[f'switched {c}'] = int(result[6])
        shares[c] = dict(zip(keys, decision.share().tolist()))
    fns = {f'{key} own assignment': (lambda i=i: own(i)) for i, key in enumerate(keys)}
    fns.update({f'switched {c}': (lambda c=c: switched(c)) for c in CRITERIA})
    timings = time_modes(fns, device, args, [f'{key} own assignment' for key in keys], 'two own assignments',
                         {c: f'switched {c}'
                          for c in CRITERIA})
    return {'positives': positives, 'shares': shares, **timings}


# ---------------------------------------------------------------------------------------------- report
def _cell(stat: dict) -> str:
    return f'{stat["median"]:.1f} ms [{stat["min"]:.1f}-{stat["max"]:.1f}]'


def _ratio_cell(stat: dict) -> str:
    return f'{stat["median"]:.2f}x [{stat["min"]:.2f}-{stat["max"]:.2f}]'


CLOCKS = {'wall': 'wall clock', 'cpu': 'process CPU time'}


def print_table(what: str, timing: dict, rows: Sequence[tuple], total: tuple, compared: Dict[str, str]) -> None:
    """One timing table: ``rows`` and ``total`` are (label, mode), ``compared`` criterion -> (label, mode)."""
    ms, ratios, per_round = timing['ms'], timing['ratio'], timing['per_round_ratio']
    print(f'| {what} | median [min-max] | / {total[0]}: medians | per round: median [min-max] |')
    print('|---|---|---|---|')
    for label, mode in rows:
        print(f'| {label} | {_cell(ms[mode])} | | |')
    print(f'| {total[0]} | {_cell(ms[total[1]])} | 1.00x | |')
    for c, (label, mode) in compared.items():
        print(f'| {label} | {_cell(ms[mode])} | **{ratios[c]:.2f}x** | {_ratio_cell(per_round[c])} |')


def print_setting(r: dict) -> None:
    a, b = r['networks']
    h, w = r['size']
    print(f'== {r["setting"]}: {a} + {b} from {r["config"]}; {r["images"]} images x {r["gts_per_image"]} GT, '
          f'{h}x{w}')
    asg = r['assignment']
    shares = '; '.join(f'{c}: ' + ', '.join(f'{k} {v:.2f}' for k, v in s.items()) for c, s in asg['shares'].items())
    print('initial weights: positives ' + ', '.join(f'{k} {v}' for k, v in asg['positives'].items()) +
          f'; units assigned (share) {shares}')
    print('first iteration of each mode:')
    for mode, logs in r['first_iteration'].items():
        print(f'  {mode}: ' + ', '.join(f'{k} {v:.4g}' for k, v in logs.items()))
    own_steps = [(f'{k} own PAA step', f'{k} own step') for k in (a, b)]
    colad_steps = {c: (f'(b) CoLAD, {c}', f'CoLAD {c}') for c in CRITERIA}
    own_assignments = [(f'{k} get_label_assignment', f'{k} own assignment') for k in (a, b)]
    switched = {c: (f'(c) switched_label_assignment, {c}', f'switched {c}') for c in CRITERIA}
    for clock, clock_name in CLOCKS.items():
        if clock in r['training']:
            reference = (f'(a) {a} + {b} own steps', 'reference (a)')
            print_table(f'training step, {clock_name}', r['training'][clock], own_steps, reference, colad_steps)
            reference = ('two own assignments', 'two own assignments')
            print_table(f'assignment (no_grad), {clock_name}', asg[clock], own_assignments, reference, switched)


def summary(results: List[dict]) -> str:
    parts = []
    for r in results:
        for what, part, target in (('CoLAD step / own steps', 'training', ' (target <= 1.1)'),
                                   ('switched / own assignments', 'assignment', '')):
            ratios = '; '.join(f'{clock} ' + ', '.join(f'{c} {v:.2f}x' for c, v in r[part][clock]['ratio'].items())
                               for clock in CLOCKS if clock in r[part])
            parts.append(f'{r["setting"]}: {what}{target}: {ratios}')
    return 'result: ' + ' | '.join(parts)


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--settings', nargs='+', choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument('--num-images', type=int, default=None, help="images per batch (default: the setting's)")
    parser.add_argument('--num-gts', type=int, default=None, help="GT boxes per image (default: the setting's)")
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'), help="image size")
    parser.add_argument('--warmup', type=int, default=1, help='unrecorded rounds before timing')
    parser.add_argument('--repeat', '--repeats', dest='repeat', type=int, default=5, help='recorded rounds')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true', help='smoke run: toy, 2 images x 3 GT, 128x128, 1+1 rounds')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args(argv)
    if args.quick:
        args.settings, args.num_images, args.num_gts, args.size = ['toy'], 2, 3, [128, 128]
        args.warmup, args.repeat = 1, 1
    if args.repeat < 1 or args.warmup < 0:
        parser.error(f'--repeat must be >= 1 and --warmup >= 0, got {args.repeat} and {args.warmup}')
    check_device(parser, args.device)
    return args


def main():
    args = parse_args()
    init_default_scope('mmdet')
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights' per-parameter report
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    name = device_name(device)
    print(
        f'== {name}; torch {torch.__version__}; {args.warmup} warm-up round(s), {args.repeat} timed rounds, '
        'round-robin',
        flush=True)
    load_before = os.getloadavg()[0]
    results = []
    for setting in args.settings:
        results.append(bench_setting(setting, args, device))
        print_setting(results[-1])
    load_after = os.getloadavg()[0]
    print(f'1-minute load average {load_before:.2f} before, {load_after:.2f} after')
    print(summary(results))
    if args.out:
        write_results(args.out, name, args, (load_before, load_after), dict(settings=results))


if __name__ == '__main__':
    main()
