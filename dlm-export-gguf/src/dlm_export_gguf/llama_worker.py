"""The child process in which every llama.cpp call runs.

``python -m dlm_export_gguf.llama_worker REQUEST.json RESULT.json``: read one
request, do it with the in-process runtime (:mod:`dlm_export_gguf.runtime`),
write the result (or ``{"error": …, "hint": …}``) and exit. Native code that
crashes (a segfault in a SIMD kernel, an abort in ggml) kills this process,
not ``dlm``; the parent (:mod:`dlm_export_gguf.isolated`) turns the signal
into a message.

Requests (``op`` and its fields):

- ``probe``: ``{}`` → ``{version, multimodal, system_info}``
- ``quantize``: ``{src, dst, quant, threads}`` → ``{}``
- ``metadata``: ``{model}`` → ``{metadata, n_params, buffers}``
- ``answer``: ``{model, mmproj, session, questions: [{question, images, system,
  stop, max_tokens, banned_tokens}]}`` → ``{answers: [{text, seconds,
  completion_tokens}]}``
- ``score``: like ``answer`` but each question has ``forced`` token ids →
  ``{scores: [[log-softmax row per forced token]]}``: llama.cpp's next-token
  distribution at every position, with the forced tokens fed back (teacher
  forcing), so two runtimes can be compared without sampling.

Every model-loading request carries ``extra_bufts`` (llama.cpp's extra weight
buffer types: the AMX and repacked layouts), applied before anything loads.

``DLM_TEST_LLAMA_FAULT=<op>:<crash|hang>`` makes that op crash (SIGSEGV) or
hang after it has started: the tests use it to prove what a real crash does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

FAULT_ENV = "DLM_TEST_LLAMA_FAULT"


def _inject_fault(op: str) -> None:
    fault = os.environ.get(FAULT_ENV, "")
    target, _, kind = fault.partition(":")
    if target != op:
        return
    if kind == "crash":
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        while True:
            time.sleep(1)


def _use_extra_bufts(enabled: bool) -> None:
    """Set llama.cpp's ``use_extra_bufts`` for every model this process loads.

    ``llama_cpp.Llama`` takes its model parameters from
    ``llama_model_default_params()`` and offers no argument for this one, so the
    default itself is changed: this process exists for one request.
    """
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = enabled
        return value

    native.llama_model_default_params = params  # type: ignore[assignment]


def _probe(_request: dict[str, Any]) -> dict[str, Any]:
    from importlib import metadata

    import llama_cpp
    import llama_cpp.mtmd_cpp  # loads libmtmd: a broken build fails here

    info = llama_cpp.llama_print_system_info()
    return {
        "version": metadata.version("llama-cpp-python"),
        "multimodal": True,
        "system_info": info.decode("utf-8", "replace").strip(),
    }


def _quantize(request: dict[str, Any]) -> dict[str, Any]:
    from dlm_export_gguf.runtime import quantize_in_process

    _inject_fault("quantize")
    quantize_in_process(
        Path(request["src"]), Path(request["dst"]), request["quant"], request.get("threads")
    )
    return {}


def _metadata(request: dict[str, Any]) -> dict[str, Any]:
    from dlm_export_gguf.runtime import read_metadata

    _inject_fault("metadata")
    meta, n_params, buffers = read_metadata(Path(request["model"]))
    return {"metadata": meta, "n_params": n_params, "buffers": buffers}


def _chat(request: dict[str, Any]) -> Any:
    from dlm_export_gguf.runtime import VisionChat

    session = request["session"]
    bounds = session.get("image_tokens")
    return VisionChat(
        Path(request["model"]),
        Path(request["mmproj"]),
        image_tokens=tuple(bounds) if bounds else None,
        image_token=session.get("image_token"),
        n_ctx=int(session.get("n_ctx", 4096)),
        threads=session.get("threads"),
    )


def _images(paths: list[str]) -> list[bytes]:
    return [Path(p).read_bytes() for p in paths]


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    answers = []
    with _chat(request) as chat:
        _inject_fault("answer")
        for q in request["questions"]:
            answer = chat.ask(
                q["question"],
                _images(q["images"]),
                system=q.get("system"),
                stop=q.get("stop", ()),
                max_tokens=int(q.get("max_tokens", 64)),
                banned_tokens=q.get("banned_tokens", ()),
            )
            answers.append(
                {
                    "text": answer.text,
                    "seconds": answer.seconds,
                    "completion_tokens": answer.completion_tokens,
                }
            )
    return {"answers": answers}


def _score(request: dict[str, Any]) -> dict[str, Any]:
    scores = []
    with _chat(request) as chat:
        _inject_fault("score")
        for q in request["questions"]:
            rows = chat.forced_logprobs(
                q["question"], _images(q["images"]), q["forced"], system=q.get("system")
            )
            scores.append([row.tolist() for row in rows])
    return {"scores": scores}


OPS = {
    "probe": _probe,
    "quantize": _quantize,
    "metadata": _metadata,
    "answer": _answer,
    "score": _score,
}


def main(argv: list[str]) -> int:
    request_file, result_file = Path(argv[0]), Path(argv[1])
    request = json.loads(request_file.read_text(encoding="utf-8"))
    op = request["op"]
    try:
        if op != "probe":
            _use_extra_bufts(bool(request.get("extra_bufts", True)))
        result = OPS[op](request)
        code = 0
    except Exception as exc:  # reported to the parent as data, not a traceback
        hint = getattr(exc, "hint", None)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        result = {"error": message, "hint": hint}
        code = 1
    result_file.write_text(json.dumps(result), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
