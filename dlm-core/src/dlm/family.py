"""The family interface: what a base family plugin implements.

A family turns a :class:`~dlm.records.BaseSpec` into something the engine
can train and prompt: local weights, a processor, a model, batches with
labels, generation inputs. Subclass :class:`Family`, override what differs
from the generic behaviour here, and register an instance through the
``register_families`` hook.

The generic behaviour suits chat-templated VL processors (Qwen2-VL,
Mistral 3, InternVL): prompt/completion rows rendered through the
processor's chat template, labels on the completion only. Families whose
processor works differently (PaliGemma's prefix/suffix) override
:meth:`Family.collate` and :meth:`Family.prompt_inputs`.

torch and transformers are imported inside methods, never at module
import, so ``dlm --help`` and ``dlm plugins`` stay fast.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlm.errors import DlmError
from dlm.records import BaseSpec, ExampleKind, TokenCount, TrainingExample
from dlm.store.bases import DOWNLOAD_PATTERNS, TINY_MARKER

if TYPE_CHECKING:
    from PIL.Image import Image

# LoRA on the language model only: the vision tower and projector stay frozen.
LANGUAGE_MODEL_LINEAR_REGEX = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)

#: The image setting (saved with the adapter beside the processor's own) that
#: says how a pinned image is sized; an adapter saved without it stretched.
FIT_KEY = "fit"
#: Resize to the pinned ``width``×``height`` whatever the aspect ratio.
FIT_STRETCH = "stretch"
#: Keep the aspect ratio: sides multiples of ``ImageGeometry.token_side`` within
#: the pinned pixel budget (bases whose processor takes other shapes).
FIT_KEEP_ASPECT = "keep-aspect"

# Estimated characters per token when no tokenizer is at hand (planning a
# real base before its download). English prose runs at ~4; 3.5 errs long.
_CHARS_PER_TOKEN = 3.5


class Family:
    """Base class for base families. One instance serves all its bases."""

    #: The name ``BaseSpec.family`` refers to.
    name: str = ""
    #: Can this family train examples that carry no image?
    supports_text_only: bool = True
    #: The prompt a caption example is trained and prompted with.
    caption_prompt: str = "Describe this image."
    #: Image-processor attributes that fix the resolution; saved with the
    #: adapter by :meth:`image_settings` and restored by :meth:`load_processor`.
    image_setting_keys: tuple[str, ...] = ("size",)
    #: Inputs the processor returns per token (padded with the rows); every
    #: other processor output (``pixel_values``, ``image_grid_thw``…) passes through.
    token_level_keys: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "token_type_ids",
    )
    #: Chat-template tokens around one turn pair when no tokenizer is at hand
    #: (role headers, default system prompt, image delimiters): an estimate.
    chat_overhead_tokens: int = 24
    #: Does the family's prompt format carry the document's ``system_prompt``?
    #: (``dlm train`` says so when a document sets one that a family ignores.)
    uses_system_prompt: bool = True
    #: Files fetched from the hub for a real base (some repos ship the same
    #: weights twice in different formats: list only the ones transformers loads).
    download_patterns: tuple[str, ...] = DOWNLOAD_PATTERNS

    # ------------------------------------------------------------- weights

    def materialize(self, base: BaseSpec, home: Path | None = None) -> Path:
        """Return a local directory ``from_pretrained`` can load for ``base``.

        Tiny bases are built into ``home/bases/<key>`` on first use (see
        :meth:`build_tiny`); real bases are downloaded at their pinned
        revision. ``home`` defaults to ``$DLM_HOME``. The machinery is core's
        (:mod:`dlm.store.bases`); a family only says how to build its tiny base.
        """
        from dlm.store.bases import download_base, materialize_tiny
        from dlm.store.paths import dlm_home

        root = Path(home) if home is not None else dlm_home()
        if base.tiny:
            return materialize_tiny(base, self.name, self.build_tiny, root / "bases")
        return download_base(base, self.download_patterns)

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        """Write a tiny, deterministic base (model, processor, tokenizer) to ``out_dir``."""
        raise NotImplementedError(f"family {self.name!r} ships no tiny base")

    # ------------------------------------------------------------- loading

    def processor_load_kwargs(self, base: BaseSpec) -> dict[str, Any]:
        """Extra ``AutoProcessor.from_pretrained`` arguments for this family (default none)."""
        return {}

    def usage_snippet(self, base: BaseSpec, question: str) -> str:
        """Python that turns a question and an image into model inputs, for export READMEs.

        Uses ``processor``, ``image`` (a PIL image) and ``question``; must bind ``inputs``.
        """
        return (
            'messages = [{"role": "user", "content": [\n'
            '    {"type": "image"}, {"type": "text", "text": question}]}]\n'
            "prompt = processor.apply_chat_template(messages, add_generation_prompt=True)\n"
            "# the chat template already wrote the special tokens\n"
            "inputs = processor(text=[prompt], images=[image], add_special_tokens=False,\n"
            '                   return_tensors="pt")'
        )

    def load_processor(
        self, base: BaseSpec, base_dir: Path, image_settings: dict[str, Any] | None = None
    ) -> Any:
        """Load the processor; ``image_settings`` (from :meth:`image_settings`) pins resolution.

        Without saved settings the base's defaults apply
        (``base.image_settings``), so training starts pinned too.
        """
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(
            base_dir, trust_remote_code=False, **self.processor_load_kwargs(base)
        )
        settings = (
            image_settings if image_settings is not None else self.default_image_settings(base)
        )
        image_processor = getattr(processor, "image_processor", None)
        for key, value in settings.items():
            if key == FIT_KEY:  # dlm's own: read by prepare_image, not the processor
                continue
            if image_processor is None or not hasattr(image_processor, key):
                raise DlmError(
                    f"image setting {key!r} does not apply to {base.key}'s image processor",
                    hint="the adapter was trained with another processor; retrain it on this base",
                    subject="base",
                )
            setattr(image_processor, key, _restore(getattr(image_processor, key), value))
        return processor

    def default_image_settings(self, base: BaseSpec) -> dict[str, Any]:
        """The resolution settings a fresh training run pins (from the registry row)."""
        return dict(base.image_settings)

    def image_settings(self, base: BaseSpec, processor: Any) -> dict[str, Any]:
        """The processor's resolution settings, saved with the adapter.

        Prompting and export pass them back to :meth:`load_processor` so they
        preprocess exactly as training did.
        """
        image_processor = getattr(processor, "image_processor", None)
        settings: dict[str, Any] = {}
        if image_processor is not None:
            settings = {
                key: _jsonable(getattr(image_processor, key))
                for key in self.image_setting_keys
                if getattr(image_processor, key, None) is not None
            }
        # Called for a fresh training run: its fit is the base's default.
        fit = self.default_image_settings(base).get(FIT_KEY)
        if fit is not None:
            settings[FIT_KEY] = fit
        return settings

    def image_fit(self, base: BaseSpec, image_settings: dict[str, Any] | None = None) -> str:
        """How a pinned image is sized: :data:`FIT_STRETCH` or :data:`FIT_KEEP_ASPECT`.

        ``image_settings``: an adapter's (``None``: the base's defaults, a fresh
        run). An adapter saved before the setting existed stretched, and still does.
        """
        settings = (
            image_settings if image_settings is not None else self.default_image_settings(base)
        )
        fit = str(settings.get(FIT_KEY, FIT_STRETCH))
        if fit == FIT_KEEP_ASPECT and not base.image.token_side:
            return FIT_STRETCH
        return fit

    def prepared_size(
        self,
        base: BaseSpec,
        width: int,
        height: int,
        image_settings: dict[str, Any] | None = None,
    ) -> tuple[int, int]:
        """The size :meth:`prepare_image` gives a ``width``×``height`` image."""
        geometry = base.image
        if geometry.resize != "pinned":
            return width, height
        if self.image_fit(base, image_settings) == FIT_KEEP_ASPECT:
            return fit_within(width, height, geometry.width * geometry.height, geometry.token_side)
        return geometry.width, geometry.height

    def describe_image(
        self,
        base: BaseSpec,
        width: int,
        height: int,
        image_settings: dict[str, Any] | None = None,
    ) -> str:
        """What a ``width``×``height`` image becomes for the model, in words
        (``dlm show`` and ``dlm doctor`` print it for every image)."""
        geometry = base.image
        if geometry.resize == "tiles":
            return (
                f"tiled: {geometry.width}×{geometry.height} tiles in the grid closest to its "
                f"aspect {_aspect(width, height)} (up to {geometry.max_tiles}, plus a thumbnail)"
            )
        new_w, new_h = self.prepared_size(base, width, height, image_settings)
        if self.image_fit(base, image_settings) == FIT_KEEP_ASPECT:
            side = geometry.token_side
            tokens = (new_w // side) * (new_h // side)
            return (
                f"{new_w}×{new_h}, aspect kept ({_aspect(width, height)} → "
                f"{_aspect(new_w, new_h)}), {tokens} image tokens"
            )
        if (new_w, new_h) == (width, height):
            return f"{new_w}×{new_h} as is"
        if width * new_h == height * new_w:
            return f"resized to {new_w}×{new_h}"
        return (
            f"stretched to {new_w}×{new_h} (aspect {_aspect(width, height)} → "
            f"{_aspect(new_w, new_h)})"
        )

    def load_model(self, base: BaseSpec, base_dir: Path, dtype: Any, device: str) -> Any:
        """Load the model for training or inference (never with remote code)."""
        from transformers import AutoModelForImageTextToText

        model: Any = AutoModelForImageTextToText.from_pretrained(
            base_dir, dtype=dtype, trust_remote_code=False, use_safetensors=True
        )
        return model.to(device)

    def lora_target_modules(self, base: BaseSpec) -> str | list[str]:
        """Modules LoRA adapts by default: the language model's linear layers."""
        return LANGUAGE_MODEL_LINEAR_REGEX

    # ------------------------------------------------------------- data

    def prepare_image(
        self, base: BaseSpec, image: Image, image_settings: dict[str, Any] | None = None
    ) -> Image:
        """Bring a decoded image to what the base expects (RGB, the size of
        :meth:`prepared_size` under the adapter's ``image_settings``).

        ``normalize_image`` first (EXIF orientation, 16-bit depth, alpha), so an
        image opened by any caller, ``open_image`` or a plain ``Image.open``,
        becomes the same pixels. The resize happens here, not in the processor,
        so llama.cpp (which resizes its own way) is given the same pixels.
        """
        from PIL import Image as PILImage

        from dlm.store.images import normalize_image

        rgb = normalize_image(image)
        size = self.prepared_size(base, *rgb.size, image_settings)
        if rgb.size != size:
            rgb = rgb.resize(size, PILImage.Resampling.BICUBIC)
        return rgb

    def chat_messages(
        self,
        system_prompt: str | None,
        prompt: str,
        n_images: int,
        completion: str | None = None,
    ) -> list[dict[str, Any]]:
        """The conversation the chat template renders: images first, then the text."""
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append(
                {"role": "system", "content": [{"type": "text", "text": system_prompt}]}
            )
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": prompt})
        messages.append({"role": "user", "content": content})
        if completion is not None:
            messages.append(
                {"role": "assistant", "content": [{"type": "text", "text": completion}]}
            )
        return messages

    def render_prompt(
        self, processor: Any, system_prompt: str | None, prompt: str, n_images: int
    ) -> str:
        """The prompt as the template renders it, ending with the assistant's header."""
        return processor.apply_chat_template(
            self.chat_messages(system_prompt, prompt, n_images),
            tokenize=False,
            add_generation_prompt=True,
        )

    def render_completion(
        self,
        processor: Any,
        system_prompt: str | None,
        prompt: str,
        n_images: int,
        completion: str,
    ) -> str:
        """The assistant turn's text after the prompt, up to its end-of-turn token.

        Rendered by the template itself (not assumed), so what is trained is
        what the template would produce; text after the end-of-turn token
        (Qwen's trailing newline) is never generated and is left out.
        """
        prompt_text = self.render_prompt(processor, system_prompt, prompt, n_images)
        full = processor.apply_chat_template(
            self.chat_messages(system_prompt, prompt, n_images, completion),
            tokenize=False,
            add_generation_prompt=False,
        )
        if not full.startswith(prompt_text):
            raise DlmError(
                f"family {self.name}: the chat template's assistant turn does not extend "
                "its generation prompt, so the completion cannot be located",
                hint="this family must override Family.collate and Family.count_tokens",
                subject="plugins",
            )
        turn = full[len(prompt_text) :]
        # some templates trim the message; the completion is then the trimmed text
        for text in (completion, completion.strip()):
            at = turn.find(text)
            if at >= 0:
                end = at + len(text)
                break
        else:
            raise DlmError(
                f"family {self.name}: the chat template rewrites the completion text",
                hint="this family must override Family.collate and Family.count_tokens",
                subject="plugins",
            )
        tail = turn[end:]
        cut = _end_of_first_special(tail, _tokenizer(processor).all_special_tokens)
        return turn[: end + cut] if cut is not None else turn

    def _row_ids(self, processor: Any, example: TrainingExample) -> tuple[list[int], list[int]]:
        """One row's ``(unlabelled, labelled)`` ids, image placeholders not expanded.

        For chat rows: the rendered prompt and the assistant turn; for prose:
        any special prefix (BOS) and the text with its end token.
        """
        tokenizer = _tokenizer(processor)
        if example.kind is ExampleKind.TEXT:
            return _prose_ids(tokenizer, example.completion)
        n_images = len(example.images)
        prompt_text = self.render_prompt(processor, example.system_prompt, example.prompt, n_images)
        completion_text = self.render_completion(
            processor, example.system_prompt, example.prompt, n_images, example.completion
        )
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        return list(prompt_ids), list(completion_ids)

    def count_tokens(self, base: BaseSpec, processor: Any, example: TrainingExample) -> TokenCount:
        """Count an example's tokens without loading the model.

        With a processor the counts are exact (they equal the collated row's
        length); without one (planning a real base before its download) text
        is estimated at 3.5 characters a token plus the template's overhead.
        """
        n_images = len(example.images)
        image = n_images * base.image.max_image_tokens()
        if processor is None:
            if example.kind is ExampleKind.TEXT:
                return TokenCount(image=0, prompt=0, completion=_estimate(example.completion) + 1)
            prompt = _estimate(example.system_prompt or "") + _estimate(example.prompt)
            return TokenCount(
                image=image,
                prompt=prompt + self.chat_overhead_tokens,
                completion=_estimate(example.completion) + 1,
            )
        prompt_ids, completion_ids = self._row_ids(processor, example)
        if example.kind is ExampleKind.TEXT:
            return TokenCount(image=0, prompt=len(prompt_ids), completion=len(completion_ids))
        placeholder = _token_id(_tokenizer(processor), base.image.image_token)
        placeholders = sum(1 for tid in prompt_ids if tid == placeholder)
        return TokenCount(
            image=image, prompt=len(prompt_ids) - placeholders, completion=len(completion_ids)
        )

    def collate(
        self,
        base: BaseSpec,
        processor: Any,
        examples: list[TrainingExample],
        images: list[list[Image]] | list[list[Image] | None],
    ) -> dict[str, Any]:
        """Build a training batch: model inputs plus ``labels`` (-100 off the completion).

        Written on the processor rather than TRL's
        ``DataCollatorForVisionLanguageModeling``: that collator masks
        correctly only for uniform image prompt/completion rows, and a
        document's batch mixes captions, bound Q/A, text-only Q/A and prose.
        Prompts go through the processor (which expands image placeholders
        and returns ``pixel_values``, ``image_grid_thw``, ``mm_token_type_ids``…);
        completions are tokenized on their own, exactly as generation will
        produce them after the prompt. Padding is on the right.
        """
        import torch

        if len(examples) != len(images):
            raise ValueError(f"{len(examples)} examples but {len(images)} image lists")
        tokenizer = _tokenizer(processor)
        chat_rows = [i for i, e in enumerate(examples) if e.kind is not ExampleKind.TEXT]
        rows: dict[int, dict[str, list[int]]] = {}
        passthrough: dict[str, Any] = {}

        if chat_rows:
            texts: list[str] = []
            flat_images: list[Image] = []
            for i in chat_rows:
                example, row_images = examples[i], list(images[i] or [])
                if len(row_images) != len(example.images):
                    raise ValueError(
                        f"example {example.origin} has {len(example.images)} images "
                        f"but {len(row_images)} were given"
                    )
                flat_images.extend(row_images)
                texts.append(
                    self.render_prompt(
                        processor, example.system_prompt, example.prompt, len(row_images)
                    )
                )
            encoded = processor(
                text=texts,
                images=flat_images or None,
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            keep = encoded["attention_mask"].bool()
            for n, i in enumerate(chat_rows):
                row: dict[str, list[int]] = {}
                for key in self.token_level_keys:
                    if key in encoded:
                        row[key] = encoded[key][n][keep[n]].tolist()
                completion_text = self.render_completion(
                    processor,
                    examples[i].system_prompt,
                    examples[i].prompt,
                    len(examples[i].images),
                    examples[i].completion,
                )
                completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
                rows[i] = _extend_row(row, list(completion_ids))
            passthrough = {k: v for k, v in encoded.items() if k not in self.token_level_keys}

        for i, example in enumerate(examples):
            if example.kind is ExampleKind.TEXT:
                prefix_ids, text_ids = _prose_ids(tokenizer, example.completion)
                row = {"input_ids": prefix_ids, "attention_mask": [1] * len(prefix_ids)}
                rows[i] = _extend_row(row, text_ids)

        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        width = max(len(rows[i]["input_ids"]) for i in range(len(examples)))
        keys = [k for k in self.token_level_keys if any(k in r for r in rows.values())]
        keys.append("labels")
        batch: dict[str, Any] = {}
        for key in keys:
            fill = pad_id if key == "input_ids" else (-100 if key == "labels" else 0)
            padded = []
            for i in range(len(examples)):
                length = len(rows[i]["input_ids"])
                # a text row has no mm_token_type_ids from the processor: all text
                values = rows[i].get(key, [0] * length)
                padded.append(values + [fill] * (width - len(values)))
            batch[key] = torch.tensor(padded, dtype=torch.long)
        batch.update(passthrough)
        return batch

    def prompt_inputs(
        self,
        base: BaseSpec,
        processor: Any,
        images: list[Image],
        question: str,
        system_prompt: str | None,
    ) -> dict[str, Any]:
        """Model inputs for generating an answer to ``question`` about ``images``."""
        text = self.render_prompt(processor, system_prompt, question, len(images))
        encoded = processor(
            text=[text],
            images=list(images) or None,
            return_tensors="pt",
            add_special_tokens=False,
        )
        return dict(encoded)

    # ------------------------------------------------------------- vision features

    def split_image_features(
        self, base: BaseSpec, features: Any, input_ids: Any, image_token_id: int, n_images: int
    ) -> list[Any] | None:
        """One tensor per image from ``get_image_features(...).pooler_output``, or None.

        Lets training compute a frozen vision tower once per image and reuse
        the result. ``features`` is what the model's forward consumes: a
        tuple with one tensor per image (Qwen2-VL, Mistral 3), a tensor with
        one row per image (PaliGemma), or one row per tile (InternVL), whose
        rows are grouped by each image's run of ``image_token_id`` in
        ``input_ids``. None means "cannot split": features are then never
        reused for this family, which is always correct, only slower.
        """
        if isinstance(features, tuple | list):
            return list(features) if len(features) == n_images else None
        if not hasattr(features, "shape") or features.dim() < 2:
            return None
        rows = features.shape[0]
        if rows == n_images:
            return [features[i : i + 1] for i in range(n_images)]
        if features.dim() != 3:
            return None
        tokens_per_row = features.shape[1]
        runs = _token_runs(input_ids, image_token_id)
        if len(runs) != n_images or any(run % tokens_per_row for run in runs):
            return None
        sizes = [run // tokens_per_row for run in runs]
        if sum(sizes) != rows:
            return None
        return list(features.split(sizes, dim=0))

    def join_image_features(self, base: BaseSpec, parts: list[Any], as_tuple: bool) -> Any:
        """The inverse of :meth:`split_image_features`: what ``mm_encoder_outputs`` carries."""
        if as_tuple:
            return tuple(parts)
        import torch

        return torch.cat(parts, dim=0)

    def decode(self, base: BaseSpec, processor: Any, token_ids: Any) -> str:
        """Turn generated token ids (the new ones only) into the answer text."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        return _tokenizer(processor).decode(ids, skip_special_tokens=True).strip()

    # ------------------------------------------------------------- export

    def stop_tokens(self, base: BaseSpec, processor: Any) -> list[str]:
        """Strings that end a turn (Modelfile ``PARAMETER stop``)."""
        eos = getattr(_tokenizer(processor), "eos_token", None)
        return [eos] if eos else []

    def chat_template(self, base: BaseSpec, processor: Any) -> str | None:
        """The Jinja chat template, for exporters that need to restate it."""
        return getattr(processor, "chat_template", None)


# ------------------------------------------------------------------ helpers


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def _token_id(tokenizer: Any, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(tid)


def _prose_ids(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Prose as plain language modelling: (unlabelled prefix such as BOS, labelled ids).

    The labelled part is the text and the end-of-sequence token, so the
    model also learns where a passage ends.
    """
    plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    prefix: list[int] = []
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            prefix, labelled = full[:start], full[start:]
            break
    else:  # the tokenizer rewrote the text when adding its specials: keep its own ids
        labelled = full
    eos = tokenizer.eos_token_id
    if eos is not None and (not labelled or labelled[-1] != eos):
        labelled.append(int(eos))
    return prefix, labelled


def _extend_row(row: dict[str, list[int]], completion_ids: list[int]) -> dict[str, list[int]]:
    """Append the completion to a prompt row; labels only on the completion."""
    prompt_len = len(row["input_ids"])
    out = {key: list(values) for key, values in row.items()}
    out["input_ids"] = out["input_ids"] + completion_ids
    for key in out:
        if key == "attention_mask":
            out[key] = out[key] + [1] * len(completion_ids)
        elif key != "input_ids":
            out[key] = out[key] + [0] * len(completion_ids)
    out["labels"] = [-100] * prompt_len + completion_ids
    return out


def _end_of_first_special(text: str, specials: list[str]) -> int | None:
    """Index just past the first special token in ``text`` (the end-of-turn), if any."""
    found = [(at, -len(tok)) for tok in specials if tok and (at := text.find(tok)) >= 0]
    if not found:
        return None
    at, neg_len = min(found)
    return at - neg_len


def _token_runs(input_ids: Any, token_id: int) -> list[int]:
    """Lengths of the maximal runs of ``token_id``, row by row (one run per image)."""
    runs: list[int] = []
    for row in input_ids.tolist():
        length = 0
        for tid in row:
            if tid == token_id:
                length += 1
            elif length:
                runs.append(length)
                length = 0
        if length:
            runs.append(length)
    return runs


def _estimate(text: str) -> int:
    return math.ceil(len(text) / _CHARS_PER_TOKEN) if text else 0


def _jsonable(value: Any) -> Any:
    """Processor attributes as plain JSON values (``SizeDict`` → dict, tuples → lists)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if hasattr(value, "items") and callable(value.items):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: _jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if getattr(value, name) is not None
        }
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value"):  # enums (resampling modes)
        return _jsonable(value.value)
    raise TypeError(f"image setting of type {type(value).__name__} is not JSON-serialisable")


def _restore(current: Any, value: Any) -> Any:
    """A saved setting in the type the processor holds (``SizeDict`` stays ``SizeDict``)."""
    if isinstance(value, dict) and current is not None and not isinstance(current, dict):
        with contextlib.suppress(TypeError):
            return type(current)(**value)
    return value


__all__ = [
    "DOWNLOAD_PATTERNS",
    "LANGUAGE_MODEL_LINEAR_REGEX",
    "TINY_MARKER",
    "BaseSpec",
    "ExampleKind",
    "Family",
    "TokenCount",
    "TrainingExample",
]


def fit_within(width: int, height: int, pixels: int, side: int) -> tuple[int, int]:
    """``width``×``height`` scaled to at most ``pixels`` pixels, aspect kept, each
    side rounded down to a multiple of ``side`` (at least one ``side``)."""
    scale = math.sqrt(pixels / (width * height))
    # 1e-9: a square at the budget is 112.0, not 111.999… (the area check below holds)
    new_w = max(side, math.floor(width * scale / side + 1e-9) * side)
    new_h = max(side, math.floor(height * scale / side + 1e-9) * side)
    # a very long image: its short side held at ``side``, the long one shortened
    if new_w * new_h > pixels:
        if new_w >= new_h:
            new_w = max(side, pixels // new_h // side * side)
        else:
            new_h = max(side, pixels // new_w // side * side)
    return new_w, new_h


def _aspect(width: int, height: int) -> str:
    ratio = width / height if height else 0.0
    return f"{ratio:.2f}".rstrip("0").rstrip(".")
