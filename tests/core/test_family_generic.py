"""The generic Family behaviour in core, on fakes: no plugin, no model, no network.

The same methods run on a real processor in ``tests/qwen2``; here each rule
is pinned on its own: tiny bases are built once and atomically, downloads
fail with a next step, images are pinned, and the collator masks, pads
and counts for any chat template and tokenizer (BOS, trimming, left
padding).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from dlm.errors import DlmError
from dlm.family import TINY_MARKER, Family
from dlm.records import (
    BaseSpec,
    ExampleKind,
    ImageGeometry,
    ParamCounts,
    TextConfig,
    TrainingExample,
    VisionConfig,
)
from dlm.store.images import ImageError


def _base(**changes: Any) -> BaseSpec:
    base = BaseSpec(
        key="tiny-fake",
        family="fake",
        hub_id="dlm-test/does-not-exist",
        revision="recipe-1",
        architecture="FakeForConditionalGeneration",
        license="Apache-2.0",
        image=ImageGeometry(width=56, height=28, tokens_per_image=4, image_token="<image>"),
        text=TextConfig(2, 32, 64, 2, 1, 100, 512),
        vision=VisionConfig(1, 16, 32, 2, 8),
        params=ParamCounts(total=1, vision=0, language=1),
        context_length=512,
        tiny=True,
    )
    return attrs.evolve(base, **changes)


class FakeFamily(Family):
    name = "fake"

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.builds = 0
        self.delay = delay
        self.fail = fail

    def build_tiny(self, base: BaseSpec, out_dir: Path) -> None:
        self.builds += 1
        (out_dir / "config.json").write_text(json.dumps({"key": base.key}))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("build failed half way")
        (out_dir / "model.safetensors").write_bytes(b"weights")


# ------------------------------------------------------------------ tiny bases


def test_tiny_base_builds_once_under_dlm_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLM_HOME", str(tmp_path))
    family, base = FakeFamily(), _base()
    first = family.materialize(base)
    assert first == tmp_path / "bases" / "tiny-fake"
    assert (first / "model.safetensors").read_bytes() == b"weights"
    marker = json.loads((first / TINY_MARKER).read_text())
    assert marker == {"key": "tiny-fake", "family": "fake", "revision": "recipe-1"}
    assert family.materialize(base) == first
    assert family.materialize(base, tmp_path) == first
    assert family.builds == 1


def test_tiny_base_is_rebuilt_when_its_recipe_changes(tmp_path: Path) -> None:
    family = FakeFamily()
    path = family.materialize(_base(), tmp_path)
    (path / "leftover.txt").write_text("from the old recipe")
    again = family.materialize(_base(revision="recipe-2"), tmp_path)
    assert again == path and family.builds == 2
    assert json.loads((path / TINY_MARKER).read_text())["revision"] == "recipe-2"
    assert not (path / "leftover.txt").exists()
    assert [p.name for p in (tmp_path / "bases").iterdir() if p.is_dir()] == ["tiny-fake"]


def test_a_failed_tiny_build_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        FakeFamily(fail=True).materialize(_base(), tmp_path)
    assert [p for p in (tmp_path / "bases").iterdir() if p.is_dir()] == []
    # an incomplete directory (no marker) is never taken for a base
    (tmp_path / "bases" / "tiny-fake").mkdir()
    family = FakeFamily()
    assert (family.materialize(_base(), tmp_path) / "model.safetensors").exists()
    assert family.builds == 1


def test_concurrent_first_uses_build_once(tmp_path: Path) -> None:
    family, base = FakeFamily(delay=0.3), _base()
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(family.materialize(base, tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert family.builds == 1
    assert results == [tmp_path / "bases" / "tiny-fake"] * 3


def test_a_family_without_a_tiny_base_says_so(tmp_path: Path) -> None:
    class NoTiny(Family):
        name = "none"

    with pytest.raises(NotImplementedError, match="ships no tiny base"):
        NoTiny().materialize(_base(), tmp_path)


# ------------------------------------------------------------------ real bases


def _http_error(cls: type, status: int) -> Exception:
    from types import SimpleNamespace

    # only what huggingface_hub's HTTP errors read from a response
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return cls(f"{status} error", response=response)


def test_offline_download_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(DlmError) as info:
        FakeFamily().materialize(_base(tiny=False, revision="a" * 40), tmp_path)
    err = info.value
    assert err.subject == "base"
    assert "dlm-test/does-not-exist" in err.message and "offline" in err.message
    assert "HF_HUB_OFFLINE" in (err.hint or "")
    assert f"hf download dlm-test/does-not-exist --revision {'a' * 40}" in (err.hint or "")


def test_gated_and_missing_repositories(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    raised: list[Exception] = []

    def fake_download(repo_id: str, **kwargs: Any) -> str:
        assert kwargs["revision"] == "b" * 40
        assert "*.safetensors" in kwargs["allow_patterns"]
        assert not any(p.endswith((".bin", ".pt", ".pth")) for p in kwargs["allow_patterns"])
        raise raised[-1]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    base = _base(tiny=False, revision="b" * 40, hub_id="org/gated")
    raised.append(_http_error(GatedRepoError, 403))
    with pytest.raises(DlmError, match="is gated") as info:
        FakeFamily().materialize(base, tmp_path)
    assert "https://huggingface.co/org/gated" in info.value.hint
    assert "HF_TOKEN" in info.value.hint
    raised.append(_http_error(RepositoryNotFoundError, 404))
    with pytest.raises(DlmError, match="not found"):
        FakeFamily().materialize(base, tmp_path)
    raised.append(ConnectionError("proxy said no"))
    with pytest.raises(DlmError, match="proxy said no"):
        FakeFamily().materialize(base, tmp_path)


def test_download_uses_the_cache_and_requires_safetensors(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    calls: list[bool] = []

    def fake_download(repo_id: str, **kwargs: Any) -> str:
        calls.append(bool(kwargs.get("local_files_only")))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    base = _base(tiny=False, revision="c" * 40)
    with pytest.raises(DlmError, match="no safetensors"):
        FakeFamily().materialize(base, tmp_path)
    assert calls == [True, False]  # cache first, then the network
    (snapshot / "model.safetensors").write_bytes(b"x")
    calls.clear()
    assert FakeFamily().materialize(base, tmp_path) == snapshot
    assert calls == [True]  # a complete cached snapshot needs no network


# ------------------------------------------------------------------ images


def test_prepare_image_pins_size_and_mode() -> None:
    from PIL import Image

    family = FakeFamily()
    out = family.bind(_base()).prepare_image(Image.new("RGBA", (300, 10), (1, 2, 3, 4)))
    assert out.mode == "RGB" and out.size == (56, 28)
    grey = family.bind(_base()).prepare_image(Image.new("L", (56, 28), 7))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (7, 7, 7)
    tiled = _base(image=ImageGeometry(448, 448, 256, "<image>", resize="tiles", max_tiles=6))
    assert family.bind(tiled).prepare_image(Image.new("RGB", (900, 300))).size == (900, 300)


def test_image_settings_are_json_and_restore_their_types() -> None:
    from transformers.image_utils import SizeDict

    class ImageProcessor:
        size = SizeDict(shortest_edge=3136, longest_edge=3136)
        patch_size = 14
        resample = None

    class Processor:
        image_processor = ImageProcessor()

    family = FakeFamily()
    family.image_setting_keys = ("size", "patch_size", "resample")
    saved = family.bind(_base(), Processor()).image_settings_to_save()
    assert saved == {"size": {"shortest_edge": 3136, "longest_edge": 3136}, "patch_size": 14}
    assert json.loads(json.dumps(saved)) == saved

    from dlm.family.bound import restore_setting

    restored = restore_setting(ImageProcessor.size, {"shortest_edge": 784, "longest_edge": 784})
    assert isinstance(restored, SizeDict) and restored.longest_edge == 784
    assert dict(_base(image_settings={"a": 1}).image_settings) == {"a": 1}


def test_open_image_checks_then_prepares(tmp_path: Path) -> None:
    from PIL import Image

    class Fake(Family):
        name = "fake"

    base = attrs.evolve(
        _base(), image=ImageGeometry(width=56, height=28, tokens_per_image=4, image_token="<i>")
    )
    path = tmp_path / "clear.png"
    Image.new("RGBA", (200, 100), (0, 0, 0, 0)).save(path)
    image = Fake().bind(base).open_image(path)
    assert image.mode == "RGB" and image.size == (56, 28)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # transparency flattened on white
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ImageError, match=r"broken\.png"):
        Fake().bind(base).open_image(broken)


# ------------------------------------------------------------------ collate on a fake processor


WORDS = [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    "<image>",
    "[INST]",
    "[/INST]",
    "sys",
    ":",
    "what",
    "is",
    "red",
    "?",
    "it",
    "a",
    "square",
    ".",
    "prose",
]


class FakeProcessor:
    """A text-only processor with a Mistral-like template: BOS in the prompt, trimmed answers."""

    def __init__(self, padding_side: str = "right") -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        backend = Tokenizer(
            models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
        )
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 2)]
        )
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            padding_side=padding_side,
        )

    def apply_chat_template(
        self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False
    ) -> str:
        out, system = "<s>", ""
        for message in messages:
            text = " ".join(c["text"] for c in message["content"] if c["type"] == "text")
            images = " ".join("<image>" for c in message["content"] if c["type"] == "image")
            if message["role"] == "system":
                system = f"sys : {text} "
            elif message["role"] == "user":
                out += f"[INST] {system}{images} {text} [/INST]"
            else:
                out += f" {text.strip()} </s>"
        return out

    def __call__(self, text: list[str], images: Any = None, **kwargs: Any) -> Any:
        assert images is None
        return self.tokenizer(text, **kwargs)


def _examples() -> list[TrainingExample]:
    return [
        TrainingExample("a", "d:1", ExampleKind.TEXT_QA, "what is red ?", "it is red .  \n"),
        TrainingExample(
            "b", "d:2", ExampleKind.TEXT_QA, "what ?", "a square .", system_prompt="it"
        ),
        TrainingExample("c", "d:3", ExampleKind.TEXT, "", "prose is prose ."),
    ]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_generic_collate_masks_pads_and_counts(padding_side: str) -> None:
    processor, family, base = FakeProcessor(padding_side), FakeFamily(), _base()
    tok = processor.tokenizer
    examples = _examples()
    batch = family.bind(base, processor).collate(examples, [None, None, None])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    expected_labels = [
        ids("it is red . </s>"),
        ids("a square . </s>"),
        ids("prose is prose . </s>"),
    ]
    for row, example in enumerate(examples):
        labels = batch["labels"][row]
        assert labels[labels != -100].tolist() == expected_labels[row]
        length = int(batch["attention_mask"][row].sum())
        assert batch["attention_mask"][row].tolist()[:length] == [1] * length  # right padding
        assert (batch["input_ids"][row][length:] == tok.pad_token_id).all()
        assert batch["input_ids"][row][0] == tok.bos_token_id  # exactly one BOS
        assert batch["input_ids"][row][1] != tok.bos_token_id
        assert batch["labels"][row][0] == -100  # BOS is never a target
        count = family.bind(base, processor).count_tokens(example)
        assert count.total == length and count.image == 0
        assert count.completion == len(expected_labels[row])
    assert tok.decode(batch["input_ids"][1][batch["labels"][1] == -100][:8]) == (
        "<s> [INST] sys : it what ? [/INST]"
    )


def test_a_template_that_rewrites_turns_is_refused() -> None:
    class Rewriting(FakeProcessor):
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            rendered = super().apply_chat_template(messages)
            return rendered + (" [GEN]" if add_generation_prompt else "")

    with pytest.raises(DlmError, match="does not extend its generation prompt"):
        FakeFamily().bind(_base(), Rewriting()).collate(_examples()[:1], [None])


def test_estimates_without_a_processor() -> None:
    family = FakeFamily()
    text_qa = TrainingExample("a", "d:1", ExampleKind.TEXT_QA, "q" * 7, "a" * 8, system_prompt="s")
    count = family.bind(_base(), None).count_tokens(text_qa)
    assert (count.image, count.prompt, count.completion) == (0, 1 + 2 + 24, 3 + 1)
    prose = TrainingExample("p", "d:2", ExampleKind.TEXT, "", "x" * 70)
    assert family.bind(_base(), None).count_tokens(prose).total == 21
