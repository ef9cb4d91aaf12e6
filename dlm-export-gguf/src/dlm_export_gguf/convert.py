"""Running the pinned converter: HF directory -> GGUF (the LM, or the mmproj with ``--mmproj``).

The converter runs in a child process (``_convert_driver.py``): it imports
torch and its own ``gguf`` package, which must not shadow anything here, and a
child frees its memory when it exits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from dlm.records import Pretokenizer
from dlm_export_gguf._convert_driver import FALLBACK_MARKER, JOB_MARKER
from dlm_export_gguf.errors import GGUFExportError
from dlm_export_gguf.llama_cpp import ConverterSource

_DRIVER = Path(__file__).with_name("_convert_driver.py")


def matching_pretokenizer(tokenizer_json: Path, declared: Pretokenizer | None) -> str | None:
    """``declared.name`` if this byte-level BPE splits exactly as the base declares, else None.

    The converter identifies a pre-tokenizer by a hash a retrained tokenizer
    never matches; dlm names one only when the tokenizer's normalizer and split
    pattern are exactly those the base declares (``ExportHints.pretokenizer``).
    """
    if declared is None:
        return None
    try:
        data: dict[str, Any] = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (data.get("model") or {}).get("type") != "BPE":
        return None
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not isinstance(steps, list) or len(steps) != 2:
        return None
    split, byte_level = steps
    if not (
        split.get("type") == "Split"
        and split.get("behavior") == "Isolated"
        and split.get("invert") is False
        and byte_level.get("type") == "ByteLevel"
        and byte_level.get("add_prefix_space") is False
        and byte_level.get("use_regex") is False
    ):
        return None
    normalizer = {"type": declared.normalizer} if declared.normalizer else None
    if data.get("normalizer") == normalizer and split.get("pattern") == {
        "Regex": declared.split_pattern
    }:
        return declared.name
    return None


@attrs.frozen
class Job:
    """One conversion of ``model_dir``: the LM (``mmproj=False``) or the vision projector."""

    model_dir: Path
    out_file: Path
    outtype: str
    mmproj: bool

    @property
    def what(self) -> str:
        return "vision projector (mmproj)" if self.mmproj else "language model"

    def args(self) -> list[str]:
        args = [str(self.model_dir), "--outtype", self.outtype, "--outfile", str(self.out_file)]
        return [*args, "--mmproj"] if self.mmproj else args


@attrs.frozen
class Conversion:
    files: tuple[Path, ...]
    pretokenizer_fallback: str | None  # the name written when the hash was unknown
    log: Path


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_converter(
    source: ConverterSource,
    jobs: list[Job],
    *,
    log_file: Path,
    pretokenizer: Pretokenizer | None = None,
) -> Conversion:
    """Run ``jobs`` in one child process; a failure raises with the converter's own words.

    ``pretokenizer`` is the base's declared one, named to the converter as a
    fallback only if the LM's tokenizer splits exactly like it.
    """
    cmd = [sys.executable, str(_DRIVER), str(source.root)]
    lm_dirs = [job.model_dir for job in jobs if not job.mmproj]
    fallback = (
        matching_pretokenizer(lm_dirs[0] / "tokenizer.json", pretokenizer) if lm_dirs else None
    )
    if fallback is not None:
        cmd.append(f"--pretokenizer={fallback}")
    for job in jobs:
        cmd += ["--", *job.args()]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    with log_file.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    text = log_file.read_text(encoding="utf-8", errors="replace")
    missing = next((job for job in jobs if not job.out_file.is_file()), None)
    if proc.returncode != 0 or missing is not None:
        # the job that was running when the child died (a crash can leave its file half written)
        started = text.count(JOB_MARKER)
        job = jobs[max(started, 1) - 1] if proc.returncode != 0 or missing is None else missing
        tail = _tail(text)
        hint = f"the converter is {source.describe()}"
        if "pre-tokenizer was not recognized" in tail:
            declared = (
                f"does not split exactly like the {pretokenizer.name!r} pre-tokenizer its base "
                "declares"
                if pretokenizer is not None
                else "its base declares no pre-tokenizer (ExportHints.pretokenizer)"
            )
            hint = (
                f"the tokenizer's pre-tokenizer is unknown to this llama.cpp and {declared}, "
                "so dlm will not guess it; use a llama.cpp that knows it "
                f"(DLM_LLAMA_CPP=/path/to/llama.cpp). {hint}"
            )
        elif job.mmproj and "Can not map tensor" in tail:
            hint = (
                "the converter maps projector layers by vision-block index, so a vision "
                "tower with fewer blocks than the projector's highest index cannot convert "
                "(at the pin: Qwen2-VL and Mistral 3 need >= 3 vision layers, InternVL >= 4). "
                f"{hint}"
            )
        raise GGUFExportError(f"converting the {job.what} failed:\n{tail}", hint=hint)
    used = re.search(re.escape(FALLBACK_MARKER) + r" (\S+)", text)
    return Conversion(
        files=tuple(job.out_file for job in jobs),
        pretokenizer_fallback=used.group(1) if used else None,
        log=log_file,
    )


# ------------------------------------------------------------------ mmproj input

_RENAMED_PART = "model-dlm-mmproj.safetensors"
_IMG_BREAK_PART = "model-dlm-img-break.safetensors"
_IMG_BREAK_TENSOR = "dlm_img_break.embed_tokens.weight"
_INDEX = "model.safetensors.index.json"


def _token_id(model_dir: Path, token: str) -> int | None:
    try:
        data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return next(
        (int(t["id"]) for t in data.get("added_tokens", []) if t.get("content") == token), None
    )


def _weight_files(model_dir: Path) -> dict[str, str]:
    """tensor name -> file, from the index when the checkpoint is sharded."""
    index = model_dir / _INDEX
    if index.is_file():
        return dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    from safetensors import safe_open

    names: dict[str, str] = {}
    for part in sorted(model_dir.glob("model*.safetensors")):
        with safe_open(str(part), framework="pt") as fh:
            names.update(dict.fromkeys(fh.keys(), part.name))
    return names


def stage_mmproj_input(
    model_dir: Path,
    dest: Path,
    *,
    rename: dict[str, str] | None = None,
    token_embedding: str | None = None,
) -> Path:
    """A view of ``model_dir`` in which the pinned mmproj converter finds what it looks for.

    Two gaps at the pinned revision, both about tensor names transformers 5
    writes (it saves VL models in the legacy ``language_model.*`` /
    ``vision_tower.*`` layout):

    - ``rename``: InternVisionModel keeps only ``model.vision_tower.*`` /
      ``model.multi_modal_projector.*`` (the native names it learnt from
      Intern-S1) and silently drops bare ``vision_tower.*``, giving an mmproj
      with no tensors. The vision tensors are rewritten under the names it keeps.
    - ``token_embedding``: the Pixtral mmproj (Mistral 3) stores the
      ``[IMG_BREAK]`` embedding, read from a tensor named ``*embed_tokens.weight``,
      but the mmproj side skips every ``language_model.*`` tensor first, so an
      HF-format Mistral 3 gets an mmproj llama.cpp cannot load ("unable to find
      tensor v.token_embd.img_break"). The embedding rows up to that token are
      added under a name outside ``language_model.``.

    Everything else is linked, not copied.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    files = _weight_files(model_dir)
    weight_files = set(files.values()) | {_INDEX}
    dest.mkdir(parents=True)
    for item in model_dir.iterdir():
        # renamed weights replace the originals; the index is rewritten below
        if item.name != _INDEX and (item.name not in weight_files or not rename):
            (dest / item.name).symlink_to(item.resolve())
    weight_map = {} if rename else dict(files)

    if rename:
        renamed = {}
        for name, file in files.items():
            prefix = next((p for p in rename if name.startswith(p)), None)
            if prefix is not None:
                with safe_open(str(model_dir / file), framework="pt") as fh:
                    renamed[rename[prefix] + name[len(prefix) :]] = fh.get_tensor(name)
        if not renamed:
            raise GGUFExportError(
                f"no vision tensors under {', '.join(rename)} in {model_dir}",
                hint="the model was saved in a layout the exporter does not know",
            )
        save_file(renamed, str(dest / _RENAMED_PART))
        weight_map.update(dict.fromkeys(renamed, _RENAMED_PART))

    if token_embedding:
        token_id = _token_id(model_dir, token_embedding)
        if token_id is None:
            raise GGUFExportError(f"the tokenizer has no {token_embedding} token the mmproj needs")
        source = next(
            (n for n in files if n.endswith("embed_tokens.weight") and "language_model" in n), None
        )
        if source is None:
            raise GGUFExportError(
                f"no language-model embedding in {model_dir} for {token_embedding}"
            )
        with safe_open(str(model_dir / files[source]), framework="pt") as fh:
            rows = fh.get_slice(source)[: token_id + 1]
        save_file({_IMG_BREAK_TENSOR: rows.contiguous()}, str(dest / _IMG_BREAK_PART))
        weight_map[_IMG_BREAK_TENSOR] = _IMG_BREAK_PART

    if (model_dir / _INDEX).is_file() and not rename:
        data = json.loads((model_dir / _INDEX).read_text(encoding="utf-8"))
        data["weight_map"] = weight_map
        (dest / _INDEX).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return dest
