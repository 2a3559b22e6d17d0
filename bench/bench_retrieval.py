"""Leave-one-out retrieval metrics: mmkd's ``retrieval_metrics`` against pytorch-metric-learning's
``AccuracyCalculator``, on the same embeddings, in the same run.

Issue 11: on N = 60000 embeddings of 128 dimensions in 11300 classes (SOP-like test split), Recall@1/2/4/8 + mAP@R
should take at most 0.5x the time of pytorch-metric-learning 2.9's AccuracyCalculator (``precision_at_1`` +
``mean_average_precision_at_r``; it has no Recall@K for K > 1). No faiss here: the peer runs its
``CustomKNN(LpDistance(normalize_embeddings=False))`` (the full N x N distance matrix at once unless
``--peer-batch-size``), with ``k='max_bin_count'`` (what mAP@R needs).

**Data** (``--seed``): class centres drawn from a standard normal in ``--dim`` dimensions and L2-normalised; every
class gets 2 samples and the rest of the ``--num-samples`` are spread uniformly over the classes (sizes 2 + a
multinomial share, like SOP's test split: no singleton); embedding = L2-normalise(centre + ``--noise`` x standard
normal noise). The same float32 tensor goes to both.

**Timed**, after one unrecorded call of each side on the first 1000 samples (one-time costs), each side
``--repeat`` times, taking turns (the first one rotating): the wall clock and the process CPU
time (``time.process_time``, all threads); the medians. **Peak memory**: the rise of the process's peak resident set
(``VmHWM`` in /proc/self/status, reset before each call through /proc/self/clear_refs, with glibc's mmap threshold
pinned so that freed large blocks leave the resident set; on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before). **Numbers**: mmkd's R@1 against the peer's
precision_at_1 and mAP@R against its mean_average_precision_at_r, both to within ``--tol`` (else exit code 1).

**NMI** (unless ``--no-nmi``), timed apart: mmkd's (its float32 Lloyd k-means, k = number of classes, 20 iterations
at most from ``--seed``-drawn samples, stopping by scikit-learn's rule) against the peer's ``NMI`` with a
scikit-learn ``KMeans(init='random', n_init=1, max_iter=20)`` k-means function (faiss' defaults: random samples, 20
iterations); two different k-means, so the NMI values are compared, not asserted equal.

    python bench/bench_retrieval.py                         # CPU, the issue's size
    python bench/bench_retrieval.py --device cuda --out retrieval_cuda.json
    python bench/bench_retrieval.py --quick                 # smoke run: 1500 x 32, 300 classes
"""
import argparse
import statistics
import sys
import time
from typing import Callable, Dict, Optional, Sequence

import torch
from bench_utils import (check_device, device_name, peak_memory, sync, unmap_freed_memory, with_load_average,
                         write_results)
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.cluster import KMeans

from mmkd.evaluation import retrieval_metrics


def synthetic(num_samples: int, dim: int, num_classes: int, noise: float, seed: int):
    """(N, dim) float32 L2-normalised embeddings around class centres and their (N, ) labels (see the docstring)."""
    if num_samples < 2 * num_classes:
        raise ValueError(f'--num-samples ({num_samples}) must be at least 2 x --num-classes ({num_classes})')
    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
    labels = torch.cat([
        torch.arange(num_classes).repeat(2),
        torch.randint(0, num_classes, (num_samples - 2 * num_classes, ), generator=gen)
    ])
    labels = labels[torch.randperm(num_samples, generator=gen)]
    x = centres[labels] + noise * torch.randn(num_samples, dim, generator=gen)
    return torch.nn.functional.normalize(x, dim=1), labels


def time_sides(fns: Dict[str, Callable], device: str, repeat: int, warmups: Dict[str, Callable]) -> Dict[str, dict]:
    """Every side ``repeat`` times, taking turns, after one unrecorded call of its ``warmups`` function (the first
    call of a side pays one-time costs: lazy imports, allocator growth): {side: {'wall_s': [...], 'cpu_s': [...],
    'peak_bytes': max, 'result': last result}}."""
    names = list(fns)
    for name in names:
        warmups[name]()
    out = {name: {'wall_s': [], 'cpu_s': [], 'peak_bytes': 0} for name in names}
    for round_ in range(repeat):
        start_at = round_ % len(names)
        for name in names[start_at:] + names[:start_at]:
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            result, peak = peak_memory(fns[name], device)
            sync(device)
            out[name]['wall_s'].append(time.perf_counter() - wall)
            out[name]['cpu_s'].append(time.process_time() - cpu)
            out[name]['peak_bytes'] = max(out[name]['peak_bytes'], peak)
            out[name]['result'] = result
    for side in out.values():
        side['wall_median_s'] = statistics.median(side['wall_s'])
        side['cpu_median_s'] = statistics.median(side['cpu_s'])
    return out


def sklearn_kmeans(seed: int):
    """The peer's k-means function: scikit-learn Lloyd from random samples, 20 iterations (faiss' defaults)."""

    def fn(x: torch.Tensor, num_clusters: int) -> torch.Tensor:
        km = KMeans(num_clusters, init='random', n_init=1, max_iter=20, random_state=seed)
        return torch.as_tensor(km.fit_predict(x.cpu().numpy()), device=x.device)

    return fn


