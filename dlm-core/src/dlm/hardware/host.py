"""What the machine offers for training: backend, memory, precisions.

:func:`probe_host` asks torch (imported inside, so ``dlm --help`` stays
fast); :func:`assume_host` builds the same facts from an ``--assume`` spec,
to plan for another machine or to test every refusal on this one.
"""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from typing import Any

import attrs

from dlm.errors import UsageError

GIB = 1024**3

#: CUDA compute capability from which bf16 runs natively (Ampere).
BF16_MIN_CAPABILITY = (8, 0)

ASSUME_FORMS = (
    "cuda:GIB[xN][:smXY] (cuda:24, cuda:16:sm75, cuda:80x8, cuda:80x8:sm90), "
    "mps:GIB[:bf16] (mps:16, mps:64, mps:64:bf16), cpu:GIB (cpu:32)"
)


@attrs.frozen
class HostFacts:
    """The training host as the planner sees it.

    ``memory_bytes`` is what one training process may fill: device memory
    of one GPU on CUDA, unified memory on Apple Silicon, system RAM on CPU.
    ``assumed`` marks facts taken from ``--assume`` rather than probed.
    """

    backend: str  # "cuda" | "mps" | "cpu"
    device_name: str
    memory_bytes: int
    bf16: bool
    fp16: bool
    compute_capability: tuple[int, int] | None
    apple_silicon: bool
    cpu_count: int
    system_memory_bytes: int
    device_count: int
    assumed: bool

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        if self.compute_capability is not None:
            data["compute_capability"] = list(self.compute_capability)
        return data


def _system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 0


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no affinity API
        return os.cpu_count() or 1


def _is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _mps_bf16_works(torch: Any) -> bool:
    """bf16 on MPS needs macOS 14+; try it rather than guess from versions."""
    try:
        x = torch.ones(4, 4, device="mps", dtype=torch.bfloat16)
        return bool(torch.isfinite((x @ x).float().sum()).item())
    except Exception:
        return False


def probe_host() -> HostFacts:
    """Probe this machine (imports torch)."""
    import torch

    system_memory = _system_memory()
    cpus = _cpu_count()
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        capability = (int(props.major), int(props.minor))
        return HostFacts(
            backend="cuda",
            device_name=str(props.name),
            memory_bytes=int(props.total_memory),
            # torch.cuda.is_bf16_supported() says True on older GPUs that only
            # emulate bf16 (slowly); plan bf16 only where it is native.
            bf16=capability >= BF16_MIN_CAPABILITY,
            fp16=True,
            compute_capability=capability,
            apple_silicon=False,
            cpu_count=cpus,
            system_memory_bytes=system_memory,
            device_count=torch.cuda.device_count(),
            assumed=False,
        )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return HostFacts(
            backend="mps",
            device_name=f"Apple {platform.machine()} GPU (MPS)",
            memory_bytes=system_memory,
            bf16=_mps_bf16_works(torch),
            fp16=True,
            compute_capability=None,
            apple_silicon=_is_apple_silicon(),
            cpu_count=cpus,
            system_memory_bytes=system_memory,
            device_count=1,
            assumed=False,
        )
    return HostFacts(
        backend="cpu",
        device_name=platform.processor() or platform.machine() or "cpu",
        memory_bytes=system_memory,
        bf16=False,
        fp16=False,
        compute_capability=None,
        apple_silicon=_is_apple_silicon(),
        cpu_count=cpus,
        system_memory_bytes=system_memory,
        device_count=0,
        assumed=False,
    )


_ASSUME_RE = re.compile(
    r"^(?P<backend>cuda|mps|cpu):(?P<gib>\d+(?:\.\d+)?)(?:x(?P<count>\d+))?"
    r"(?P<flags>(?::[a-z0-9]+)*)$"
)


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(
        f"cannot read --assume {spec!r}: {why}",
        hint=f"accepted forms: {ASSUME_FORMS}; memory in GiB",
    )


def assume_host(spec: str) -> HostFacts:
    """Host facts from an ``--assume`` spec (see :data:`ASSUME_FORMS`).

    ``cuda:24`` is one 24 GiB GPU of compute capability 8.0 (bf16);
    ``cuda:16:sm75`` a Turing card (fp16, no bf16); ``cuda:80x8`` eight
    80 GiB GPUs; ``mps:16`` Apple Silicon with 16 GiB unified memory,
    planned in fp32 unless ``:bf16`` says bf16 works there; ``cpu:32`` a
    CPU-only machine with 32 GiB RAM. Facts the spec cannot give (CPU
    cores; system RAM behind a GPU) are this machine's.
    """
    match = _ASSUME_RE.match(spec.strip().lower())
    if match is None:
        raise _bad(spec, "not of the form BACKEND:GIB")
    backend = match["backend"]
    gib = float(match["gib"])
    if gib <= 0:
        raise _bad(spec, "memory must be positive")
    memory = int(gib * GIB)
    count = int(match["count"]) if match["count"] else 1
    if count < 1:
        raise _bad(spec, "device count must be at least 1")
    flags = [f for f in match["flags"].split(":") if f]
    if match["count"] and backend != "cuda":
        raise _bad(spec, "only CUDA hosts have several devices (xN)")
    size = f"{gib:g} GiB"

    if backend == "cuda":
        capability = (8, 0)
        for flag in flags:
            sm = re.fullmatch(r"sm(\d{2,3})", flag)
            if sm is None:
                raise _bad(spec, f"unknown CUDA flag {flag!r} (expected smXY, e.g. sm75, sm90)")
            # the last digit is the minor version: sm75 -> 7.5, sm120 -> 12.0
            capability = (int(sm[1][:-1]), int(sm[1][-1]))
        return HostFacts(
            backend="cuda",
            device_name=f"assumed CUDA GPU sm_{capability[0]}{capability[1]}, {size}",
            memory_bytes=memory,
            bf16=capability >= BF16_MIN_CAPABILITY,
            fp16=True,
            compute_capability=capability,
            apple_silicon=False,
            cpu_count=_cpu_count(),
            system_memory_bytes=_system_memory(),
            device_count=count,
            assumed=True,
        )
    if backend == "mps":
        unknown = [f for f in flags if f != "bf16"]
        if unknown:
            raise _bad(spec, f"unknown MPS flag {unknown[0]!r} (only bf16)")
        return HostFacts(
            backend="mps",
            device_name=f"assumed Apple Silicon, {size} unified memory",
            memory_bytes=memory,
            bf16="bf16" in flags,
            fp16=True,
            compute_capability=None,
            apple_silicon=True,
            cpu_count=_cpu_count(),
            system_memory_bytes=memory,
            device_count=1,
            assumed=True,
        )
    if flags:
        raise _bad(spec, f"CPU hosts take no flags (got {flags[0]!r})")
    return HostFacts(
        backend="cpu",
        device_name=f"assumed CPU host, {size} RAM",
        memory_bytes=memory,
        bf16=False,
        fp16=False,
        compute_capability=None,
        apple_silicon=False,
        cpu_count=_cpu_count(),
        system_memory_bytes=memory,
        device_count=0,
        assumed=True,
    )


#: Libraries whose versions the doctor reports (import name -> distribution).
LIBRARIES = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "accelerate": "accelerate",
    "dlm": "dlm-core",
}


def library_versions() -> dict[str, str | None]:
    """Installed versions of the training stack (``None`` when missing); imports nothing."""
    versions: dict[str, str | None] = {}
    for name, distribution in LIBRARIES.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
