"""PaliGemma's prompt convention: one line of task prefix, no system turn.

The mix checkpoints were fine-tuned on prefixes naming the task
(``caption en``, ``describe en``, ``answer en <question>``,
``question en <answer>``, ``detect <things>``, ``segment <thing>``,
``ocr``), so dlm trains and prompts with them too: a question that does
not already start with one of those words (exactly, lower case, as the
checkpoints were trained) becomes ``answer en <question>``.

The processor then lays a row out as ``<image>×N <bos> prefix \\n`` (the
prefix, seen bidirectionally) followed by ``completion <eos>`` (the suffix,
causal). The prefix is one line because ``\\n`` is the separator the model
reads as "now answer": whitespace runs inside a question collapse to a space.
"""

from __future__ import annotations

#: The first words the mix checkpoints know as tasks.
TASK_PREFIXES = ("caption", "describe", "answer", "question", "detect", "segment", "ocr")
#: The language code the prefixes carry; the mix checkpoints were trained
#: multilingually, and dlm documents are written in English.
LANGUAGE = "en"
#: The prompt a caption example trains and prompts with.
CAPTION_PROMPT = f"caption {LANGUAGE}"


def task_prompt(question: str) -> str:
    """The task-prefixed, single-line prompt for ``question``."""
    text = " ".join(question.split())
    first = text.split(" ", 1)[0]
    if first in TASK_PREFIXES:
        return text
    return f"answer {LANGUAGE} {text}".rstrip()


def prefix_text(image_token: str, question: str, n_images: int) -> str:
    """The text the processor expands: image placeholders first, then the task prompt.

    The processor inserts ``<bos>`` after the last placeholder and appends
    the ``\\n`` separator itself.
    """
    return image_token * n_images + task_prompt(question)
