"""What both speed benchmarks measure besides time: peak memory of this process and the machine it ran on."""

from __future__ import annotations

import os
import platform
import resource

import torch


def peak_host_memory_mb() -> float:
    """This process's peak resident memory (VmHWM: torch's allocations included, unlike tracemalloc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if platform.system() == "Darwin" else 1)  # bytes on macOS, KiB on Linux


def peak_gpu_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)  # other work sharing the cores skews the figures
    return info
