"""Tiny checkpoints in InternVL's ORIGINAL (remote-code) layout, and that architecture in plain torch.

Nothing here uses transformers' InternVL classes or the plugin's converter:
the state dict is written with the original checkpoints' tensor names and
shapes (``vision_model.*`` InternViT, ``mlp1.*``, ``language_model.*`` as
InternLM2 with packed ``wqkv`` or as Qwen2), and :func:`reference_logits`
computes what ``InternVLChatModel`` computes, following its source:
InternViT (fused qkv, layer scale, pre-norm), pixel shuffle v2, the ``mlp1``
projector, ``<IMG_CONTEXT>`` embeddings replaced by image features, and the
language model (InternLM2's grouped ``wqkv`` layout, rotate-half RoPE, GQA).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

TILE = 56
PATCH = 14
MAX_TILES = 4

INTERNLM2_SPECIALS = (
    "<|plugin|>",
    "<|interpreter|>",
    "<|action_end|>",
    "<|action_start|>",
    "<|im_end|>",
    "<|im_start|>",
)
INTERNVL_TOKENS = (
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)

SP_CORPUS = """\
Describe this image. What is in this picture? Which component is this?
A red circle on a white page. A blue square on a cream page.
The cache layer keeps recent answers close. The query encoder turns words into vectors.
The quick brown fox jumps over the lazy dog, and the lazy dog does not mind.
Numbers: 0 1 2 3 4 5 6 7 8 9, and some punctuation: (a) [b] {c}; "quoted" text!
"""


# ------------------------------------------------------------------ configs


def original_config(
    lm: str,
    vocab_size: int,
    *,
    norm_type: str = "layer_norm",
    qk_norm: bool = False,
    tied: bool = False,
) -> dict[str, Any]:
    vision = {
        "architectures": ["InternVisionModel"],
        "model_type": "intern_vit_6b",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "norm_type": norm_type,
        "image_size": TILE,
        "patch_size": PATCH,
        "num_channels": 3,
        "qkv_bias": True,
        "qk_normalization": qk_norm,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "drop_path_rate": 0.0,
        "initializer_factor": 0.1,
        "initializer_range": 0.02,
    }
    if lm == "internlm2":
        llm = {
            "architectures": ["InternLM2ForCausalLM"],
            "model_type": "internlm2",
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000,
            "rope_scaling": {"type": "dynamic", "factor": 2.0},
            "max_position_embeddings": 512,
            "bias": False,
            "vocab_size": vocab_size,
            "tie_word_embeddings": tied,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
        }
        template = "internlm2-chat"
    else:
        llm = {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 512,
            "use_sliding_window": False,
            "vocab_size": vocab_size,
            "tie_word_embeddings": tied,
        }
        template = "internvl2_5"
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": TILE,
        "max_dynamic_patch": MAX_TILES,
        "min_dynamic_patch": 1,
        "use_thumbnail": True,
        "ps_version": "v2",
        "select_layer": -1,
        "pad2square": False,
        "template": template,
        "llm_config": llm,
        "vision_config": vision,
    }


# ------------------------------------------------------------------ weights


def random_state(config: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for every tensor of the original layout (norms near 1, scales varied)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    def norm(dim: int) -> torch.Tensor:
        return 1.0 + rnd(dim, scale=0.1)

    vision, llm = config["vision_config"], config["llm_config"]
    d, inter = vision["hidden_size"], vision["intermediate_size"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    s: dict[str, torch.Tensor] = {
        "vision_model.embeddings.class_embedding": rnd(1, 1, d),
        "vision_model.embeddings.patch_embedding.weight": rnd(d, 3, PATCH, PATCH, scale=0.05),
        "vision_model.embeddings.patch_embedding.bias": rnd(d),
        "vision_model.embeddings.position_embedding": rnd(1, patches + 1, d),
    }
    for i in range(vision["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        s[p + "attn.qkv.weight"] = rnd(3 * d, d)
        s[p + "attn.qkv.bias"] = rnd(3 * d)
        s[p + "attn.proj.weight"] = rnd(d, d)
        s[p + "attn.proj.bias"] = rnd(d)
        if vision["qk_normalization"]:
            s[p + "attn.q_norm.weight"] = norm(d)
            s[p + "attn.k_norm.weight"] = norm(d)
        for n in ("norm1", "norm2"):
            s[p + f"{n}.weight"] = norm(d)
            if vision["norm_type"] == "layer_norm":
                s[p + f"{n}.bias"] = rnd(d, scale=0.05)
        s[p + "mlp.fc1.weight"] = rnd(inter, d)
        s[p + "mlp.fc1.bias"] = rnd(inter)
        s[p + "mlp.fc2.weight"] = rnd(d, inter)
        s[p + "mlp.fc2.bias"] = rnd(d)
        s[p + "ls1"] = 0.5 + rnd(d, scale=0.1)
        s[p + "ls2"] = 0.5 + rnd(d, scale=0.1)

    h, ffn, vocab = llm["hidden_size"], llm["intermediate_size"], llm["vocab_size"]
    heads, kv = llm["num_attention_heads"], llm["num_key_value_heads"]
    hd = h // heads
    shuffled = d * 4
    s["mlp1.0.weight"] = norm(shuffled)
    s["mlp1.0.bias"] = rnd(shuffled, scale=0.05)
    s["mlp1.1.weight"] = rnd(h, shuffled, scale=0.1)
    s["mlp1.1.bias"] = rnd(h)
    s["mlp1.3.weight"] = rnd(h, h)
    s["mlp1.3.bias"] = rnd(h)

    lm = "language_model."
    if llm["model_type"] == "internlm2":
        s[lm + "model.tok_embeddings.weight"] = rnd(vocab, h, scale=1.0)
        for i in range(llm["num_hidden_layers"]):
            p = f"{lm}model.layers.{i}."
            s[p + "attention.wqkv.weight"] = rnd((heads + 2 * kv) * hd, h)
            s[p + "attention.wo.weight"] = rnd(h, heads * hd)
            s[p + "feed_forward.w1.weight"] = rnd(ffn, h)
            s[p + "feed_forward.w2.weight"] = rnd(h, ffn)
            s[p + "feed_forward.w3.weight"] = rnd(ffn, h)
            s[p + "attention_norm.weight"] = norm(h)
            s[p + "ffn_norm.weight"] = norm(h)
        s[lm + "model.norm.weight"] = norm(h)
        if not llm["tie_word_embeddings"]:
            s[lm + "output.weight"] = rnd(vocab, h)
    else:
        s[lm + "model.embed_tokens.weight"] = rnd(vocab, h, scale=1.0)
        for i in range(llm["num_hidden_layers"]):
            p = f"{lm}model.layers.{i}."
            for name, rows in (("q", heads * hd), ("k", kv * hd), ("v", kv * hd)):
                s[p + f"self_attn.{name}_proj.weight"] = rnd(rows, h)
                s[p + f"self_attn.{name}_proj.bias"] = rnd(rows)
            s[p + "self_attn.o_proj.weight"] = rnd(h, heads * hd)
            s[p + "mlp.gate_proj.weight"] = rnd(ffn, h)
            s[p + "mlp.up_proj.weight"] = rnd(ffn, h)
            s[p + "mlp.down_proj.weight"] = rnd(h, ffn)
            s[p + "input_layernorm.weight"] = norm(h)
            s[p + "post_attention_layernorm.weight"] = norm(h)
        s[lm + "model.norm.weight"] = norm(h)
        if not llm["tie_word_embeddings"]:
            s[lm + "lm_head.weight"] = rnd(vocab, h)
    return s


# ---------------------------------------------------------------- tokenizers


def train_sentencepiece(*, add_dummy_prefix: bool) -> bytes:
    """An InternLM2-style sentencepiece BPE model: byte fallback, chat tokens user-defined."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SP_CORPUS.splitlines()),
        model_writer=out,
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=add_dummy_prefix,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        user_defined_symbols=list(INTERNLM2_SPECIALS),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return out.getvalue()


