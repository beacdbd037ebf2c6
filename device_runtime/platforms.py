"""Where a figure was measured: the machine, the CPU and the CPU features that decide int8 results.

int8 arithmetic differs between CPUs (VNNI, Arm dot product, plain AVX2 paths round differently), so
every metric and timing the kit records carries this block. Standard library only."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instructions that change int8 kernels, as /proc/cpuinfo spells them (x86 flags, Arm features).
INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8", "asimddp", "dotprod", "i8mm")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model(text: str | None = None) -> str:
    text = _cpuinfo() if text is None else text
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def int8_features(text: str | None = None) -> list[str]:
    """The INT8_FEATURES this CPU lists (first `flags` / `Features` line), in INT8_FEATURES order."""
    text = _cpuinfo() if text is None else text
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            break
    return [feature for feature in INT8_FEATURES if feature in flags]


def platform_record(emulated: bool = False) -> dict:
    """{machine, cpu, int8_features, emulated}: the platform block of a metric or a timing."""
    return {"machine": platform.machine(), "cpu": cpu_model(), "int8_features": int8_features(),
            "cores": os.cpu_count(), "emulated": emulated}


def describe(record: dict) -> str:
    """'x86_64, AMD EPYC (avx2, avx512_vnni)': one line for tables and model cards."""
    features = ", ".join(record.get("int8_features") or []) or "no int8 dot-product features listed"
    emulated = " under emulation" if record.get("emulated") else ""
    return f"{record.get('machine', '?')}{emulated}, {record.get('cpu', '?')} ({features})"
