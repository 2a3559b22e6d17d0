"""The embedding-dimension study of S2SD: Recall@1 of a baseline embedder and of its S2SD version across base
embedding dimensions, and the cost of retrieval at each dimension.

Roth et al., "Simultaneous Similarity-based Self-Distillation for Deep Metric Learning" (ICML 2021), Fig. 3B and
supplementary Table 8 (R@1 against the base dimension, S2SD's target dimensions fixed), and supplementary Sec. E /
Table 3 (retrieval time against the dimension: faiss on 250000 synthetic embeddings, 1.54 s at d = 32 to 27.21 s at
d = 2048 on a GTX 1080Ti), the argument that S2SD's low-dimensional embeddings make retrieval cheaper.

**Training.** Every (model, base dimension, seed) is trained and tested with mmengine's Runner, as
``tools/train.py`` would from the config with ``--cfg-options model.embed_dim=<d>`` (the baseline, an
``ImageEmbedder``) or ``model.embedder.embed_dim=<d>`` (the S2SD model: its target dimensions stay as configured),
set up as a stage of ``tools/quickstart.py`` (``mmkd.quickstart.stages``): its own folder
``<work-dir>/<baseline|s2sd>_d<d>_seed<seed>`` with the runner's ``console.log``, the seed, a checkpoint of the
final model only, no validation during training, the final model tested once (R@1, and mAP@R / NMI when the
config's ``RetrievalMetric`` computes them, in %). A run whose record (``quickstart_record.json``, keyed by a
hash of the whole resolved config) matches is reused, not retrained (``--force`` retrains).

**Retrieval time.** Per dimension of ``--retrieval-dims``: the wall time of one exact leave-one-out kNN retrieval
(``mmkd.evaluation.retrieval_metrics(..., ks=(1, ), metrics=('recall', ))``, i.e. every sample's nearest
neighbour among the others, and R@1) over ``--retrieval-n`` synthetic L2-normalised embeddings (10 per class around
random unit class centres, noise of norm about 0.7 at every dimension); the median of ``--retrieval-repeat`` calls.
One unrecorded call at the first dimension and the full N comes first: after a warm-up on 1000 of them the first
dimension was still timed slower than the next ones (one-time costs that grow with N).

**Output.** ``--out`` (a PNG: R@1 against the base dimension, mean ± std over the seeds, log2 axis; and the
retrieval time against the dimension beside the paper's Table 3), and beside it a Markdown table and a JSON file of
every number (same name, ``.md`` / ``.json``). Usage::

    python tools/analysis/s2sd_dims.py                                   # toy configs, dims 4-64, seed 0
    python tools/analysis/s2sd_dims.py --seeds 0 1 2 --epochs 10 --work-dir work_dirs/s2sd_dims
    python tools/analysis/s2sd_dims.py --s2sd configs/s2sd/s2sd-msdf_r18-w16-d8_ms_toy.py --dims 4 8 16
    python tools/analysis/s2sd_dims.py --s2sd-cfg-options model.target_dims=[64,128]   # S2SD's targets only
    python tools/analysis/s2sd_dims.py --skip-train --retrieval-n 250000 --device cuda   # the timing panel only

Training runs where mmengine's Runner puts it (the GPU when torch sees one; ``CUDA_VISIBLE_DEVICES=`` for the
CPU); ``--device`` is where the retrieval is timed.
"""
import argparse
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope

from mmkd.datasets import generate_toy_retrieval
from mmkd.evaluation import retrieval_metrics
from mmkd.quickstart.methods import use_toy_retrieval
from mmkd.quickstart.stages import RECORD, Method, Quickstart, stage_config
from mmkd.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = 'configs/s2sd/embedder_r18-w16-d8_ms_toy.py'
S2SD = 'configs/s2sd/s2sd-dsd_r18-w16-d8_ms_toy.py'
# the two models of the study: their names in the table and the path of the base dimension in their config
KINDS = {'baseline': ('baseline', ('embed_dim', )), 's2sd': ('S2SD', ('embedder', 'embed_dim'))}
# (table name, key in the runner's test metrics); R@1 is required, the others are kept when the test returns them
METRICS = (('R@1', 'retrieval/R@1'), ('mAP@R', 'retrieval/mAP@R'), ('NMI', 'retrieval/NMI'))
# supplementary Table 3: faiss retrieval of 250000 synthetic embeddings on a GTX 1080Ti, seconds
PAPER_RETRIEVAL_S = {32: 1.54, 64: 1.98, 128: 2.71, 256: 4.35, 512: 7.38, 1024: 13.83, 2048: 27.21}
# supplementary Table 8: CUB200-2011 R@1 (%), 5-run means, of the baseline ("Basic", "Base" at 16) and of DSD
PAPER_R1 = {
    'baseline': {
        16: 48.18,
        32: 54.54,
        64: 59.31,
        128: 62.70,
        256: 64.39,
        512: 65.95,
        1024: 66.04,
        2048: 66.03
    },
    'DSD': {
        16: 49.92,
        32: 59.75,
        64: 62.75,
        128: 65.57,
        256: 66.34,
        512: 66.89,
        1024: 66.57,
        2048: 66.54
    },
}
SAMPLES_PER_CLASS = 10
NOISE = 0.7


