"""The family contract: what a base family plugin declares and may override.

A family turns a registered :class:`~dlm.records.BaseSpec` into something
the engine can train and prompt. It is mostly declarations (class
attributes) plus the one thing every family must write, :meth:`build_tiny`.
The rest has defaults that suit transformers' ``Auto*`` classes:

- **How prompts are laid out** is a strategy the family picks,
  :attr:`Family.prompt_format`: :class:`~dlm.family.ChatTemplate` (the
  processor's chat template: Qwen2-VL, Mistral 3, InternVL) by default, or
  the family's own :class:`~dlm.family.PromptFormat` (PaliGemma's task
  prefixes).
- **Per base**, the engine works on ``family.bind(base, processor)``, a
  :class:`~dlm.family.BoundBase`: counting, collating, prompting, image
  sizing. Nothing on this class threads ``(base, processor)`` through
  every call.

Register an instance through the ``register_families`` hook; one instance
serves all the bases that name it. torch and transformers are imported
inside methods, never at module import, so ``dlm --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from dlm.errors import DlmError
from dlm.family.bound import FIT_KEY, BoundBase, restore_setting
from dlm.family.prompt_format import ChatTemplate, PromptFormat
from dlm.records import BaseSpec
from dlm.store.bases import DOWNLOAD_PATTERNS

# LoRA on the language model only: the vision tower and projector stay frozen.
LANGUAGE_MODEL_LINEAR_REGEX = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)


class Family:
    """Base class for base families. One instance serves all its bases."""

    # ------------------------------------------------------------- declarations

    #: The name ``BaseSpec.family`` refers to.
    name: str = ""
    #: How prompts and completions become rows and generation inputs.
    prompt_format: ClassVar[PromptFormat] = ChatTemplate()
    #: Can this family train examples that carry no image?
    supports_text_only: bool = True
    #: Does the family's prompt format carry the document's ``system_prompt``?
    #: (``dlm train`` says so when a document sets one that a family ignores.)
    uses_system_prompt: bool = True
    #: The prompt a caption example is trained and prompted with.
    caption_prompt: str = "Describe this image."
    #: Image-processor attributes that fix the resolution; saved with the
    #: adapter (:meth:`BoundBase.image_settings_to_save`) and restored by
    #: :meth:`load_processor`.
    image_setting_keys: tuple[str, ...] = ("size",)
    #: Inputs the processor returns per token (padded with the rows); every
    #: other processor output (``pixel_values``, ``image_grid_thw``…) passes through.
    token_level_keys: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "token_type_ids",
    )
    #: Prompt-format tokens around one turn pair when no tokenizer is at hand
    #: (role headers, default system prompt, image delimiters): an estimate.
    chat_overhead_tokens: int = 24
    #: Strings that end a turn (generation stops there; Modelfile ``PARAMETER
    #: stop``). Empty: the tokenizer's EOS.
    stop_strings: tuple[str, ...] = ()
    #: The modules LoRA adapts by default (a regex or a list of names).
    lora_target_modules: str | list[str] = LANGUAGE_MODEL_LINEAR_REGEX
    #: Files fetched from the hub for a real base (some repos ship the same
    #: weights twice in different formats: list only the ones transformers loads).
    download_patterns: tuple[str, ...] = DOWNLOAD_PATTERNS

    # ------------------------------------------------------------- required

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        """Write a tiny, deterministic base (model, processor, tokenizer) to ``out_dir``.

        Core calls it once per machine, under a lock, into a staging folder it
        then moves into place (:mod:`dlm.store.bases`); ``dlm.kit`` has the parts.
        """
        raise NotImplementedError(f"family {self.name!r} ships no tiny base")

    # ------------------------------------------------------------- per base

    def bind(
        self,
        base: BaseSpec,
        processor: Any = None,
        image_settings: dict[str, Any] | None = None,
    ) -> BoundBase:
        """This family working on one ``base``.

        ``processor``: from :meth:`load_processor` (``None`` while planning a
        real base before its download: counts are then estimates).
        ``image_settings``: an adapter's saved settings (``None``: the base's
        defaults, a fresh training run).
        """
        return BoundBase(self, base, processor, image_settings)

    # ------------------------------------------------------------- optional hooks

    def materialize(self, base: BaseSpec, home: Path | None = None) -> Path:
        """A local directory ``from_pretrained`` can load for ``base``.

        Default: tiny bases are built into ``home/bases/<key>`` on first use
        (:meth:`build_tiny`); real bases are downloaded at their pinned
        revision. ``home`` defaults to ``$DLM_HOME``. Override to post-process
        a download (InternVL converts a remote-code checkpoint).
        """
        from dlm.store.bases import download_base, materialize_tiny
        from dlm.store.paths import dlm_home

        root = Path(home) if home is not None else dlm_home()
        if base.tiny:
            return materialize_tiny(base, self.name, self.build_tiny, root / "bases")
        return download_base(base, self.download_patterns)

    def processor_load_kwargs(self, base: BaseSpec) -> dict[str, Any]:
        """Extra ``AutoProcessor.from_pretrained`` arguments (default none)."""
        return {}

    def load_processor(
        self, base: BaseSpec, base_dir: Path, image_settings: dict[str, Any] | None = None
    ) -> Any:
        """Load the processor; ``image_settings`` (an adapter's) pins resolution.

        Without saved settings the base's defaults apply
        (``base.image_settings``), so training starts pinned too. Override
        to adjust the loaded processor (Mistral pins its template's date).
        """
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(
            base_dir, trust_remote_code=False, **self.processor_load_kwargs(base)
        )
        settings = image_settings if image_settings is not None else dict(base.image_settings)
        image_processor = getattr(processor, "image_processor", None)
        for key, value in settings.items():
            if key == FIT_KEY:  # dlm's own: read by BoundBase.prepare_image
                continue
            if image_processor is None or not hasattr(image_processor, key):
                raise DlmError(
                    f"image setting {key!r} does not apply to {base.key}'s image processor",
                    hint="the adapter was trained with another processor; retrain it on this base",
                    subject="base",
                )
            setattr(image_processor, key, restore_setting(getattr(image_processor, key), value))
        return processor

    def load_model(self, base: BaseSpec, base_dir: Path, dtype: Any, device: str) -> Any:
        """Load the model for training or inference (never with remote code).

        Default: ``AutoModelForImageTextToText`` from safetensors.
        """
        from transformers import AutoModelForImageTextToText

        model: Any = AutoModelForImageTextToText.from_pretrained(
            base_dir, dtype=dtype, trust_remote_code=False, use_safetensors=True
        )
        return model.to(device)

    def stop_tokens(self, bound: BoundBase) -> list[str]:
        """Strings that end a turn: :attr:`stop_strings`, else the tokenizer's EOS.

        Override when they depend on the base (InternVL's EOS differs by its
        language model).
        """
        if self.stop_strings:
            return list(self.stop_strings)
        eos = getattr(bound.tokenizer, "eos_token", None)
        return [eos] if eos else []


__all__ = ["LANGUAGE_MODEL_LINEAR_REGEX", "Family"]
