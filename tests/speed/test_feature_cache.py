"""The vision-feature cache: keyed so a hit never serves other settings, bounded, verified."""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import pytest

from dlm.engine.training.feature_cache import (
    FeatureStore,
    VisionFeatures,
    feature_settings,
    settings_digest,
    why_not_reusable,
)
from dlm.engine.training.step import plain_loss, training_loss
from tests.speed.harness import assert_same, collate, draw, keys, load, loss_and_grads, qa

# ------------------------------------------------------------------ the key


def _settings(base, **changes):
    args = {
        "image_settings": {"size": {"shortest_edge": 12544, "longest_edge": 12544}},
        "vision_dtype": "float32",
        "precision": "fp32",
        "device_type": "cpu",
    }
    args.update(changes)
    image_settings = args.pop("image_settings")
    return feature_settings(base, image_settings, **args)


def test_every_key_part_changes_the_digest() -> None:
    from dlm.plugins import get_registry

    base = get_registry().base("tiny-qwen2-vl")
    reference = settings_digest(_settings(base))
    assert settings_digest(_settings(base)) == reference  # stable
    variants = {
        "base key": _settings(attrs.evolve(base, key="other-base")),
        "revision": _settings(attrs.evolve(base, revision="local-v999")),
        "family": _settings(attrs.evolve(base, family="other")),
        "geometry": _settings(
            attrs.evolve(base, image=attrs.evolve(base.image, width=224, height=224))
        ),
        "image settings": _settings(
            base, image_settings={"size": {"shortest_edge": 50176, "longest_edge": 50176}}
        ),
        "vision dtype": _settings(base, vision_dtype="bfloat16"),
        "precision": _settings(base, precision="bf16"),
        "device": _settings(base, device_type="cuda"),
    }
    versions = _settings(base)
    versions["versions"] = dict(versions["versions"], transformers="0.0.1")
    variants["library version"] = versions
    digests = {name: settings_digest(s) for name, s in variants.items()}
    for name, digest in digests.items():
        assert digest != reference, f"changing the {name} must miss"
    assert len(set(digests.values())) == len(digests)


# ------------------------------------------------------------------ the disk store


def _tensor(value: float, n: int = 256):
    import torch

    return torch.full((n,), value)


def test_store_round_trip_and_lru_bound(tmp_path: Path) -> None:
    one = _tensor(1.0).numel() * 4
    store = FeatureStore(tmp_path / "features", max_bytes=3 * one + 1000)
    for i, key in enumerate(("aa", "bb", "cc")):
        store.save("d1", key, _tensor(float(i)), {"base": "x"})
        old = time.time() - 100 + i
        os.utime(store.root / "d1" / f"{key}.safetensors", (old, old))
    assert store.load("d1", "aa") is not None  # touched: now the most recent
    store.save("d1", "dd", _tensor(3.0), {"base": "x"})  # over the bound: evict the LRU ("bb")
    assert store.load("d1", "bb") is None
    for key, value in (("aa", 0.0), ("cc", 2.0), ("dd", 3.0)):
        loaded = store.load("d1", key)
        assert loaded is not None and float(loaded[0]) == value
    usage = store.usage()
    assert usage.entries == 3 and usage.bytes <= store.max_bytes
    assert usage.settings[0]["digest"] == "d1" and usage.settings[0]["base"] == "x"
    cleared = store.clear()
    assert cleared.entries == 3 and store.usage().entries == 0


def test_store_bound_zero_keeps_nothing_and_torn_files_are_misses(tmp_path: Path) -> None:
    off = FeatureStore(tmp_path / "off", max_bytes=0)
    off.save("d1", "aa", _tensor(1.0), {})
    assert not off.root.exists() and off.load("d1", "aa") is None

    store = FeatureStore(tmp_path / "on", max_bytes=2**20)
    store.save("d1", "aa", _tensor(1.0), {})
    path = store.root / "d1" / "aa.safetensors"
    path.write_bytes(path.read_bytes()[:20])  # torn
    assert store.load("d1", "aa") is None
    assert not path.exists(), "a torn entry is removed"
    (store.root / "d1" / ".tmp-123-abcd.safetensors").write_bytes(b"partial")
    assert store.usage().entries == 0
    with pytest.raises(ValueError):
        store.load("../x", "aa")


# ------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def qwen(session_home: Path):
    return load("tiny-qwen2-vl", session_home)


def _batches(folder: Path):
    refs = [draw(folder / f"f{i}.png", i) for i in range(3)]
    first = [qa(refs[0], "Which?", "the cache layer"), qa(refs[1], "Which one?", "the encoder")]
    second = [qa(refs[2], "And this?", "the reranker"), qa(refs[0], "Again?", "the cache")]
    return first, second


