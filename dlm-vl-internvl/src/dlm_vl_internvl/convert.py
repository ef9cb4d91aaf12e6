"""Convert an original InternVL checkpoint into transformers' native InternVL layout.

OpenGVLab publishes InternVL2 / InternVL3 as ``InternVLChatModel`` with
remote code. dlm never runs remote code, so a pinned original checkpoint is
converted once, locally, into what ``InternVLForConditionalGeneration`` +
``InternVLProcessor`` load:

- **config**: ``InternVLChatConfig`` (``vision_config`` + ``llm_config``) becomes
  ``InternVLConfig``: an ``InternVLVisionConfig`` and a Qwen2 text config
  (InternVL3) or a Llama text config (InternVL2's InternLM2, which is Llama
  with its projections packed).
- **weights**: vision tower, ``mlp1`` projector and language model renamed;
  the vision ``attn.qkv`` split into q/k/v; InternLM2's packed ``wqkv`` split
  by its grouped layout (per key/value head: the query heads of its group,
  then the key head, then the value head, ``head_dim`` rows each).
- **tokenizer / processor**: the original tokenizer (InternLM2's
  sentencepiece model rebuilt without remote code), the named image tokens
  ``<img>`` / ``</img>`` / ``<IMG_CONTEXT>``, InternVL's chat template, and a
  ``GotOcr2ImageProcessor`` doing InternVL's dynamic 448² tiling with a
  thumbnail, bounded by the checkpoint's ``max_dynamic_patch``.

The key renames follow transformers' own (now removed) script
``models/internvl/convert_internvl_weights_to_hf.py``, written out per key
so an unknown key is an error rather than passing through unrenamed.
torch/transformers are imported inside functions.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlm.errors import DlmError
from dlm_vl_internvl.templates import (
    IM_END,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    VIDEO,
    chat_template,
    style,
)

#: Bump when the converted output changes, so cached conversions are redone.
CONVERTER_VERSION = 1

#: The original checkpoints normalise with ImageNet statistics (InternVL's
#: ``build_transform``), not CLIP's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Language models the conversion knows, by ``llm_config.architectures[0]``.
LANGUAGE_MODELS = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2"}

#: Qwen2's end of document (InternVL3); InternLM2 uses ``</s>``, its EOS.
ENDOFTEXT = "<|endoftext|>"

#: Named image tokens the native processor reads from its tokenizer.
NAMED_IMAGE_TOKENS = {
    "start_image_token": IMG_START,
    "end_image_token": IMG_END,
    "context_image_token": IMG_CONTEXT,
}


class ConversionError(DlmError, ValueError):
    """The original checkpoint cannot be converted (unsupported option, unknown key…).

    A :class:`~dlm.errors.DlmError`, so the CLI prints it without a traceback.
    """

    subject = "convert"


# ------------------------------------------------------------------- config


def lm_kind(original: Mapping[str, Any]) -> str:
    """``"qwen2"`` or ``"internlm2"``: which language model the checkpoint carries."""
    llm = original.get("llm_config") or {}
    arch = (llm.get("architectures") or [None])[0]
    if arch not in LANGUAGE_MODELS:
        raise ConversionError(
            f"InternVL language model {arch!r} is not supported "
            f"(supported: {', '.join(sorted(LANGUAGE_MODELS))})"
        )
    return LANGUAGE_MODELS[arch]


def check_supported(original: Mapping[str, Any]) -> None:
    """Refuse checkpoint options the native architecture does not reproduce."""
    if original.get("model_type") != "internvl_chat":
        raise ConversionError(
            f"not an original InternVL checkpoint: model_type is {original.get('model_type')!r}, "
            "expected 'internvl_chat'"
        )
    lm_kind(original)
    try:
        style(original.get("template", ""))
    except ValueError as exc:
        raise ConversionError(str(exc)) from None
    problems = []
    if original.get("ps_version", "v1") != "v2":
        problems.append("pixel shuffle v1 (ps_version) differs from the native v2")
    if original.get("pad2square", False):
        problems.append("pad2square preprocessing has no native equivalent")
    if original.get("dynamic_image_size", False) and not original.get("use_thumbnail", False):
        problems.append("dynamic tiling without a thumbnail has no native equivalent")
    if original.get("use_backbone_lora") or original.get("use_llm_lora"):
        problems.append("checkpoints saved with LoRA wrappers are not supported")
    vision = original.get("vision_config") or {}
    forced, native = original.get("force_image_size"), vision.get("image_size")
    if forced and native and forced != native:
        problems.append("force_image_size differs from the vision tower's image_size")
    if problems:
        raise ConversionError("; ".join(problems))


def _rope_parameters(llm: Mapping[str, Any]) -> dict[str, Any]:
    theta = float(llm.get("rope_theta", 10000.0))
    scaling = llm.get("rope_scaling") or {}
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    params: dict[str, Any] = {"rope_type": kind, "rope_theta": theta}
    if kind != "default":
        params.update({k: v for k, v in scaling.items() if k not in ("type", "rope_type")})
    return params


def _text_config(original: Mapping[str, Any]) -> dict[str, Any]:
    llm = original["llm_config"]
    heads = llm["num_attention_heads"]
    common = {
        "vocab_size": llm["vocab_size"],
        "hidden_size": llm["hidden_size"],
        "intermediate_size": llm["intermediate_size"],
        "num_hidden_layers": llm["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": llm.get("num_key_value_heads", heads),
        "hidden_act": llm.get("hidden_act", "silu"),
        "max_position_embeddings": llm["max_position_embeddings"],
        "initializer_range": llm.get("initializer_range", 0.02),
        "rms_norm_eps": llm.get("rms_norm_eps", 1e-6),
        "rope_parameters": _rope_parameters(llm),
        "tie_word_embeddings": bool(llm.get("tie_word_embeddings", False)),
        "bos_token_id": llm.get("bos_token_id"),
        "eos_token_id": llm.get("eos_token_id"),
        "pad_token_id": llm.get("pad_token_id"),
        "use_cache": True,
    }
    if lm_kind(original) == "qwen2":
        return {
            "model_type": "qwen2",
            **common,
            "use_sliding_window": bool(llm.get("use_sliding_window", False)),
            "sliding_window": llm.get("sliding_window"),
            "max_window_layers": llm.get("max_window_layers", llm["num_hidden_layers"]),
            "attention_dropout": llm.get("attention_dropout", 0.0),
        }
    # InternLM2 is Llama with packed projections: its ``bias`` flag covers
    # wqkv and wo (q/k/v/o here); its feed-forward never has biases.
    return {
        "model_type": "llama",
        **common,
        "attention_bias": bool(llm.get("bias", False)),
        "mlp_bias": False,
        "head_dim": llm["hidden_size"] // heads,
    }


def _vision_config(original: Mapping[str, Any]) -> dict[str, Any]:
    vision = original["vision_config"]
    image_size = original.get("force_image_size") or vision["image_size"]
    return {
        "hidden_size": vision["hidden_size"],
        "num_hidden_layers": vision["num_hidden_layers"],
        "num_attention_heads": vision["num_attention_heads"],
        "intermediate_size": vision["intermediate_size"],
        "hidden_act": vision.get("hidden_act", "gelu"),
        "layer_norm_eps": vision.get("layer_norm_eps", 1e-6),
        "norm_type": vision.get("norm_type", "rms_norm"),
        "num_channels": vision.get("num_channels", 3),
        "image_size": image_size,
        "patch_size": vision["patch_size"],
        "attention_bias": bool(vision.get("qkv_bias", False)),
        "use_qk_norm": bool(vision.get("qk_normalization", False)),
        "attention_dropout": vision.get("attention_dropout", 0.0),
        "projection_dropout": vision.get("dropout", 0.0),
        # InternViT has stochastic depth (drop_path), no plain hidden dropout
        "hidden_dropout_prob": 0.0,
        "initializer_range": vision.get("initializer_range", 0.02),
        "layer_scale_init_value": vision.get("initializer_factor", 0.1),
        "use_absolute_position_embeddings": True,
        # InternViT has no final norm: the native tower's is an identity then
        "use_mean_pooling": True,
        "use_mask_token": False,
    }


def tokens_per_tile(original: Mapping[str, Any]) -> int:
    """LM tokens one tile becomes: patches per side squared, shrunk by the pixel shuffle."""
    vision = original["vision_config"]
    image_size = original.get("force_image_size") or vision["image_size"]
    side = image_size // vision["patch_size"]
    ratio = float(original.get("downsample_ratio", 0.5))
    return int(side * side * ratio * ratio)


def native_config(original: Mapping[str, Any], image_token_id: int) -> dict[str, Any]:
    """``InternVLConfig`` keyword arguments for an original ``InternVLChatConfig`` dict."""
    check_supported(original)
    text = _text_config(original)
    out: dict[str, Any] = {
        "vision_config": _vision_config(original),
        "text_config": text,
        "image_token_id": image_token_id,
        "image_seq_length": tokens_per_tile(original),
        "downsample_ratio": float(original.get("downsample_ratio", 0.5)),
        "projector_hidden_act": "gelu",  # mlp1 is LayerNorm, Linear, nn.GELU(), Linear
        "vision_feature_layer": int(original.get("select_layer", -1)),
        "vision_feature_select_strategy": "default",  # drop the CLS token
        "tie_word_embeddings": text["tie_word_embeddings"],
    }
    return out


def build_native_config(original: Mapping[str, Any], image_token_id: int) -> Any:
    from transformers import InternVLConfig

    config = InternVLConfig(**native_config(original, image_token_id))
    config.architectures = ["InternVLForConditionalGeneration"]
    return config


# ------------------------------------------------------------------ weights

_VISION_RENAMES: list[tuple[str, str]] = [
    (r"embeddings\.class_embedding", r"embeddings.cls_token"),
    (r"embeddings\.position_embedding", r"embeddings.position_embeddings"),
    (r"embeddings\.patch_embedding\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (
        r"encoder\.layers\.(\d+)\.attn\.proj\.(weight|bias)",
        r"encoder.layer.\1.attention.projection_layer.\2",
    ),
    (
        r"encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.(weight|bias)",
        r"encoder.layer.\1.attention.\2.\3",
    ),
    (r"encoder\.layers\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.layernorm_before.\2"),
    (r"encoder\.layers\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.layernorm_after.\2"),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"encoder.layer.\1.mlp.\2.\3"),
    (r"encoder\.layers\.(\d+)\.ls1", r"encoder.layer.\1.lambda_1"),
    (r"encoder\.layers\.(\d+)\.ls2", r"encoder.layer.\1.lambda_2"),
]
_VISION_QKV = re.compile(r"encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)")

_PROJECTOR_RENAMES: list[tuple[str, str]] = [
    (r"0\.(weight|bias)", r"layer_norm.\1"),
    (r"1\.(weight|bias)", r"linear_1.\1"),
    (r"3\.(weight|bias)", r"linear_2.\1"),
]

_INTERNLM2_RENAMES: list[tuple[str, str]] = [
    (r"model\.tok_embeddings\.weight", r"model.language_model.embed_tokens.weight"),
    (r"model\.norm\.weight", r"model.language_model.norm.weight"),
    (r"output\.weight", r"lm_head.weight"),
    (
        r"model\.layers\.(\d+)\.attention\.wo\.(weight|bias)",
        r"model.language_model.layers.\1.self_attn.o_proj.\2",
    ),
    (
        r"model\.layers\.(\d+)\.feed_forward\.w1\.weight",
        r"model.language_model.layers.\1.mlp.gate_proj.weight",
    ),
    (
        r"model\.layers\.(\d+)\.feed_forward\.w2\.weight",
        r"model.language_model.layers.\1.mlp.down_proj.weight",
    ),
    (
        r"model\.layers\.(\d+)\.feed_forward\.w3\.weight",
        r"model.language_model.layers.\1.mlp.up_proj.weight",
    ),
    (
        r"model\.layers\.(\d+)\.attention_norm\.weight",
        r"model.language_model.layers.\1.input_layernorm.weight",
    ),
    (
        r"model\.layers\.(\d+)\.ffn_norm\.weight",
        r"model.language_model.layers.\1.post_attention_layernorm.weight",
    ),
]
_INTERNLM2_WQKV = re.compile(r"model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)")

_QWEN2_RENAMES: list[tuple[str, str]] = [
    (r"model\.(.+)", r"model.language_model.\1"),
    (r"lm_head\.weight", r"lm_head.weight"),
]

#: Buffers some checkpoints carry that the native model recomputes.
_DROPPED = re.compile(r".*rotary_emb\.inv_freq")


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return re.sub(f"^{pattern}$", replacement, key)
    return None


def split_vision_qkv(tensor: Any, dim: int) -> tuple[Any, Any, Any]:
    """InternViT's fused ``qkv`` rows are ``[q; k; v]``, ``dim`` rows each."""
    if tensor.shape[0] != 3 * dim:
        raise ConversionError(f"vision qkv has {tensor.shape[0]} rows, expected {3 * dim}")
    return tensor[:dim].clone(), tensor[dim : 2 * dim].clone(), tensor[2 * dim :].clone()