# ---------------------------------------------------------------------------------------------- training
def load_config(path: str, kind: str) -> Config:
    """The config of one of the two models, checked to have the base dimension this study varies.

    Args:
        path: a config file.
        kind: ``'baseline'`` (an ``ImageEmbedder``, dimension ``model.embed_dim``) or ``'s2sd'`` (an
            ``S2SDEmbedder``, dimension ``model.embedder.embed_dim``).

    Returns:
        Config: the config as read.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f's2sd_dims: the {kind} config {path} does not exist')
    cfg = Config.fromfile(path)
    model = cfg.get('model')
    if kind == 'baseline' and (not isinstance(model, dict) or model.get('type') != 'ImageEmbedder'):
        found = model.get('type') if isinstance(model, dict) else model
        raise ValueError(f's2sd_dims: the baseline config {path} must have model.type ImageEmbedder (whose '
                         f'model.embed_dim is varied), got {found!r}')
    if kind == 's2sd' and (not isinstance(model, dict) or model.get('type') != 'S2SDEmbedder'
                           or not isinstance(model.get('embedder'), dict)):
        found = model.get('type') if isinstance(model, dict) else model
        raise ValueError(f's2sd_dims: the S2SD config {path} must have model.type S2SDEmbedder with an embedder '
                         f'dict (whose model.embedder.embed_dim is varied), got {found!r}')
    for loader in ('train_dataloader', 'test_dataloader'):
        if not isinstance(cfg.get(loader), dict):
            raise ValueError(f's2sd_dims: the {kind} config {path} has no {loader}: each run is trained and tested')
    return cfg


def run_config(path: str, kind: str, dim: int, seed: int, args: argparse.Namespace) -> Config:
    """The resolved config of one run: the quickstart stage set-up (``stage_config``), ``--cfg-options``, then
    ``--baseline-cfg-options`` or ``--s2sd-cfg-options`` (``kind``'s), ``--data-root`` and the base dimension
    ``dim``."""
    cfg = stage_config(path, osp.join(osp.abspath(args.work_dir), f'{kind}_d{dim}_seed{seed}'), seed, args.epochs)
    for options in (args.cfg_options, getattr(args, f'{kind}_cfg_options')):
        if options:
            cfg.merge_from_dict(options)
    if args.data_root:
        use_toy_retrieval(cfg, osp.abspath(args.data_root))
    parent = cfg.model
    *parents, leaf = KINDS[kind][1]
    for key in parents:
        parent = parent[key]
    parent[leaf] = dim
    return cfg


def _options_text(args: argparse.Namespace, kind: str) -> str:
    """The options given to ``kind``'s config, as on the command line."""
    flags = {'--cfg-options': args.cfg_options, f'--{kind}-cfg-options': getattr(args, f'{kind}_cfg_options')}
    given = [
        flag + ' ' + ' '.join(f'{key}={value!r}' for key, value in options.items()) for flag, options in flags.items()
        if options
    ]
    return '; '.join(given) or 'no --cfg-options'


def check_builds(path: str, kind: str, args: argparse.Namespace) -> None:
    """Build ``kind``'s model at every base dimension of ``--dims`` as its runs will (options applied), so that an
    option the config does not take fails here, before the first run trains, naming the config and the options.

    Raises:
        ValueError: the config does not resolve or its model does not build at some dimension.
    """
    for dim in args.dims:
        try:
            cfg = run_config(path, kind, dim, args.seeds[0], args)
            with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmkd'):
                MODELS.build(cfg.model)
        except Exception as error:
            raise ValueError(f's2sd_dims: the {kind} config {path} does not build at d={dim} with '
                             f'{_options_text(args, kind)}: {type(error).__name__}: {error} (an option of one of the '
                             'two configs only goes to --baseline-cfg-options or --s2sd-cfg-options)') from error


def prepare_toy_data(cfg: Config, say) -> None:
    """Generate the toy retrieval data (the quickstart's defaults) where a toy config reads it and none is there."""
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        if dataset.get('type') == 'ToyRetrievalDataset' and not osp.exists(dataset.data_root):
            say(f'[data] generating the toy retrieval data in {dataset.data_root}')
            generate_toy_retrieval(osp.abspath(dataset.data_root))


class _StudyRuns(Quickstart):
    """The quickstart's stage runner (record and reuse, console log, progress lines) keeping the retrieval
    metrics the test returns: R@1 (required) and mAP@R / NMI when the config computes them."""

    def _table_metrics(self, label: str, metrics: dict) -> dict:
        if 'retrieval/R@1' not in metrics:
            raise KeyError(f's2sd_dims: run {label!r}: the test returned no retrieval/R@1 (it returned '
                           f'{sorted(metrics)}); the test_evaluator must be a RetrievalMetric with 1 in ks and '
                           "'recall' in measures")
        return {name: round(100 * float(metrics[key]), 2) for name, key in METRICS if key in metrics}


def train_all(configs: Dict[str, str], args: argparse.Namespace, stream: TextIO) -> List[dict]:
    """Train and test (or reuse) every (model, dimension, seed).

    Returns:
        list[dict]: per run ``model`` (``'baseline'`` / ``'s2sd'``), ``dim``, ``seed``, ``metrics`` ({'R@1': %,
        ...}, as recorded), ``train_seconds``, ``work_dir`` and ``record`` (the record's path).
    """
    method = Method(
        name='s2sd_dims',
        summary='S2SD embedding-dimension study',
        stages=(),
        metrics=METRICS,
        metric_note='retrieval in %',
        prepare_data=None,
        use_data=None,
        metric_scale=100)
    runner = _StudyRuns(method, ROOT, args, stream)
    runs = [(kind, dim, seed) for dim in args.dims for seed in args.seeds for kind in configs]
    records = []
    for step, (kind, dim, seed) in enumerate(runs, 1):
        runner.say(f'[{step}/{len(runs)}] {KINDS[kind][0]} d={dim}, seed {seed}: {configs[kind]}')
        cfg = run_config(configs[kind], kind, dim, seed, args)
        prepare_toy_data(cfg, runner.say)
        record = runner.run_stage(f'{kind} d{dim} s{seed}', cfg)
        records.append(
            dict(
                model=kind,
                dim=dim,
                seed=seed,
                metrics=record['metrics'],
                train_seconds=record['train_seconds'],
                work_dir=cfg.work_dir,
                record=osp.join(cfg.work_dir, RECORD)))
    return records


def _mean_std(values: Sequence[float]) -> dict:
    return dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else None)


