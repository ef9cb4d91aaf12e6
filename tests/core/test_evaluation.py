"""The held-out split, the answer scores and the end-of-run verdict (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlm.engine.training.evaluation import (
    exact_match,
    recall_probes,
    split_held_out,
    token_f1,
    verdict,
)
from dlm.engine.training.plot import smoothed
from dlm.records import ExampleKind, ImageRef, TrainingExample


def _image_examples(n: int) -> list[TrainingExample]:
    """Per image: its caption and a bound question (the same image, held out together)."""
    out = []
    for i in range(n):
        ref = ImageRef(sha256=f"{i:064x}", blob_path=Path(f"f{i}.png"), source=f"figures/f{i}.png")
        out.append(
            TrainingExample(
                f"c{i}", f"d.dlm:{i}", ExampleKind.CAPTION, "Describe.", f"cap {i}", (ref,)
            )
        )
        out.append(
            TrainingExample(f"q{i}", f"d.dlm:{i}", ExampleKind.QA, "Which?", f"answer {i}", (ref,))
        )
    return out


def test_a_count_holds_out_whole_images_and_is_seeded() -> None:
    examples = _image_examples(10)
    split = split_held_out(examples, 3, seed=7)
    held_images = {e.images[0].sha256 for e in split.held_out}
    assert len(held_images) == 3 and len(split.held_out) == 6
    # no held-out image trains anything: its caption would leak the answer
    assert not held_images & {e.images[0].sha256 for e in split.train}
    assert split_held_out(examples, 3, seed=7) == split
    assert split_held_out(examples, 3, seed=8).held_out != split.held_out
    assert "3 of 10 images" in (split.note or "")


def test_a_fraction_rounds_and_auto_waits_for_twenty_images() -> None:
    assert len(split_held_out(_image_examples(10), 0.25, seed=1).held_out) == 2 * 2  # 2.5 → 2
    assert split_held_out(_image_examples(19), "auto", seed=1).held_out == ()
    assert len(split_held_out(_image_examples(20), "auto", seed=1).held_out) == 2 * 2
    assert split_held_out(_image_examples(5), "none", seed=1).note is None
    assert split_held_out(_image_examples(5), 0, seed=1).held_out == ()


def test_named_images_are_held_out_and_unknown_names_refused() -> None:
    split = split_held_out(_image_examples(4), ("figures/f2.png",), seed=1)
    assert {e.section_id for e in split.held_out} == {"c2", "q2"}
    with pytest.raises(ValueError, match=r"figures/nope\.png"):
        split_held_out(_image_examples(4), ("figures/nope.png",), seed=1)


def test_holding_out_everything_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing would be left"):
        split_held_out(_image_examples(3), 3, seed=1)


def test_text_documents_hold_out_sections() -> None:
    texts = [TrainingExample(f"t{i}", f"d:{i}", ExampleKind.TEXT_QA, "q", "a") for i in range(5)]
    split = split_held_out(texts, 2, seed=3)
    assert len(split.held_out) == 2 and "sections" in (split.note or "")


def test_answer_scores_follow_squad() -> None:
    assert exact_match("The cache layer.", "the cache layer")
    assert not exact_match("the cache", "the cache layer")
    assert token_f1("the cache", "the cache layer") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("query encoder", "the cache layer") == 0.0
    assert token_f1("", "") == 1.0


@given(st.text(max_size=40), st.text(max_size=40))
def test_f1_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert 0.0 <= token_f1(a, b) <= 1.0
    assert token_f1(a, b) == pytest.approx(token_f1(b, a))
    assert token_f1(a, a) == 1.0


def test_recall_probes_prefer_image_questions_and_are_seeded() -> None:
    probes = recall_probes(_image_examples(6), seed=3)
    assert len(probes) == 4 and all(p.kind is ExampleKind.QA for p in probes)
    assert probes == recall_probes(_image_examples(6), seed=3)


def _verdict(losses: list[float], recalled: int = 4, steps: int = 100, **kw: object):
    return verdict(losses, recalled, 4, [], steps=steps, num_epochs=3, learning_rate=2e-4, **kw)


def test_a_run_that_learnt_says_so() -> None:
    v = _verdict([8.0] * 20 + [1.0] * 80)
    assert v.learnt and v.warning is None
    assert v.sentence.startswith("learnt: loss 8 → 1 (-88%); recalled 4/4")


def test_a_starved_run_names_the_steps_and_the_setting() -> None:
    v = _verdict([7.97], recalled=0, steps=1)
    assert not v.learnt
    assert "too few steps (1)" in (v.warning or "") and "training.num_epochs" in (v.warning or "")


def test_a_flat_long_run_blames_the_learning_rate() -> None:
    v = _verdict([7.9] * 100, recalled=0, steps=100)
    assert not v.learnt and "training.learning_rate" in (v.warning or "")
    assert "too low" in (v.warning or "")


def test_a_rising_loss_says_the_learning_rate_is_too_high() -> None:
    v = _verdict([2.0] * 10 + [float("nan")] * 10, recalled=0)
    assert not v.learnt and "too high" in (v.warning or "")


def test_overfitting_shows_in_the_sentence() -> None:
    scores = [
        {"epoch": e, "loss": loss, "exact_match": 0.0} for e, loss in ((1, 5.0), (2, 3.0), (3, 6.0))
    ]
    v = verdict([8.0] * 5 + [1.0] * 20, 4, 4, scores, steps=25, num_epochs=3, learning_rate=1e-3)
    assert "lowest after epoch 2" in v.sentence


def test_smoothing_starts_at_the_first_value() -> None:
    assert smoothed([10.0, 0.0]) == [10.0, 8.0]
