"""What the benchmarks in bench/ share: the machine's name and device synchronisation around timings."""
import platform

import torch


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