def write_internlm2_tokenizer(folder: Path, *, add_dummy_prefix: bool = False) -> int:
    """``tokenizer.model`` + ``tokenizer_config.json`` as InternVL2 ships them; returns the vocab size."""
    import sentencepiece as spm

    model = train_sentencepiece(add_dummy_prefix=add_dummy_prefix)
    (folder / "tokenizer.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    size = sp.get_piece_size()
    added: dict[str, Any] = {}
    for token in INTERNLM2_SPECIALS:
        added[str(sp.piece_to_id(token))] = {"content": token, "special": True}
    for offset, token in enumerate(INTERNVL_TOKENS):
        added[str(size + offset)] = {"content": token, "special": True}
    for tid, piece in ((0, "<unk>"), (1, "<s>"), (2, "</s>")):
        added[str(tid)] = {"content": piece, "special": True}
    config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": 4096,
        "added_tokens_decoder": added,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return size + len(INTERNVL_TOKENS)


class OriginalInternLM2Tokenizer:
    """What the remote-code ``InternLM2Tokenizer`` does: a slow tokenizer over sentencepiece.

    Added tokens are matched first (longest first); the text between them is
    encoded by sentencepiece on its own; BOS is prepended.
    """

    def __init__(self, folder: Path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        self.added = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
        tokens = sorted(self.added, key=len, reverse=True)
        self.pattern = re.compile("(" + "|".join(re.escape(t) for t in tokens) + ")")

    def __call__(self, text: str) -> list[int]:
        ids = [self.added["<s>"]]
        for chunk in self.pattern.split(text):
            if not chunk:
                continue
            if chunk in self.added:
                ids.append(self.added[chunk])
            else:
                ids.extend(self.sp.encode(chunk))
        return ids


def write_qwen2_tokenizer(folder: Path) -> int:
    """A Qwen2 byte-level BPE with Qwen's chat tokens and InternVL's tokens, as InternVL3 ships it."""
    from dlm_vl_internvl.tiny import build_plain_tokenizer

    tokenizer = build_plain_tokenizer()
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def write_original_checkpoint(
    folder: Path,
    lm: str,
    *,
    seed: int = 0,
    norm_type: str = "layer_norm",
    qk_norm: bool = False,
    tied: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A complete original-layout checkpoint folder; returns (config, state dict)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if lm == "internlm2":
        vocab = write_internlm2_tokenizer(folder)
    else:
        vocab = write_qwen2_tokenizer(folder)
    config = original_config(lm, vocab, norm_type=norm_type, qk_norm=qk_norm, tied=tied)
    state = random_state(config, seed)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    # two shards with an index, as the real checkpoints are stored
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half]}
    shards["model-00002-of-00002.safetensors"] = keys[half:]
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({k: state[k].contiguous() for k in shard_keys}, str(folder / name))
        weight_map.update(dict.fromkeys(shard_keys, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return config, state


# ------------------------------------------------------- original prompting


SYSTEM_MESSAGES = {
    "internvl2_5": (
        "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
        "<|im_end|>\n",
    ),
    "internlm2-chat": (
        "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。",
        "<|im_end|>",
    ),
}


def original_query(template: str, question: str, num_patches: int, tokens_per_tile: int) -> str:
    """``InternVLChatModel.chat``'s query: MPT-style template, ``<image>`` expanded per tile."""
    system, sep = SYSTEM_MESSAGES[template]
    query = f"<|im_start|>system\n{system}{sep}"
    query += f"<|im_start|>user\n<image>\n{question}{sep}<|im_start|>assistant\n"
    image = "<img>" + "<IMG_CONTEXT>" * (tokens_per_tile * num_patches) + "</img>"
    return query.replace("<image>", image, 1)


def dynamic_preprocess(image: Any, max_num: int, image_size: int) -> list[Any]:
    """InternVL's own tiling (``dynamic_preprocess`` with ``use_thumbnail=True``)."""
    width, height = image.size
    aspect = width / height
    ratios = sorted(
        {
            (i, j)
            for n in range(1, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if 1 <= i * j <= max_num
        },
        key=lambda r: r[0] * r[1],
    )
    best_diff, best = float("inf"), (1, 1)
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif (
            diff == best_diff
            and width * height > 0.5 * image_size * image_size * ratio[0] * ratio[1]
        ):
            best = ratio
    target_w, target_h = image_size * best[0], image_size * best[1]
    resized = image.resize((target_w, target_h), resample=3)  # bicubic
    tiles = []
    for i in range(best[0] * best[1]):
        col, row = i % best[0], i // best[0]
        box = (col * image_size, row * image_size, (col + 1) * image_size, (row + 1) * image_size)
        tiles.append(resized.crop(box))
    if len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size), resample=3))
    return tiles


def to_pixels(tiles: list[Any]) -> torch.Tensor:
    """``T.ToTensor()`` + ImageNet ``T.Normalize``, stacked."""
    import numpy as np

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out = []
    for tile in tiles:
        array = torch.from_numpy(np.asarray(tile.convert("RGB"), dtype=np.float32) / 255.0)
        out.append((array.permute(2, 0, 1) - mean) / std)
    return torch.stack(out)


# ------------------------------------------------- the original architecture


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x.float() * torch.rsqrt(variance + eps))


