"""The run's plot (``logs/train-*.png``): what a person opens to see whether it learnt.

Top: the training loss per optimizer step (raw, faint) and smoothed (an
exponential moving average), the held-out loss after each epoch, and the
epoch boundaries. Middle, when the run held examples out and asked them
questions: the held-out exact match and F1. Bottom: the learning rate.
Titled with the document's name and the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Weight of the newest step in the smoothed loss.
SMOOTHING = 0.2


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """An exponential moving average, starting at the first value."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else out[-1] + weight * (value - out[-1]))
    return out


def plot_run(rows: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """The plot of a run's ``train-*.jsonl`` rows as a PNG at ``out``; ``None`` with no steps."""
    steps = [r for r in rows if "loss" in r]
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = [r for r in rows if r.get("held_out_loss") is not None]
    scored = [r for r in rows if r.get("held_out_exact_match") is not None]
    panels = 3 if scored else 2
    ratios = [3, 1.4, 1] if scored else [3, 1]
    fig, axes = plt.subplots(
        panels,
        1,
        figsize=(7, 2.2 + 1.6 * panels),
        dpi=100,
        sharex=True,
        gridspec_kw={"height_ratios": ratios},
    )
    loss_ax, lr_ax = axes[0], axes[-1]
    x = [r["step"] for r in steps]
    losses = [r["loss"] for r in steps]
    loss_ax.plot(x, losses, color="tab:blue", alpha=0.3, linewidth=1, label="training loss")
    loss_ax.plot(x, smoothed(losses), color="tab:blue", linewidth=2, label="smoothed")
    if held:
        loss_ax.plot(
            [r["step"] for r in held],
            [r["held_out_loss"] for r in held],
            "o-",
            color="tab:orange",
            linewidth=1.5,
            label="held-out loss",
        )
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(title)
    if scored:
        score_ax = axes[1]
        sx = [r["step"] for r in scored]
        score_ax.plot(sx, [r["held_out_exact_match"] for r in scored], "o-", label="exact match")
        score_ax.plot(sx, [r["held_out_f1"] for r in scored], "s--", label="token F1")
        score_ax.set_ylim(-0.05, 1.05)
        score_ax.set_ylabel("held-out")
        score_ax.legend(loc="lower right", fontsize=8)
    lr_ax.plot(x, [r["lr"] for r in steps], color="tab:green", linewidth=1.5)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("optimizer step")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    # an epoch ends at its last step
    ends = [
        steps[i]["step"]
        for i in range(len(steps) - 1)
        if steps[i + 1]["epoch"] != steps[i]["epoch"]
    ]
    for ax in axes:
        ax.grid(alpha=0.3)
        for end in ends if len(ends) <= 60 else ():
            ax.axvline(end + 0.5, color="grey", linewidth=0.6, alpha=0.4)
    loss_ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["SMOOTHING", "plot_run", "smoothed"]