def split_wqkv(
    tensor: Any, num_heads: int, num_kv_heads: int, head_dim: int
) -> tuple[Any, Any, Any]:
    """Split InternLM2's packed ``wqkv`` (weight or bias) into q, k, v.

    Rows are grouped per key/value head ``g``: the ``num_heads // num_kv_heads``
    query heads that share it, then key head ``g``, then value head ``g``
    (``head_dim`` rows each) — InternLM2's
    ``rearrange(qkv, 'b q (h gs d) -> b q h gs d', gs=2 + groups)``.
    """
    groups = num_heads // num_kv_heads
    rows = num_kv_heads * (groups + 2) * head_dim
    if tensor.shape[0] != rows:
        raise ConversionError(f"wqkv has {tensor.shape[0]} rows, expected {rows}")
    blocks = tensor.reshape(num_kv_heads, groups + 2, head_dim, *tensor.shape[1:])
    q = blocks[:, :groups].reshape(num_heads * head_dim, *tensor.shape[1:])
    k = blocks[:, groups].reshape(num_kv_heads * head_dim, *tensor.shape[1:])
    v = blocks[:, groups + 1].reshape(num_kv_heads * head_dim, *tensor.shape[1:])
    return q.contiguous(), k.contiguous(), v.contiguous()


def convert_state_dict(state: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
    """The original checkpoint's tensors under the native model's names.

    Raises :class:`ConversionError` on a key it does not know, so a layout
    change upstream fails loudly instead of leaving weights at random init.
    """
    kind = lm_kind(original)
    llm = original["llm_config"]
    vision_dim = original["vision_config"]["hidden_size"]
    heads = llm["num_attention_heads"]
    kv_heads = llm.get("num_key_value_heads", heads)
    head_dim = llm["hidden_size"] // heads
    tied = bool(llm.get("tie_word_embeddings", False))
    out: dict[str, Any] = {}
    unknown: list[str] = []

    def put(key: str, tensor: Any) -> None:
        if key in out:
            raise ConversionError(f"two original tensors map to {key}")
        out[key] = tensor

    for key, tensor in state.items():
        if _DROPPED.fullmatch(key):
            continue
        if key.startswith("vision_model."):
            rest = key[len("vision_model.") :]
            if m := _VISION_QKV.fullmatch(rest):
                layer, kind_ = m.groups()
                prefix = f"model.vision_tower.encoder.layer.{layer}.attention"
                for name, part in zip("qkv", split_vision_qkv(tensor, vision_dim), strict=True):
                    put(f"{prefix}.{name}_proj.{kind_}", part)
                continue
            new = _rename(rest, _VISION_RENAMES)
            if new is not None:
                put(f"model.vision_tower.{new}", tensor)
                continue
        elif key.startswith("mlp1."):
            new = _rename(key[len("mlp1.") :], _PROJECTOR_RENAMES)
            if new is not None:
                put(f"model.multi_modal_projector.{new}", tensor)
                continue
        elif key.startswith("language_model."):
            rest = key[len("language_model.") :]
            if kind == "internlm2" and (m := _INTERNLM2_WQKV.fullmatch(rest)):
                layer, kind_ = m.groups()
                prefix = f"model.language_model.layers.{layer}.self_attn"
                parts = split_wqkv(tensor, heads, kv_heads, head_dim)
                for name, part in zip("qkv", parts, strict=True):
                    put(f"{prefix}.{name}_proj.{kind_}", part)
                continue
            rules = _INTERNLM2_RENAMES if kind == "internlm2" else _QWEN2_RENAMES
            new = _rename(rest, rules)
            if new is not None:
                if new == "lm_head.weight" and tied:
                    continue  # tied to the embeddings: the native model ties it back
                put(new, tensor)
                continue
        unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:8]) + (" …" if len(unknown) > 8 else "")
        raise ConversionError(f"{len(unknown)} original tensors have no native name: {shown}")
    return out