def run(args) -> dict:
    device = args.device
    x, labels = synthetic(args.num_samples, args.dim, args.num_classes, args.noise, args.seed)
    x, labels = x.to(device), labels.to(device)
    small_x, small_labels = x[:1000], labels[:1000]
    knn = CustomKNN(LpDistance(normalize_embeddings=False), batch_size=args.peer_batch_size)
    peer = AccuracyCalculator(
        include=('precision_at_1', 'mean_average_precision_at_r'),
        k='max_bin_count',
        device=torch.device(device),
        knn_func=knn)
    retrieval = time_sides(
        {
            'mmkd': lambda: retrieval_metrics(x, labels, metrics=('recall', 'map_at_r'), device=device),
            'pml': lambda: peer.get_accuracy(x, labels),
        }, device, args.repeat, {
            'mmkd': lambda: retrieval_metrics(small_x, small_labels, metrics=('recall', 'map_at_r'), device=device),
            'pml': lambda: peer.get_accuracy(small_x, small_labels),
        })
    mine, theirs = retrieval['mmkd']['result'], retrieval['pml']['result']
    diffs = {
        'R@1 - precision_at_1': mine['R@1'] - theirs['precision_at_1'],
        'mAP@R - mean_average_precision_at_r': mine['mAP@R'] - theirs['mean_average_precision_at_r'],
    }
    result = {'retrieval': retrieval, 'differences': diffs}
    if not args.no_nmi:
        peer_nmi = AccuracyCalculator(
            include=('NMI', ), device=torch.device(device), knn_func=knn, kmeans_func=sklearn_kmeans(args.seed))
        result['nmi'] = time_sides(
            {
                'mmkd': lambda: retrieval_metrics(x, labels, metrics=('nmi', ), device=device, nmi_seed=args.seed),
                'pml': lambda: peer_nmi.get_accuracy(x, labels),
            }, device, args.repeat, {
                'mmkd': lambda: retrieval_metrics(small_x, small_labels, metrics=('nmi', ), device=device),
                'pml': lambda: peer_nmi.get_accuracy(small_x, small_labels),
            })
    return result


def _mib(num_bytes: float) -> str:
    return f'{num_bytes / 2**20:.0f} MiB'


def report(args, result: dict) -> bool:
    """Print the tables; whether the numbers agree to within ``--tol``."""
    ret = result['retrieval']
    mine, theirs = ret['mmkd']['result'], ret['pml']['result']
    print(f'== {args.num_samples} x {args.dim} embeddings, {args.num_classes} classes, noise {args.noise}, '
          f'seed {args.seed}; {args.repeat} timed run(s) per side')
    print('mmkd: ' + ', '.join(f'{k} {v:.6f}' for k, v in mine.items()))
    print('pml:  ' + ', '.join(f'{k} {v:.6f}' for k, v in theirs.items()))
    ok = True
    for what, diff in result['differences'].items():
        agree = abs(diff) <= args.tol
        ok &= agree
        print(f'{what}: {diff:+.3e} ({"within" if agree else "OUTSIDE"} {args.tol:g})')
    rows = [('R@1/2/4/8 + mAP@R', 'precision_at_1 + mAP@R', ret)]
    if 'nmi' in result:
        nmi = result['nmi']
        print(f"NMI: mmkd {nmi['mmkd']['result']['NMI']:.6f} (torch Lloyd, 20 iterations at most, scikit-learn's "
              f"stopping rule), pml {nmi['pml']['result']['NMI']:.6f} (scikit-learn KMeans init='random', "
              'max_iter=20): different k-means, not expected equal')
        rows.append(('NMI', 'NMI (sklearn k-means)', nmi))
    print('| what | mmkd wall | mmkd CPU | mmkd peak memory | pml | pml wall | pml CPU | pml peak memory | '
          'wall ratio mmkd / pml |')
    print('|---|---|---|---|---|---|---|---|---|')
    for what, peer_what, timing in rows:
        a, b = timing['mmkd'], timing['pml']
        print(f"| {what} | {a['wall_median_s']:.2f} s | {a['cpu_median_s']:.2f} s | {_mib(a['peak_bytes'])} | "
              f"{peer_what} | {b['wall_median_s']:.2f} s | {b['cpu_median_s']:.2f} s | {_mib(b['peak_bytes'])} | "
              f"**{a['wall_median_s'] / b['wall_median_s']:.2f}x** |")
    ratio = ret['mmkd']['wall_median_s'] / ret['pml']['wall_median_s']
    memory = ret['mmkd']['peak_bytes'] / max(1, ret['pml']['peak_bytes'])
    print(f'result: R@K + mAP@R wall time mmkd / pml {ratio:.2f}x (target <= 0.5), peak memory {memory:.3f}x; '
          f'numbers {"equal" if ok else "DIFFERENT"} to within {args.tol:g}')
    return ok


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--num-samples', type=int, default=60000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--num-classes', type=int, default=11300)
    parser.add_argument('--noise', type=float, default=0.12, help='std of the per-dimension noise around a centre')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--repeat', type=int, default=1, help='timed runs per side')
    parser.add_argument(
        '--peer-batch-size',
        type=int,
        default=None,
        help="CustomKNN's batch_size (default: the whole distance matrix at once)")
    parser.add_argument('--no-nmi', action='store_true', help='skip the NMI comparison')
    parser.add_argument('--tol', type=float, default=1e-6, help='allowed |difference| of R@1 and mAP@R')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--quick', action='store_true', help='smoke run: 1500 x 32 embeddings, 300 classes')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args(argv)
    if args.quick:
        args.num_samples, args.dim, args.num_classes, args.noise = 1500, 32, 300, 0.2
    if args.repeat < 1:
        parser.error(f'--repeat must be >= 1, got {args.repeat}')
    check_device(parser, args.device)
    return args


def main():
    args = parse_args()
    if args.device == 'cpu':
        unmap_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = device_name(args.device)
    print(f'== {name}; torch {torch.__version__}', flush=True)
    result, load_average = with_load_average(lambda: run(args))
    ok = report(args, result)
    if args.out:
        write_results(args.out, name, args, load_average, result)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
