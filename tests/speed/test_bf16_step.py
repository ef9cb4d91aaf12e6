"""The bf16 path: dlm's step against the plain one on a bf16 base, and fused AdamW.

``dlm train`` with ``precision: bf16`` loads the base in bf16 and runs the step
under accelerate's autocast. dlm's loss computes the LM head at labelled
positions and then the cross-entropy in fp32, as transformers' own loss does
(it upcasts the logits). Under CPU autocast torch already runs cross-entropy
in fp32, so the upcast only shows where the step runs without autocast: there
a bf16 cross-entropy is ~0.6% off the plain loss (measured on tiny-qwen2-vl:
11.69 vs 11.76) and its gradients ~1% off, so both contexts are tested.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from dlm.engine.training.levers import Levers, make_optimizer
from dlm.engine.training.step import plain_loss, training_loss
from tests.speed.harness import collate, draw, load, loss_and_grads, qa

pytestmark = pytest.mark.slow

# bf16 keeps 8 significant bits; the label-position head scores the same logits
# as the plain head, so the two agree far closer than a bf16 loss would.
LOSS_RTOL = 1e-3
GRAD_RTOL = 2e-3


def _bf16(loaded, tmp_path: Path):
    import torch

    loaded.model.to(torch.bfloat16)
    red = draw(tmp_path / "red.png", 0)
    blue = draw(tmp_path / "blue.png", 1)
    examples = [
        qa(red, "Which component is this?", "the cache layer"),
        qa(blue, "What?", "the query encoder and the reranker, in one figure"),
    ]
    batch = collate(loaded, examples)
    for key, value in batch.items():
        if torch.is_tensor(value) and value.is_floating_point():
            batch[key] = value.to(torch.bfloat16)
    return batch


def _relative(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / (a.float().abs().max() + 1e-12))


@pytest.mark.parametrize("key", ["tiny-qwen2-vl", "tiny-paligemma"])
@pytest.mark.parametrize("autocast", [True, False], ids=["autocast", "no-autocast"])
def test_bf16_step_matches_the_plain_step(
    key: str, autocast: bool, session_home: Path, tmp_path: Path
) -> None:
    import torch

    loaded = load(key, session_home)
    batch = _bf16(loaded, tmp_path)
    model = loaded.model
    context = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if autocast
        else contextlib.nullcontext
    )
    with context():
        plain = loss_and_grads(model, lambda: plain_loss(model, batch))
        ours = loss_and_grads(model, lambda: training_loss(model, batch, label_head=True))
    assert next(model.parameters()).dtype == torch.bfloat16
    assert abs(ours[0] - plain[0]) <= LOSS_RTOL * abs(plain[0]), (ours[0], plain[0])
    assert plain[1].keys() == ours[1].keys() and plain[1]
    worst = max(_relative(plain[1][name], ours[1][name]) for name in plain[1])
    assert worst <= GRAD_RTOL, worst


def test_fused_adamw_takes_the_same_steps(session_home: Path, tmp_path: Path) -> None:
    """Three real steps with fused AdamW land where dlm's default AdamW lands."""
    import torch

    probe = torch.nn.Parameter(torch.zeros(2))
    try:
        torch.optim.AdamW([probe], fused=True).step()
    except (RuntimeError, TypeError) as exc:
        pytest.skip(f"this torch build has no fused AdamW on the CPU: {exc}")

    def train(fused: bool) -> dict[str, torch.Tensor]:
        loaded = load("tiny-qwen2-vl", session_home)
        red = draw(tmp_path / "red.png", 0)
        batch = collate(loaded, [qa(red, "Which component is this?", "the cache layer")])
        params = [p for p in loaded.model.parameters() if p.requires_grad]
        optimizer = (
            torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0, fused=True)
            if fused
            else make_optimizer(params, 1e-3, Levers())
        )
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            training_loss(loaded.model, batch).backward()
            optimizer.step()
        return {
            n: p.detach().clone() for n, p in loaded.model.named_parameters() if p.requires_grad
        }

    fused, plain = train(True), train(False)
    start = load("tiny-qwen2-vl", session_home)
    initial = {n: p.detach() for n, p in start.model.named_parameters() if p.requires_grad}
    assert max(float((plain[n] - initial[n]).abs().max()) for n in plain) > 1e-4  # it trained
    assert fused.keys() == plain.keys()
    moved = max(float((fused[n] - plain[n]).abs().max()) for n in plain)
    assert moved <= 1e-6, moved
