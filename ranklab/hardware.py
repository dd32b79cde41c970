"""The machine a run or a benchmark was made on: CPU model, its bf16 support, threads, precision.

Records, results summaries, RESULTS.md and ``make bench`` name it, so a number can be traced to
the hardware it came from (AMX and AVX512-BF16 CPUs run bf16 natively; others emulate it, and
PyTorch then picks other kernels).  ``RANKLAB_BF16=off`` turns the native-bf16 choice off on any
machine (the embedded scale then trains in fp32), to test the code path of a CPU without it.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

BF16_ENV = "RANKLAB_BF16"  # "off": behave as on hardware without native bf16
_FLAGS_OF_INTEREST = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; the platform's processor string and no flags elsewhere."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def bf16_forced_off() -> bool:
    return os.environ.get(BF16_ENV, "").strip().lower() in ("off", "0", "no", "false")


def native_bf16() -> bool:
    """Whether bf16 autocast runs natively here: a CUDA GPU with bf16, or a CPU with AMX /
    AVX512-BF16 (oneDNN's check).  Elsewhere bf16 is emulated and slower than fp32.
    ``RANKLAB_BF16=off`` makes it False everywhere."""
    if bf16_forced_off():
        return False
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def hardware_info(precision: str | None = None) -> dict[str, Any]:
    """What a record or a benchmark names: CPU model and flags, PyTorch's CPU kernel level
    (``ATEN_CPU_CAPABILITY``), threads, GPU if any, native bf16 and the precision actually used."""
    import torch

    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "cpu": model, "machine": platform.machine(),
        "cpu_flags": [f for f in _FLAGS_OF_INTEREST if f in flags],
        "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native_bf16": native_bf16(), "bf16_forced_off": bf16_forced_off(),
    }
    if precision is not None:
        info["precision"] = {"no": "fp32"}.get(precision, precision)
    return info


def describe(info: dict[str, Any]) -> str:
    """One line: 'AMD EPYC (AVX512-BF16, no AMX; kernels AVX512), 2 threads, fp32'."""
    if not info:
        return "not recorded"
    bf16 = ", ".join([("AMX" if info.get("amx") else "no AMX"),
                      ("AVX512-BF16" if info.get("avx512_bf16") else "no AVX512-BF16")])
    text = f"{info.get('cpu', '?')} ({bf16}; kernels {info.get('cpu_capability', '?')})"
    if info.get("gpu"):
        text += f", GPU {info['gpu']}"
    text += f", {info.get('threads', '?')} threads"
    if info.get("bf16_forced_off"):
        text += f", bf16 off ({BF16_ENV}=off)"
    if "precision" in info:
        text += f", {info['precision']}"
    return text
