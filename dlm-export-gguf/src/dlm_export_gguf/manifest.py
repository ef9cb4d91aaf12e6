"""``export_manifest.json`` (what was written, from what) and the export's README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlm.kit import sha256_file
from dlm.records import ExportRequest
from dlm_export_gguf.llama_cpp import short

MANIFEST = "export_manifest.json"


def file_entry(path: Path, role: str) -> dict[str, Any]:
    return {"role": role, "size": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    path = out_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def verify_export(out_dir: Path) -> list[str]:
    """Problems with an export directory against its manifest (empty when it verifies)."""
    path = out_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{path}: unreadable manifest ({exc})"]
    problems = []
    for name, entry in manifest.get("files", {}).items():
        file = out_dir / name
        if not file.is_file():
            problems.append(f"{name}: missing")
            continue
        if file.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {file.stat().st_size}, manifest says {entry['size']}")
        elif sha256_file(file) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems


def image_token_bounds(processor: Any) -> tuple[int, int] | None:
    """llama.cpp's ``--image-min-tokens/--image-max-tokens`` matching the processor, if it has them.

    Only dynamic-resolution processors of the Qwen2-VL kind (a pixel budget,
    ``patch_size`` x ``merge_size`` pixels per token side) have them: for
    Qwen2-VL ``min_pixels // 784`` and ``max_pixels // 784``. llama.cpp's own
    defaults (8 … 4096 tokens) would change the resolution the adapter was
    trained at, so the export carries these.
    """
    image_processor = getattr(processor, "image_processor", None)
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    if not isinstance(patch, int) or not isinstance(merge, int):
        return None
    size = getattr(image_processor, "size", None)
    size = size if isinstance(size, dict) else (vars(size) if size is not None else {})
    low = getattr(image_processor, "min_pixels", None) or size.get("shortest_edge")
    high = getattr(image_processor, "max_pixels", None) or size.get("longest_edge")
    if not isinstance(low, int) or not isinstance(high, int) or high < low:
        return None
    area = (patch * merge) ** 2
    return max(1, low // area), max(1, high // area)


def readme_text(
    *,
    request: ExportRequest,
    model_file: str,
    mmproj_file: str,
    quant: str,
    revision: str,
    bounds: tuple[int, int] | None,
    ollama_name: str,
) -> str:
    base = request.base
    image_flags = (
        f" --image-min-tokens {bounds[0]} --image-max-tokens {bounds[1]}" if bounds else ""
    )
    side = f"{base.image.width}x{base.image.height}"
    lines = [
        f"# {request.document.stem}: GGUF export",
        "",
        f"Adapter {request.adapter_version} of `{request.document.name}` merged into "
        f"`{base.key}` ({base.hub_id}@{base.revision[:12]}), converted with llama.cpp "
        f"{short(revision)} (`{revision}`).",
        "",
        "| file | what |",
        "|---|---|",
        f"| `{model_file}` | the language model, {quant} |",
        f"| `{mmproj_file}` | the vision tower + projector (mmproj), F16 |",
        "| `Modelfile` | Ollama: both files, chat template, stops, sampling |",
        "| `export_manifest.json` | revisions, sha256 and size of every file, smoke answer |",
        "",
        "## llama.cpp",
        "",
        "```sh",
        f"llama-mtmd-cli -m {model_file} --mmproj {mmproj_file}{image_flags} \\",
        '    --image picture.png -p "What is in this picture?"',
        f"llama-server -m {model_file} --mmproj {mmproj_file}{image_flags}",
        "```",
        "",
    ]
    if bounds:
        lines += [
            f"`--image-min-tokens {bounds[0]} --image-max-tokens {bounds[1]}` keep images at "
            "the resolution the adapter was trained at; without them llama.cpp picks its own.",
            "",
        ]
    lines += [
        f"Training resized every image to {side}; give llama.cpp images of that size for "
        "the answers training taught (llama.cpp letterboxes where the trainer stretched).",
        "",
        "## Ollama",
        "",
        "```sh",
        f"ollama create {ollama_name} -f Modelfile",
        f'ollama run {ollama_name} "What is in this picture? ./picture.png"',
        "```",
        "",
    ]
    if bounds:
        lines += [
            "Ollama has no setting for the image token range, so it may see images at "
            "another resolution than training did; llama.cpp with the flags above does not.",
            "",
        ]
    lines += [
        "## On a CPU with AMX",
        "",
        "On some AMX CPUs (Sapphire Rapids and later Xeons; llama.cpp's system info shows "
        "`AMX_INT8 = 1`) the pinned llama.cpp crashes on the first answer of a quantized "
        "model. Turn its extra buffer types off: `--no-repack` on the llama.cpp tools "
        "(or `LLAMA_ARG_REPACK=0`), `use_extra_bufts = False` in llama-cpp-python's model "
        "parameters. F16 models are not affected. `export_manifest.json` records the CPU "
        "the smoke test ran on (`smoke.host`).",
        "",
        "## Python (llama-cpp-python)",
        "",
        "```python",
        "from llama_cpp import Llama",
        "from llama_cpp.llama_chat_format import MTMDChatHandler",
        f'llm = Llama("{model_file}", chat_handler=MTMDChatHandler("{mmproj_file}"), n_ctx=4096)',
        "```",
        "",
    ]
    return "\n".join(lines)