def load_original_state_dict(src: Path) -> dict[str, Any]:
    """Every tensor of the original checkpoint (safetensors only, sharded or not)."""
    from safetensors.torch import load_file

    index = src / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in src.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{src} holds no safetensors weights")
    state: dict[str, Any] = {}
    for name in files:
        state.update(load_file(str(src / name)))
    return state


# ---------------------------------------------------------------- tokenizer


def _added_tokens(src: Path) -> dict[int, dict[str, Any]]:
    """``added_tokens_decoder`` of the original ``tokenizer_config.json`` (id → token)."""
    path = src / "tokenizer_config.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {int(k): v for k, v in (data.get("added_tokens_decoder") or {}).items()}


def _internlm2_tokenizer(src: Path) -> Any:
    """InternLM2's sentencepiece tokenizer, rebuilt as a ``tokenizers`` tokenizer.

    The original ``InternLM2Tokenizer`` is remote code around
    ``tokenizer.model``: sentencepiece on each stretch of text between added
    tokens, BOS prepended. Here the model's own normalizer settings (dummy
    prefix, whitespace) are followed and every added token keeps its id.
    """
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter

    model_file = src / "tokenizer.model"
    if not model_file.exists():
        raise ConversionError(f"{src} has no tokenizer.model for the InternLM2 tokenizer")
    proto = SentencePieceExtractor(str(model_file)).proto
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    if backend is None:
        raise ConversionError(f"{model_file} is not a BPE or unigram sentencepiece model")
    added = _added_tokens(src)
    for token_id in sorted(added):
        info = added[token_id]
        content = info["content"]
        current = backend.token_to_id(content)
        if current is None:
            if token_id != backend.get_vocab_size():
                raise ConversionError(
                    f"added token {content!r} has id {token_id}, but the next free id is "
                    f"{backend.get_vocab_size()}"
                )
            backend.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        elif current != token_id:
            raise ConversionError(f"token {content!r} is id {current}, the config says {token_id}")
        else:
            backend.add_special_tokens([AddedToken(content, special=True, normalized=False)])
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))

    def named(key: str, default: str) -> str:
        value = config.get(key, default)
        return value["content"] if isinstance(value, dict) else value

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=named("bos_token", "<s>"),
        eos_token=named("eos_token", "</s>"),
        unk_token=named("unk_token", "<unk>"),
        pad_token=named("pad_token", "</s>"),
        add_bos_token=bool(config.get("add_bos_token", True)),
        add_eos_token=bool(config.get("add_eos_token", False)),
        clean_up_tokenization_spaces=False,
        model_max_length=int(config.get("model_max_length", 32768)),
    )


