"""llama.cpp, called from a child process: nothing llama.cpp does can kill ``dlm``.

Every call (quantize, load, answer, score, the runtime probe) runs in
:mod:`dlm_export_gguf.llama_worker`. A crash (a signal), a hang past the
timeout or a failure inside llama.cpp becomes a :class:`GGUFExportError`
that says which step failed, on which file, how, and what to do next; the
caller's ``finally`` blocks run as for any other error, so the exporter's
staging directory is removed and the store lock released.

Extra buffer types. ggml's CPU backend can put weights into "extra" buffer
types (the AMX tile layout, repacked Q4/Q8 layouts). At the pinned llama.cpp
the AMX matmul path crashes on some AMX hosts (ggml-org/llama.cpp#20824), so on
a CPU whose runtime reports ``AMX_INT8 = 1`` models are loaded with
``use_extra_bufts`` off; elsewhere they stay on (the repacked layouts are
faster there). ``DLM_LLAMA_EXTRA_BUFTS=on|off|auto`` overrides the choice.
If a model load or answer still dies from a signal with them on, the call is
tried once more with them off, and the result says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import attrs

from dlm_export_gguf.errors import GGUFExportError

EXTRA_BUFTS_ENV = "DLM_LLAMA_EXTRA_BUFTS"
TIMEOUT_ENV = "DLM_LLAMA_TIMEOUT"
#: seconds per request kind; a 24B model quantizes in minutes on a laptop CPU
DEFAULT_TIMEOUTS = {"probe": 120, "quantize": 3600, "metadata": 600, "answer": 1800, "score": 1800}
_LOG_LINES = 8


@attrs.frozen
class Session:
    """How to load a GGUF + mmproj pair for questions about images."""

    model: Path
    mmproj: Path
    image_tokens: tuple[int, int] | None = None
    image_token: str | None = None
    n_ctx: int = 4096
    threads: int | None = None


@attrs.frozen
class Question:
    question: str
    images: tuple[bytes, ...]
    system: str | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int = 64
    banned_tokens: tuple[int, ...] = ()
    #: token ids fed back one by one (``score`` only)
    forced: tuple[int, ...] = ()


@attrs.frozen
class Host:
    """What the llama.cpp runtime runs on: recorded with every smoke test."""

    cpu: str
    system_info: str
    extra_bufts: bool

    @property
    def amx(self) -> bool:
        return "AMX_INT8 = 1" in self.system_info

    def as_record(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "system_info": self.system_info, "extra_bufts": self.extra_bufts}


class LlamaCrash(GGUFExportError):
    """The child died from a signal (``signal_name``) rather than reporting an error."""

    def __init__(self, message: str, hint: str | None, signal_name: str) -> None:
        super().__init__(message, hint=hint)
        self.signal_name = signal_name


def _timeout(op: str) -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
        raise GGUFExportError(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds",
            hint=f"set {TIMEOUT_ENV} to a positive number, or unset it",
        )
    return DEFAULT_TIMEOUTS[op]


def _die_with_parent() -> None:
    """In the child, before exec: if ``dlm`` is killed, the worker goes too (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _log_tail(log: Path) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-_LOG_LINES:])


def call(op: str, payload: dict[str, Any], *, what: str, hint: str | None = None) -> dict[str, Any]:
    """Run one llama.cpp request in a fresh child process; its result, or a clear error.

    ``what`` names the step and file for messages ("quantizing lm.gguf to
    Q4_K_M"); ``hint`` is the way out offered when it fails.
    """
    timeout = _timeout(op)
    with tempfile.TemporaryDirectory(prefix="dlm-llama-") as tmp:
        request, result, log = (
            Path(tmp) / "request.json",
            Path(tmp) / "result.json",
            Path(tmp) / "log",
        )
        request.write_text(json.dumps({"op": op, **payload}), encoding="utf-8")
        cmd = [sys.executable, "-m", "dlm_export_gguf.llama_worker", str(request), str(result)]
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, preexec_fn=_die_with_parent
            )
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                tail = _log_tail(log)
                raise GGUFExportError(
                    f"llama.cpp did not finish {what} within {timeout:.0f} s and was stopped"
                    + (f"; its last lines:\n{tail}" if tail else ""),
                    hint=f"{hint + '; or ' if hint else ''}allow more time with {TIMEOUT_ENV}=SECONDS",
                ) from None
            except BaseException:  # Ctrl-C: the child must not outlive the command
                proc.kill()
                proc.wait()
                raise
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else f"signal {-rc}"
            description = signal.strsignal(-rc) or name
            tail = _log_tail(log)
            raise LlamaCrash(
                f"llama.cpp crashed ({name}: {description}) while {what}"
                + (f"; its last lines:\n{tail}" if tail else ""),
                hint,
                name,
            )
        try:
            data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = _log_tail(log)
            raise GGUFExportError(
                f"llama.cpp exited with status {rc} while {what} and reported nothing"
                + (f"; its last lines:\n{tail}" if tail else ""),
                hint=hint,
            ) from None
        if rc != 0 or "error" in data:
            raise GGUFExportError(str(data.get("error")), hint=data.get("hint") or hint)
        return data


