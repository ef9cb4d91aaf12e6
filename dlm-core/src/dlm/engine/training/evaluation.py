"""Did the run learn? The held-out check each epoch, and the verdict at the end.

- :func:`split_held_out` sets examples aside before training (``training.held_out``):
  whole images at a time, so an image's caption never trains the answer its
  held-out question is scored on. Seeded: the same document holds out the same.
- :class:`Evaluator` scores a set of examples on the model being trained:
  the mean loss on their answers, and for questions bound to images the
  greedy answer's exact match and token-level F1 (SQuAD's normalisation).
- :func:`verdict` reads the run's losses, held-out scores and a greedy
  pass over a few training questions, and says in a sentence whether the
  run learnt, with a warning that names the likely cause and the setting
  to change when it did not.

Every rank of a multi-process run evaluates the same examples in step
(an FSDP-sharded model's forward is a collective), so all agree.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import attrs

from dlm.records import ExampleKind, TrainingExample

if TYPE_CHECKING:
    from dlm.family import BoundBase

#: ``held_out: auto`` holds out this share of the images...
AUTO_FRACTION = 0.1
#: ...of a document with at least this many (a smaller one needs every image).
AUTO_MIN_IMAGES = 20
#: Training questions the verdict asks back (greedy) at the end of a run.
RECALL_PROBES = 4
#: A loss that fell by less than this share "barely moved".
BARELY_MOVED = 0.10
#: Fewer optimizer steps than this is the first suspect when nothing was learnt.
FEW_STEPS = 30


# ------------------------------------------------------------------ the split


@attrs.frozen
class HeldOutSplit:
    train: tuple[TrainingExample, ...]
    held_out: tuple[TrainingExample, ...]
    #: What was held out and why, in words (``None``: nothing held out).
    note: str | None


def _unit(example: TrainingExample) -> str:
    """What is held out together: every example about the same image (else the section)."""
    return example.images[0].sha256 if example.images else example.section_id


def split_held_out(examples: Sequence[TrainingExample], spec: Any, seed: int) -> HeldOutSplit:
    """Set examples aside by ``training.held_out``.

    ``spec``: ``"auto"``, ``"none"``/``0``, a count of images (an int), a
    fraction of them (a float below 1) or the image paths to hold out. The
    choice is a seeded shuffle of the images, so it does not change between
    runs of the same document. Raises ``ValueError`` (the caller names the
    document) when nothing would be left to train on.
    """
    units: dict[str, list[TrainingExample]] = {}
    for example in examples:
        units.setdefault(_unit(example), []).append(example)
    image_units = [key for key, group in units.items() if group[0].images]
    pool = image_units or list(units)
    if isinstance(spec, tuple | list):
        wanted = {str(p) for p in spec}
        chosen = {
            key for key in pool if any(ref.source in wanted for e in units[key] for ref in e.images)
        }
        found = {ref.source for key in chosen for e in units[key] for ref in e.images}
        missing = sorted(wanted - found)
        if missing:
            raise ValueError(
                f"training.held_out names images no section trains on: {', '.join(missing)}"
            )
        how = f"the {len(chosen)} named image(s)"
    else:
        count = _count(spec, len(pool))
        if count == 0:
            return HeldOutSplit(tuple(examples), (), None)
        order = sorted(pool)
        random.Random(seed).shuffle(order)
        chosen = set(order[:count])
        what = "images" if image_units else "sections"
        how = f"{count} of {len(pool)} {what} ({'auto' if spec == 'auto' else spec})"
    if not chosen:
        return HeldOutSplit(tuple(examples), (), None)
    if len(chosen) >= len(pool):
        raise ValueError(
            f"training.held_out would hold out every one of the {len(pool)} images: "
            "nothing would be left to train on"
        )
    held = tuple(e for e in examples if _unit(e) in chosen)
    train = tuple(e for e in examples if _unit(e) not in chosen)
    note = f"held out {len(held)} example(s) for the held-out check: {how}"
    return HeldOutSplit(train, held, note)


def held_out_of(prepared: Any, examples: Sequence[TrainingExample]) -> HeldOutSplit:
    """:func:`split_held_out` by the document's ``training.held_out``; a setting that
    cannot be met is a :class:`DocumentError` at the setting."""
    from dlm.errors import DocumentError
    from dlm.format import frontmatter_position

    doc = prepared.doc
    settings = doc.frontmatter.training
    try:
        return split_held_out(examples, settings.held_out, settings.seed)
    except ValueError as exc:
        line, col = frontmatter_position(doc.raw_frontmatter, "training.held_out")
        raise DocumentError(
            doc.display_path,
            line,
            col,
            str(exc),
            hint="hold out fewer images (or none: held_out: none), or name images the "
            "document trains on",
        ) from None


def _count(spec: Any, units: int) -> int:
    if spec in (None, "none", 0):
        return 0
    if spec == "auto":
        return round(units * AUTO_FRACTION) if units >= AUTO_MIN_IMAGES else 0
    if isinstance(spec, float):
        return max(1, round(units * spec)) if units > 1 else 0
    return int(spec)


# ------------------------------------------------------------------ scoring


def normalize_answer(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, no punctuation or articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    """Token-level F1 between two answers (1.0 when both are empty)."""
    pred, ref = normalize_answer(prediction), normalize_answer(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@attrs.frozen
class Score:
    """A set of examples scored on the model: ``None`` where nothing could be scored."""

    examples: int
    loss: float | None
    exact_match: float | None  # share of image-bound questions answered exactly
    f1: float | None  # mean token-level F1 of those answers
    questions: int  # how many image-bound questions were asked

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "loss": _round(self.loss),
            "exact_match": _round(self.exact_match),
            "f1": _round(self.f1),
            "questions": self.questions,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class Evaluator:
    """Scores examples on the model being trained (eval mode, no gradients)."""

    def __init__(
        self,
        model: Any,
        bound: BoundBase,
        images: Any,  # session's image cache: .get(example) -> prepared images
        *,
        device: Any,
        micro_batch: int,
        autocast: Any = None,
        whole_model: Any = None,
    ) -> None:
        self.model = model
        self.bound = bound
        self.images = images
        self.device = device
        self.micro_batch = max(1, micro_batch)
        self.autocast = autocast or nullcontext
        # FSDP: gathers the root's parameters around generate (Ranks.whole_model)
        self.whole_model = whole_model or (lambda _model: nullcontext())

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode (no dropout) and no gradients, the model's mode restored after."""
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    def recalled(self, examples: Sequence[TrainingExample]) -> int:
        """How many of ``examples`` the model answers exactly (greedy)."""
        with self._eval_mode():
            return sum(exact_match(self.answer(e), e.completion) for e in examples)

    def score(self, examples: Sequence[TrainingExample], *, answers: bool = True) -> Score:
        with self._eval_mode():
            loss = self._loss(examples)
            questions = [e for e in examples if e.kind is ExampleKind.QA and e.images]
            em: float | None = None
            f1: float | None = None
            if answers and questions:
                got = [self.answer(e) for e in questions]
                pairs = list(zip(got, questions, strict=True))
                em = sum(exact_match(g, e.completion) for g, e in pairs) / len(pairs)
                f1 = sum(token_f1(g, e.completion) for g, e in pairs) / len(pairs)
        return Score(len(examples), loss, em, f1, len(questions) if answers else 0)

    def _loss(self, examples: Sequence[TrainingExample]) -> float | None:
        """Mean cross-entropy over every labelled token of ``examples``."""
        from dlm.engine.training.step import summed_loss

        total, tokens = 0.0, 0
        for start in range(0, len(examples), self.micro_batch):
            chunk = list(examples[start : start + self.micro_batch])
            batch = self.bound.collate(chunk, [self.images.get(e) for e in chunk])
            batch = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in batch.items()}
            with self.autocast():
                loss, n = summed_loss(self.model, batch)
            total += loss
            tokens += n
        return total / tokens if tokens else None

    def answer(self, example: TrainingExample) -> str:
        """The model's greedy answer to ``example``'s question about its images."""
        from dlm.engine.prompting import answer

        completion_tokens = len(self.bound.tokenizer(example.completion)["input_ids"])
        with self.whole_model(self.model):
            return answer(
                self.model,
                self.bound,
                self.images.get(example),
                example.prompt,
                example.system_prompt,
                max_tokens=completion_tokens + 8,
            )