#: Tokens that may stand for videos, in order of preference (see :func:`_video_token`).
VIDEO_TOKEN_CANDIDATES = (VIDEO, "<|video_pad|>", "<|plugin|>")


def _video_token(tokenizer: Any) -> str:
    """The processor needs a video token distinct from the image one; dlm never passes videos.

    The original checkpoints have none (InternVL feeds frames as images).
    An unused token already in the vocabulary is named rather than adding
    an id the embeddings do not have: ``<video>`` where it exists, Qwen2's
    ``<|video_pad|>`` (InternVL3), InternLM2's unused ``<|plugin|>`` (InternVL2).
    Text containing it is refused by the processor (no video was passed).
    """
    vocab = tokenizer.get_vocab()
    for candidate in VIDEO_TOKEN_CANDIDATES:
        if candidate in vocab:
            return candidate
    raise ConversionError(
        f"the tokenizer has none of {list(VIDEO_TOKEN_CANDIDATES)} to name as the video token"
    )


_TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)


def finish_tokenizer(tokenizer_dir: Path, template: str, *, base_tokenizer: Any = None) -> Any:
    """The native tokenizer: named image tokens and InternVL's chat template.

    ``base_tokenizer`` is a tokenizer built in memory (InternLM2); otherwise
    the tokenizer saved in ``tokenizer_dir`` is loaded (Qwen2, no remote code).
    """
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        if base_tokenizer is not None:
            base_tokenizer.save_pretrained(tmp)
        else:
            # the tokenizer files alone: beside the remote-code config.json,
            # transformers would try to read the model type from it
            for path in Path(tokenizer_dir).iterdir():
                if path.is_file() and path.name in _TOKENIZER_FILES:
                    shutil.copyfile(path, Path(tmp) / path.name)
        tokenizer_dir = Path(tmp)
        plain = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
        vocab = plain.get_vocab()
        missing = [tok for tok in (IMG_START, IMG_END, IMG_CONTEXT, IM_END) if tok not in vocab]
        if missing:
            raise ConversionError(f"the tokenizer lacks InternVL's tokens {missing}")
        extra = [str(t) for t in plain.extra_special_tokens]
        named = {**NAMED_IMAGE_TOKENS, "video_token": _video_token(plain)}
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_dir, trust_remote_code=False, extra_special_tokens=named
        )
    if extra:  # loading with named tokens drops the plain list; the ids stay
        tokenizer.add_special_tokens(
            {"extra_special_tokens": extra}, replace_extra_special_tokens=False
        )
    if len(tokenizer) != len(plain):
        raise ConversionError(
            f"naming the image tokens changed the vocabulary ({len(plain)} → {len(tokenizer)})"
        )
    tokenizer.chat_template = chat_template(template)
    return tokenizer