# ------------------------------------------------------------------ the host


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def probe() -> dict[str, Any]:
    """The runtime's version and llama.cpp's system info line (CPU features), from a child."""
    return call("probe", {}, what="loading the llama.cpp runtime")


def extra_bufts_choice(system_info: str, setting: str | None = None) -> bool:
    """Whether models load with llama.cpp's extra buffer types (see the module doc)."""
    raw = (setting if setting is not None else os.environ.get(EXTRA_BUFTS_ENV, "auto")).lower()
    if raw in ("on", "1", "true"):
        return True
    if raw in ("off", "0", "false"):
        return False
    if raw != "auto":
        raise GGUFExportError(
            f"{EXTRA_BUFTS_ENV}={raw!r} is not one of on, off, auto",
            hint=f"unset {EXTRA_BUFTS_ENV} to let dlm choose",
        )
    return "AMX_INT8 = 1" not in system_info


def host() -> Host:
    system_info = str(probe().get("system_info", ""))
    return Host(
        cpu=_cpu_model(), system_info=system_info, extra_bufts=extra_bufts_choice(system_info)
    )


# ------------------------------------------------------------------ requests


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Quantize the LM GGUF ``src`` to ``quant`` at ``dst`` with llama.cpp's own quantizer."""
    call(
        "quantize",
        {"src": str(src), "dst": str(dst), "quant": quant, "threads": threads or os.cpu_count()},
        what=f"quantizing {src.name} to {quant}",
        hint="try another --quant (F16 needs no quantization)",
    )
    if not dst.is_file():
        raise GGUFExportError(f"llama.cpp wrote no {dst.name} when quantizing to {quant}")


def metadata(model: Path, *, extra_bufts: bool | None = None) -> dict[str, Any]:
    """``{"metadata": {key: value}, "n_params": int, "buffers": [str]}`` of a GGUF, in a child."""
    bufts = host().extra_bufts if extra_bufts is None else extra_bufts
    return call(
        "metadata", {"model": str(model), "extra_bufts": bufts}, what=f"loading {model.name}"
    )


def _questions_payload(tmp: Path, questions: Sequence[Question]) -> list[dict[str, Any]]:
    payload = []
    for i, q in enumerate(questions):
        paths = []
        for j, png in enumerate(q.images):
            path = tmp / f"q{i}-image{j}.png"
            path.write_bytes(png)
            paths.append(str(path))
        payload.append(
            {
                "question": q.question,
                "images": paths,
                "system": q.system,
                "stop": list(q.stop),
                "max_tokens": q.max_tokens,
                "banned_tokens": list(q.banned_tokens),
                "forced": list(q.forced),
            }
        )
    return payload


def _ask(
    op: str,
    session: Session,
    questions: Sequence[Question],
    *,
    what: str,
    hint: str | None,
    extra_bufts: bool | None,
) -> tuple[dict[str, Any], Host]:
    machine = host()
    bufts = machine.extra_bufts if extra_bufts is None else extra_bufts
    with tempfile.TemporaryDirectory(prefix="dlm-llama-images-") as tmp:
        payload = {
            "model": str(session.model),
            "mmproj": str(session.mmproj),
            "session": {
                "image_tokens": list(session.image_tokens) if session.image_tokens else None,
                "image_token": session.image_token,
                "n_ctx": session.n_ctx,
                "threads": session.threads or os.cpu_count(),
            },
            "questions": _questions_payload(Path(tmp), questions),
        }
        try:
            result = call(op, {**payload, "extra_bufts": bufts}, what=what, hint=hint)
        except LlamaCrash as crash:
            if not bufts or extra_bufts is not None:
                raise
            # the known AMX crash, on a host the system info did not flag: once more without
            result = call(op, {**payload, "extra_bufts": False}, what=what, hint=hint)
            result["fallback"] = (
                f"llama.cpp crashed ({crash.signal_name}) with its extra buffer types on; "
                "it ran with them off"
            )
            bufts = False
    return result, attrs.evolve(machine, extra_bufts=bufts)


def answers(
    session: Session,
    questions: Sequence[Question],
    *,
    what: str | None = None,
    hint: str | None = None,
    extra_bufts: bool | None = None,
) -> tuple[list[dict[str, Any]], Host, str | None]:
    """Greedy answers (``{text, seconds, completion_tokens}``), the host, and any fallback note."""
    result, machine = _ask(
        "answer",
        session,
        questions,
        what=what or f"answering with {session.model.name} + {session.mmproj.name}",
        hint=hint,
        extra_bufts=extra_bufts,
    )
    return list(result["answers"]), machine, result.get("fallback")


def scores(
    session: Session,
    questions: Sequence[Question],
    *,
    extra_bufts: bool | None = None,
) -> list[list[list[float]]]:
    """Per question, llama.cpp's log-softmax row at each forced token (teacher forcing)."""
    result, _machine = _ask(
        "score",
        session,
        questions,
        what=f"scoring with {session.model.name} + {session.mmproj.name}",
        hint=None,
        extra_bufts=extra_bufts,
    )
    return list(result["scores"])