def summarise(records: List[dict]) -> List[dict]:
    """Per (model, dimension): mean and std (None for one seed) over the seeds of every metric and of the training
    time, in the order of ``records``."""
    groups: Dict[tuple, List[dict]] = {}
    for record in records:
        groups.setdefault((record['model'], record['dim']), []).append(record)
    rows = []
    for (model, dim), runs in groups.items():
        names = [name for name, _ in METRICS if all(name in run['metrics'] for run in runs)]
        row = dict(model=model, dim=dim, seeds=[run['seed'] for run in runs])
        row.update({name: _mean_std([run['metrics'][name] for run in runs]) for name in names})
        row['train_seconds'] = _mean_std([run['train_seconds'] for run in runs])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- retrieval time
def synthetic_embeddings(num_samples: int, dim: int, seed: int = 0) -> tuple:
    """(N, dim) float32 L2-normalised embeddings and their (N, ) labels: ``SAMPLES_PER_CLASS`` per class (the
    last class may have fewer), each ``normalise(centre + NOISE * standard normal / sqrt(dim))`` around a random
    unit class centre: noise of about the same norm at every dimension."""
    gen = torch.Generator().manual_seed(seed)
    num_classes = math.ceil(num_samples / SAMPLES_PER_CLASS)
    centres = F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
    labels = torch.arange(num_samples) // SAMPLES_PER_CLASS
    noise = NOISE / math.sqrt(dim) * torch.randn(num_samples, dim, generator=gen)
    return F.normalize(centres[labels] + noise, dim=1), labels


