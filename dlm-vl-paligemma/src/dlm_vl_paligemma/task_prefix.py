"""PaliGemma's prompt format: a prefix-LM trained through the processor's ``suffix=`` path.

PaliGemma is not a chat model. A row is ``<image>×N <bos> prefix \\n`` (the
prefix: image and task prompt, attended bidirectionally) followed by
``completion <eos>`` (the suffix: causal). The processor marks the suffix
with ``token_type_ids == 1``; the model turns that into the prefix-LM mask
when it is passed, during training and on the first generation step alike.
Labels cover the suffix only. The system prompt is never used (see
:mod:`dlm_vl_paligemma.family`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlm.family import BoundBase, PromptFormat, estimate_tokens
from dlm.records import TokenCount, TrainingExample
from dlm_vl_paligemma.bases import FAMILY
from dlm_vl_paligemma.prompts import prefix_text, task_prompt

if TYPE_CHECKING:
    from PIL.Image import Image


class TaskPrefix(PromptFormat):
    """Task-prefixed prompts (``caption en``, ``answer en …``), laid out by the processor."""

    def count_tokens(self, bound: BoundBase, example: TrainingExample) -> TokenCount:
        """``prompt`` is ``<bos>`` + the task prompt + ``\\n``; ``completion`` is
        the completion + ``<eos>``; the system prompt is never counted."""
        _require_image(example)
        image = len(example.images) * bound.base.image.max_image_tokens()
        if bound.processor is None:
            return TokenCount(
                image=image,
                prompt=estimate_tokens(task_prompt(example.prompt)) + 2,  # <bos> … \n
                completion=estimate_tokens(example.completion) + 1,  # … <eos>
            )
        tokenizer = bound.tokenizer
        prompt_ids = tokenizer(
            tokenizer.bos_token + task_prompt(example.prompt) + "\n", add_special_tokens=False
        )["input_ids"]
        completion_ids = tokenizer(
            example.completion + tokenizer.eos_token, add_special_tokens=False
        )["input_ids"]
        return TokenCount(image=image, prompt=len(prompt_ids), completion=len(completion_ids))

    def collate(
        self,
        bound: BoundBase,
        examples: list[TrainingExample],
        images: list[list[Image]] | list[list[Image] | None],
    ) -> dict[str, Any]:
        """A batch through the processor's ``suffix=`` path, padded on the right.

        The processor tokenizes prompt and completion as a text pair, so
        ``token_type_ids`` is 0 on the prefix and 1 on the completion and its
        ``<eos>``: the model's prefix-LM mask and the labels both follow it.
        Right padding keeps every real token at the position generation
        gives it (PaliGemma numbers positions 0.. without looking at the
        attention mask).
        """
        import torch

        processor = bound.processor
        texts: list[str] = []
        suffixes: list[str] = []
        nested: list[list[Image]] = []
        for example, row_images in zip(examples, images, strict=True):
            _require_image(example)
            row = list(row_images or [])
            if len(row) != len(example.images):
                raise ValueError(
                    f"example {example.origin} has {len(example.images)} images "
                    f"but {len(row)} were given"
                )
            texts.append(prefix_text(processor.image_token, example.prompt, len(row)))
            suffixes.append(example.completion)
            nested.append(row)
        encoded = processor(
            text=texts,
            images=nested,
            suffix=suffixes,
            padding="longest",
            padding_side="right",
            return_tensors="pt",
        )
        input_ids = encoded["input_ids"]
        attention_mask = encoded["attention_mask"]
        token_type_ids = encoded["token_type_ids"]
        labels = input_ids.clone()
        labels[(token_type_ids == 0) | (attention_mask == 0)] = -100
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "pixel_values": encoded["pixel_values"],
            "labels": labels.to(torch.long),
        }

    def prompt_inputs(
        self,
        bound: BoundBase,
        images: list[Image],
        question: str,
        system_prompt: str | None,
    ) -> dict[str, Any]:
        """The prefix alone, exactly as training laid it out; ``system_prompt`` is ignored.

        ``token_type_ids`` (all 0) goes along so the prefix is attended
        bidirectionally, as in training; the model marks generated tokens 1.
        """
        if not images:
            raise ValueError(f"family {FAMILY} answers about an image: pass at least one")
        encoded = bound.processor(
            text=[prefix_text(bound.processor.image_token, question, len(images))],
            images=[list(images)],
            return_tensors="pt",
        )
        # the processor also returns all-ignored labels; generation takes none
        return {key: value for key, value in encoded.items() if key != "labels"}

    def decode(self, bound: BoundBase, token_ids: Any) -> str:
        """The answer text; a whole sequence (prefix included) is cut after its separator.

        The engine passes the generated tokens only; callers that pass what
        ``generate`` returned (prompt and all) get the same answer, because
        everything up to the ``\\n`` after ``<bos>`` is the prompt.
        """
        tokenizer = bound.tokenizer
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        bos = tokenizer.bos_token_id
        if bos is not None and bos in ids:
            last_bos = len(ids) - 1 - ids[::-1].index(bos)
            text = tokenizer.decode(ids[last_bos + 1 :], skip_special_tokens=True)
            _prompt, sep, answer = text.partition("\n")
            return (answer if sep else text).strip()
        return tokenizer.decode(ids, skip_special_tokens=True).strip()

    def chat_template(self, bound: BoundBase) -> str | None:
        # prompts are task prefixes laid out by the processor, not a template
        return None

    def usage_snippet(self, bound: BoundBase, question: str) -> str:
        return (
            "# PaliGemma has no chat template: image tokens + task prefix (answer en …)\n"
            'inputs = processor(text=["<image>answer en " + question], images=[image],\n'
            '                   return_tensors="pt")'
        )


def _require_image(example: TrainingExample) -> None:
    if not example.kind.has_image or not example.images:
        raise ValueError(
            f"{example.origin}: family {FAMILY} cannot train a {example.kind.value} example "
            "without an image; bind it to an image (an ::instruction:: directly after an "
            "::image::) or choose a base whose family trains text-only sections"
        )
