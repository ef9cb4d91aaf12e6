"""The ``gguf`` and ``ollama`` export targets.

merge adapter → convert LM + mmproj (pinned converter) → quantize LM →
Modelfile + README → smoke test in llama.cpp → manifest. Everything is
written inside ``request.out_dir`` (the dispatcher's staging directory, which
it renames into place on success and deletes on failure); scratch files live
in ``out_dir/.work`` and are removed before returning.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from dlm.exporter import Exporter
from dlm.records import BaseSpec, ExportRequest, ExportResult, ProbeResult, Verdict
from dlm_export_gguf import __version__, isolated
from dlm_export_gguf.convert import Job, run_converter, stage_mmproj_input
from dlm_export_gguf.errors import GGUFExportError
from dlm_export_gguf.llama_cpp import (
    LLAMA_CPP_PYTHON_VERSION,
    converter_source,
    require_runtime,
    runtime_info,
    short,
)
from dlm_export_gguf.manifest import (
    MANIFEST,
    file_entry,
    image_token_bounds,
    readme_text,
    write_manifest,
)
from dlm_export_gguf.merge import merge_adapter
from dlm_export_gguf.modelfile import TemplateShapeError, derive_chat_shape, go_template
from dlm_export_gguf.modelfile import modelfile_text as render_modelfile
from dlm_export_gguf.probe import Route, probe
from dlm_export_gguf.quants import CONVERTER_OUTTYPES, QUANT_FTYPES

DEFAULT_QUANT = "Q4_K_M"
MODELFILE = "Modelfile"
README = "README.md"
T = TypeVar("T")


def normalize_quant(raw: object) -> str:
    quant = str(raw).strip().upper().replace("-", "_")
    if quant not in QUANT_FTYPES:
        raise GGUFExportError(
            f"unknown quantization {raw!r}",
            hint="choose one of " + ", ".join(QUANT_FTYPES),
        )
    return quant


def resolve_quant(options: dict[str, Any], export_settings: dict[str, Any]) -> str:
    return normalize_quant(
        options.get("quant") or export_settings.get("default_quant") or DEFAULT_QUANT
    )


class _Steps:
    """Progress for the long steps: a spinner while running, a line with the time after."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        with self.console.status(f"{label}…"):
            yield
        self.console.print(f"  [green]✓[/] {label} ({time.perf_counter() - start:.1f} s)")

    def run(self, label: str, fn: Callable[[], T]) -> T:
        with self.step(label):
            return fn()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


class GGUFExporter(Exporter):
    name = "gguf"
    description = "GGUF LM + mmproj for llama.cpp (and an Ollama Modelfile), smoke-tested"
    primary_role = "model"
    takes_options = ("quant", "smoke")

    def output_name(self, options: dict[str, Any]) -> str:
        quant = options.get("quant")
        return f"{self.name}-{normalize_quant(quant).lower()}" if quant else self.name

    def probe(self, base: BaseSpec) -> ProbeResult:
        return probe(base)

    def export(self, request: ExportRequest) -> ExportResult:
        return export_gguf(request, primary_role=self.primary_role, target=self.name)


class OllamaExporter(GGUFExporter):
    name = "ollama"
    description = "the gguf export with its Ollama Modelfile as the main artifact"
    primary_role = "modelfile"


def _png_of(request: ExportRequest, blob: Path) -> bytes:
    """The image as training saw it (sized under the adapter's image settings), PNG-encoded
    for llama.cpp: sides the processor keeps, so llama.cpp does not resize it its own way."""
    settings = request.training_run.get("image_settings")
    prepared = request.family.bind(request.base, image_settings=settings).open_image(blob)
    buf = io.BytesIO()
    prepared.save(buf, format="PNG")
    return buf.getvalue()