def time_retrieval(dims: Sequence[int],
                   num_samples: int,
                   device: str = 'cpu',
                   repeat: int = 1,
                   seed: int = 0,
                   say=print) -> List[dict]:
    """The wall time of an exact leave-one-out kNN retrieval (:func:`retrieval_metrics`, R@1) at each dimension.

    Args:
        dims: embedding dimensions.
        num_samples: N, the embeddings retrieved among (every one is a query against the others).
        device: where the retrieval runs.
        repeat: timed calls per dimension, after one unrecorded call at the first dimension.
        seed: seed of :func:`synthetic_embeddings`.
        say: where progress lines go.

    Returns:
        list[dict]: per dimension ``dim``, ``num_samples``, ``seconds`` (``repeat`` wall times), ``median_s``,
        ``R@1`` (of the synthetic embeddings, a check that the retrieval ran) and ``paper_faiss_250k_s``
        (supplementary Table 3, None for a dimension it does not have).
    """
    rows = []
    for dim in dims:
        x, labels = synthetic_embeddings(num_samples, dim, seed)
        x, labels = x.to(device), labels.to(device)
        if not rows:
            # one-time costs (kernels, the allocator's growth to N x N blocks) are paid at the full N: a smaller
            # warm-up left the first dimension slower than the next ones
            retrieval_metrics(x, labels, ks=(1, ), metrics=('recall', ), device=device)
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = retrieval_metrics(x, labels, ks=(1, ), metrics=('recall', ), device=device)
            seconds.append(time.perf_counter() - start)  # the result is a python float: the device has finished
        rows.append({
            'dim': dim,
            'num_samples': num_samples,
            'seconds': seconds,
            'median_s': statistics.median(seconds),
            'R@1': result['R@1'],
            'paper_faiss_250k_s': PAPER_RETRIEVAL_S.get(dim)
        })
        say(f'  [retrieval] d={dim}: {rows[-1]["median_s"]:.3f} s for {num_samples} embeddings (R@1 '
            f'{100 * result["R@1"]:.1f} %)')
    return rows


