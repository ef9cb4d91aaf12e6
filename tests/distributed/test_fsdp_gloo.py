"""FSDP2 on the CPU (gloo): two processes shard a tiny Qwen2-VL with LoRA.

Checks what the sharded run relies on: every parameter becomes a DTensor
holding a shard, the LM decoder layers are the units, a backward pass (with
gradient checkpointing, which re-gathers each layer) gives the gradients of
the unsharded model on the whole batch, and the gathered adapter weights are
the unsharded model's.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(home: str):
    import torch

    from dlm.engine.lora import attach_lora
    from dlm.format.document import TrainingSettings
    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base("tiny-qwen2-vl")
    family = registry.family_for(base)
    model = family.load_model(base, family.materialize(base, Path(home)), torch.float32, "cpu")
    # as the engine does for a base that needs it (the end-to-end FSDP run trains without)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    torch.manual_seed(0)
    model = attach_lora(model, base, family, TrainingSettings(lora_r=4, lora_dropout=0.0))
    with torch.no_grad():  # LoRA B starts at zero; give A's gradients something to carry
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.02)
    return model


def _batch(rank: int, vocab: int):
    import torch

    generator = torch.Generator().manual_seed(100 + rank)
    ids = torch.randint(10, vocab - 10, (2, 12), generator=generator)
    labels = ids.clone()
    labels[:, :6] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _child(rank: int, port: int, home: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        DLM_HOME=home,
        HF_HUB_OFFLINE="1",
    )
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from dlm.engine.distributed.ranks import Ranks, fsdp_units

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = _model(home)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        full_numel = sum(p.numel() for p in model.parameters())
        units = fsdp_units(model)
        ranks = Ranks(world=WORLD, rank=rank, strategy="fsdp")
        model = ranks.shard_model(model)
        params = list(model.parameters())
        local_numel = sum(p.to_local().numel() for p in params if isinstance(p, DTensor))
        vocab = model.config.text_config.vocab_size
        loss = model(**_batch(rank, vocab)).loss
        loss.backward()
        grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.requires_grad}
        state = ranks.adapter_state(model)
        if rank == 0:
            reference = _model(home)
            ref_loss = sum(reference(**_batch(r, vocab)).loss for r in range(WORLD)) / WORLD
            ref_loss.backward()
            ref = dict(reference.named_parameters())
            assert state is not None
            report = {
                "units": len(units),
                "layers": reference.config.text_config.num_hidden_layers,
                "all_dtensor": all(isinstance(p, DTensor) for p in params),
                "local_share": local_numel / full_numel,
                "grad_err": max(float((grads[n] - ref[n].grad).abs().max()) for n in names),
                "grad_scale": max(float(ref[n].grad.abs().max()) for n in names),
                "state_keys_match": sorted(state) == sorted(names),
                "state_err": max(float((state[n] - ref[n].detach()).abs().max()) for n in names),
            }
            Path(out).write_text(json.dumps(report))
        else:
            assert state is None
    finally:
        dist.destroy_process_group()


def test_fsdp_shards_a_tiny_vl_model_on_cpu(tmp_path, session_home):
    import torch.multiprocessing as mp

    from dlm.plugins import get_registry

    registry = get_registry()
    base = registry.base("tiny-qwen2-vl")
    registry.family_for(base).materialize(base, session_home)  # built once, as the launcher does
    out = tmp_path / "report.json"
    mp.spawn(_child, args=(_free_port(), str(session_home), str(out)), nprocs=WORLD, join=True)
    report = json.loads(out.read_text())
    assert report["units"] == report["layers"]
    assert report["all_dtensor"]
    assert 0.45 < report["local_share"] <= 0.55
    assert report["grad_scale"] > 0
    assert report["grad_err"] < 1e-5 * max(1.0, report["grad_scale"])
    assert report["state_keys_match"] and report["state_err"] == 0.0