def convert_tokenizer(src: Path, original: Mapping[str, Any]) -> Any:
    template = original["template"]
    if lm_kind(original) == "internlm2":
        return finish_tokenizer(src, template, base_tokenizer=_internlm2_tokenizer(src))
    return finish_tokenizer(src, template)


# ---------------------------------------------------------------- processor


def build_processor(
    tokenizer: Any,
    *,
    tile_size: int,
    min_tiles: int,
    max_tiles: int,
    tokens_per_tile: int,
    template: str,
) -> Any:
    """``InternVLProcessor``: InternVL's dynamic tiling (thumbnail included) and its template.

    ``max_tiles`` 1 means one tile of ``tile_size`` for every image.
    """
    from transformers import GotOcr2ImageProcessor, InternVLProcessor
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    image_processor = GotOcr2ImageProcessor(
        size={"height": tile_size, "width": tile_size},
        crop_to_patches=True,
        min_patches=min_tiles,
        max_patches=max_tiles,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )
    video_processor = InternVLVideoProcessor(
        size={"height": tile_size, "width": tile_size},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    return InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=tokens_per_tile,
        chat_template=chat_template(template),
    )


def processor_for(original: Mapping[str, Any], tokenizer: Any) -> Any:
    vision = original["vision_config"]
    dynamic = bool(original.get("dynamic_image_size", False))
    return build_processor(
        tokenizer,
        tile_size=int(original.get("force_image_size") or vision["image_size"]),
        min_tiles=int(original.get("min_dynamic_patch", 1)) if dynamic else 1,
        max_tiles=int(original.get("max_dynamic_patch", 12)) if dynamic else 1,
        tokens_per_tile=tokens_per_tile(original),
        template=original["template"],
    )


