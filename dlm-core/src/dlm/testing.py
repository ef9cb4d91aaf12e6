"""The family contract, as tests every family package runs on its tiny base.

In the spirit of transformers' ``ModelTesterMixin``: a family package (ours
or a third party's) subclasses :class:`FamilyContract` in its tests, names
its tiny base, and pytest runs the checks every family must pass::

    from dlm.testing import FamilyContract

    class TestMyFamilyContract(FamilyContract):
        base_key = "tiny-my-vl"

What it checks, on the family's real processor and tiny model:

- **labels**: a batch mixing a caption, an image Q/A with a system prompt
  and (where the family trains text) a text Q/A and prose is labelled on
  each completion only, as one run that ends the row; padding is on the
  right and never labelled;
- **no leak**: a row's prompt side is the same whatever its completion, and
  a row collates the same alone as in the batch;
- **counts**: ``count_tokens`` equals the collated row (the planner's numbers
  are the training's numbers);
- **prompting**: ``prompt_inputs`` gives exactly the prompt side training saw;
- **vision features**: ``split_image_features`` then ``join_image_features``
  gives back what the vision tower returned, so the feature cache can serve it;
- **tiny build**: two builds, each in its own process as every ``dlm``
  command is, are byte-identical.

Recall (an adapter answering from the image) needs a trained adapter and
lives in each package's end-to-end tests.

pytest is imported here, so this module is for test code only; nothing in
dlm's runtime imports it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from dlm.family import BoundBase, Family
from dlm.records import BaseSpec, ExampleKind, ImageRef, TrainingExample

__all__ = ["FamilyContract", "TinyBase", "mixed_examples"]


@attrs.frozen
class TinyBase:
    """A tiny base made ready for the contract: its row, family, folder and processor."""

    base: BaseSpec
    family: Family
    base_dir: Path
    processor: Any

    @property
    def bound(self) -> BoundBase:
        return self.family.bind(self.base, self.processor)


def _ref(path: Path) -> ImageRef:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ImageRef(sha256=digest, blob_path=path, source=path.name)


def mixed_examples(supports_text_only: bool, images: tuple[Path, Path]) -> list[TrainingExample]:
    """A caption, an image Q/A with its own system prompt, and (for families that
    train text) a text Q/A and a prose row: every kind a document produces.
    ``images``: two image files (families may read them to count tokens)."""
    examples = [
        TrainingExample(
            "c", "doc.dlm:3", ExampleKind.CAPTION, "Describe this image.",
            "A red square on white.", (_ref(images[0]),),
        ),
        TrainingExample(
            "q", "doc.dlm:7", ExampleKind.QA, "What colour is the circle?", "It is green.",
            (_ref(images[1]),), system_prompt="Answer briefly.",
        ),
    ]  # fmt: skip
    if supports_text_only:
        examples += [
            TrainingExample(
                "t", "doc.dlm:9", ExampleKind.TEXT_QA, "What does dlm train?", "An adapter.", ()
            ),
            TrainingExample(
                "p", "doc.dlm:12", ExampleKind.TEXT, "",
                "The quick brown fox jumps over the lazy dog.", (),
            ),
        ]  # fmt: skip
    return examples


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


_BUILD = """
import sys
from pathlib import Path
from dlm.plugins import get_registry
registry = get_registry()
base = registry.base(sys.argv[1])
registry.family_for(base).build_tiny(base, Path(sys.argv[2]))
"""


class FamilyContract:
    """Subclass with ``base_key`` set to a tiny base of your family."""

    #: The registry key of the family's tiny base (``BaseSpec.tiny`` true).
    base_key: ClassVar[str] = ""
    #: Colours of the two test images, drawn at the base's pinned size.
    colours: ClassVar[tuple[tuple[int, int, int], tuple[int, int, int]]] = (
        (255, 0, 0),
        (0, 160, 0),
    )

    # ------------------------------------------------------------- fixtures

    @pytest.fixture(scope="class")
    def tiny(self, tmp_path_factory: pytest.TempPathFactory) -> TinyBase:
        import os

        from dlm.plugins import get_registry

        registry = get_registry()
        base = registry.base(self.base_key)
        assert base.tiny, f"{self.base_key} is not a tiny base: the contract runs offline"
        family = registry.family_for(base)
        home = os.environ.get("DLM_HOME") or str(tmp_path_factory.mktemp("dlm-home"))
        base_dir = family.materialize(base, Path(home))
        return TinyBase(base, family, base_dir, family.load_processor(base, base_dir))

    @pytest.fixture(scope="class")
    def mixed(
        self, tiny: TinyBase, tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[list[TrainingExample], list[Any], dict[str, Any]]:
        from PIL import Image

        folder = tmp_path_factory.mktemp("contract-images")
        size = (tiny.base.image.width, tiny.base.image.height)
        files = (folder / "a.png", folder / "b.png")
        for file, colour in zip(files, self.colours, strict=True):
            Image.new("RGB", size, colour).save(file)
        examples = mixed_examples(tiny.family.supports_text_only, files)
        images = [
            [tiny.bound.prepare_image(Image.open(ref.blob_path)) for ref in e.images]
            for e in examples
        ]
        batch = tiny.bound.collate(examples, images)
        return examples, images, batch

    @staticmethod
    def _decode(tiny: TinyBase, ids: Any) -> str:
        tokenizer = getattr(tiny.processor, "tokenizer", tiny.processor)
        return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()

    # ------------------------------------------------------------- labels

    def test_labels_cover_each_completion_only(self, tiny: TinyBase, mixed: Any) -> None:
        examples, _images, batch = mixed
        for row, example in enumerate(examples):
            ids, labels = batch["input_ids"][row], batch["labels"][row]
            labelled = labels != -100
            assert (labels[labelled] == ids[labelled]).all(), example.kind
            assert self._decode(tiny, labels[labelled]) == example.completion.strip(), example.kind
            # one run that ends the row's real tokens: the prompt side is never labelled
            where = labelled.nonzero().flatten().tolist()
            length = int(batch["attention_mask"][row].sum())
            assert where == list(range(length - len(where), length)), example.kind

    def test_padding_is_on_the_right_and_never_labelled(self, tiny: TinyBase, mixed: Any) -> None:
        _examples, _images, batch = mixed
        tokenizer = getattr(tiny.processor, "tokenizer", tiny.processor)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        for row in range(batch["input_ids"].shape[0]):
            attention = batch["attention_mask"][row].tolist()
            length = sum(attention)
            assert attention == [1] * length + [0] * (len(attention) - length)
            assert (batch["labels"][row][length:] == -100).all()
            assert (batch["input_ids"][row][length:] == pad).all()
        assert int(batch["attention_mask"].sum(dim=1).max()) == batch["input_ids"].shape[1]

    # ------------------------------------------------------------- no leak

    def test_the_prompt_side_never_sees_the_completion(self, tiny: TinyBase, mixed: Any) -> None:
        examples, images, batch = mixed
        changed = [attrs.evolve(e, completion=e.completion + " Extra words.") for e in examples]
        other = tiny.bound.collate(changed, images)
        for row in range(len(examples)):
            prompt = batch["labels"][row] == -100
            prompt &= batch["attention_mask"][row].bool()
            n = int(prompt.sum())
            assert batch["input_ids"][row][:n].tolist() == other["input_ids"][row][:n].tolist()

    def test_a_row_collates_the_same_alone_as_in_the_batch(
        self, tiny: TinyBase, mixed: Any
    ) -> None:
        examples, images, batch = mixed
        for row, example in enumerate(examples):
            alone = tiny.bound.collate([example], [images[row]])
            length = int(batch["attention_mask"][row].sum())
            for key in ("input_ids", "labels", "attention_mask"):
                assert alone[key][0].tolist() == batch[key][row][:length].tolist(), (key, row)

    # ------------------------------------------------------------- counts

    def test_count_tokens_is_the_collated_row(self, tiny: TinyBase, mixed: Any) -> None:
        examples, _images, batch = mixed
        for row, example in enumerate(examples):
            count = tiny.bound.count_tokens(example)
            labels = batch["labels"][row]
            assert count.total == int(batch["attention_mask"][row].sum()), example.kind
            assert count.completion == int((labels != -100).sum()), example.kind

    def test_an_estimate_never_undercounts_image_tokens(self, tiny: TinyBase, mixed: Any) -> None:
        """Planning a real base before its download (no processor) reserves at least the
        image tokens training will see: image tokens are never truncated. (Text is estimated
        at 3.5 characters a token, calibrated on real tokenizers, not the tiny ones.)"""
        examples, _images, _batch = mixed
        for example in examples:
            exact = tiny.bound.count_tokens(example)
            estimate = tiny.family.bind(tiny.base, None).count_tokens(example)
            assert estimate.image >= exact.image, (example.kind, estimate, exact)
            assert estimate.completion > 0, example.kind

    # ------------------------------------------------------------- prompting

    def test_prompt_inputs_are_the_prompt_side_of_training(
        self, tiny: TinyBase, mixed: Any
    ) -> None:
        examples, images, batch = mixed
        for row, example in enumerate(examples):
            if example.kind is ExampleKind.TEXT:
                continue  # prose has no question to prompt with
            inputs = tiny.bound.prompt_inputs(images[row], example.prompt, example.system_prompt)
            prompt = (batch["labels"][row] == -100) & batch["attention_mask"][row].bool()
            want = batch["input_ids"][row][prompt].tolist()
            assert inputs["input_ids"][0].tolist() == want, example.kind

    # ------------------------------------------------------------- vision features

    def test_image_features_split_and_join_back(self, tiny: TinyBase, mixed: Any) -> None:
        import torch

        from dlm.engine.training.feature_cache import (
            encoder_host,
            join_image_features,
            split_image_features,
        )

        examples, _images, batch = mixed
        model = tiny.family.load_model(tiny.base, tiny.base_dir, torch.float32, "cpu")
        host = encoder_host(model)
        assert host is not None, "the model exposes no get_image_features"
        seen: list[Any] = []
        original = host.get_image_features

        def capture(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            seen.append(out.pooler_output if hasattr(out, "pooler_output") else out)
            return out

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        host.get_image_features = capture
        try:
            with torch.no_grad():
                model(**inputs)
        finally:
            del host.get_image_features
        assert seen, "the forward never called get_image_features"
        features = seen[0]
        n_images = sum(len(e.images) for e in examples)
        image_token_id = getattr(tiny.processor, "tokenizer", tiny.processor).convert_tokens_to_ids(
            tiny.base.image.image_token
        )
        parts = split_image_features(features, batch["input_ids"], image_token_id, n_images)
        assert parts is not None and len(parts) == n_images, "features cannot be split per image"
        joined = join_image_features(parts, isinstance(features, tuple | list))
        if isinstance(features, tuple | list):
            assert len(joined) == len(features)
            assert all(torch.equal(a, b) for a, b in zip(joined, features, strict=True))
        else:
            assert torch.equal(joined, features)

    # ------------------------------------------------------------- recommended settings

    def test_recommended_training_is_a_valid_training_section(self, tiny: TinyBase) -> None:
        """What ``dlm init`` writes for the base is a ``training:`` the schema accepts."""
        from dlm.format.schema import training_from_mapping

        settings = training_from_mapping(tiny.base.recommended_training, path="<recommended>")
        for key, value in tiny.base.recommended_training.items():
            assert getattr(settings, key) == value, key

    # ------------------------------------------------------------- tiny build

    @pytest.mark.slow
    def test_the_tiny_build_is_byte_identical_across_processes(
        self, tiny: TinyBase, tmp_path: Path
    ) -> None:
        builds = []
        for n in (1, 2):
            out = tmp_path / f"build-{n}"
            out.mkdir()
            subprocess.run(
                [sys.executable, "-c", _BUILD, self.base_key, str(out)],
                check=True,
                capture_output=True,
                timeout=600,
            )
            builds.append(_tree_digest(out))
        assert builds[0] and builds[0] == builds[1]
        names = set(builds[0])
        assert "model.safetensors" in names or any(n.endswith(".safetensors") for n in names)
        pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
        assert not pickles, f"a tiny base ships weights as safetensors only: {pickles}"
