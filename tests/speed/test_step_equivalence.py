"""Every lever gives the plain step's loss and LoRA gradients, on every family's tiny base.

Plain: ``model(**batch).loss`` (full-vocabulary logits at every position).
Levers: the LM head at labelled positions only, frozen vision features
reused (computed on a miss, served on a hit), and both together. Batches
mix image and text rows, rows of different lengths (padding), and images
that become several tiles.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlm.engine.training.feature_cache import VisionFeatures
from dlm.engine.training.lora_recompute import lora_inputs_recomputed
from dlm.engine.training.step import label_positions, plain_loss, training_loss
from tests.speed.harness import TINY, assert_same, collate, draw, keys, load, loss_and_grads, qa


@pytest.fixture(scope="module", params=TINY)
def loaded(request: pytest.FixtureRequest, session_home: Path):
    return load(request.param, session_home, lora_dropout=0.05)


def _examples(folder: Path, family_name: str):
    red = draw(folder / "red.png", 0)
    blue = draw(folder / "blue.png", 1)
    wide = draw(folder / "wide.png", 2, size=(192, 96))  # InternVL: several tiles
    rows = [
        qa(red, "Which component is this?", "the cache layer"),
        qa(
            wide,
            "Describe the figure in detail, please.",
            "A green ellipse on a dark page, drawn wide, with nothing else around it at all.",
        ),
        qa(blue, "What?", "the query encoder"),
    ]
    if family_name == "paligemma":
        rows.append(qa(red, "Compare the two figures.", "red, then blue", blue))
    else:
        rows.append(qa(None, "What does the reranker do?", "It orders the candidates."))
    return rows


def _features(loaded, examples):
    features, why = VisionFeatures.for_run(
        loaded.model, loaded.family, loaded.base,
        loaded.family.bind(loaded.base, loaded.processor).image_settings_to_save(),
        precision="fp32", device_type="cpu", paths=None,
    )  # fmt: skip
    assert why is None
    return features


def test_each_lever_matches_the_plain_step(loaded, tmp_path: Path) -> None:
    examples = _examples(tmp_path, loaded.family.name)
    batch = collate(loaded, examples)
    model, image_keys = loaded.model, keys(examples)
    plain = loss_and_grads(model, lambda: plain_loss(model, batch))

    head = loss_and_grads(model, lambda: training_loss(model, batch, label_head=True))
    assert_same(plain, head)

    features = _features(loaded, examples)
    for label_head in (False, True):  # the vision lever alone, then with the head
        miss = loss_and_grads(
            model,
            lambda head=label_head: training_loss(
                model, batch, label_head=head, features=features, image_keys=image_keys
            ),
        )
        assert_same(plain, miss)
        hit = loss_and_grads(
            model,
            lambda head=label_head: training_loss(
                model, batch, label_head=head, features=features, image_keys=image_keys
            ),
        )
        assert_same(plain, hit)
    assert features.disabled is None
    # one forward computed the features; the three after it never ran the tower
    assert features.stats.computed == len(image_keys), features.note()
    assert features.stats.hits == 3 * len(image_keys)


def test_recomputed_lora_inputs_match_the_plain_step(loaded, tmp_path: Path) -> None:
    # dropout 0.05 (the fixture): backward must redraw exactly the forward's masks
    examples = _examples(tmp_path, loaded.family.name)
    batch = collate(loaded, examples)
    model = loaded.model
    plain = loss_and_grads(model, lambda: plain_loss(model, batch))
    with lora_inputs_recomputed(model) as changed:
        assert changed == sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
        recomputed = loss_and_grads(model, lambda: plain_loss(model, batch))
        everything = loss_and_grads(model, lambda: training_loss(model, batch, label_head=True))
    assert_same(plain, recomputed)
    assert_same(plain, everything)
    # the masks matter: another draw gives other gradients, so the match is real
    redrawn = loss_and_grads(model, lambda: plain_loss(model, batch), seed=99)
    assert redrawn[0] != plain[0]
    # and PEFT's own forward is back after the block
    assert all("forward" not in vars(m) for n, m in model.named_modules() if n.endswith("default"))
    assert_same(plain, loss_and_grads(model, lambda: plain_loss(model, batch)))


def test_a_hit_runs_no_vision_tower(loaded, tmp_path: Path) -> None:
    from dlm.engine.training.feature_cache import encoder_host

    examples = _examples(tmp_path, loaded.family.name)
    batch = collate(loaded, examples)
    features = _features(loaded, examples)
    model = loaded.model
    training_loss(model, batch, features=features, image_keys=keys(examples))
    host = encoder_host(model)
    calls = []
    original = host.get_image_features
    host.get_image_features = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        training_loss(model, batch, features=features, image_keys=keys(examples))
    finally:
        del host.get_image_features
    assert calls == [], "a cache hit must not run the vision tower"


def test_label_positions_follow_the_shifted_labels() -> None:
    import torch

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, -100, -100, -100]])
    keep, targets = label_positions(labels)
    assert keep.tolist() == [[False, True, True, False, False], [True, False, False, False, False]]
    assert targets.tolist() == [5, 6, 7]


def test_final_logit_softcapping_is_respected(session_home: Path, tmp_path: Path) -> None:
    """Gemma 2 style softcapping: the model applies it in its forward; both paths agree."""
    loaded = load("tiny-paligemma", session_home)
    config = loaded.model.get_base_model().config.get_text_config()
    config.final_logit_softcapping = 0.5  # small enough to change every logit
    try:
        examples = _examples(tmp_path, "paligemma")
        batch = collate(loaded, examples)
        model = loaded.model
        plain = loss_and_grads(model, lambda: plain_loss(model, batch))
        head = loss_and_grads(model, lambda: training_loss(model, batch, label_head=True))
        assert_same(plain, head)
        config.final_logit_softcapping = None
        uncapped = loss_and_grads(model, lambda: plain_loss(model, batch))
        assert abs(uncapped[0] - plain[0]) > 1e-3, "softcapping should change the loss"
    finally:
        config.final_logit_softcapping = None


def test_a_batch_with_no_labelled_token_is_nan_like_transformers(session_home, tmp_path) -> None:
    import math

    loaded = load("tiny-qwen2-vl", session_home)
    examples = _examples(tmp_path, loaded.family.name)[:2]
    batch = collate(loaded, examples)
    batch["labels"][:] = -100
    plain = plain_loss(loaded.model, batch).item()
    ours = training_loss(loaded.model, batch).item()
    assert math.isnan(plain) and math.isnan(ours)
