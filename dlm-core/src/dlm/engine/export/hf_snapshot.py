"""The built-in exporter: an HF snapshot any transformers + peft user can load.

``adapter/`` holds the PEFT files only (no optimizer or RNG state),
``processor/`` the processor with the training resolution pinned,
``snapshot_manifest.json`` what was exported with sha256 and size of every
file, and ``README.md`` how to load it. The base weights are never
bundled: recipients fetch them at the pinned revision.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import attrs

from dlm.exporter import Exporter
from dlm.records import ExportRequest, ExportResult, ProbeResult, Verdict

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    entries = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        entries[path.relative_to(root).as_posix()] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    return entries


def _readme(request: ExportRequest) -> str:
    base = request.base
    licence = (
        f"The base weights are **not** included: {base.license} does not allow redistribution. "
        f"Get them from https://huggingface.co/{base.hub_id} (accept the licence there first)."
        if not base.redistributable
        else f"The base weights are not bundled; `from_pretrained` fetches them ({base.license})."
    )
    if base.tiny:
        source = (
            f"`{base.key}` is dlm's offline toy base; load it from the directory dlm built "
            f"(`$DLM_HOME/bases/{base.key}`) instead of the hub id."
        )
    else:
        source = licence
    resize = (
        f".resize(({base.image.width}, {base.image.height}))  # the trained geometry"
        if base.image.resize == "pinned"
        else ""
    )
    snippet = request.family.bind(base).usage_snippet("What does this diagram show?")
    return f"""# {request.dlm_id} — LoRA adapter for {base.key}

Exported by `dlm export` from `{request.document.name}`, adapter version
{request.adapter_version}.

- base: `{base.hub_id}` at revision `{base.revision}` ({base.architecture})
- images: {base.image.width}×{base.image.height}, {base.image.tokens_per_image} tokens each;
  `processor/` pins the resolution the adapter was trained at

{source}

## Load with transformers + peft

```python
from PIL import Image
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

base = AutoModelForImageTextToText.from_pretrained(
    "{base.hub_id}", revision="{base.revision}"
)
model = PeftModel.from_pretrained(base, "./adapter")
processor = AutoProcessor.from_pretrained("./processor")

question = "What does this diagram show?"
image = Image.open("figure.png").convert("RGB"){resize}
{snippet}
out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

`snapshot_manifest.json` lists every file with its sha256.
"""


class HFSnapshotExporter(Exporter):
    name = "hf-snapshot"
    description = "PEFT adapter + processor + manifest, loadable with transformers + peft"
    # Nothing to quantize and no smoke test: the adapter is copied as trained.
    takes_options: tuple[str, ...] = ()

    def probe(self, base: Any) -> ProbeResult:
        return ProbeResult(Verdict.SUPPORTED, "any base: the adapter stays a PEFT adapter")

    def export(self, request: ExportRequest) -> ExportResult:
        out = request.out_dir
        adapter_out = out / "adapter"
        adapter_out.mkdir(parents=True, exist_ok=True)
        for name in ADAPTER_FILES:
            shutil.copy2(request.adapter_dir / name, adapter_out / name)
        processor = request.family.load_processor(
            request.base, request.base_dir, request.training_run.get("image_settings")
        )
        processor.save_pretrained(str(out / "processor"))
        (out / "README.md").write_text(_readme(request))
        files = file_entries(out)
        manifest = {
            "export_target": "hf_snapshot",
            "dlm_id": request.dlm_id,
            "adapter_version": request.adapter_version,
            "base": {
                "key": request.base.key,
                "hub_id": request.base.hub_id,
                "revision": request.base.revision,
                "architecture": request.base.architecture,
                "license": request.base.license,
                "redistributable": request.base.redistributable,
            },
            "image_geometry": attrs.asdict(request.base.image),
            "image_settings": request.training_run.get("image_settings"),
            "files": files,
        }
        (out / "snapshot_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return ExportResult(
            files=(*sorted(files), "snapshot_manifest.json"),
            primary="README.md",
            manifest=manifest,
        )
