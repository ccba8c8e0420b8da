"""Finding the accelerators this machine has, cheaply.

NVIDIA is read through NVML (ctypes, no CUDA context) or `nvidia-smi`; torch is imported only
as the last resort, when a driver is present but neither answers. AMD through `rocm-smi`
(torch.version.hip as the fallback), Apple silicon as MPS with unified memory (system RAM).
`FLOYDTUI_ASSUME_GPU="NAME:MiB[,NAME:MiB...]"` replaces detection (DESIGN.md section 3).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from floydtui.errors import FloydError, Problem

ASSUME_ENV = "FLOYDTUI_ASSUME_GPU"
MIB = 1024 * 1024
SMI_TIMEOUT_S = 10  # nvidia-smi can take seconds on a busy multi-GPU box; never hang doctor
MPS_MIN_TORCH = (2, 6)  # the guide: "As of Pytorch 2.6 ... stage I and II both train on Apple MPS"

# Names that make an assumed device AMD or Apple, so xformers and MPS rules apply in demos.
_ROCM_NAME = re.compile(r"\b(amd|radeon|instinct|mi\d{2,3}x?)\b", re.I)
_MPS_NAME = re.compile(r"\b(apple|m[1-9])\b", re.I)


@dataclass
class Device:
    """One device training could run on. Memory in MiB; for MPS and CPU it is system RAM."""

    name: str
    backend: str  # "cuda" | "rocm" | "mps" | "cpu"
    total_mib: int
    free_mib: int
    index: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.backend != "cpu"

    def label(self) -> str:
        return f"{self.name} ({self.backend}, {self.total_mib / 1024:.1f} GiB)"


def detect_devices() -> list[Device]:
    """The GPUs of this machine (or the assumed ones); a lone CPU device when there are none."""
    assumed = os.environ.get(ASSUME_ENV)
    if assumed is not None:
        return parse_assumed(assumed)
    for probe in (_nvidia_devices, _rocm_devices, _mps_devices):
        found = probe()
        if found:
            return found
    return [cpu_device()]


def best_device(devices: list[Device]) -> Device | None:
    """The GPU with the most memory; the CPU when there is no GPU; None for no devices."""
    if not devices:
        return None
    gpus = [d for d in devices if d.is_gpu]
    return max(gpus or devices, key=lambda d: (d.total_mib, -d.index))


def parse_assumed(value: str) -> list[Device]:
    """`NAME:MiB[,NAME:MiB...]` to devices; every bad item is reported, each by name."""
    devices, problems = [], []
    items = [item.strip() for item in value.split(",")]
    for i, item in enumerate(items):
        name, sep, mib = item.rpartition(":")
        name = name.strip()
        if sep and name and mib.strip().isdecimal() and int(mib) > 0:  # isdigit() passes "²", int() does not
            total = int(mib)
            devices.append(Device(name, _backend_for_name(name), total, total, len(devices)))
            continue
        problems.append(Problem(
            f"item {i + 1} ({item!r}) is not NAME:MiB", where=ASSUME_ENV,
            hint=f'write NAME:MiB items separated by commas, memory in MiB (24G = 24576), e.g. '
                 f'{ASSUME_ENV}="RTX 4090:24564" or "A100:81920,A100:81920"; unset it to detect the real devices'))
    if problems:
        raise FloydError(problems)
    return devices


def _backend_for_name(name: str) -> str:
    if _MPS_NAME.search(name):
        return "mps"
    if _ROCM_NAME.search(name):
        return "rocm"
    return "cuda"


# ---- NVIDIA -----------------------------------------------------------------
class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvidia_devices() -> list[Device]:
    found = _nvml_devices()
    if found is None:
        found = _nvidia_smi_devices()
    if found is None and _nvidia_driver_present():
        found = _torch_devices("cuda")
    return _visible(found or [])


def _nvml_devices() -> list[Device] | None:
    names = ("nvml.dll",) if sys.platform == "win32" else ("libnvidia-ml.so.1", "libnvidia-ml.so")
    lib = None
    for n in names:
        try:
            lib = ctypes.CDLL(n)
            break
        except OSError:
            continue
    if lib is None or lib.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint()
        if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        out = []
        for i in range(count.value):
            handle, name, mem = ctypes.c_void_p(), ctypes.create_string_buffer(96), _NvmlMemory()
            if (lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0
                    or lib.nvmlDeviceGetName(handle, name, 96) != 0
                    or lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) != 0):
                continue
            out.append(Device(name.value.decode(errors="replace"), "cuda", mem.total // MIB, mem.free // MIB, i))
        return out
    finally:
        lib.nvmlShutdown()


def _nvidia_smi_devices() -> list[Device] | None:
    text = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.free",
                 "--format=csv,noheader,nounits"])
    if text is None:
        return None
    return parse_nvidia_smi(text)


def parse_nvidia_smi(text: str) -> list[Device]:
    """`nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits`."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        index, *name_parts, total, free = parts
        if index.isdigit() and total.isdigit() and free.isdigit():
            out.append(Device(", ".join(name_parts), "cuda", int(total), int(free), int(index)))
    return out


