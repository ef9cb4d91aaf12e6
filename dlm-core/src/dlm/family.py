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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlm.records import BaseSpec, ExampleKind, TokenCount, TrainingExample

if TYPE_CHECKING:
    from PIL.Image import Image

# LoRA on the language model only: the vision tower and projector stay frozen.
LANGUAGE_MODEL_LINEAR_REGEX = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)


class Family:
    """Base class for base families. One instance serves all its bases."""

    #: The name ``BaseSpec.family`` refers to.
    name: str = ""
    #: Can this family train examples that carry no image?
    supports_text_only: bool = True
    #: The prompt a caption example is trained and prompted with.
    caption_prompt: str = "Describe this image."

    # ------------------------------------------------------------- weights

    def materialize(self, base: BaseSpec, home: Path) -> Path:
        """Return a local directory ``from_pretrained`` can load for ``base``.

        Tiny bases are built into ``home/bases/<key>`` on first use (see
        :meth:`build_tiny`); real bases are downloaded at their pinned
        revision.
        """
        raise NotImplementedError

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        """Write a tiny, deterministic base (model, processor, tokenizer) to ``out_dir``."""
        raise NotImplementedError(f"family {self.name!r} ships no tiny base")

    # ------------------------------------------------------------- loading

    def load_processor(
        self, base: BaseSpec, base_dir: Path, image_settings: dict[str, Any] | None = None
    ) -> Any:
        """Load the processor; ``image_settings`` (from :meth:`image_settings`) pins resolution."""
        raise NotImplementedError

    def image_settings(self, base: BaseSpec, processor: Any) -> dict[str, Any]:
        """The processor's resolution settings, saved with the adapter.

        Prompting and export pass them back to :meth:`load_processor` so they
        preprocess exactly as training did.
        """
        raise NotImplementedError

    def load_model(self, base: BaseSpec, base_dir: Path, dtype: Any, device: str) -> Any:
        """Load the model for training or inference."""
        raise NotImplementedError

    def lora_target_modules(self, base: BaseSpec) -> str | list[str]:
        """Modules LoRA adapts by default: the language model's linear layers."""
        return LANGUAGE_MODEL_LINEAR_REGEX

    # ------------------------------------------------------------- data

    def prepare_image(self, base: BaseSpec, image: Image) -> Image:
        """Bring a decoded image to what the base expects (RGB, pinned size)."""
        raise NotImplementedError

    def count_tokens(
        self, base: BaseSpec, processor: Any, example: TrainingExample
    ) -> TokenCount:
        """Count an example's tokens without loading the model."""
        raise NotImplementedError

    def collate(
        self,
        base: BaseSpec,
        processor: Any,
        examples: list[TrainingExample],
        images: list[list[Image]],
    ) -> dict[str, Any]:
        """Build a training batch: model inputs plus ``labels`` (-100 off the completion)."""
        raise NotImplementedError

    def prompt_inputs(
        self,
        base: BaseSpec,
        processor: Any,
        images: list[Image],
        question: str,
        system_prompt: str | None,
    ) -> dict[str, Any]:
        """Model inputs for generating an answer to ``question`` about ``images``."""
        raise NotImplementedError

    def decode(self, base: BaseSpec, processor: Any, token_ids: Any) -> str:
        """Turn generated token ids (the new ones only) into the answer text."""
        raise NotImplementedError

    # ------------------------------------------------------------- export

    def stop_tokens(self, base: BaseSpec, processor: Any) -> list[str]:
        """Strings that end a turn (Modelfile ``PARAMETER stop``)."""
        raise NotImplementedError

    def chat_template(self, base: BaseSpec, processor: Any) -> str | None:
        """The Jinja chat template, for exporters that need to restate it."""
        return getattr(processor, "chat_template", None)


__all__ = [
    "LANGUAGE_MODEL_LINEAR_REGEX",
    "BaseSpec",
    "ExampleKind",
    "Family",
    "TokenCount",
    "TrainingExample",
]