def generation_config(tokenizer: Any) -> Any:
    """A turn ends at ``<|im_end|>``; a document at the EOS token (``</s>`` or ``<|endoftext|>``)."""
    from transformers import GenerationConfig

    stops: list[int] = []
    for token in (IM_END, tokenizer.eos_token, ENDOFTEXT):
        token_id = tokenizer.get_vocab().get(token) if token else None
        if token_id is not None and token_id not in stops:
            stops.append(token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[-1]
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stops, pad_token_id=pad
    )


# ------------------------------------------------------------------- driver


def convert_checkpoint(
    src: Path,
    dst: Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Convert the original checkpoint in ``src`` into a native one written to ``dst``.

    Weights keep their stored dtype. Every native parameter must come from
    the checkpoint (no random init survives) and every original tensor must
    land somewhere.
    """
    import torch
    from transformers import InternVLForConditionalGeneration

    say = progress or (lambda _msg: None)
    src, dst = Path(src), Path(dst)
    original = json.loads((src / "config.json").read_text(encoding="utf-8"))
    check_supported(original)

    say("converting the tokenizer")
    tokenizer = convert_tokenizer(src, original)
    image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    config = build_native_config(original, image_token_id)
    if len(tokenizer) > config.text_config.vocab_size:
        raise ConversionError(
            f"the tokenizer has {len(tokenizer)} tokens but the model only "
            f"{config.text_config.vocab_size} embedding rows"
        )

    say("renaming the weights")
    state = convert_state_dict(load_original_state_dict(src), original)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    # one stored precision is kept as is; a mixed checkpoint is widened to float32
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    expected = set(model.state_dict())
    tied = bool(config.tie_word_embeddings)
    if tied:
        expected.discard("lm_head.weight")
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ConversionError(
            f"converted weights do not fit the native model: missing {missing[:6]}, "
            f"unexpected {unexpected[:6]}"
        )
    for key, tensor in model.state_dict().items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise ConversionError(
                f"{key}: converted shape {tuple(state[key].shape)}, "
                f"native shape {tuple(tensor.shape)}"
            )
    if tied:
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if tied:
        model.tie_weights()
    model.config.dtype = dtype
    model.generation_config = generation_config(tokenizer)

    say("writing the native checkpoint")
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    processor_for(original, tokenizer).save_pretrained(dst)