def _nvidia_driver_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


def _visible(devices: list[Device]) -> list[Device]:
    """Honour CUDA_VISIBLE_DEVICES given as indexes (NVML and nvidia-smi ignore it)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return devices
    wanted = [v.strip() for v in value.split(",") if v.strip()]
    if not all(re.fullmatch(r"-?\d+", v) for v in wanted):
        return devices  # UUIDs or MIG names: keep every device rather than guess
    by_index = {d.index: d for d in devices}
    out = []
    for v in wanted:
        if int(v) < 0:
            break  # CUDA stops at the first invalid index
        if int(v) in by_index:
            d = by_index[int(v)]
            out.append(Device(d.name, d.backend, d.total_mib, d.free_mib, len(out)))
    return out


# ---- AMD ----------------------------------------------------------------------
def _rocm_devices() -> list[Device]:
    text = _run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"])
    if text is not None:
        found = parse_rocm_smi(text)
        if found:
            return found
    if Path("/dev/kfd").exists():
        return _torch_devices("rocm")
    return []


def parse_rocm_smi(text: str) -> list[Device]:
    """`rocm-smi --showproductname --showmeminfo vram --json`: {"card0": {...}, ...}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    out = []
    for key in sorted((k for k in data if re.fullmatch(r"card\d+", k)), key=lambda k: int(k[4:])):
        card = data[key]
        total = str(card.get("VRAM Total Memory (B)", ""))
        used = str(card.get("VRAM Total Used Memory (B)", "0"))
        if not total.isdigit():
            continue
        name = card.get("Card series") or card.get("Card model") or card.get("Card SKU") or "AMD GPU"
        free = int(total) - int(used) if used.isdigit() else int(total)
        out.append(Device(str(name), "rocm", int(total) // MIB, free // MIB, int(key[4:])))
    return out


# ---- torch, the last resort (creates a CUDA/HIP context) ---------------------
def _torch_devices(backend: str) -> list[Device]:
    if importlib.util.find_spec("torch") is None:
        return []
    import torch

    if not torch.cuda.is_available() or (backend == "rocm") != bool(getattr(torch.version, "hip", None)):
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append(Device(torch.cuda.get_device_name(i), backend, total // MIB, free // MIB, i))
    return out


# ---- Apple and CPU ----------------------------------------------------------
def _mps_devices() -> list[Device]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return []
    total, free = system_memory_mib()
    name = _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "Apple silicon"
    return [Device(f"{name.strip()} GPU (unified memory)", "mps", total, free, 0)]


def cpu_device() -> Device:
    """This machine's CPU with its RAM: where training runs when there is no GPU."""
    total, free = system_memory_mib()
    return Device(cpu_name(), "cpu", total, free, 0)


def system_memory_mib() -> tuple[int, int]:
    """(total, available) system RAM in MiB."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES") // MIB
    except (ValueError, OSError, AttributeError):
        return 0, 0
    free = total
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) // 1024
                break
    except OSError:
        try:
            free = page * os.sysconf("SC_AVPHYS_PAGES") // MIB
        except (ValueError, OSError):
            pass
    return total, free


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for the CPU device and the benchmarks' machine lines."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


# ---- the guide's platform notes ----------------------------------------------
def xformers_available(device: Device | None) -> tuple[bool, str]:
    """Whether attention_mechanism = "xformers" can work on this device, and why (not)."""
    if device is None or device.backend == "cpu":
        return False, "xformers needs an NVIDIA GPU and none was found"
    if device.backend in ("rocm", "mps"):
        vendor = "AMD" if device.backend == "rocm" else "Apple"
        return False, f"xformers is not available on {vendor} GPUs (the guide); sdpa it is, at some more memory"
    if importlib.util.find_spec("xformers") is None:
        return False, "xformers is not installed (pip install xformers)"
    return True, "xformers is installed"


def torch_version() -> tuple[int, int] | None:
    """The installed torch's (major, minor), read from its metadata without importing it."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def platform_problems(device: Device | None, attention_mechanism: str = "sdpa",
                      where: str = "") -> list[Problem]:
    """The guide's platform notes as problems: MPS needs torch 2.6+, xformers not on AMD/Apple."""
    problems = []
    if device is not None and device.backend == "mps":
        have = torch_version()
        need = ".".join(map(str, MPS_MIN_TORCH))
        if have is None or have < MPS_MIN_TORCH:
            problems.append(Problem(
                f"stage I and II train on Apple MPS with PyTorch {need} or later; "
                f"{'PyTorch is not installed' if have is None else f'this is PyTorch {have[0]}.{have[1]}'}",
                where=where or device.name, hint=f"pip install -U 'torch>={need}'"))
    if attention_mechanism == "xformers":
        ok, why = xformers_available(device)
        if not ok:
            # On a machine without a GPU the preset may be meant for another one: warn only.
            severity = "warning" if device is None or not device.is_gpu else "error"
            problems.append(Problem(f"attention_mechanism = \"xformers\": {why}", where=where,
                                    key="attention_mechanism", severity=severity,
                                    hint='set attention_mechanism = "sdpa"'))
    return problems