def export_gguf(
    request: ExportRequest, *, primary_role: str = "model", target: str = "gguf"
) -> ExportResult:
    console = Console(stderr=True)
    steps = _Steps(console)
    base, family, out = request.base, request.family, request.out_dir
    quant = resolve_quant(request.options, request.export_settings)
    smoke = bool(request.options.get("smoke", True))

    verdict = probe(base)
    if verdict.verdict is not Verdict.SUPPORTED:
        raise GGUFExportError(
            f"{base.key} cannot be exported to GGUF: {verdict.reason}",
            hint="export with --target hf-snapshot",
        )
    needs_runtime = quant not in CONVERTER_OUTTYPES or smoke
    if needs_runtime:
        require_runtime()  # before minutes of merging, not after
    source = converter_source(log=lambda line: console.print(f"  {line}"))
    console.print(f"  converter: {source.describe()}; quant {quant}")

    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    notes: list[str] = []
    try:
        merged = steps.run(
            f"merging adapter {request.adapter_version} into {base.key}",
            lambda: merge_adapter(request, work / "merged"),
        )
        hints = base.export_hints
        if hints.write_architectures:
            route = Route.of(base)
            _patch_converter_config(work / "merged", route.text, route.mmproj, merged.processor)

        stem = f"{_slug(base.key)}-{request.adapter_version}"
        model_name = f"{stem}-{quant}.gguf"
        mmproj_name = f"mmproj-{stem}-F16.gguf"
        lm_outtype = CONVERTER_OUTTYPES.get(quant, "f16")
        lm_converted = out / model_name if quant in CONVERTER_OUTTYPES else work / "lm-f16.gguf"
        mmproj_input = merged.model_dir
        if hints.mmproj_renames or hints.mmproj_token_embedding:
            mmproj_input = stage_mmproj_input(
                merged.model_dir,
                work / "mmproj-input",
                rename=dict(hints.mmproj_renames),
                token_embedding=hints.mmproj_token_embedding or None,
            )
        jobs = [
            Job(merged.model_dir, lm_converted, lm_outtype, mmproj=False),
            Job(mmproj_input, out / mmproj_name, "f16", mmproj=True),
        ]
        conversion = steps.run(
            f"converting LM ({lm_outtype}) and mmproj (f16) with llama.cpp {short(source.revision)}",
            lambda: run_converter(
                source, jobs, log_file=work / "convert.log", pretokenizer=hints.pretokenizer
            ),
        )
        if conversion.pretokenizer_fallback:
            name = conversion.pretokenizer_fallback
            notes.append(
                "the converter did not recognise the tokenizer's pre-tokenizer hash; its "
                f"normalizer and split pattern are exactly {name}'s, so it was written as {name!r}"
            )
        if quant not in CONVERTER_OUTTYPES:
            steps.run(
                f"quantizing LM to {quant}",
                lambda: isolated.quantize(lm_converted, out / model_name, quant),
            )

        processor = merged.processor
        bounds = image_token_bounds(processor)
        stops = family.bind(base, processor).stop_tokens()
        template_text, template_note = _ollama_template(request, processor)
        if template_note:
            notes.append(template_note)
        temperature = request.export_settings.get("default_temperature")
        top_p = request.export_settings.get("default_top_p")
        header = [
            f"{request.document.name} (adapter {request.adapter_version} on {base.key}), "
            f"exported by dlm-export-gguf {__version__}",
            f"llama.cpp {short(source.revision)}; LM {quant}, mmproj F16",
        ]
        if bounds is not None:
            header.append(
                f"trained at {bounds[0]}..{bounds[1]} image tokens per image; Ollama has no "
                f"setting for it (llama.cpp: --image-min-tokens {bounds[0]} "
                f"--image-max-tokens {bounds[1]})"
            )
        (out / MODELFILE).write_text(
            render_modelfile(
                model_file=model_name,
                mmproj_file=mmproj_name,
                template=template_text,
                system=request.system_prompt,
                stops=stops,
                temperature=float(temperature) if temperature is not None else None,
                top_p=float(top_p) if top_p is not None else None,
                header=header,
            ),
            encoding="utf-8",
        )
        ollama_name = _slug(request.document.stem)
        (out / README).write_text(
            readme_text(
                request=request,
                model_file=model_name,
                mmproj_file=mmproj_name,
                quant=quant,
                revision=source.revision,
                bounds=bounds,
                ollama_name=ollama_name,
            ),
            encoding="utf-8",
        )

        smoke_record: dict[str, Any]
        if not smoke:
            smoke_record = {"skipped": "--no-smoke"}
        else:
            smoke_record = steps.run(
                "smoke test: answering about a training image in llama.cpp",
                lambda: _smoke(
                    request, out / model_name, out / mmproj_name, bounds, stops, processor
                ),
            )
            if smoke_record.get("fallback"):
                notes.append(f"smoke test: {smoke_record['fallback']}")
            if "answer" in smoke_record and not smoke_record["matches_expected"]:
                notes.append(
                    f"smoke answer {smoke_record['answer']!r} differs from the trained "
                    f"answer {smoke_record['expected']!r}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    roles = {model_name: "model", mmproj_name: "mmproj", MODELFILE: "modelfile", README: "readme"}
    runtime = runtime_info()
    manifest: dict[str, Any] = {
        "format": "dlm-gguf-export/1",
        "target": target,
        "exporter": {"name": "dlm-export-gguf", "version": __version__},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dlm_id": request.dlm_id,
        "document": str(request.document),
        "base": {
            "key": base.key,
            "hub_id": base.hub_id,
            "revision": base.revision,
            "architecture": base.architecture,
        },
        "adapter": {
            "version": request.adapter_version,
            "lora_modules": merged.lora_modules,
            "merge_dtype": merged.merge_dtype,
        },
        "llama_cpp": {
            "revision": source.revision,
            "converter": {"origin": source.origin, "path": str(source.root)},
            "runtime": {
                "package": "llama-cpp-python",
                "version": runtime.version,
                "revision": runtime.revision,
                "pinned": LLAMA_CPP_PYTHON_VERSION,
            },
        },
        "quant": quant,
        "mmproj_quant": "F16",
        "image": {
            "width": base.image.width,
            "height": base.image.height,
            "min_tokens": bounds[0] if bounds else None,
            "max_tokens": bounds[1] if bounds else None,
        },
        "pretokenizer_fallback": conversion.pretokenizer_fallback,
        "probe": {"verdict": verdict.verdict.value, "reason": verdict.reason},
        "smoke": smoke_record,
        "files": {name: file_entry(out / name, role) for name, role in roles.items()},
        "notes": notes,
    }
    write_manifest(out, manifest)
    primary = MODELFILE if primary_role == "modelfile" else model_name
    return ExportResult(
        files=(*roles, MANIFEST),
        primary=primary,
        manifest=manifest,
        notes=tuple(notes),
    )


def _patch_converter_config(
    model_dir: Path, text_arch: str, mmproj_arch: str, processor: Any
) -> None:
    """Write what the converter routes by into the staged config (``write_architectures``).

    The architectures of both halves, as the base declares them, and for tiling
    processors the tile bounds (InternVL's ``min/max_dynamic_patch``, which the
    mmproj records and llama.cpp tiles by; without them it tiles up to 12
    whatever training did).
    """
    import json

    path = model_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("text_config", {})["architectures"] = [text_arch]
    config.setdefault("vision_config", {})["architectures"] = [mmproj_arch]
    image_processor = getattr(processor, "image_processor", None)
    low = getattr(image_processor, "min_patches", None)
    high = getattr(image_processor, "max_patches", None)
    if isinstance(low, int) and isinstance(high, int):
        config["min_dynamic_patch"], config["max_dynamic_patch"] = low, high
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _special_tokens(processor: Any) -> dict[str, str]:
    tokenizer = getattr(processor, "tokenizer", processor)
    return {
        name: str(getattr(tokenizer, name))
        for name in ("bos_token", "eos_token")
        if getattr(tokenizer, name, None)
    }


def _ollama_template(request: ExportRequest, processor: Any) -> tuple[str | None, str | None]:
    jinja = request.family.bind(request.base, processor).chat_template()
    if not jinja:
        return None, "the family has no chat template; Ollama will use the GGUF's own"
    try:
        shape = derive_chat_shape(jinja, _special_tokens(processor))
    except TemplateShapeError as exc:
        return None, (
            f"the chat template cannot be restated as an Ollama TEMPLATE ({exc}); "
            "the Modelfile leaves it out, so Ollama uses the template stored in the GGUF"
        )
    return go_template(shape), None


def _smoke(
    request: ExportRequest,
    model: Path,
    mmproj: Path,
    bounds: tuple[int, int] | None,
    stops: list[str],
    processor: Any,
) -> dict[str, Any]:
    example = next((e for e in request.smoke_examples if e.images), None)
    if example is None:
        return {"skipped": "the document has no image example to ask about"}
    image = example.images[0]
    png = _png_of(request, image.blob_path)
    system = example.system_prompt or request.system_prompt
    tokenizer = getattr(processor, "tokenizer", processor)
    expected_tokens = len(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
    image_max = bounds[1] if bounds else request.base.image.max_image_tokens()
    n_ctx = max(2048, -(-(image_max + 1024) // 256) * 256)
    session = isolated.Session(
        model, mmproj, image_tokens=bounds, image_token=request.base.image.image_token, n_ctx=n_ctx
    )
    question = isolated.Question(
        example.prompt,
        (png,),
        system=system,
        stop=tuple(stops),
        max_tokens=min(512, max(16, expected_tokens + 16)),
    )
    (answer,), host, fallback = isolated.answers(
        session,
        [question],
        what=f"smoke-testing {model.name} + {mmproj.name}",
        hint=(
            "nothing was kept. Export with --no-smoke to keep the files untested, try another "
            "--quant (F16 uses no quantized kernels), or on an AMX CPU set "
            f"{isolated.EXTRA_BUFTS_ENV}=off (docs/export-gguf.md, 'AMX hosts')"
        ),
    )
    text = str(answer["text"]).strip()
    record: dict[str, Any] = {
        "image": image.source,
        "image_sha256": image.sha256,
        "question": example.prompt,
        "expected": example.completion,
        "answer": text,
        "matches_expected": text == example.completion.strip(),
        "seconds": answer["seconds"],
        "host": host.as_record(),
    }
    if fallback:
        record["fallback"] = fallback
    return record
