"""What the benchmarks in bench/ share: the machine's name, device synchronisation around timings, round-robin
timing, peak memory, the JSON record of a run and COCO-like random GT boxes."""
import json
import math
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from mmengine.structures import InstanceData


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so that a timer measures it."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_round_robin(fns: Dict[str, Callable], device: str, warmup: int, repeat: int) -> Dict[str, List[float]]:
    """Milliseconds (wall clock) per call of every function, the functions taking turns (the first one rotating
    each round), ``warmup`` unrecorded rounds first: {name: [repeat times]}."""
    return time_round_robin_clocks(fns, device, warmup, repeat, {'wall': time.perf_counter})['wall']


def time_round_robin_clocks(fns: Dict[str, Callable], device: str, warmup: int, repeat: int,
                            clocks: Dict[str, Callable[[], float]]) -> Dict[str, Dict[str, List[float]]]:
    """:func:`time_round_robin` read on several clocks (seconds-valued functions such as ``time.perf_counter`` or
    ``time.process_time``, the CPU time of all the process's threads): {clock: {name: [repeat milliseconds]}}."""
    names = list(fns)
    times = {clock: {name: [] for name in names} for clock in clocks}
    for round_ in range(warmup + repeat):
        start_at = round_ % len(names)
        for name in names[start_at:] + names[:start_at]:
            sync(device)
            start = {clock: read() for clock, read in clocks.items()}
            fns[name]()
            sync(device)
            if round_ >= warmup:
                for clock, read in clocks.items():
                    times[clock][name].append(1000 * (read() - start[clock]))
    return times


def random_gts(num_imgs: int, num_gts: int, size: Sequence[int], num_classes: int,
               gen: torch.Generator) -> List[InstanceData]:
    """Per image ``num_gts`` COCO-like GT boxes [num_gts, 4] (x1, y1, x2, y2) and labels [num_gts] on the CPU.

    Square roots of the areas log-uniform in 16-512 px (at most 3/4 of the shorter image side), aspect ratios
    log-uniform in 1/2-2, centres uniform, boxes clipped to the image of ``size`` (H, W); labels uniform over
    ``num_classes``.
    """
    h, w = size
    max_side = 0.75 * min(h, w)
    gts = []
    for _ in range(num_imgs):
        log_side = math.log(16) + torch.rand(num_gts, generator=gen) * (math.log(min(512, max_side)) - math.log(16))
        log_ratio = (torch.rand(num_gts, generator=gen) * 2 - 1) * math.log(2)
        bw = (log_side + 0.5 * log_ratio).exp().clamp(max=max_side)
        bh = (log_side - 0.5 * log_ratio).exp().clamp(max=max_side)
        cx = torch.rand(num_gts, generator=gen) * w
        cy = torch.rand(num_gts, generator=gen) * h
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=boxes.dtype))
        gts.append(InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (num_gts, ), generator=gen)))
    return gts


def check_device(parser, device: str) -> None:
    """``parser.error`` unless ``device`` is ``cpu`` or a CUDA device that torch sees."""
    if device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda asked for, but torch sees no CUDA device')
    if device != 'cpu' and not device.startswith('cuda'):
        parser.error(f'--device must be cpu or cuda, got {device!r}')


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model with the threads torch uses and the logical CPUs, for a benchmark header."""
    if device.startswith('cuda'):
        return torch.cuda.get_device_name()
    return f'{cpu_model()}, {torch.get_num_threads()} threads, {os.cpu_count()} logical CPUs'


def peak_memory(fn: Callable, device: str) -> Tuple[object, int]:
    """(fn's result, the rise of peak memory in bytes during the call): on CUDA ``max_memory_allocated`` above what
    was allocated before; on the CPU the rise of the peak resident set (``VmHWM``, reset before the call)."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        return result, torch.cuda.max_memory_allocated() - before
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM to the current resident set
    before = _status_kib('VmHWM')
    result = fn()
    return result, 1024 * (_status_kib('VmHWM') - before)


def _status_kib(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'bench_utils: no {key} in /proc/self/status')


def unmap_freed_memory() -> None:
    """Re-run this process with glibc's mmap threshold pinned (once; a no-op when already pinned).

    glibc raises its mmap threshold after freeing large blocks and then keeps freed memory resident; pinned, every
    large block is mapped and unmapped, so that the peak resident set (:func:`peak_memory`) measures each call alone.
    """
    if 'MALLOC_MMAP_THRESHOLD_' not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '131072'})


def with_load_average(fn: Callable[[], object]) -> Tuple[object, Tuple[float, float]]:
    """``fn()`` and the 1-minute load average before and after it (printed: a loaded machine skews timings)."""
    before = os.getloadavg()[0]
    result = fn()
    after = os.getloadavg()[0]
    print(f'1-minute load average {before:.2f} before, {after:.2f} after')
    return result, (before, after)


def write_results(path: str, device: str, args, load_average: Sequence[float], results: dict) -> None:
    """The JSON record of a benchmark run: the device's name, torch's version, the arguments, the 1-minute load
    average before and after, and the benchmark's own ``results`` keys."""
    record = dict(device=device, torch=torch.__version__, args=vars(args), load_average=list(load_average), **results)
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
