"""The plugin author's kit (``dlm.kit``): each tool on its own, with fakes and tiny corpora.

The tiny bases that are built with it are checked in each family's own tests
(two builds, the same bytes); here each tool's contract is pinned.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

import dlm
from dlm import kit
from tests.core.test_family_generic import _base

CORPUS = "A red circle on a white page.\nA blue square on a cream page.\n" * 3


def test_the_kit_is_public_and_light() -> None:
    assert "dlm.kit" in dlm.PUBLIC_API
    assert all(hasattr(kit, name) for name in kit.__all__)
    # importing it must not pull in the engine, the CLI or the ML libraries
    code = (
        "import sys, dlm.kit; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', "
        "'tokenizers') or m.startswith(('dlm.engine', 'dlm.cli'))]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ files and places


def test_dlm_home_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_HOME", "rel")
    assert kit.dlm_home() == tmp_path / "rel"
    monkeypatch.delenv("DLM_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kit.dlm_home() == tmp_path / ".dlm"


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert kit.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_text_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    kit.atomic_write_text(path, "névé\n")
    assert path.read_bytes() == "névé\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_gib() -> None:
    assert kit.GIB == 1024**3


# ------------------------------------------------------------------ build once


def _build(calls: list[Path], fail: bool = False) -> Any:
    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "weights").write_bytes(b"w")
        os.chmod(folder / "weights", 0o600)  # as safetensors leaves it
        if fail:
            raise RuntimeError("half way")

    return build


def test_build_once_builds_once_and_rebuilds_on_a_new_marker(tmp_path: Path) -> None:
    target = tmp_path / "bases" / "conv"
    calls: list[Path] = []
    assert kit.build_once(target, "made.json", {"rev": 1}, _build(calls)) == target
    assert kit.build_once(target, "made.json", {"rev": 1}, _build(calls)) == target
    assert len(calls) == 1
    assert calls[0].parent == target.parent and calls[0].name.startswith(".conv.build-")
    assert json.loads((target / "made.json").read_text()) == {"rev": 1}
    # readable by others, as a plain write would make it (libraries leave 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((target / "weights").stat().st_mode) == 0o666 & ~umask
    (target / "stale").write_text("from the old build")
    kit.build_once(target, "made.json", {"rev": 2}, _build(calls))
    assert len(calls) == 2 and not (target / "stale").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".conv.lock", "conv"]


def test_a_failed_build_once_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "conv"
    with pytest.raises(RuntimeError, match="half way"):
        kit.build_once(target, "made.json", {"rev": 1}, _build([], fail=True))
    assert [p.name for p in tmp_path.iterdir()] == [".conv.lock"]


def test_file_lock_is_exclusive(tmp_path: Path) -> None:
    code = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); "
        "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    lock = tmp_path / ".x.lock"
    with kit.file_lock(lock):
        held = subprocess.run([sys.executable, "-c", code, str(lock)], capture_output=True)
    assert held.returncode != 0  # another process cannot take it meanwhile
    subprocess.run([sys.executable, "-c", code, str(lock)], check=True)


# ------------------------------------------------------------------ tiny tokenizers


def test_byte_level_bpe_is_deterministic_with_specials_first() -> None:
    first = kit.train_byte_level_bpe(CORPUS, 300, r"\s+|\w+|[^\s\w]+", special_tokens=["<s>"])
    second = kit.train_byte_level_bpe(CORPUS, 300, r"\s+|\w+|[^\s\w]+", special_tokens=["<s>"])
    assert first.to_str() == second.to_str()
    assert first.token_to_id("<s>") == 0
    ids = first.encode("A red square?").ids
    assert first.decode(ids) == "A red square?"  # every byte round-trips
    made: dict[str, Any] = {}
    kit.tokenizer_from_bpe(lambda **kwargs: made.update(kwargs), first, errors="replace")
    assert made["vocab"] == first.get_vocab() and made["errors"] == "replace"
    assert made["merges"] and all(isinstance(m, tuple) and len(m) == 2 for m in made["merges"])


def test_qwen2_split_pattern_is_the_tokenizers_own() -> None:
    # the pattern families declare to llama.cpp and train tiny tokenizers with
    # is Qwen2's, as transformers ships it
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    assert kit.QWEN2_SPLIT_PATTERN == PRETOKENIZE_REGEX


def test_the_shared_prose_trains_the_same_tokenizer_in_any_line_order() -> None:
    # families compose their corpus as their own lines plus the kit's prose;
    # that keeps their tiny tokenizers as they were only because line order is moot
    lines = (kit.TINY_PROSE + kit.TINY_SCENES).splitlines(keepends=True)
    assert len(lines) == len(set(lines)) and all(line.endswith("\n") for line in lines)
    forward = kit.train_byte_level_bpe("".join(lines), 600, kit.QWEN2_SPLIT_PATTERN, nfc=True)
    backward = kit.train_byte_level_bpe(
        "".join(reversed(lines)), 600, kit.QWEN2_SPLIT_PATTERN, nfc=True
    )
    assert forward.to_str() == backward.to_str()


def test_nfc_normalises_before_training() -> None:
    decomposed = "cafe\u0301 " * 20
    nfc = kit.train_byte_level_bpe(decomposed, 300, r"\S+|\s+", nfc=True)
    raw = kit.train_byte_level_bpe(decomposed, 300, r"\S+|\s+")
    assert "café" in nfc.decode(nfc.encode("café").ids)
    assert nfc.to_str() != raw.to_str()


def test_train_bpe_with_byte_fallback() -> None:
    from tokenizers import pre_tokenizers

    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    tok = kit.train_bpe(
        CORPUS,
        400,
        pre_tokenizer=pre_tokenizers.Whitespace(),
        special_tokens=["<unk>", *bytes_],
        byte_fallback=True,
        unk_token="<unk>",
    )
    assert tok.token_to_id("<unk>") == 0 and tok.token_to_id("<0x00>") == 1
    # a character the corpus never had falls back to its bytes, not <unk>
    assert "<0xE2>" in tok.encode("→").tokens


# ------------------------------------------------------------------ tiny bases


class _Saved:
    def __init__(self, what: str, value: Any = None) -> None:
        self.what, self.value = what, value

    def save_pretrained(self, out_dir: Path) -> None:
        (out_dir / self.what).write_text(repr(self.value))


def test_write_tiny_base_seeds_and_leaves_the_rng_alone(tmp_path: Path) -> None:
    import torch

    def model(seed: int) -> _Saved:
        torch.manual_seed(seed)
        return _Saved("model", (seed, torch.rand(1).item()))

    torch.manual_seed(1234)
    expected_next = torch.rand(1).item()
    torch.manual_seed(1234)
    kit.write_tiny_base(_base(), tmp_path / "a", _Saved("processor"), model, 7)
    assert torch.rand(1).item() == expected_next  # the caller's random state is untouched
    kit.write_tiny_base(_base(), tmp_path / "b", _Saved("processor"), model, 7)
    seeded = attrs.evolve(_base(), extra={"seed": 3})
    kit.write_tiny_base(seeded, tmp_path / "c", _Saved("processor"), model, 7)
    assert (tmp_path / "a" / "model").read_text() == (tmp_path / "b" / "model").read_text()
    assert (tmp_path / "a" / "model").read_text().startswith("(7,")
    assert (tmp_path / "c" / "model").read_text().startswith("(3,")
    assert (tmp_path / "a" / "processor").exists()


def test_text_config_reads_a_transformers_config() -> None:
    from dlm.records import TextConfig

    cfg = {
        "num_hidden_layers": 28, "hidden_size": 1536, "intermediate_size": 8960,
        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
        "max_position_embeddings": 32768,
    }  # fmt: skip
    assert kit.text_config(cfg) == TextConfig(
        num_layers=28, hidden_size=1536, intermediate_size=8960, num_heads=12,
        num_kv_heads=2, vocab_size=151936, max_position=32768, head_dim=None,
    )  # fmt: skip
    # head_dim when the config states it; kv heads default to the heads; overrides win
    gemma = {**cfg, "head_dim": 256}
    del gemma["num_key_value_heads"], gemma["max_position_embeddings"]
    text = kit.text_config(gemma, max_position=8192)
    assert (text.head_dim, text.num_kv_heads, text.max_position) == (256, 12, 8192)
    with pytest.raises(KeyError, match="max_position_embeddings"):
        kit.text_config(gemma)  # missing and not overridden: no silent default


def test_vision_config_reads_a_vit_config_or_overrides() -> None:
    vit = {"num_hidden_layers": 27, "hidden_size": 1152, "intermediate_size": 4304,
           "num_attention_heads": 16}  # fmt: skip
    vision = kit.vision_config(vit, 256)
    assert (vision.num_layers, vision.hidden_size, vision.patches_per_image) == (27, 1152, 256)
    assert vision.block_mask is False
    assert kit.vision_config(vit, 256, block_mask=True).block_mask is True
    qwen = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16}
    named = kit.vision_config(
        qwen, 1024, num_layers=32, hidden_size=1280, intermediate_size=5120, num_heads=16
    )
    assert (named.num_layers, named.intermediate_size) == (32, 5120)
