"""SSIM feature-distillation loss, forward + backward, on RetinaNet neck shapes: mmkd vs its peers.

Implementations, in the same run and on the same inputs: mmkd's ``ssim`` with its automatic choice of
the filtering path and with each path pinned (``MMKD_SSIM_FILTER=banded`` / ``conv``), pytorch-msssim's
``ssim`` and kornia's ``metrics.ssim`` with 'valid' padding. All time the same loss, ``1 - SSIM`` (mean
over channels and pixels) summed over the FPN levels P3-P6 of an 800x1333 image padded to 800x1344
(mmdet's ``pad_size_divisor=32``): 100x168, 50x84, 25x42, 13x21, 256 channels. P7 (7x11) is left out:
it is smaller than the 11x11 window, where the three differ by design (pytorch-msssim skips smoothing
along the short side, kornia's 'valid' mode fails, mmkd shrinks the window). The student map requires a
gradient, the teacher map does not (as in distillation); values are min-max normalised feature-like
maps in [0, 1] (``data_range=1``).

Numerics, before timing: (1) float64, batch 1: mmkd's SSIM and gradient per level against
pytorch-msssim, its SSIM against kornia; (2) the float32 loss values that are timed, of every
implementation, against pytorch-msssim's loss on the same inputs in float64.

Time: the implementations take turns (round-robin, the starting one rotating), ``--warmup`` rounds
that are not recorded, then ``--repeat`` recorded rounds; reported: median and min-max per
implementation (CUDA: synchronised). Peak memory: on CUDA, ``max_memory_allocated`` during one forward +
backward minus what was allocated before it; on the CPU, the rise of the peak resident set size (VmHWM)
during one forward + backward in a fresh process with glibc's mmap threshold pinned, so freed large
buffers go back to the system and the peak follows the live tensors.

    python bench/bench_ssim.py                    # CPU, and CUDA when available; batch 2 and 8
    python bench/bench_ssim.py --device cpu --batch 2 --out bench_ssim.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import torch
from bench_utils import cpu_model, sync

LEVELS = ((100, 168), (50, 84), (25, 42), (13, 21))
CHANNELS = 256
IMPLS = ('mmkd', 'mmkd-banded', 'mmkd-conv', 'pytorch-msssim', 'kornia')
MMKD_PATHS = {'mmkd': 'auto', 'mmkd-banded': 'banded', 'mmkd-conv': 'conv'}


def make_inputs(batch: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for h, w in LEVELS:
        t = torch.randn(batch, CHANNELS, h, w, generator=gen)
        s = t + 0.5 * torch.randn(batch, CHANNELS, h, w, generator=gen)
        pairs.append(tuple(_minmax(v).to(device) for v in (s, t)))
    return pairs


def _minmax(x):
    flat = x.flatten(2)
    low, high = flat.min(-1, keepdim=True)[0], flat.max(-1, keepdim=True)[0]
    return ((flat - low) / (high - low)).view_as(x).contiguous()


@contextmanager
def _filter_path(impl: str):
    """mmkd's filtering path for ``impl`` (the environment variable is read at every call)."""
    before = os.environ.get('MMKD_SSIM_FILTER')
    os.environ['MMKD_SSIM_FILTER'] = MMKD_PATHS.get(impl, 'auto')
    try:
        yield
    finally:
        if before is None:
            del os.environ['MMKD_SSIM_FILTER']
        else:
            os.environ['MMKD_SSIM_FILTER'] = before


def loss_fn(impl: str):
    """The summed loss ``sum over levels of 1 - mean SSIM`` for ``impl``."""
    if impl in MMKD_PATHS:
        from mmkd.models.losses import ssim

        def level(s, t):
            return 1 - ssim(s, t, data_range=1.0, reduction='mean')
    elif impl == 'pytorch-msssim':
        from pytorch_msssim import ssim as pm_ssim

        def level(s, t):
            return 1 - pm_ssim(s, t, data_range=1.0, size_average=True)
    elif impl == 'kornia':
        from kornia.metrics import ssim as k_ssim

        def level(s, t):
            return 1 - k_ssim(s, t, 11, max_val=1.0, padding='valid').mean()
    else:
        raise ValueError(f'unknown implementation {impl!r}; choose from {IMPLS}')

    def total(pairs):
        with _filter_path(impl):
            return sum(level(s, t) for s, t in pairs)

    return total


def check_numerics(device: str) -> dict:
    """Largest differences of mmkd against the peers in float64 on batch-1 inputs of the benchmark shapes."""
    from kornia.metrics import ssim as k_ssim
    from pytorch_msssim import ssim as pm_ssim

    from mmkd.models.losses import ssim
    value_pm = value_k = grad_pm = 0.0
    for s, t in make_inputs(1, device, seed=1):
        s = s.double().requires_grad_()
        t = t.double()
        ours = ssim(s, t, data_range=1.0, reduction='mean')
        (g_ours, ) = torch.autograd.grad(ours, s)
        k = k_ssim(s.detach(), t, 11, max_val=1.0, padding='valid').mean()
        ref = pm_ssim(s, t, data_range=1.0, size_average=True)
        (g_ref, ) = torch.autograd.grad(ref, s)
        value_k = max(value_k, (ours - k).abs().item())
        value_pm = max(value_pm, (ours - ref).abs().item())
        grad_pm = max(grad_pm, ((g_ours - g_ref).abs().max() / g_ref.abs().max()).item())
    return {
        'value_vs_pytorch_msssim': value_pm,
        'value_vs_kornia_valid': value_k,
        'relative_grad_vs_pytorch_msssim': grad_pm
    }