def recall_probes(examples: Sequence[TrainingExample], seed: int) -> list[TrainingExample]:
    """A few training questions bound to images (captions when there are none), seeded."""
    questions = [e for e in examples if e.kind is ExampleKind.QA and e.images]
    pool = questions or [e for e in examples if e.kind is ExampleKind.CAPTION]
    pool = sorted(pool, key=lambda e: (e.origin, e.section_id, e.prompt))
    random.Random(seed).shuffle(pool)
    return pool[:RECALL_PROBES]


# ------------------------------------------------------------------ the verdict


@attrs.frozen
class Verdict:
    """What a person reads at the end of a run, and the figures it rests on."""

    learnt: bool
    sentence: str
    warning: str | None
    loss_first: float | None
    loss_last: float | None
    recalled: int
    probed: int
    held_out_first: dict[str, Any] | None
    held_out_last: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _window_mean(losses: Sequence[float], first: bool) -> float | None:
    finite = [x for x in losses if math.isfinite(x)]
    if not finite:
        return None
    n = max(1, len(finite) // 5)
    part = finite[:n] if first else finite[-n:]
    return sum(part) / len(part)


def _overfitting(held_out: Sequence[dict[str, Any]]) -> str | None:
    """A held-out loss that bottomed out and then rose well above its low point."""
    losses = [(s["epoch"], s["loss"]) for s in held_out if s.get("loss") is not None]
    if len(losses) < 3:
        return None
    best_epoch, best = min(losses, key=lambda pair: pair[1])
    last_epoch, last = losses[-1]
    if best_epoch == last_epoch or last <= best * 1.1:
        return None
    return (
        f"held-out loss was lowest after epoch {best_epoch} ({best:.3g}) and rose to "
        f"{last:.3g}: past that epoch the run fits its training examples, not the task"
    )


def verdict(
    losses: Sequence[float],
    recalled: int,
    probed: int,
    held_out: Sequence[dict[str, Any]],
    *,
    steps: int,
    num_epochs: int,
    learning_rate: float,
) -> Verdict:
    """The end-of-run verdict from the step losses, the recall pass and the held-out scores."""
    first, last = _window_mean(losses, True), _window_mean(losses, False)
    parts: list[str] = []
    moved = None
    diverged = any(not math.isfinite(x) for x in losses) or (
        first is not None and last is not None and last > first * 1.05
    )
    if first is not None and last is not None:
        moved = (first - last) / first if first > 0 else 0.0
        parts.append(f"loss {first:.3g} → {last:.3g} ({-moved:+.0%})")
    if probed:
        parts.append(f"recalled {recalled}/{probed} training answers")
    h_first = held_out[0] if held_out else None
    h_last = held_out[-1] if held_out else None
    if h_first is not None and h_last is not None:
        key = "exact_match" if h_last.get("exact_match") is not None else "loss"
        a, b = h_first.get(key), h_last.get(key)
        if a is not None and b is not None:
            label = "held-out exact match" if key == "exact_match" else "held-out loss"
            parts.append(f"{label} {a:.3g} → {b:.3g}")
    overfit = _overfitting(held_out)
    if overfit:
        parts.append(overfit)
    barely = moved is None or moved < BARELY_MOVED
    recalled_nothing = probed > 0 and recalled == 0
    learnt = not diverged and not barely and not recalled_nothing
    sentence = ("learnt: " if learnt else "learnt little: ") + "; ".join(parts or ["no steps ran"])
    warning = None
    if not learnt:
        if diverged:
            cause = (
                f"the loss rose or blew up: the learning rate ({learning_rate:g}) is likely "
                f"too high; lower training.learning_rate (try {learning_rate / 4:g})"
            )
        elif steps < FEW_STEPS:
            cause = (
                f"too few steps ({steps}) to learn from: raise training.num_epochs "
                f"(now {num_epochs}; try {max(num_epochs * 4, math.ceil(FEW_STEPS * num_epochs / max(steps, 1)))})"
            )
        else:
            cause = (
                f"the learning rate ({learning_rate:g}) is likely too low for {steps} steps: "
                f"raise training.learning_rate (try {learning_rate * 5:g}) or training.num_epochs"
            )
        warning = f"this run learnt little. Likely cause: {cause}"
    return Verdict(
        learnt=learnt,
        sentence=sentence,
        warning=warning,
        loss_first=first,
        loss_last=last,
        recalled=recalled,
        probed=probed,
        held_out_first=h_first,
        held_out_last=h_last,
    )


__all__ = [
    "AUTO_FRACTION",
    "AUTO_MIN_IMAGES",
    "Evaluator",
    "HeldOutSplit",
    "Score",
    "Verdict",
    "exact_match",
    "held_out_of",
    "normalize_answer",
    "recall_probes",
    "split_held_out",
    "token_f1",
    "verdict",
]
