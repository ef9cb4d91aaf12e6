"""The plugin author's kit: core machinery a plugin reuses instead of copying.

Part of the public API (``dlm.PUBLIC_API``; ``docs/plugins.md``, "The plugin
author's kit"). Files and places: :func:`dlm_home`, :func:`sha256_file`,
:func:`atomic_write_text`, :data:`GIB`. Bases built locally:
:func:`build_once` and :func:`file_lock` (a converted checkpoint), and for a
tiny base :func:`train_bpe` / :func:`train_byte_level_bpe` (a real BPE with
merges from a small corpus), :func:`tokenizer_from_bpe` and
:func:`write_tiny_base`; the English a tiny tokenizer learns, :data:`TINY_PROSE`
and :data:`TINY_SCENES` (a family adds its own lines), and
:data:`QWEN2_SPLIT_PATTERN` for a tokenizer that keeps Qwen2's. (An image
opened and prepared as a base's model sees it:
``family.bind(base).open_image(path)``.)

Nothing here imports torch, transformers or tokenizers at module import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlm.hardware.host import GIB
from dlm.records import BaseSpec, TextConfig, VisionConfig
from dlm.store.atomic import atomic_write_text
from dlm.store.bases import build_once, file_lock
from dlm.store.blobs import hash_file as sha256_file
from dlm.store.paths import dlm_home

# ------------------------------------------------------------------ tiny bases


#: ``training:`` settings under which a tiny base (random weights, a toy
#: vocabulary) learns a handful of images in a minute on a CPU: many passes
#: at a high, constant learning rate, no dropout. A tiny base declares them
#: as its ``BaseSpec.recommended_training``; ``dlm init`` writes them.
#: (Measured: 4/4 answers recalled on each bundled tiny base.)
TINY_TRAINING: dict[str, Any] = {
    "num_epochs": 60,
    "learning_rate": 3e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "lora_dropout": 0.0,
}


#: The pre-tokenizer split of Qwen2's byte-level BPE (transformers'
#: ``tokenization_qwen2.PRETOKENIZE_REGEX``), which llama.cpp implements as its
#: ``qwen2`` pre-tokenizer. A fact about that tokenizer, not about a family:
#: every base whose language model keeps Qwen2's tokenizer (Qwen2-VL, InternVL3's
#: Qwen2.5, a third party's) declares it in its export hints, and a tiny one is
#: trained with it.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# A tiny tokenizer learns whole tokens for the words it is trained on, so its
# corpus is everyday English of the kind tiny test documents use, plus what a
# family's templates and prompts say. A family's corpus is its own lines plus
# these; the BPE trainer counts words, so only which lines a corpus holds
# matters, not their order. Changing a line here changes every tiny tokenizer
# trained on it: bump those families' tiny revisions.

#: Pictures, shapes, numbers, questions and answers, and what dlm does with a
#: document: the English every tiny corpus shares.
TINY_PROSE = """\
A small brown dog runs across the grass with a ball in its mouth.
The chart shows sales rising from January to June and falling in July.
The diagram has three boxes joined by arrows: input, model, and output.
The figure is a line plot; the x axis is time and the y axis is loss.
In the top left corner there is a logo; in the bottom right, a signature.
The sky is blue, the clouds are white, and the sun is low over the hills.
Numbers: zero, one, two, three, four, five, six, seven, eight, nine, ten, twenty, hundred.
The answer is yes. The answer is no. The answer is red. The answer is blue.
Question: what does the sign say? Answer: the sign says stop.
Question: where is the cat? Answer: the cat is on the chair.
Question: is the door open or closed? Answer: the door is open.
Please look at the image and answer the question in one short sentence.
The model learns from the document: prose, questions and answers, and images.
Each image section has a path and an alt text; its body is the caption.
Training adds a small adapter to the language model and leaves the base unchanged.
If the answer is unknown, say that you do not know rather than guessing.
Good captions are short, concrete, and mention colour, shape, size and position.
The left half of the image is dark and the right half is light.
She said, "Look at the bird!" and he asked, "Which one?"
It's raining; we're late; they'll wait; I'd rather walk; you've seen it; he's here.
North, south, east, west. Up, down, left, right, front, back, inside, outside.
The quick brown fox jumps over the lazy dog, and the lazy dog does not mind.
Every document is plain text that a person can read, edit, and keep in version control.
"""

#: More pictures described (shapes, colours, everyday scenes) and questions
#: about them: for a tiny tokenizer that should know more words.
TINY_SCENES = """\
A picture is worth a thousand words, but a caption tells you which words matter.
Describe this image. What is in this picture? What colour is the square?
What shape is this? Which animal do you see? How many objects are there?
The image shows a red square on a white background. The square is bright red.
The picture shows a green circle in the middle of a black field.
There is a blue triangle pointing up, and a yellow star beside it.
The photo shows an orange cat sleeping on a wooden chair near the window.
Purple, pink, cyan, magenta, grey, gray, silver, gold, teal, navy, olive and maroon are colours too.
0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14 50% #1 $5 (a) [b] {c} <d>
It is a red square. It is a green circle. It is a blue triangle. It is a yellow star.
This is a photograph of a mountain lake at dawn, with mist rising off the water.
The kitchen table holds a bowl of apples, a loaf of bread, and a glass of milk.
A woman in a green coat is reading a book on a park bench under an old oak tree.
The street is wet after the rain, and the lights of the shops shine on the stones.
Two children are building a sandcastle while the waves come in behind them.
The map marks the river in blue, the roads in red, and the forests in dark green.
The label on the bottle reads: keep in a cool, dry place, away from sunlight.
The screenshot shows a settings page with a toggle switched on and a save button.
The receipt lists bread, eggs, coffee and tea, with a total at the bottom.
The slide says: results improved after training, and errors fell by half.
Question: what time is shown on the clock? Answer: it is ten past three.
The object in the centre is large; the objects around it are small.
Above the table hangs a lamp; below it sleeps a dog; beside it stands a chair.
Water boils at one hundred degrees and freezes at zero degrees Celsius.
"""


def train_bpe(
    corpus: str,
    vocab_size: int,
    *,
    pre_tokenizer: Any,
    normalizer: Any = None,
    decoder: Any = None,
    special_tokens: Sequence[str] = (),
    initial_alphabet: Sequence[str] = (),
    byte_fallback: bool = False,
    unk_token: str | None = None,
) -> Any:
    """A ``tokenizers.Tokenizer`` BPE (with merges) trained on ``corpus`` line by line.

    Deterministic: the same lines and settings give the same vocabulary, in
    whatever order the lines come (the trainer counts words).
    ``special_tokens`` take the first ids, in order. Merges matter: llama.cpp
    refuses a BPE vocabulary without them.
    """
    from tokenizers import Tokenizer, models
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(byte_fallback=byte_fallback, unk_token=unk_token))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    if decoder is not None:
        tokenizer.decoder = decoder
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=list(special_tokens),
        initial_alphabet=list(initial_alphabet),
    )
    tokenizer.train_from_iterator(corpus.splitlines(keepends=True), trainer)
    return tokenizer


def train_byte_level_bpe(
    corpus: str,
    vocab_size: int,
    split_pattern: str,
    *,
    nfc: bool = False,
    special_tokens: Sequence[str] = (),
) -> Any:
    """A byte-level BPE as GPT-2, Qwen2 and Mistral's Tekken have it: text split by
    the regex ``split_pattern``, every byte a base symbol, decoded back to text.
    ``nfc``: NFC-normalise first (Qwen2's tokenizers do)."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    split = pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False)
    return train_bpe(
        corpus,
        vocab_size,
        normalizer=normalizers.NFC() if nfc else None,
        pre_tokenizer=pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        ),
        decoder=decoders.ByteLevel(),
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )


