"""Base models on disk: a real base downloaded at its pinned revision, or a
base built once (a tiny base, a converted checkpoint) into ``$DLM_HOME/bases/<key>``.

A built base appears whole or not at all: it is written into a hidden staging
folder beside its target, under an exclusive lock so two processes never
build the same base at once, then renamed into place with a marker that says
what it was built from. A folder without the expected marker (stale or half
made) is never used: it is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dlm.errors import DlmError
from dlm.records import BaseSpec
from dlm.store.atomic import share_modes

#: What a real base needs from its hub repository: weights as safetensors
#: only (never pickles), configs, tokenizer and chat template files.
DOWNLOAD_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "*.txt",
    "*.model",
    "*.tiktoken",
)

#: Written into a built tiny base; a base whose marker names another
#: revision (an older build recipe) is rebuilt.
TINY_MARKER = "dlm-tiny.json"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere the atomic rename alone guards.

    Held while a base is built or converted into ``$DLM_HOME/bases``, so two
    processes never build the same base at once.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(
    target: Path, marker_name: str, marker: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    """``target``, built by ``build(folder)`` unless ``target/marker_name`` already holds ``marker``.

    ``build`` writes into an empty staging folder beside ``target``; the
    marker is added, modes are made shareable (libraries writing through
    mkstemp leave 0600), and the folder is renamed to ``target``, replacing
    an older build. A failed build leaves nothing behind. The lock file
    ``.<name>.lock`` stays beside ``target``.
    """
    if _holds(target, marker_name, marker):
        return target
    parent, name = target.parent, target.name
    parent.mkdir(parents=True, exist_ok=True)
    with file_lock(parent / f".{name}.lock"):
        if _holds(target, marker_name, marker):  # another process built it meanwhile
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=parent))
        try:
            build(staging)
            text = json.dumps(marker, indent=2) + "\n"
            (staging / marker_name).write_text(text, encoding="utf-8")
            share_modes(staging)
            if target.exists():  # an older build: move it aside, then drop it
                stale = Path(tempfile.mkdtemp(prefix=f".{name}.stale-", dir=parent))
                os.replace(target, stale / name)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def materialize_tiny(
    base: BaseSpec, family: str, build: Callable[[BaseSpec, Path], None], bases: Path
) -> Path:
    """The tiny ``base`` in ``bases/<key>``, built by ``build(base, folder)`` on first use
    and again whenever ``base.revision`` (its build recipe) changes."""
    marker = {"key": base.key, "family": family, "revision": base.revision}
    return build_once(bases / base.key, TINY_MARKER, marker, lambda folder: build(base, folder))


def download_base(base: BaseSpec, patterns: tuple[str, ...] = DOWNLOAD_PATTERNS) -> Path:
    """The hub snapshot of ``base`` at its pinned revision (from the local cache when whole).

    Every failure is a :class:`~dlm.errors.DlmError` that says what to do next.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    allow = list(patterns)
    where = f"{base.hub_id} @ {base.revision[:12]}"
    try:  # a complete cached snapshot needs no network at all
        path: Path | None = Path(
            snapshot_download(
                base.hub_id, revision=base.revision, allow_patterns=allow, local_files_only=True
            )
        )
    except Exception:  # not cached, or cached partially: download
        path = None
    if path is None or not any(path.glob("*.safetensors")):
        try:
            path = Path(
                snapshot_download(base.hub_id, revision=base.revision, allow_patterns=allow)
            )
        except GatedRepoError:
            raise DlmError(
                f"{where} is gated: Hugging Face refused the download",
                hint=(
                    f"accept the licence at https://huggingface.co/{base.hub_id} with your "
                    "account, then set HF_TOKEN (or run `hf auth login`) and retry"
                ),
                subject="base",
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise DlmError(
                f"{where} was not found on Hugging Face ({type(exc).__name__})",
                hint=(
                    "the repository may be private or renamed: set HF_TOKEN if you have "
                    "access, or upgrade the plugin that registers this base"
                ),
                subject="base",
            ) from None
        except LocalEntryNotFoundError:
            raise DlmError(
                f"cannot download {where}: offline (or Hugging Face unreachable) and it "
                "is not in the local Hugging Face cache",
                hint=(
                    "connect to the network and unset HF_HUB_OFFLINE, or fetch it once "
                    f"elsewhere: `hf download {base.hub_id} --revision {base.revision}`; "
                    "tiny bases (`dlm plugins`) need no download"
                ),
                subject="base",
            ) from None
        except Exception as exc:  # proxy, DNS, disk full: the user acts the same way
            raise DlmError(
                f"cannot download {where}: {type(exc).__name__}: {exc}",
                hint=(
                    "check the network and disk space, then retry; or fetch it with "
                    f"`hf download {base.hub_id} --revision {base.revision}`"
                ),
                subject="base",
            ) from None
    if not any(path.glob("*.safetensors")):
        raise DlmError(
            f"{where} has no safetensors weights; dlm never loads pickled weights",
            hint="choose a base published as safetensors",
            subject="base",
        )
    return path


def _holds(target: Path, marker_name: str, marker: dict[str, Any]) -> bool:
    try:
        found = json.loads((target / marker_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(found == marker)


__all__ = [
    "DOWNLOAD_PATTERNS",
    "TINY_MARKER",
    "build_once",
    "download_base",
    "file_lock",
    "materialize_tiny",
]
