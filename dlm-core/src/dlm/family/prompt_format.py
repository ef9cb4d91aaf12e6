"""Prompt formats: how a family lays out rows for training and inputs for generation.

A family picks one (``Family.prompt_format``). :class:`ChatTemplate`, the
default, renders the processor's chat template and suits chat-tuned VL
models (Qwen2-VL, Mistral 3, InternVL). A family whose model is not
chat-tuned writes its own :class:`PromptFormat` (PaliGemma's task prefixes,
a prefix-LM trained through the processor's ``suffix=`` path).

Every method receives the :class:`~dlm.family.BoundBase` it serves: the
base, its processor and the family's declarations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dlm.errors import DlmError
from dlm.records import ExampleKind, TokenCount, TrainingExample

if TYPE_CHECKING:
    from PIL.Image import Image

    from dlm.family.bound import BoundBase

# Estimated characters per token when no tokenizer is at hand (planning a
# real base before its download). English prose runs at ~4; 3.5 errs long.
CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` makes when no tokenizer is at hand (an estimate that errs long)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


class PromptFormat:
    """The prompt-layout strategy. Subclass and implement the first four methods."""

    def count_tokens(self, bound: BoundBase, example: TrainingExample) -> TokenCount:
        """An example's tokens. With ``bound.processor`` they must equal the
        collated row's length; without one (planning before a download),
        an estimate that errs long (:func:`estimate_tokens`)."""
        raise NotImplementedError

    def collate(
        self,
        bound: BoundBase,
        examples: list[TrainingExample],
        images: list[list[Image]] | list[list[Image] | None],
    ) -> dict[str, Any]:
        """A training batch: model inputs plus ``labels`` (-100 off the completion),
        padded on the right. ``images[i]`` are example ``i``'s prepared images."""
        raise NotImplementedError

    def prompt_inputs(
        self,
        bound: BoundBase,
        images: list[Image],
        question: str,
        system_prompt: str | None,
    ) -> dict[str, Any]:
        """Model inputs for generating an answer, laid out exactly as training was."""
        raise NotImplementedError

    def usage_snippet(self, bound: BoundBase, question: str) -> str:
        """Python that turns a question and an image into model inputs, for export
        READMEs. Uses ``processor``, ``image`` (a PIL image) and ``question``;
        must bind ``inputs``."""
        raise NotImplementedError

    def decode(self, bound: BoundBase, token_ids: Any) -> str:
        """Generated token ids (the new ones only) as the answer text."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        return bound.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def chat_template(self, bound: BoundBase) -> str | None:
        """The Jinja chat template exporters restate (None: the format has none)."""
        return getattr(bound.processor, "chat_template", None)


class ChatTemplate(PromptFormat):
    """Rows rendered through the processor's chat template; labels on the answer only.

    Written on the processor rather than TRL's
    ``DataCollatorForVisionLanguageModeling``: that collator masks correctly
    only for uniform image prompt/completion rows, and a document's batch
    mixes captions, bound Q/A, text-only Q/A and prose. Prompts go through
    the processor (which expands image placeholders and returns
    ``pixel_values``, ``image_grid_thw``, ``mm_token_type_ids``…); completions
    are tokenized on their own, exactly as generation will produce them
    after the prompt. Prose trains as plain language modelling.
    """

    def messages(
        self,
        system_prompt: str | None,
        prompt: str,
        n_images: int,
        completion: str | None = None,
    ) -> list[dict[str, Any]]:
        """The conversation the template renders: images first, then the text."""
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
        self, bound: BoundBase, system_prompt: str | None, prompt: str, n_images: int
    ) -> str:
        """The prompt as the template renders it, ending with the assistant's header."""
        return bound.processor.apply_chat_template(
            self.messages(system_prompt, prompt, n_images),
            tokenize=False,
            add_generation_prompt=True,
        )

    def render_completion(self, bound: BoundBase, example: TrainingExample) -> str:
        """The assistant turn's text after the prompt, up to its end-of-turn token.

        Rendered by the template itself (not assumed), so what is trained is
        what the template would produce; text after the end-of-turn token
        (Qwen's trailing newline) is never generated and is left out.
        """
        n_images = len(example.images)
        prompt_text = self.render_prompt(bound, example.system_prompt, example.prompt, n_images)
        full = bound.processor.apply_chat_template(
            self.messages(example.system_prompt, example.prompt, n_images, example.completion),
            tokenize=False,
            add_generation_prompt=False,
        )
        name = bound.family.name
        if not full.startswith(prompt_text):
            raise DlmError(
                f"family {name}: the chat template's assistant turn does not extend "
                "its generation prompt, so the completion cannot be located",
                hint="this family needs its own PromptFormat (Family.prompt_format)",
                subject="plugins",
            )
        turn = full[len(prompt_text) :]
        # some templates trim the message; the completion is then the trimmed text
        for text in (example.completion, example.completion.strip()):
            at = turn.find(text)
            if at >= 0:
                end = at + len(text)
                break
        else:
            raise DlmError(
                f"family {name}: the chat template rewrites the completion text",
                hint="this family needs its own PromptFormat (Family.prompt_format)",
                subject="plugins",
            )
        tail = turn[end:]
        cut = _end_of_first_special(tail, bound.tokenizer.all_special_tokens)
        return turn[: end + cut] if cut is not None else turn

    def row_ids(self, bound: BoundBase, example: TrainingExample) -> tuple[list[int], list[int]]:
        """One row's ``(unlabelled, labelled)`` ids, image placeholders not expanded.

        For chat rows: the rendered prompt and the assistant turn; for prose:
        any special prefix (BOS) and the text with its end token.
        """
        tokenizer = bound.tokenizer
        if example.kind is ExampleKind.TEXT:
            return _prose_ids(tokenizer, example.completion)
        prompt_text = self.render_prompt(
            bound, example.system_prompt, example.prompt, len(example.images)
        )
        completion_text = self.render_completion(bound, example)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        return list(prompt_ids), list(completion_ids)

    def count_tokens(self, bound: BoundBase, example: TrainingExample) -> TokenCount:
        image = len(example.images) * bound.base.image.max_image_tokens()
        if bound.processor is None:
            if example.kind is ExampleKind.TEXT:
                return TokenCount(
                    image=0, prompt=0, completion=estimate_tokens(example.completion) + 1
                )
            prompt = estimate_tokens(example.system_prompt or "") + estimate_tokens(example.prompt)
            return TokenCount(
                image=image,
                prompt=prompt + bound.family.chat_overhead_tokens,
                completion=estimate_tokens(example.completion) + 1,
            )
        prompt_ids, completion_ids = self.row_ids(bound, example)
        if example.kind is ExampleKind.TEXT:
            return TokenCount(image=0, prompt=len(prompt_ids), completion=len(completion_ids))
        placeholder = _token_id(bound.tokenizer, bound.base.image.image_token)
        placeholders = sum(1 for tid in prompt_ids if tid == placeholder)
        return TokenCount(
            image=image, prompt=len(prompt_ids) - placeholders, completion=len(completion_ids)
        )

    def collate(
        self,
        bound: BoundBase,
        examples: list[TrainingExample],
        images: list[list[Image]] | list[list[Image] | None],
    ) -> dict[str, Any]:
        import torch

        tokenizer = bound.tokenizer
        token_level_keys = bound.family.token_level_keys
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
                        bound, example.system_prompt, example.prompt, len(row_images)
                    )
                )
            encoded = bound.processor(
                text=texts,
                images=flat_images or None,
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            keep = encoded["attention_mask"].bool()
            for n, i in enumerate(chat_rows):
                row: dict[str, list[int]] = {}
                for key in token_level_keys:
                    if key in encoded:
                        row[key] = encoded[key][n][keep[n]].tolist()
                completion_text = self.render_completion(bound, examples[i])
                completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
                rows[i] = _extend_row(row, list(completion_ids))
            passthrough = {k: v for k, v in encoded.items() if k not in token_level_keys}

        for i, example in enumerate(examples):
            if example.kind is ExampleKind.TEXT:
                prefix_ids, text_ids = _prose_ids(tokenizer, example.completion)
                row = {"input_ids": prefix_ids, "attention_mask": [1] * len(prefix_ids)}
                rows[i] = _extend_row(row, text_ids)

        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        width = max(len(rows[i]["input_ids"]) for i in range(len(examples)))
        keys = [k for k in token_level_keys if any(k in r for r in rows.values())]
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
        bound: BoundBase,
        images: list[Image],
        question: str,
        system_prompt: str | None,
    ) -> dict[str, Any]:
        text = self.render_prompt(bound, system_prompt, question, len(images))
        encoded = bound.processor(
            text=[text],
            images=list(images) or None,
            return_tensors="pt",
            add_special_tokens=False,
        )
        return dict(encoded)

    def usage_snippet(self, bound: BoundBase, question: str) -> str:
        return (
            'messages = [{"role": "user", "content": [\n'
            '    {"type": "image"}, {"type": "text", "text": question}]}]\n'
            "prompt = processor.apply_chat_template(messages, add_generation_prompt=True)\n"
            "# the chat template already wrote the special tokens\n"
            "inputs = processor(text=[prompt], images=[image], add_special_tokens=False,\n"
            '                   return_tensors="pt")'
        )


# ------------------------------------------------------------------ helpers


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


__all__ = ["CHARS_PER_TOKEN", "ChatTemplate", "PromptFormat", "estimate_tokens"]
