"""Calls into the llama.cpp runtime (``llama-cpp-python``), in this process.

Only the child process (:mod:`dlm_export_gguf.llama_worker`) imports this
module: native code can crash, and a crash must not take ``dlm`` with it.
Everything else calls llama.cpp through :mod:`dlm_export_gguf.isolated`.

libllama and libmtmd report problems on stderr, not in their return values,
so every call here runs with file descriptor 2 redirected to a buffer whose
text becomes the error message when the call fails.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from dlm_export_gguf.errors import GGUFExportError
from dlm_export_gguf.quants import QUANT_FTYPES


class _Captured:
    text = ""


_raw_log_callback: Any = None


def _log_raw_bytes(enable: bool) -> None:
    """Route libllama's log to fd 2 as raw bytes (its Python callback fails on cut UTF-8)."""
    global _raw_log_callback
    llama_cpp = sys.modules.get("llama_cpp")
    if llama_cpp is None:
        return
    if not enable:
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        return
    if _raw_log_callback is None:

        @llama_cpp.llama_log_callback  # type: ignore[misc]
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            os.write(2, text)

        _raw_log_callback = callback  # kept alive: C holds the pointer
    llama_cpp.llama_log_set(_raw_log_callback, ctypes.c_void_p(0))


@contextlib.contextmanager
def captured_stderr() -> Iterator[_Captured]:
    """Send fd 2 (C libraries included) to a buffer for the duration."""
    result = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        _log_raw_bytes(True)
        try:
            yield result
        finally:
            _log_raw_bytes(False)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            result.text = buf.read().decode("utf-8", errors="replace")


def _last_lines(text: str, n: int = 8) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def quantize_in_process(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Quantize the LM GGUF ``src`` to ``quant`` at ``dst`` with llama.cpp's own quantizer."""
    import llama_cpp

    ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    with captured_stderr() as log:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if status != 0 or not dst.is_file():
        raise GGUFExportError(
            f"llama.cpp could not quantize the model to {quant}:\n{_last_lines(log.text)}",
            hint="try another --quant (F16 needs no quantization)",
        )


@attrs.frozen
class Answer:
    text: str
    seconds: float
    completion_tokens: int


class _BoundedParams:
    """``mtmd_cpp`` with the image token limits set in every context's parameters."""

    def __init__(self, mtmd_cpp: Any, min_tokens: int, max_tokens: int) -> None:
        self._mtmd_cpp = mtmd_cpp
        self._min, self._max = min_tokens, max_tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mtmd_cpp, name)

    def mtmd_context_params_default(self) -> Any:
        params = self._mtmd_cpp.mtmd_context_params_default()
        params.image_min_tokens = self._min
        params.image_max_tokens = self._max
        return params


# What llama.cpp's mtmd writes around an image itself (so a template's own copy must go):
# Qwen2-VL's vision start/end, InternVL's <img>/</img>.
_MTMD_WRAPPERS = (("<|vision_start|>", "<|vision_end|>"), ("<img>", "</img>"))


def _placeholder_pattern(image_token: str) -> re.Pattern[str]:
    token = re.escape(image_token)
    wrapped = [f"{re.escape(beg)}{token}{re.escape(end)}" for beg, end in _MTMD_WRAPPERS]
    return re.compile("|".join([*wrapped, token]))