def tokenizer_from_bpe(tokenizer_class: Any, bpe: Any, **kwargs: Any) -> Any:
    """``tokenizer_class(vocab=…, merges=…, **kwargs)`` from a trained BPE: the
    transformers classes that take a vocabulary and merge pairs (``Qwen2Tokenizer``,
    ``GemmaTokenizer``…), so the tiny tokenizer is the class the real base uses."""
    model = json.loads(bpe.to_str())["model"]
    # tokenizers writes a merge as a [left, right] list (older versions: "left right")
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return tokenizer_class(vocab=model["vocab"], merges=merges, **kwargs)


def write_tiny_base(
    base: BaseSpec,
    out_dir: Path,
    processor: Any,
    build_model: Callable[[int], Any],
    default_seed: int,
) -> None:
    """Save a tiny base: ``build_model(seed)``'s weights (safetensors) and ``processor``
    (with its tokenizer) in ``out_dir``.

    The seed is ``base.extra["seed"]`` when the registry row sets one, else
    ``default_seed``; torch's global random state is forked around the build,
    so building leaves the caller's unchanged. Same seed, same bytes.
    :meth:`~dlm.family.Family.materialize` makes the result appear atomically.
    """
    import torch

    seed = int(base.extra.get("seed", default_seed))
    with torch.random.fork_rng(devices=[]):
        model = build_model(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


# ------------------------------------------------------------------ registry rows


def text_config(cfg: Mapping[str, Any], **overrides: Any) -> TextConfig:
    """The language model's :class:`TextConfig` from its transformers config
    (``config.json``'s ``text_config``, Llama/Qwen2/Gemma/Mistral key names).

    ``overrides`` give what the file leaves out or a family knows better (a
    default ``max_position``, a tiny tokenizer's ``vocab_size``). ``head_dim`` is
    read when the config states it; ``num_kv_heads`` defaults to ``num_heads``.
    """
    keys = {
        "num_layers": "num_hidden_layers",
        "hidden_size": "hidden_size",
        "intermediate_size": "intermediate_size",
        "num_heads": "num_attention_heads",
        "vocab_size": "vocab_size",
        "max_position": "max_position_embeddings",
    }
    fields: dict[str, Any] = {
        name: overrides[name] if name in overrides else cfg[key] for name, key in keys.items()
    }
    fields["num_kv_heads"] = overrides.get(
        "num_kv_heads", cfg.get("num_key_value_heads", fields["num_heads"])
    )
    fields["head_dim"] = overrides.get("head_dim", cfg.get("head_dim"))
    return TextConfig(**fields)


def vision_config(cfg: Mapping[str, Any], patches_per_image: int, **overrides: Any) -> VisionConfig:
    """The vision tower's :class:`VisionConfig` from its transformers config (ViT key
    names: SigLIP, InternViT, Pixtral). ``patches_per_image`` is the tower's sequence
    for one image or tile; ``overrides`` for towers that name things otherwise."""
    keys = {
        "num_layers": "num_hidden_layers",
        "hidden_size": "hidden_size",
        "intermediate_size": "intermediate_size",
        "num_heads": "num_attention_heads",
    }
    fields: dict[str, Any] = {
        name: overrides.pop(name) if name in overrides else cfg[key] for name, key in keys.items()
    }
    return VisionConfig(**fields, patches_per_image=patches_per_image, **overrides)


__all__ = [
    "GIB",
    "QWEN2_SPLIT_PATTERN",
    "TINY_PROSE",
    "TINY_SCENES",
    "TINY_TRAINING",
    "atomic_write_text",
    "build_once",
    "dlm_home",
    "file_lock",
    "sha256_file",
    "text_config",
    "tokenizer_from_bpe",
    "train_bpe",
    "train_byte_level_bpe",
    "vision_config",
    "write_tiny_base",
]
