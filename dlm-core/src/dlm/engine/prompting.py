"""``dlm prompt``: ask a committed adapter about images.

The processor is rebuilt with the resolution settings saved at training
time (``training_run.json``), so a prompt sees images exactly as training
did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from dlm.errors import PromptError, UsageError
from dlm.family import BoundBase, Family
from dlm.format import parse_file
from dlm.plugins import get_registry
from dlm.records import BaseSpec
from dlm.store.adapters import current_version, list_versions
from dlm.store.images import ImageError, verify_image
from dlm.store.integrity import verify_adapter
from dlm.store.paths import StorePaths, dlm_home


@attrs.frozen
class LoadedAdapter:
    """A base with a verified adapter attached, ready to generate."""

    bound: BoundBase  # the family on this base, with the adapter's image settings
    model: Any
    version: str
    training_run: dict[str, Any]
    system_prompt: str | None

    @property
    def base(self) -> BaseSpec:
        return self.bound.base

    @property
    def family(self) -> Family:
        return self.bound.family

    @property
    def processor(self) -> Any:
        return self.bound.processor


def resolve_version(paths: StorePaths, requested: str | None) -> str:
    if requested is None:
        version = current_version(paths)
        if version is None:
            raise PromptError(
                "no adapter under adapter/current.txt",
                hint="first train hasn't run: `dlm train DOC` commits the adapter",
            )
        return version
    wanted = requested if requested.startswith("v") else f"v{int(requested):04d}"
    if wanted not in list_versions(paths):
        known = ", ".join(list_versions(paths)) or "none"
        raise UsageError(f"no adapter version {wanted}; committed versions: {known}")
    return wanted


def load_adapter_for(
    doc_path: str | Path,
    *,
    adapter_version: str | None = None,
    device: str = "cpu",
) -> LoadedAdapter:
    import torch

    from dlm.engine.lora import load_adapter
    from dlm.engine.quiet import quiet_transformers

    quiet_transformers()
    doc = parse_file(Path(doc_path))
    registry = get_registry()
    base = registry.base(doc.frontmatter.base_model)
    family = registry.family_for(base)
    paths = StorePaths.for_id(doc.frontmatter.dlm_id)
    version = resolve_version(paths, adapter_version)
    # Checked against the manifest before anything in it is read: a tampered
    # adapter must not answer.
    adapter_dir = verify_adapter(paths, version)
    run_file = adapter_dir / "training_run.json"
    training_run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    trained_on = training_run.get("base", {}).get("key")
    if trained_on and trained_on != base.key:
        raise PromptError(
            f"adapter {version} was trained on {trained_on}, but the document now names {base.key}",
            hint=f"set base_model back to {trained_on}, or retrain with `dlm train`",
        )
    base_dir = family.materialize(base, dlm_home())
    image_settings = training_run.get("image_settings")
    processor = family.load_processor(base, base_dir, image_settings)
    if base.tiny and device == "cpu":
        torch.set_num_threads(1)  # toy matrices: threads cost more than they give
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = family.load_model(base, base_dir, dtype, device)
    model = load_adapter(model, adapter_dir)
    model.eval()
    return LoadedAdapter(
        bound=family.bind(base, processor, image_settings),
        model=model,
        version=version,
        training_run=training_run,
        system_prompt=doc.frontmatter.system_prompt,
    )


def choose_device(base: BaseSpec, *, force: bool = False) -> str:
    """Where to run inference; a real base on a host that cannot hold it is refused.

    Inference needs the weights (bf16 on CUDA, fp32 on CPU) plus headroom;
    tiny bases run anywhere. ``--force`` lets a user try anyway.
    """
    from dlm.errors import PlanError
    from dlm.hardware.host import probe_host

    host = probe_host()
    if host.backend == "cuda":
        device, bytes_per_param = "cuda", 2
    else:
        device, bytes_per_param = "cpu", 4
    if base.tiny or force:
        return device
    need = base.params.total * bytes_per_param * 1.2
    if host.backend == "cpu":
        raise PlanError(
            f"{base.key} needs about {need / 2**30:.1f} GiB for fp32 inference on the CPU "
            f"(this host has {host.memory_bytes / 2**30:.1f} GiB); CPU inference of a real base "
            "is very slow",
            hint="run on a CUDA or Apple Silicon host, or pass --force to try anyway",
        )
    if need > host.memory_bytes:
        raise PlanError(
            f"{base.key} needs about {need / 2**30:.1f} GiB for inference but {host.device_name} "
            f"has {host.memory_bytes / 2**30:.1f} GiB",
            hint="use a larger device, a smaller base, or pass --force to try anyway",
        )
    return device


def check_prompt_images(base: BaseSpec, image_paths: list[Path]) -> None:
    if not image_paths:
        raise UsageError(
            f"base {base.key} is vision-language; pass at least one --image PATH",
            subject="prompt",
        )
    for path in image_paths:
        if not path.exists():
            raise UsageError(f"image not found: {path}", subject="prompt")
        # The checks and limits of `dlm train`, before any model loads.
        try:
            verify_image(path)
        except ImageError as exc:
            raise UsageError(f"{path}: {exc.reason}", hint=exc.hint, subject="prompt") from None


def generate(
    loaded: LoadedAdapter,
    image_paths: list[Path],
    question: str,
    *,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> str:
    bound = loaded.bound
    images = [bound.open_image(path) for path in image_paths]
    return answer(
        loaded.model,
        bound,
        images,
        question,
        loaded.system_prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
    )


def answer(
    model: Any,
    bound: BoundBase,
    images: list[Any],
    question: str,
    system_prompt: str | None,
    *,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> str:
    """``model``'s answer to ``question`` about prepared ``images`` (greedy at temperature 0).

    Used by ``dlm prompt`` and by training's held-out check and recall pass,
    so both ask exactly the same way.
    """
    import torch

    inputs = bound.prompt_inputs(images, question, system_prompt)
    device = next(model.parameters()).device
    inputs = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in inputs.items()}
    tokenizer = bound.tokenizer
    stop_ids = [
        tid
        for tid in (tokenizer.convert_tokens_to_ids(t) for t in bound.stop_tokens())
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id
    ]
    kwargs: dict[str, Any] = {"max_new_tokens": max_tokens}
    if stop_ids:
        kwargs["eos_token_id"] = stop_ids
    if tokenizer.pad_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    if temperature > 0:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return bound.decode(new_tokens)