def image_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class VisionChat:
    """A GGUF + mmproj pair loaded in-process; ask greedy questions about images. Close it."""

    def __init__(
        self,
        model: Path,
        mmproj: Path,
        *,
        image_tokens: tuple[int, int] | None = None,
        image_token: str | None = None,
        n_ctx: int = 4096,
        threads: int | None = None,
    ) -> None:
        """``image_token``: the family's image placeholder (``BaseSpec.image.image_token``).

        With it, the prompt is the chat template's own rendering of an image
        part, the placeholder (and the wrapper llama.cpp adds itself) swapped
        for llama.cpp's media marker; without it, the image part becomes the
        bare marker, which loses whatever the template writes around an image
        (InternVL's newline after it).
        """
        import llama_cpp
        from llama_cpp.llama_chat_format import MTMDChatHandler

        bounds = image_tokens
        placeholder = _placeholder_pattern(image_token) if image_token else None

        # the generic handler uses the chat template stored in the GGUF (the
        # model-specific Qwen2.5-VL one drops the newline after the assistant tag)
        class Handler(MTMDChatHandler):  # type: ignore[misc]
            def _init_mtmd_context(self, llama_model: Any) -> None:
                if bounds is not None and not isinstance(self._mtmd_cpp, _BoundedParams):
                    self._mtmd_cpp = _BoundedParams(self._mtmd_cpp, *bounds)  # type: ignore[assignment]
                super()._init_mtmd_context(llama_model)

            @staticmethod
            def _convert_content_part_for_template(part: Any, media_marker: str) -> Any:
                if (
                    placeholder is not None
                    and isinstance(part, dict)
                    and part.get("type") == "image_url"
                ):
                    return {"type": "image"}
                return MTMDChatHandler._convert_content_part_for_template(part, media_marker)

            def _postprocess_template_text(
                self, text: str, image_urls: list[str], media_marker: str
            ) -> str:
                if placeholder is None:
                    return str(super()._postprocess_template_text(text, image_urls, media_marker))
                replaced, count = placeholder.subn(media_marker, text)
                if count != len(image_urls):
                    raise ValueError(
                        f"the chat template wrote {count} image placeholders for "
                        f"{len(image_urls)} images"
                    )
                return replaced

        self._log = ""
        with captured_stderr() as log:
            try:
                self._handler = Handler(clip_model_path=str(mmproj), verbose=True, use_gpu=False)
                self._llm = llama_cpp.Llama(
                    model_path=str(model),
                    chat_handler=self._handler,
                    n_ctx=n_ctx,
                    n_threads=threads or os.cpu_count() or 1,
                    n_gpu_layers=0,
                    seed=0,
                    verbose=True,
                )
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
        if failure is not None:
            raise GGUFExportError(
                f"llama.cpp could not load {model.name} + {mmproj.name}: {failure}\n"
                f"{_last_lines(log.text)}",
                hint="the GGUF files were written but this llama.cpp cannot run them",
            ) from failure

    @staticmethod
    def _messages(
        question: str, images: Sequence[bytes], system: str | None
    ) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": image_data_uri(png)}} for png in images
        ]
        content.append({"type": "text", "text": question})
        # text parts, as the families render them (some templates read only that form)
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
        )
        messages.append({"role": "user", "content": content})
        return messages

    def _complete(self, **kwargs: Any) -> Any:
        with captured_stderr() as log:
            try:
                response = self._llm.create_chat_completion(
                    temperature=0.0, repeat_penalty=1.0, seed=0, **kwargs
                )
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
        if failure is not None:
            raise GGUFExportError(
                f"llama.cpp failed to answer: {failure}\n{_last_lines(log.text)}",
                hint="the GGUF files load but do not run; see the runtime's message above",
            ) from failure
        return response

    def ask(
        self,
        question: str,
        images: Sequence[bytes],
        *,
        system: str | None = None,
        stop: Sequence[str] = (),
        max_tokens: int = 64,
        banned_tokens: Sequence[int] = (),
    ) -> Answer:
        """Greedy answer; ``banned_tokens`` get a -inf logit (comparisons past an early EOS)."""
        start = time.perf_counter()
        response = self._complete(
            messages=self._messages(question, images, system),
            max_tokens=max_tokens,
            stop=list(stop),
            logit_bias={int(t): float("-inf") for t in banned_tokens} or None,
        )
        choice = response["choices"][0]
        return Answer(
            text=str(choice["message"]["content"] or ""),
            seconds=round(time.perf_counter() - start, 3),
            completion_tokens=int(response.get("usage", {}).get("completion_tokens", 0)),
        )

    def forced_logprobs(
        self,
        question: str,
        images: Sequence[bytes],
        forced: Sequence[int],
        *,
        system: str | None = None,
    ) -> list[Any]:
        """llama.cpp's next-token log-probabilities at each step of ``forced`` (teacher forcing).

        A logits processor records each step's full distribution, then leaves
        only the forced token selectable, so the sequence fed back is
        ``forced`` whatever llama.cpp would have picked: a near tie cannot
        send the two runtimes down different continuations.
        """
        import numpy as np
        from llama_cpp import LogitsProcessorList

        rows: list[Any] = []

        def record_then_force(_input_ids: Any, scores: Any) -> Any:
            logits = np.asarray(scores, dtype=np.float64)
            shifted = logits - logits.max()
            rows.append((shifted - np.log(np.exp(shifted).sum())).astype(np.float32))
            only = np.full_like(scores, -np.inf)
            only[int(forced[len(rows) - 1])] = 0.0
            return only

        self._complete(
            messages=self._messages(question, images, system),
            max_tokens=len(forced),
            logits_processor=LogitsProcessorList([record_then_force]),
        )
        if len(rows) != len(forced):
            raise GGUFExportError(
                f"llama.cpp stopped after {len(rows)} of {len(forced)} forced tokens"
            )
        return rows

    def close(self) -> None:
        with captured_stderr():
            self._llm.close()

    def __enter__(self) -> VisionChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metadata(model: Path) -> tuple[dict[str, str], int, list[str]]:
    """A GGUF's metadata, its parameter count and the weight buffers llama.cpp loaded it into.

    The buffers are llama.cpp's own "<type> model buffer size" lines: ``CPU``,
    and ``CPU_REPACK`` or ``AMX`` when extra buffer types were used.
    """
    import llama_cpp

    with captured_stderr() as log:
        try:
            llm = llama_cpp.Llama(model_path=str(model), n_ctx=64, vocab_only=False, verbose=True)
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        raise GGUFExportError(
            f"llama.cpp could not load {model.name}: {failure}\n{_last_lines(log.text)}"
        ) from failure
    buffers = [
        line.split(":", 1)[-1].strip()
        for line in log.text.splitlines()
        if "model buffer size" in line
    ]
    try:
        return dict(llm.metadata), int(llama_cpp.llama_model_n_params(llm.model)), buffers
    finally:
        with captured_stderr():
            llm.close()