def _vision_norm(x: torch.Tensor, s: dict[str, torch.Tensor], name: str, v: dict[str, Any]):
    if v["norm_type"] == "layer_norm":
        return F.layer_norm(
            x, (x.shape[-1],), s[name + ".weight"], s[name + ".bias"], v["layer_norm_eps"]
        )
    return _rms(x, s[name + ".weight"], v["layer_norm_eps"])


def intern_vit(s: dict[str, torch.Tensor], v: dict[str, Any], pixels: torch.Tensor) -> torch.Tensor:
    """``InternVisionModel(...).last_hidden_state``."""
    d, heads = v["hidden_size"], v["num_attention_heads"]
    hd = d // heads
    e = "vision_model.embeddings."
    patches = F.conv2d(
        pixels, s[e + "patch_embedding.weight"], s[e + "patch_embedding.bias"], stride=PATCH
    )
    b, _, gh, gw = patches.shape
    x = patches.flatten(2).transpose(1, 2)
    x = torch.cat([s[e + "class_embedding"].expand(b, 1, -1), x], dim=1)
    pos = s[e + "position_embedding"]
    side = v["image_size"] // v["patch_size"]
    grid = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    # the original always interpolates (bicubic), even to the same size
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
    grid = grid.reshape(1, -1, gh * gw).permute(0, 2, 1)
    x = x + torch.cat([pos[:, :1], grid], dim=1)
    for i in range(v["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        h = _vision_norm(x, s, p + "norm1", v)
        n = h.shape[1]
        qkv = (h @ s[p + "attn.qkv.weight"].T + s[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, hd)
        q, k, val = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if v["qk_normalization"]:
            q = _rms(
                q.transpose(1, 2).flatten(-2), s[p + "attn.q_norm.weight"], v["layer_norm_eps"]
            )
            q = q.view(b, n, heads, hd).transpose(1, 2)
            k = _rms(
                k.transpose(1, 2).flatten(-2), s[p + "attn.k_norm.weight"], v["layer_norm_eps"]
            )
            k = k.view(b, n, heads, hd).transpose(1, 2)
        attn = ((q * hd**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ val).transpose(1, 2).reshape(b, n, d)
        out = out @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        x = x + out * s[p + "ls1"]
        h = _vision_norm(x, s, p + "norm2", v)
        h = F.gelu(h @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"])
        h = h @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"]
        x = x + h * s[p + "ls2"]
    return x


def pixel_shuffle_v2(x: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


def extract_feature(s: dict[str, torch.Tensor], config: dict[str, Any], pixels: torch.Tensor):
    """``InternVLChatModel.extract_feature``: ViT, drop CLS, pixel shuffle, ``mlp1``."""
    vit = intern_vit(s, config["vision_config"], pixels)[:, 1:, :]
    side = int(vit.shape[1] ** 0.5)
    vit = vit.reshape(vit.shape[0], side, side, -1)
    vit = pixel_shuffle_v2(vit, config["downsample_ratio"])
    vit = vit.reshape(vit.shape[0], -1, vit.shape[-1])
    h = F.layer_norm(vit, (vit.shape[-1],), s["mlp1.0.weight"], s["mlp1.0.bias"])  # eps 1e-5
    h = F.gelu(h @ s["mlp1.1.weight"].T + s["mlp1.1.bias"])
    return h @ s["mlp1.3.weight"].T + s["mlp1.3.bias"]


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE over positions 0..L-1 (x: batch, heads, L, head_dim)."""
    hd, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def language_model(s: dict[str, torch.Tensor], llm: dict[str, Any], embeds: torch.Tensor):
    heads, kv = llm["num_attention_heads"], llm["num_key_value_heads"]
    h_dim = llm["hidden_size"]
    hd, groups = h_dim // heads, heads // kv
    eps, theta = llm["rms_norm_eps"], float(llm["rope_theta"])
    internlm2 = llm["model_type"] == "internlm2"
    b, length, _ = embeds.shape
    causal = torch.full((length, length), float("-inf")).triu(1)
    x = embeds
    for i in range(llm["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        if internlm2:
            h = _rms(x, s[p + "attention_norm.weight"], eps)
            qkv = (h @ s[p + "attention.wqkv.weight"].T).view(b, length, kv, groups + 2, hd)
            q = qkv[..., :groups, :].reshape(b, length, heads, hd)
            k, val = qkv[..., -2, :], qkv[..., -1, :]
        else:
            h = _rms(x, s[p + "input_layernorm.weight"], eps)

            def proj(name: str, rows: int, _h: torch.Tensor = h, _p: str = p) -> torch.Tensor:
                w, bias = (
                    s[_p + f"self_attn.{name}_proj.weight"],
                    s[_p + f"self_attn.{name}_proj.bias"],
                )
                return (_h @ w.T + bias).view(b, length, rows, hd)

            q, k, val = proj("q", heads), proj("k", kv), proj("v", kv)
        q, k, val = (t.transpose(1, 2) for t in (q, k, val))
        q, k = _rope(q, theta), _rope(k, theta)
        k = k[:, :, None].expand(b, kv, groups, length, hd).reshape(b, heads, length, hd)
        val = val[:, :, None].expand(b, kv, groups, length, hd).reshape(b, heads, length, hd)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd) + causal
        out = (scores.softmax(dim=-1) @ val).transpose(1, 2).reshape(b, length, heads * hd)
        if internlm2:
            x = x + out @ s[p + "attention.wo.weight"].T
            h = _rms(x, s[p + "ffn_norm.weight"], eps)
            gate, up = h @ s[p + "feed_forward.w1.weight"].T, h @ s[p + "feed_forward.w3.weight"].T
            x = x + (F.silu(gate) * up) @ s[p + "feed_forward.w2.weight"].T
        else:
            x = x + out @ s[p + "self_attn.o_proj.weight"].T
            h = _rms(x, s[p + "post_attention_layernorm.weight"], eps)
            gate, up = h @ s[p + "mlp.gate_proj.weight"].T, h @ s[p + "mlp.up_proj.weight"].T
            x = x + (F.silu(gate) * up) @ s[p + "mlp.down_proj.weight"].T
    x = _rms(x, s["language_model.model.norm.weight"], eps)
    if internlm2:
        head = s.get(
            "language_model.output.weight", s["language_model.model.tok_embeddings.weight"]
        )
    else:
        head = s.get("language_model.lm_head.weight", s["language_model.model.embed_tokens.weight"])
    return x @ head.T


def reference_logits(
    s: dict[str, torch.Tensor],
    config: dict[str, Any],
    input_ids: torch.Tensor,
    pixels: torch.Tensor,
    image_token_id: int,
) -> torch.Tensor:
    """``InternVLChatModel.forward`` logits for one prompt (1-D ids) with its image tiles."""
    llm = config["llm_config"]
    table = (
        s["language_model.model.tok_embeddings.weight"]
        if llm["model_type"] == "internlm2"
        else s["language_model.model.embed_tokens.weight"]
    )
    embeds = table[input_ids].clone()
    features = extract_feature(s, config, pixels)
    selected = input_ids == image_token_id
    assert int(selected.sum()) == features.shape[0] * features.shape[1]
    embeds[selected] = features.reshape(-1, features.shape[-1])
    return language_model(s, llm, embeds[None])[0]