# ---------------------------------------------------------------------------------------------- report
def plot_study(summary: List[dict], timing: List[dict], out: str, device: str, dpi: int = 120) -> None:
    """The PNG: R@1 against the base dimension (a panel when ``summary`` has rows) and the retrieval time against
    the dimension (a panel when ``timing`` has rows), both on log2 axes of the dimension."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [p for p, rows in (('r1', summary), ('time', timing)) if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), dpi=dpi, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ax.set_xscale('log', base=2)
        ax.grid(True, which='both', alpha=0.3)
        ax.set_xlabel('embedding dimension d')
        if panel == 'r1':
            dims = sorted({row['dim'] for row in summary})
            for model in KINDS:
                rows = sorted((row for row in summary if row['model'] == model), key=lambda row: row['dim'])
                if not rows:
                    continue
                seeds = max(len(row['seeds']) for row in rows)
                ax.errorbar([row['dim'] for row in rows], [row['R@1']['mean'] for row in rows],
                            yerr=[row['R@1']['std'] or 0.0 for row in rows],
                            marker='o',
                            capsize=3,
                            label=f'{KINDS[model][0]} ' + (f'(mean ± std, {seeds} seeds)' if seeds > 1 else '(1 seed)'))
            ax.set_xticks(dims, [str(d) for d in dims])
            ax.set_ylabel('test R@1 (%)')
            ax.set_title('R@1 against the base dimension (Fig. 3B)')
        else:
            dims = [row['dim'] for row in timing]
            ax.plot(
                dims, [row['median_s'] for row in timing],
                'o-',
                label=f'exact kNN, N = {timing[0]["num_samples"]}, {device}')
            paper = sorted(PAPER_RETRIEVAL_S.items())
            ax.plot([d for d, _ in paper], [s for _, s in paper],
                    's--',
                    label='paper: faiss, N = 250000, GTX 1080Ti (supp. Tab. 3)')
            ticks = sorted(set(dims) | set(PAPER_RETRIEVAL_S))
            ax.set_xticks(ticks, [str(d) for d in ticks])
            ax.set_yscale('log')
            ax.set_ylabel('retrieval time (s)')
            ax.set_title('retrieval time against the dimension')
        ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, format='png')
    plt.close(fig)


def _cell(stat: Optional[dict]) -> str:
    if stat is None:
        return '-'
    return f'{stat["mean"]:.2f}' + (f' ± {stat["std"]:.2f}' if stat['std'] is not None else '')


def markdown(records: List[dict], summary: List[dict], timing: List[dict], configs: Dict[str, str]) -> str:
    """The tables: R@1 (mAP@R, NMI) per dimension with the paper's CUB numbers beside, every run, the retrieval
    times."""
    parts = []
    if summary:
        names = [name for name, _ in METRICS if all(name in row for row in summary)]
        by_key = {(row['model'], row['dim']): row for row in summary}
        dims = sorted({row['dim'] for row in summary})
        header = ['d'] + [f'{KINDS[m][0]} {n}' for n in names for m in KINDS
                          ] + ['S2SD - baseline R@1', 'train s baseline / S2SD', 'paper CUB R@1 baseline / DSD']
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for dim in dims:
            base, s2sd = by_key.get(('baseline', dim)), by_key.get(('s2sd', dim))
            cells = [str(dim)]
            cells += [_cell(row.get(name) if row else None) for name in names for row in (base, s2sd)]
            gain = f'{s2sd["R@1"]["mean"] - base["R@1"]["mean"]:+.2f}' if base and s2sd else '-'
            train = ' / '.join(f'{row["train_seconds"]["mean"]:.1f}' if row else '-' for row in (base, s2sd))
            paper = ' / '.join(f'{PAPER_R1[m][dim]:.2f}' if dim in PAPER_R1[m] else '-' for m in ('baseline', 'DSD'))
            lines.append('| ' + ' | '.join(cells + [gain, train, paper]) + ' |')
        parts.append(f'Test retrieval in % (mean ± std over the seeds); baseline {configs.get("baseline")}, S2SD '
                     f'{configs.get("s2sd")}. Paper: supplementary Table 8 (CUB200-2011, 5 runs).\n\n' +
                     '\n'.join(lines))
        run_names = [name for name, _ in METRICS if all(name in r['metrics'] for r in records)]
        lines = ['| model | d | seed | ' + ' | '.join(run_names) + ' | train s |', '|' + '---|' * (len(run_names) + 4)]
        for r in records:
            values = ' | '.join(f'{r["metrics"][name]:.2f}' for name in run_names)
            lines.append(f'| {KINDS[r["model"]][0]} | {r["dim"]} | {r["seed"]} | {values} | {r["train_seconds"]:.1f} |')
        parts.append('Every run:\n\n' + '\n'.join(lines))
    if timing:
        lines = ['| d | N | exact kNN, median s | paper: faiss, 250000 on a GTX 1080Ti, s |', '|---|---|---|---|']
        for row in timing:
            paper = row['paper_faiss_250k_s']
            lines.append(f'| {row["dim"]} | {row["num_samples"]} | {row["median_s"]:.3f} | '
                         f'{"-" if paper is None else f"{paper:.2f}"} |')
        parts.append('Retrieval time (leave-one-out nearest neighbour of every embedding, '
                     'mmkd.evaluation.retrieval_metrics):\n\n' + '\n'.join(lines))
    return '\n\n'.join(parts) + '\n'


# ---------------------------------------------------------------------------------------------- command line
NONE = 'none'


def _dim_or_none(text: str):
    """A value of ``--retrieval-dims``: an int, or ``'none'`` (no timing)."""
    if text.lower() == NONE:
        return NONE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected embedding dimensions (ints) or 'none', got {text!r}") from None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='tools/analysis/s2sd_dims.py', description='S2SD embedding-dimension study (Fig. 3B, Table 8, Sec. E)')
    parser.add_argument(
        '--baseline', default=osp.join(ROOT, BASELINE), help=f'baseline ImageEmbedder config (default {BASELINE})')
    parser.add_argument('--s2sd', default=osp.join(ROOT, S2SD), help=f'S2SDEmbedder config (default {S2SD})')
    parser.add_argument(
        '--dims',
        type=int,
        nargs='+',
        default=[4, 8, 16, 32, 64],
        help="base dimensions (default 4-64: around the toy configs' 8, up to where the toy data plateau, about 32)")
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--epochs', type=int, default=None, help="epochs of every run (default: the configs')")
    parser.add_argument('--work-dir', default='work_dirs/s2sd_dims', help='one folder per run, and the outputs')
    parser.add_argument('--out', default=None, help='the PNG (default <work-dir>/s2sd_dims.png); .md / .json beside')
    parser.add_argument('--data-root', default=None, help="the data folder of every run (default: the configs')")
    parser.add_argument('--force', action='store_true', help='retrain runs even if a matching record exists')
    parser.add_argument('--skip-train', action='store_true', help='only the retrieval timing')
    parser.add_argument('--retrieval-n', type=int, default=20000, help='synthetic embeddings of the timing')
    parser.add_argument(
        '--retrieval-dims',
        type=_dim_or_none,
        nargs='*',
        default=sorted(PAPER_RETRIEVAL_S),
        help="dimensions of the timing (default: the paper's 32-2048); no timing: the flag with no values, or 'none'")
    parser.add_argument(
        '--retrieval-repeat', type=int, default=3, help='timed calls per dimension, their median reported (default 3)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda: where the retrieval is timed')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of both configs, key=value as in tools/train.py')
    for kind in KINDS:
        parser.add_argument(
            f'--{kind}-cfg-options',
            nargs='+',
            action=DictAction,
            help=f'override settings of the {KINDS[kind][0]} config only, after --cfg-options' +
            (' (e.g. model.target_dims=[64,128])' if kind == 's2sd' else ''))
    args = parser.parse_args(argv)
    if NONE in args.retrieval_dims:
        if args.retrieval_dims != [NONE]:
            parser.error(f"--retrieval-dims 'none' means no timing: it takes no dimensions beside it, got "
                         f'{args.retrieval_dims}')
        args.retrieval_dims = []
    for name, values in (('--dims', args.dims), ('--seeds', args.seeds), ('--retrieval-dims', args.retrieval_dims)):
        if len(set(values)) != len(values):
            parser.error(f'{name} has duplicates: {values}')
    for name, values in (('--dims', args.dims), ('--retrieval-dims', args.retrieval_dims)):
        bad = [d for d in values if d < 1]
        if bad:
            parser.error(f'{name} must be positive embedding dimensions, got {bad}')
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be >= 1, got {args.epochs}')
    if args.retrieval_n < 2 or args.retrieval_repeat < 1:
        parser.error(f'--retrieval-n must be >= 2 and --retrieval-repeat >= 1, got {args.retrieval_n} and '
                     f'{args.retrieval_repeat}')
    if args.skip_train and not args.retrieval_dims:
        parser.error('--skip-train with no --retrieval-dims leaves nothing to do')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda asked for, but torch sees no CUDA device')
    if args.device != 'cpu' and not args.device.startswith('cuda'):
        parser.error(f'--device must be cpu or cuda, got {args.device!r}')
    args.out = args.out or osp.join(args.work_dir, 's2sd_dims.png')
    return args


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> dict:
    """Run the study; returns what the JSON file holds."""
    args = parse_args(argv)
    stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    configs = {}
    if not args.skip_train:
        # both configs are checked, as read and as every run builds them, before the first run trains
        for kind, path in (('baseline', args.baseline), ('s2sd', args.s2sd)):
            load_config(path, kind)
            configs[kind] = path
        for kind, path in configs.items():
            check_builds(path, kind, args)
    start = time.time()
    say(f's2sd_dims: {len(configs) * len(args.dims) * len(args.seeds)} runs (dims {args.dims}, seeds {args.seeds}), '
        f'retrieval timing at {args.retrieval_dims or "no"} dims; results in {osp.abspath(args.work_dir)}')
    records = train_all(configs, args, stream) if configs else []
    summary = summarise(records)
    timing = []
    if args.retrieval_dims:
        say(f'[retrieval] exact kNN of {args.retrieval_n} synthetic embeddings on {args.device}')
        timing = time_retrieval(args.retrieval_dims, args.retrieval_n, args.device, args.retrieval_repeat, say=say)
    out_dir = osp.dirname(osp.abspath(args.out))
    stem = osp.splitext(osp.abspath(args.out))[0]
    os.makedirs(out_dir, exist_ok=True)
    plot_study(summary, timing, args.out, args.device)
    table = markdown(records, summary, timing, configs)
    results = dict(
        configs=configs,
        dims=args.dims,
        seeds=args.seeds,
        epochs=args.epochs,
        runs=records,
        summary=summary,
        retrieval=dict(device=args.device, num_samples=args.retrieval_n, rows=timing),
        paper=dict(r1_cub_table8=PAPER_R1, retrieval_faiss_250k_s=PAPER_RETRIEVAL_S),
        seconds=round(time.time() - start, 1))
    with open(stem + '.md', 'w') as f:
        f.write(table)
    with open(stem + '.json', 'w') as f:
        json.dump(results, f, indent=1)
    say(f'\n{table}\nSaved {args.out}, {stem}.md and {stem}.json')
    return results


if __name__ == '__main__':
    main()
