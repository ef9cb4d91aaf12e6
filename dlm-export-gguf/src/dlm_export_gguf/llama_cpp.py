"""The pinned llama.cpp: one place that names the revision, and how to obtain it.

Both halves come from one release of ``llama-cpp-python``, which vendors
llama.cpp at a stated commit:

- the runtime (libllama + libmtmd, used to quantize and for the smoke test) is
  the installed ``llama-cpp-python`` wheel, a dependency of this package;
- the converter (``convert_hf_to_gguf.py``, its ``conversion/`` package and
  the matching ``gguf-py``; the published ``gguf`` wheel is older than this
  converter) is extracted from the same release's sdist into
  ``$DLM_HOME/llama.cpp/<commit>/``, on first use or by ``dlm gguf fetch``.
  pip downloads the sdist once (hash-checked against the pin) into the user
  cache (``$DLM_CACHE``, default the platform's cache dir + ``/dlm``).

``DLM_LLAMA_CPP=/path/to/llama.cpp`` makes the converter come from a user's
own checkout instead; its git revision then goes in the manifest. The runtime
stays the installed wheel either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import attrs

from dlm.kit import dlm_home, sha256_file
from dlm_export_gguf.errors import GGUFExportError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
#: The llama.cpp commit ``llama-cpp-python==0.3.36`` vendors (its CHANGELOG and
#: the sdist's submodule HEAD).
LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
OVERRIDE_ENV = "DLM_LLAMA_CPP"

_VENDOR_PREFIX = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
# Only what the converter needs, not the C++ tree.
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
_SOURCE_RECORD = "dlm-source.json"

Log = Callable[[str], None]


def short(revision: str) -> str:
    """A revision as people write it (9 hex digits, like llama.cpp's own changelog)."""
    return revision[:9] if len(revision) >= 40 else revision


def llama_cpp_home(home: Path | None = None) -> Path:
    return (home or dlm_home()) / "llama.cpp"


@attrs.frozen
class ConverterSource:
    """A directory with ``convert_hf_to_gguf.py`` (and ``gguf-py/``), and its revision."""

    root: Path
    revision: str
    origin: str  # "pinned" | "DLM_LLAMA_CPP"

    @property
    def script(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.root / "gguf-py"

    def describe(self) -> str:
        where = "pinned" if self.origin == "pinned" else f"{OVERRIDE_ENV}={self.root}"
        return f"llama.cpp {short(self.revision)} ({where})"


# ------------------------------------------------------------------ converter


def pinned_dir(home: Path | None = None) -> Path:
    return llama_cpp_home(home) / LLAMA_CPP_COMMIT


def git_revision(path: Path) -> str:
    """``git rev-parse HEAD`` of a checkout, ``-dirty`` when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def override_source() -> ConverterSource | None:
    """The user's own llama.cpp checkout named by ``DLM_LLAMA_CPP``, if set."""
    raw = os.environ.get(OVERRIDE_ENV)
    if not raw:
        return None
    root = Path(raw).expanduser().resolve()
    if not (root / "convert_hf_to_gguf.py").is_file():
        raise GGUFExportError(
            f"{OVERRIDE_ENV}={raw} has no convert_hf_to_gguf.py",
            hint=f"point {OVERRIDE_ENV} at a llama.cpp checkout, or unset it to use the "
            f"pinned llama.cpp {short(LLAMA_CPP_COMMIT)}",
        )
    return ConverterSource(root=root, revision=git_revision(root), origin=OVERRIDE_ENV)


def pinned_source(home: Path | None = None) -> ConverterSource | None:
    """The pinned converter if it has been fetched (completely), else ``None``."""
    root = pinned_dir(home)
    if not (root / _SOURCE_RECORD).is_file() or not (root / "convert_hf_to_gguf.py").is_file():
        return None
    return ConverterSource(root=root, revision=LLAMA_CPP_COMMIT, origin="pinned")


def converter_source(
    home: Path | None = None, *, fetch: bool = True, log: Log | None = None
) -> ConverterSource:
    """Where the converter comes from: ``DLM_LLAMA_CPP``, else the pinned copy (fetched if asked)."""
    source = override_source() or pinned_source(home)
    if source is not None:
        return source
    if not fetch:
        raise GGUFExportError(
            f"the pinned llama.cpp converter ({short(LLAMA_CPP_COMMIT)}) is not fetched yet",
            hint="run `dlm gguf fetch`",
        )
    return fetch_converter(home, log=log)


def download_sdist(dest: Path, log: Log | None = None) -> Path:
    """Fetch the pinned ``llama-cpp-python`` sdist with pip (honours the user's pip config)."""
    if log:
        log(f"downloading llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source (~77 MB) with pip")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdist = dest / SDIST_NAME
    if proc.returncode != 0 or not sdist.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise GGUFExportError(
            f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}'s source: {tail}",
            hint="check the package index is reachable, or download "
            f"{SDIST_NAME} yourself and run `dlm gguf fetch --sdist PATH`",
        )
    return sdist


def extract_converter(sdist: Path, dest: Path) -> None:
    """Unpack the converter parts of the pinned sdist into ``dest`` (hash-checked)."""
    actual = sha256_file(sdist)
    if actual != SDIST_SHA256:
        raise GGUFExportError(
            f"{sdist} is not llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s sdist "
            f"(sha256 {actual[:12]}…, expected {SDIST_SHA256[:12]}…)",
            hint=f"use the file pip downloads for llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(_VENDOR_PREFIX):
                continue
            rel = member.name[len(_VENDOR_PREFIX) :]
            if not any(rel == part or rel.startswith(part) for part in _CONVERTER_PARTS):
                continue
            member.name = rel
            members.append(member)
        tar.extractall(dest, members=members, filter="data")
    record = {
        "llama_cpp_commit": LLAMA_CPP_COMMIT,
        "from": f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} sdist",
        "sdist_sha256": SDIST_SHA256,
    }
    (dest / _SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def sdist_cache() -> Path:
    """Where the verified sdist is kept, so every ``$DLM_HOME`` extracts without a download."""
    raw = os.environ.get("DLM_CACHE")
    if raw:
        return Path(raw).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlm"))


def cached_sdist(sdist: Path | None = None, log: Log | None = None) -> Path:
    """The pinned sdist in the cache: copied from ``sdist``, already there, or downloaded."""
    cache = sdist_cache()
    target = cache / SDIST_NAME
    if sdist is not None and sdist.resolve() == target.resolve():
        sdist = None
    if sdist is None and target.is_file() and sha256_file(target) == SDIST_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        fetched = sdist if sdist is not None else download_sdist(Path(tmp), log=log)
        staged = Path(tmp) / f"{SDIST_NAME}.partial"
        shutil.copyfile(fetched, staged)
        actual = sha256_file(staged)
        if actual != SDIST_SHA256:
            raise GGUFExportError(
                f"{fetched} is not llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s sdist "
                f"(sha256 {actual[:12]}…, expected {SDIST_SHA256[:12]}…)",
                hint=f"use the file pip downloads for llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            )
        staged.replace(target)
    return target


def fetch_converter(
    home: Path | None = None, *, sdist: Path | None = None, log: Log | None = None
) -> ConverterSource:
    """Put the pinned converter under ``$DLM_HOME/llama.cpp/<commit>/`` (idempotent, atomic)."""
    existing = pinned_source(home)
    if existing is not None:
        return existing
    archive = cached_sdist(sdist, log=log)
    base = llama_cpp_home(home)
    base.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"extracting the converter of llama.cpp {short(LLAMA_CPP_COMMIT)} into {base}")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=base) as tmp:
        staged = Path(tmp) / "staged"
        extract_converter(archive, staged)
        target = pinned_dir(home)
        if target.exists():  # an incomplete earlier attempt (no source record)
            shutil.rmtree(target)
        staged.rename(target)
    source = pinned_source(home)
    assert source is not None
    return source


# ------------------------------------------------------------------ runtime


@attrs.frozen
class RuntimeInfo:
    """The installed ``llama-cpp-python`` runtime as this plugin sees it."""

    installed: bool
    version: str | None = None
    multimodal: bool = False
    error: str | None = None
    #: llama.cpp's ``llama_print_system_info()`` line: the CPU features its kernels use
    system_info: str = ""

    @property
    def matches_pin(self) -> bool:
        return self.version == LLAMA_CPP_PYTHON_VERSION

    @property
    def revision(self) -> str:
        """The llama.cpp commit the runtime was built from (known only for the pinned release)."""
        return LLAMA_CPP_COMMIT if self.matches_pin else "unknown"


def runtime_info() -> RuntimeInfo:
    """Load the runtime in a child process and report what it is, without raising."""
    from dlm_export_gguf import isolated

    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return RuntimeInfo(installed=False, error="llama-cpp-python is not installed")
    try:
        probed = isolated.probe()
    except GGUFExportError as exc:  # a broken build reports, it does not raise here
        return RuntimeInfo(installed=True, version=version, error=exc.message)
    return RuntimeInfo(
        installed=True,
        version=version,
        multimodal=bool(probed.get("multimodal")),
        system_info=str(probed.get("system_info", "")),
    )


def require_runtime() -> RuntimeInfo:
    """The usable runtime (libllama + libmtmd load in a child process), or a clear error."""
    info = runtime_info()
    if not info.installed or info.error:
        raise GGUFExportError(
            f"the llama.cpp runtime is unusable: {info.error}",
            hint=f"pip install llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} "
            "(builds libllama + libmtmd from source, several minutes)",
        )
    return info