def check_timed_values(pairs) -> dict:
    """|float32 loss - float64 reference| of every implementation on the inputs that are timed."""
    reference = loss_fn('pytorch-msssim')([(s.double(), t.double()) for s, t in pairs]).item()
    with torch.no_grad():
        return {impl: abs(loss_fn(impl)(pairs).item() - reference) for impl in IMPLS}


def time_round_robin(batch: int, device: str, warmup: int, repeat: int) -> dict:
    """Milliseconds of one forward + backward per implementation: {impl: [repeat times]}."""
    pairs = make_inputs(batch, device)
    students = [s.requires_grad_() for s, _ in pairs]
    fns = {impl: loss_fn(impl) for impl in IMPLS}
    times = {impl: [] for impl in IMPLS}
    for round_ in range(warmup + repeat):
        start_at = round_ % len(IMPLS)
        for impl in IMPLS[start_at:] + IMPLS[:start_at]:
            sync(device)
            start = time.perf_counter()
            fns[impl](pairs).backward()
            sync(device)
            if round_ >= warmup:
                times[impl].append(1000 * (time.perf_counter() - start))
            for s in students:
                s.grad = None
    return times


def cuda_peak_mib(impl: str, batch: int, device: str) -> float:
    fn = loss_fn(impl)
    pairs = make_inputs(batch, device)
    for s, _ in pairs:
        s.requires_grad_()
    fn(pairs).backward()  # warm-up: kernels, workspaces
    for s, _ in pairs:
        s.grad = None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(pairs).backward()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _vm_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def cpu_peak_child(impl: str, batch: int) -> float:
    """Run in a fresh process: peak RSS rise (MiB) of one forward + backward."""
    fn = loss_fn(impl)
    pairs = make_inputs(batch, 'cpu')
    for s, _ in pairs:
        s.requires_grad_()
    fn(pairs).backward()  # first call of every op and mmkd's one-time path measurement
    for s, _ in pairs:
        s.grad = None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    before = _vm_kib('VmRSS')
    fn(pairs).backward()
    return (_vm_kib('VmHWM') - before) / 1024


def cpu_peak_mib(impl: str, batch: int, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', OMP_NUM_THREADS=str(threads))
    code = (f'import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import torch; '
            f'torch.set_num_threads({threads}); import bench_ssim as b; '
            f'print(b.cpu_peak_child({impl!r}, {batch}))')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'memory measurement of {impl} (batch {batch}) failed:\n{out.stderr[-2000:]}')
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', nargs='+', default=None, help='cpu and/or cuda (default: cpu, cuda if present)')
    parser.add_argument('--batch', nargs='+', type=int, default=[2, 8])
    parser.add_argument('--warmup', type=int, default=1, help='unrecorded rounds before timing')
    parser.add_argument('--repeat', type=int, default=5, help='recorded rounds')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args()
    devices = args.device or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    results = {
        'levels': LEVELS,
        'channels': CHANNELS,
        'torch': torch.__version__,
        'warmup': args.warmup,
        'repeat': args.repeat,
        'runs': []
    }
    for device in devices:
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise SystemExit('--device cuda asked for, but torch sees no CUDA device')
        if device.startswith('cuda'):
            name = torch.cuda.get_device_name()
        else:
            name = f'{cpu_model()}, {threads} threads, {os.cpu_count()} logical CPUs'
        numerics = check_numerics(device)
        print(
            f'\n== {name}; torch {torch.__version__}; {args.warmup} warm-up round(s), {args.repeat} timed rounds, '
            f'round-robin\n   numerics (float64, batch 1): ' + ', '.join(f'{k} {v:.1e}' for k, v in numerics.items()),
            flush=True)
        for batch in args.batch:
            timed_values = check_timed_values(make_inputs(batch, device))
            print(
                f'  batch {batch}: |float32 loss - float64 reference| of the timed inputs: ' +
                ', '.join(f'{k} {v:.1e}' for k, v in timed_values.items()),
                flush=True)
            load_before = os.getloadavg()[0]
            times = time_round_robin(batch, device, args.warmup, args.repeat)
            load_after = os.getloadavg()[0]
            rows = {}
            for impl in IMPLS:
                mib = None
                if not args.no_memory:
                    mib = cuda_peak_mib(impl, batch, device) if device.startswith('cuda') else cpu_peak_mib(
                        impl, batch, threads)
                ms = times[impl]
                rows[impl] = {
                    'median_ms': statistics.median(ms),
                    'min_ms': min(ms),
                    'max_ms': max(ms),
                    'ms': ms,
                    'peak_mib': mib
                }
                print(
                    f'  batch {batch} {impl:15s} median {statistics.median(ms):8.1f} ms  '
                    f'[{min(ms):.1f}-{max(ms):.1f}]' + ('' if mib is None else f'  {mib:8.1f} MiB peak'),
                    flush=True)
            print(f'  batch {batch}: 1-minute load average {load_before:.2f} before, {load_after:.2f} after timing')
            for ours in MMKD_PATHS:
                for peer in ('pytorch-msssim', 'kornia', 'mmkd-conv'):
                    if peer == ours:
                        continue
                    print(f'  batch {batch} {ours} / {peer}: median time '
                          f'{rows[ours]["median_ms"] / rows[peer]["median_ms"]:.2f}x')
            results['runs'].append({
                'device': name,
                'batch': batch,
                'numerics': numerics,
                'timed_value_errors': timed_values,
                'load_average': [load_before, load_after],
                'results': rows
            })
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
