"""SSIM feature-distillation loss, forward + backward, on RetinaNet neck shapes: mmkd vs its peers.

Peers, in the same run and on the same inputs: pytorch-msssim's ``ssim`` and kornia's ``ssim_loss``.
The loss is summed over the five FPN levels P3-P7 of an 800x1333 image padded to 800x1344
(mmdet's ``pad_size_divisor=32``): 100x168, 50x84, 25x42, 13x21, 7x11, 256 channels. The student map
requires a gradient, the teacher map does not (as in distillation); values are min-max normalised
feature-like maps in [0, 1] (``data_range=1``).

Before timing, the numerics are checked: mmkd's SSIM per level against pytorch-msssim (levels at
least as large as the 11x11 window; P7 is smaller, where pytorch-msssim skips smoothing along the
short side, kornia's 'valid' mode fails and mmkd shrinks the window) and against kornia's ``ssim``
with 'valid' padding, and
mmkd's gradient against pytorch-msssim's, on P3-P6.

Time: median of ``--repeat`` runs after ``--warmup`` runs (CUDA: synchronised). Peak memory: on CUDA,
``max_memory_allocated`` during one forward + backward minus what was allocated before it; on the
CPU, the rise of the peak resident set size (VmHWM) during one forward + backward in a fresh
process with glibc's mmap threshold pinned, so freed large buffers go back to the system and the
peak follows the live tensors.

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

import torch

LEVELS = ((100, 168), (50, 84), (25, 42), (13, 21), (7, 11))
CHANNELS = 256
IMPLS = ('mmkd', 'pytorch-msssim', 'kornia')


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


def loss_fn(impl: str):
    """The summed SSIM loss over levels for ``impl``."""
    if impl == 'mmkd':
        from mmkd.models.losses import ssim

        def level(s, t):
            return 1 - ssim(s, t, data_range=1.0, reduction='mean')
    elif impl == 'pytorch-msssim':
        from pytorch_msssim import ssim as pm_ssim

        def level(s, t):
            return 1 - pm_ssim(s, t, data_range=1.0, size_average=True)
    elif impl == 'kornia':
        from kornia.losses import ssim_loss

        def level(s, t):
            return ssim_loss(s, t, window_size=11, max_val=1.0)
    else:
        raise ValueError(f'unknown implementation {impl!r}; choose from {IMPLS}')

    def total(pairs):
        return sum(level(s, t) for s, t in pairs)

    return total


def check_numerics(device: str) -> dict:
    """Largest differences of mmkd against the peers on batch-1 inputs of the benchmark shapes."""
    import warnings

    from kornia.metrics import ssim as k_ssim
    from pytorch_msssim import ssim as pm_ssim

    from mmkd.models.losses import ssim
    pairs = make_inputs(1, device, seed=1)
    value_pm = value_k = grad_pm = 0.0
    for (s, t), (h, w) in zip(pairs, LEVELS):
        s = s.double().requires_grad_()
        t = t.double()
        ours = ssim(s, t, data_range=1.0, reduction='mean')
        (g_ours, ) = torch.autograd.grad(ours, s)
        if min(h, w) >= 11:
            k = k_ssim(s.detach(), t, 11, max_val=1.0, padding='valid').mean()
            value_k = max(value_k, (ours - k).abs().item())
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ref = pm_ssim(s, t, data_range=1.0, size_average=True)
            (g_ref, ) = torch.autograd.grad(ref, s)
            value_pm = max(value_pm, (ours - ref).abs().item())
            grad_pm = max(grad_pm, ((g_ours - g_ref).abs().max() / g_ref.abs().max()).item())
    return {'value_vs_pytorch_msssim': value_pm, 'value_vs_kornia_valid': value_k,
            'relative_grad_vs_pytorch_msssim': grad_pm}


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_impl(impl: str, batch: int, device: str, warmup: int, repeat: int) -> float:
    """Median milliseconds of one forward + backward."""
    fn = loss_fn(impl)
    pairs = make_inputs(batch, device)
    students = [s.requires_grad_() for s, _ in pairs]
    times = []
    for i in range(warmup + repeat):
        _sync(device)
        start = time.perf_counter()
        loss = fn(pairs)
        loss.backward()
        _sync(device)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
        for s in students:
            s.grad = None
    return statistics.median(times)


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
    tiny = make_inputs(1, 'cpu')  # first call of every op on small inputs: code paths, not buffers
    for s, _ in tiny:
        s.requires_grad_()
    fn([(s[..., :12, :12], t[..., :12, :12]) for s, t in tiny]).backward()
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
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: torch default)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    parser.add_argument('--out', help='also write the results as JSON here')
    args = parser.parse_args()
    devices = args.device or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    results = {'levels': LEVELS, 'channels': CHANNELS, 'torch': torch.__version__, 'runs': []}
    for device in devices:
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise SystemExit('--device cuda asked for, but torch sees no CUDA device')
        name = torch.cuda.get_device_name() if device.startswith('cuda') else f'CPU, {threads} threads'
        numerics = check_numerics(device)
        print(f'\n== {name}; numerics (float64, batch 1): ' +
              ', '.join(f'{k} {v:.1e}' for k, v in numerics.items()), flush=True)
        for batch in args.batch:
            rows = {}
            for impl in IMPLS:
                ms = time_impl(impl, batch, device, args.warmup, args.repeat)
                mib = None
                if not args.no_memory:
                    mib = cuda_peak_mib(impl, batch, device) if device.startswith('cuda') else cpu_peak_mib(
                        impl, batch, threads)
                rows[impl] = {'ms': ms, 'peak_mib': mib}
                print(f'  batch {batch} {impl:15s} {ms:9.1f} ms' + ('' if mib is None else f'  {mib:9.1f} MiB peak'),
                      flush=True)
            ours = rows['mmkd']
            for peer in IMPLS[1:]:
                line = f'  batch {batch} mmkd / {peer}: time {ours["ms"] / rows[peer]["ms"]:.2f}x'
                if ours['peak_mib'] is not None:
                    line += f', peak memory {ours["peak_mib"] / rows[peer]["peak_mib"]:.2f}x'
                print(line)
            results['runs'].append({'device': name, 'batch': batch, 'numerics': numerics, 'results': rows})
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