def _run(loaded, store_root: Path, base=None, **changes):
    base = base or loaded.base
    image_settings = (
        changes.pop("image_settings", None)
        or loaded.family.bind(base, loaded.processor).image_settings_to_save()
    )
    settings = feature_settings(
        base,
        image_settings,
        vision_dtype=changes.pop("vision_dtype", "float32"),
        precision=changes.pop("precision", "fp32"),
        device_type=changes.pop("device_type", "cpu"),
    )
    token = loaded.model.get_base_model().config.image_token_id
    store = FeatureStore(store_root, max_bytes=2**30)
    return VisionFeatures(loaded.family, base, settings, store, image_token_id=token)


def _step(loaded, features, examples):
    batch = collate(loaded, examples)
    model = loaded.model
    plain = loss_and_grads(model, lambda: plain_loss(model, batch))
    ours = loss_and_grads(
        model, lambda: training_loss(model, batch, features=features, image_keys=keys(examples))
    )
    assert_same(plain, ours)


def test_a_retrain_reads_features_from_disk_after_a_live_check(qwen, tmp_path: Path) -> None:
    first, second = _batches(tmp_path / "img")
    run1 = _run(qwen, tmp_path / "cache")
    _step(qwen, run1, first)
    _step(qwen, run1, second)
    assert run1.stats.computed == 4 and run1.stats.loaded == 0

    run2 = _run(qwen, tmp_path / "cache")
    _step(qwen, run2, first)  # computed live, checked against the two cached images
    assert run2.stats.verified == 2 and run2.stats.stale == 0
    _step(qwen, run2, second)  # f2 from disk, f0 from RAM: no vision tower at all
    assert run2.stats.loaded >= 1 and run2.stats.hits == 2
    assert run2.stats.computed == 2


@pytest.mark.parametrize(
    "change",
    ["revision", "base", "image_settings", "vision_dtype", "precision", "device_type"],
)
def test_changed_settings_never_hit(qwen, tmp_path: Path, change: str) -> None:
    first, second = _batches(tmp_path / "img")
    run1 = _run(qwen, tmp_path / "cache")
    _step(qwen, run1, first)
    _step(qwen, run1, second)

    changes: dict[str, object] = {}
    base = None
    if change == "revision":
        base = attrs.evolve(qwen.base, revision="local-other")
    elif change == "base":
        base = attrs.evolve(qwen.base, key="tiny-qwen2-vl-other")
    elif change == "image_settings":
        changes["image_settings"] = {"size": {"shortest_edge": 1, "longest_edge": 2}}
    else:
        changes[change] = {"vision_dtype": "bfloat16", "precision": "bf16"}.get(change, "cuda")
    run2 = _run(qwen, tmp_path / "cache", base=base, **changes)
    _step(qwen, run2, first)
    _step(qwen, run2, second)
    assert run2.stats.loaded == 0 and run2.stats.stale == 0, run2.note()
    assert run2.stats.computed == 4
    assert len(run2.store.usage().settings) == 2  # kept apart on disk


def test_stale_features_under_the_same_key_are_replaced(qwen, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    first, second = _batches(tmp_path / "img")
    run1 = _run(qwen, tmp_path / "cache")
    _step(qwen, run1, first)
    _step(qwen, run1, second)
    # the weights changed under the same revision: cached numbers are wrong
    for path in (tmp_path / "cache" / run1.digest).glob("*.safetensors"):
        save_file({"features": torch.zeros(16, 64)}, str(path))
    run2 = _run(qwen, tmp_path / "cache")
    _step(qwen, run2, first)
    assert run2.stats.stale == 2, run2.note()
    _step(qwen, run2, second)  # f2's stale entry went with the rest: computed, not served
    assert run2.stats.hits == 0 and run2.stats.computed == 4
    assert "stale" in run2.note()


def test_reuse_is_refused_when_the_vision_side_trains(session_home: Path) -> None:
    vision_lora = load("tiny-qwen2-vl", session_home, target_modules=r".*visual.*\.qkv")
    reason = why_not_reusable(vision_lora.model)
    assert reason is not None and "trainable" in reason and "visual" in reason

    both = load("tiny-paligemma", session_home, target_modules=("q_proj", "v_proj"))
    assert "vision_tower" in (why_not_reusable(both.model) or "")

    lm_only = load("tiny-paligemma", session_home)
    assert why_not_reusable(lm_only.model) is None
    vision_config = lm_only.model.get_base_model().config.vision_config
    vision_config.attention_dropout = 0.1
    try:
        assert "attention_dropout" in (why_not_reusable(lm_only.model) or "")
        lm_only.model.eval()
        assert why_not_reusable(lm_only.model) is None  # no dropout outside training
    finally:
        vision_config.attention_dropout = 0.0
        lm_only.model.train()
