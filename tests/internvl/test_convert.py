"""The conversion of original InternVL checkpoints, proved against the original architecture.

A tiny checkpoint is written in the ORIGINAL layout (``tests/internvl/original.py``),
converted by the plugin, loaded through the Auto classes, and its logits for
an image + prompt compared with a plain-torch computation of the original
``InternVLChatModel`` on the original tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.internvl import original as orig

CASES = {
    # InternVL2: InternLM2 with packed wqkv, InternViT-300M style tower
    "internvl2": {"lm": "internlm2"},
    # InternVL3: Qwen2 language model, the real InternViT-300M settings
    "internvl3": {"lm": "qwen2"},
    # InternViT-6B style tower (RMSNorm, qk-norm) and tied embeddings
    "rms-qknorm-tied": {"lm": "qwen2", "norm_type": "rms_norm", "qk_norm": True, "tied": True},
}


def _figure(size: tuple[int, int]):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (240, 235, 200))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse([w // 6, h // 6, w - w // 6, h - h // 6], fill=(200, 30, 40))
    draw.rectangle([0, 0, w // 4, h // 5], fill=(20, 40, 220))
    return image


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from dlm_vl_internvl.convert import convert_checkpoint
    from transformers import AutoModelForImageTextToText, AutoProcessor

    case = CASES[request.param]
    root = tmp_path_factory.mktemp(f"convert-{request.param}")
    config, state = orig.write_original_checkpoint(
        root / "original",
        case["lm"],
        seed=11,
        norm_type=case.get("norm_type", "layer_norm"),
        qk_norm=case.get("qk_norm", False),
        tied=case.get("tied", False),
    )
    convert_checkpoint(root / "original", root / "native")
    model = AutoModelForImageTextToText.from_pretrained(root / "native", dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(root / "native")
    return request.param, root, config, state, model.eval(), processor


def _native_inputs(processor, image, question: str):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=False)


@pytest.mark.parametrize("size", [(224, 112), (112, 112), (90, 200)])
def test_converted_logits_equal_the_original_architecture(converted, size) -> None:
    _, root, config, state, model, processor = converted
    image = _figure(size)
    question = "Which component is this?"
    inputs = _native_inputs(processor, image, question)
    tokens_per_tile = 4  # 56² tile, 14 px patches, pixel shuffle 0.5

    # the processor's ids are exactly what InternVLChatModel.chat builds and tokenizes
    num_patches = inputs["pixel_values"].shape[0]
    query = orig.original_query(config["template"], question, num_patches, tokens_per_tile)
    if config["llm_config"]["model_type"] == "internlm2":
        original_ids = orig.OriginalInternLM2Tokenizer(root / "original")(query)
    else:
        from transformers import AutoTokenizer

        original_ids = AutoTokenizer.from_pretrained(root / "original")(query)["input_ids"]
    assert inputs["input_ids"][0].tolist() == original_ids

    image_token_id = processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert model.config.image_token_id == image_token_id
    with torch.no_grad():
        native = model(**inputs).logits[0]
    reference = orig.reference_logits(
        state, config, inputs["input_ids"][0], inputs["pixel_values"], image_token_id
    )
    assert native.shape == reference.shape
    # a real difference: random weights give logits of order 1-10
    assert reference.abs().max() > 1.0
    torch.testing.assert_close(native, reference, atol=2e-4, rtol=1e-4)


def test_a_wrong_head_split_would_be_caught(converted) -> None:
    """The comparison is sharp: swapping two query heads that share a key/value head
    (what a wrong ``wqkv`` split does) breaks it."""
    import copy

    _, _, config, state, model, processor = converted

    inputs = _native_inputs(processor, _figure((112, 112)), "Which component is this?")
    broken = copy.deepcopy(model)
    q = broken.model.language_model.layers[0].self_attn.q_proj.weight
    hd = config["llm_config"]["hidden_size"] // config["llm_config"]["num_attention_heads"]
    with torch.no_grad():
        q[:hd], q[hd : 2 * hd] = q[hd : 2 * hd].clone(), q[:hd].clone()
        logits = broken(**inputs).logits[0]
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    reference = orig.reference_logits(
        state, config, inputs["input_ids"][0], inputs["pixel_values"], image_token_id
    )
    assert (logits - reference).abs().max() > 1e-2


def test_tiles_follow_internvl_dynamic_preprocess(converted) -> None:
    """The processor's tiles (grid, order, thumbnail) are InternVL's own ``dynamic_preprocess``."""
    _, _, _, _, _, processor = converted
    for size in [(224, 112), (112, 112), (90, 200), (300, 60), (40, 40)]:
        image = _figure(size)
        mine = processor.image_processor(images=[image], crop_to_patches=True, return_tensors="pt")
        theirs = orig.to_pixels(orig.dynamic_preprocess(image, orig.MAX_TILES, orig.TILE))
        assert tuple(mine["pixel_values"].shape) == tuple(theirs.shape), size
        assert mine["num_patches"].tolist() == [theirs.shape[0]]
        # resampling differs slightly between PIL and torchvision; the layout may not
        diff = (mine["pixel_values"] - theirs).abs()
        assert float(diff.mean()) < 0.03, size


def test_converted_folder_is_native_and_complete(converted) -> None:
    import json

    _, root, config, state, model, processor = converted
    native = root / "native"
    saved = json.loads((native / "config.json").read_text())
    assert saved["model_type"] == "internvl"
    assert saved["architectures"] == ["InternVLForConditionalGeneration"]
    assert "auto_map" not in saved
    expected_text = "llama" if config["llm_config"]["model_type"] == "internlm2" else "qwen2"
    assert saved["text_config"]["model_type"] == expected_text
    assert not list(native.glob("*.py")), "no remote code in a converted base"
    # every original tensor landed (the split ones count by their parts)
    n_native = sum(p.numel() for p in model.parameters())
    assert n_native == sum(t.numel() for t in state.values())
    tokenizer = processor.tokenizer
    assert tokenizer.context_image_token == "<IMG_CONTEXT>"
    assert (tokenizer.start_image_token, tokenizer.end_image_token) == ("<img>", "</img>")
    assert len(tokenizer) == config["llm_config"]["vocab_size"]
    assert processor.image_processor.max_patches == orig.MAX_TILES
    assert processor.image_seq_length == 4
    stops = model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stops
    # plain text (prose rows) starts with BOS exactly where the original tokenizer adds one
    ids = tokenizer("A red circle.")["input_ids"]
    if config["llm_config"]["model_type"] == "internlm2":
        assert ids == orig.OriginalInternLM2Tokenizer(root / "original")("A red circle.")
        assert tokenizer.convert_tokens_to_ids("</s>") in stops
    else:
        assert (
            tokenizer.bos_token is None
            and ids == tokenizer("A red circle.", add_special_tokens=False)["input_ids"]
        )


def test_internlm2_tokenizer_matches_sentencepiece_with_a_dummy_prefix(tmp_path: Path) -> None:
    """With ``add_dummy_prefix`` every stretch between added tokens gets its own prefix, as in
    the slow tokenizer; the rebuilt one does the same."""
    from dlm_vl_internvl.convert import _internlm2_tokenizer as build
    from dlm_vl_internvl.convert import finish_tokenizer

    orig.write_internlm2_tokenizer(tmp_path, add_dummy_prefix=True)
    reference = orig.OriginalInternLM2Tokenizer(tmp_path)
    tokenizer = finish_tokenizer(tmp_path, "internlm2-chat", base_tokenizer=build(tmp_path))
    for text in [
        "A red circle on a white page.",
        "<|im_start|>user\n<img><IMG_CONTEXT></img>\nWhich  component?<|im_end|><|im_start|>assistant\n",
        " leading space, 中文 and émoji ✓\n\nnew lines",
    ]:
        assert tokenizer(text)["input_ids"] == reference(text), text
    plain = " leading space, 中文 and émoji ✓\n\nnew lines"
    ids = tokenizer(plain, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == reference.sp.decode(reference.sp.encode(plain))


def test_split_wqkv_inverts_internlm2_packing() -> None:
    from dlm_vl_internvl.convert import split_wqkv

    heads, kv, hd, hidden = 8, 2, 3, 5
    groups = heads // kv
    q = torch.randn(heads * hd, hidden)
    k = torch.randn(kv * hd, hidden)
    v = torch.randn(kv * hd, hidden)
    blocks = []
    for g in range(kv):  # InternLM2: per kv head, its query heads, then k, then v
        blocks.append(q[g * groups * hd : (g + 1) * groups * hd])
        blocks.append(k[g * hd : (g + 1) * hd])
        blocks.append(v[g * hd : (g + 1) * hd])
    packed = torch.cat(blocks)
    got = split_wqkv(packed, heads, kv, hd)
    for want, have in zip((q, k, v), got, strict=True):
        assert torch.equal(want, have)
    bias = split_wqkv(packed[:, 0], heads, kv, hd)
    assert torch.equal(bias[0], q[:, 0])


def test_unknown_tensors_and_unsupported_options_are_refused(tmp_path: Path) -> None:
    from dlm_vl_internvl.convert import ConversionError, check_supported, convert_state_dict

    config = orig.original_config("internlm2", 100)
    state = orig.random_state(config, 0)
    state["vision_model.encoder.layers.0.attn.extra_proj.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"no native name: .*extra_proj"):
        convert_state_dict(state, config)
    # a Qwen2 language model's names pass through; the fit to the native model catches them
    import json

    from dlm_vl_internvl.convert import convert_checkpoint
    from safetensors.torch import save_file

    orig.write_original_checkpoint(tmp_path / "src", "qwen2")
    extra = "language_model.model.layers.0.self_attn.extra_proj.weight"
    save_file({extra: torch.zeros(2)}, str(tmp_path / "src" / "extra.safetensors"))
    index_path = tmp_path / "src" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"][extra] = "extra.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ConversionError, match=r"do not fit the native model.*extra_proj"):
        convert_checkpoint(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    for change, message in [
        ({"ps_version": "v1"}, "pixel shuffle v1"),
        ({"template": "phi3-chat"}, "unsupported InternVL chat template"),
        ({"use_thumbnail": False}, "without a thumbnail"),
        ({"model_type": "llava"}, "not an original InternVL checkpoint"),
    ]:
        with pytest.raises(ConversionError, match=message):
            check_supported({**config, **change})
    bad_lm = {
        **config,
        "llm_config": {**config["llm_config"], "architectures": ["Phi3ForCausalLM"]},
    }
    with pytest.raises(ConversionError, match="Phi3ForCausalLM"):
        check_supported(bad_lm)
