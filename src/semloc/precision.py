"""Which floating-point precision to compute in, decided in one place.

    dtype = resolve_precision("auto", device)   # torch.bfloat16, torch.float16 or None (fp32)
    with autocast(dtype, device): ...

`auto` picks bf16 only where the hardware runs it natively: a CUDA GPU that supports bf16, or a
CPU with AVX-512-BF16 or AMX (Intel Sapphire Rapids and later, AMD Zen 4 and later), or an Arm
CPU with the BF16 extension. Anywhere else bf16 is emulated: on an AVX2-only CPU a bf16 matmul
ran ~500x slower than fp32, which made bf16 extraction ~5x slower end to end, so `auto` stays in
fp32 there. So it does on a bf16 CPU where torch is told not to use AVX-512
(`ATEN_CPU_CAPABILITY=avx2` or `ONEDNN_MAX_CPU_ISA=AVX2`), which makes bf16 emulated again (a
bf16 matmul measured 0.4 GFLOP/s there against 730 on the same cores uncapped). An explicit
`bf16` or `fp16` is honoured even where it is emulated (with a warning): the user asked for it.

The trainer (`train.precision`) and feature extraction (`extract.bf16`, which also takes `auto`)
both resolve through `resolve_precision`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from semloc.errors import ConfigError

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")

# /proc/cpuinfo flags of native bf16 / fp16 arithmetic (x86 and Arm spellings)
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
FP16_CPU_FLAGS = frozenset({"avx512_fp16", "amx_fp16", "fphp"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    return frozenset(flags)


# /proc/cpuinfo flags of x86 bf16 arithmetic, which torch reaches only through its AVX-512 kernels
X86_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def isa_capped_below_avx512() -> bool:
    """True when torch may not use AVX-512 on this x86 CPU although the CPU has it: its kernel
    dispatch level (`ATEN_CPU_CAPABILITY`) or oneDNN's (`ONEDNN_MAX_CPU_ISA`) set to AVX2 or
    lower. The CPU then computes as an AVX2-only one does, bf16 emulated."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AVX512" not in capability and "AMX" not in capability:
        return True
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    onednn = onednn.strip().upper()
    return bool(onednn) and onednn != "ALL" and "AVX512" not in onednn and "AMX" not in onednn


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matmuls in hardware (AVX-512-BF16, AMX, Arm BF16) and
    torch is allowed to use that hardware (see `isa_capped_below_avx512`)."""
    flags = cpu_flags()
    if flags & X86_BF16_CPU_FLAGS:
        return not isa_capped_below_avx512()
    if flags & BF16_CPU_FLAGS:  # Arm's bf16
        return True
    # no /proc/cpuinfo (macOS, Windows): torch's dispatch level names AMX when it is there
    return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


def cpu_has_native_fp16() -> bool:
    """True when this CPU computes fp16 matmuls in hardware (AVX-512-FP16, AMX-FP16)."""
    return bool(cpu_flags() & FP16_CPU_FLAGS)


def _device(device: torch.device | str) -> torch.device:
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but CUDA is not available")
    return device


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` runs bf16 natively (the test `auto` applies)."""
    device = _device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(
    name: str, device: torch.device | str, *, key: str = "train.precision"
) -> torch.dtype | None:
    """The autocast dtype for precision `name` on `device`; None means plain fp32.

    `key` names the setting in error messages."""
    if name not in PRECISIONS:
        raise ConfigError(f"config key '{key}': {name!r} is not one of {', '.join(PRECISIONS)}")
    device = _device(device)
    if name == "fp32":
        return None
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"config key '{key}': {name} is supported on cpu and cuda, not {device}")
    if name == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"config key '{key}': this GPU does not support bf16; use fp16")
        if device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "%s=bf16 on a CPU without AVX-512-BF16/AMX: bf16 is emulated and much slower "
                "than fp32 here (use auto or fp32)",
                key,
            )
        return torch.bfloat16
    if device.type == "cpu" and not cpu_has_native_fp16():
        log.warning(
            "%s=fp16 on a CPU without AVX-512-FP16/AMX-FP16: fp16 is emulated and slow", key
        )
    return torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """'bf16', 'fp16' or 'fp32': what a resolved dtype is called in configs and reports."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore[arg-type]


def resolve_bf16_flag(
    setting: bool | str, device: torch.device | str, *, key: str = "extract.bf16"
) -> bool:
    """`extract.bf16` (true, false or auto) as a plain yes/no for `device`."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ConfigError(f"config key '{key}': {setting!r} is not true, false or auto")
    return resolve_precision("auto", device, key=key) is torch.bfloat16


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device | str) -> Iterator[None]:
    """torch.autocast for `dtype` on `device`; does nothing when `dtype` is None (fp32)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


def grad_scaler(dtype: torch.dtype | None, device: torch.device | str) -> torch.amp.GradScaler:
    """A loss scaler that is active only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=dtype is torch.float16)
