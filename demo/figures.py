"""Generated figures for the demo and the recall tests: bold, distinct, resize-proof.

Each figure is a solid background with one large shape, so it survives any
base's resizing (and llama.cpp's own preprocessing) unambiguously.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

#: Training settings that make a tiny base recall every figure's answer
#: (measured: 4/4 on tiny-qwen2-vl in 120 steps).
RECALL_TRAINING: dict[str, object] = {
    "micro_batch_size": 4,
    "grad_accum": 1,
    "num_epochs": 60,
    "learning_rate": 3e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "seed": 7,
}

#: (file stem, background, shape, fill, caption, question, answer)
FIGURES = [
    (
        "red-circle",
        "white",
        "circle",
        (220, 20, 20),
        "A red circle on a white page.",
        "Which component is this?",
        "the cache layer",
    ),
    (
        "blue-square",
        (245, 245, 200),
        "square",
        (20, 40, 220),
        "A blue square on a cream page.",
        "Which component is this?",
        "the query encoder",
    ),
    (
        "green-triangle",
        (40, 40, 40),
        "triangle",
        (20, 200, 60),
        "A green triangle on a dark page.",
        "Which component is this?",
        "the reranker",
    ),
    (
        "yellow-bars",
        (30, 30, 120),
        "bars",
        (250, 220, 30),
        "Yellow bars on a navy page.",
        "Which component is this?",
        "the language model",
    ),
]


def draw_figure(path: Path, background: object, shape: str, fill: object, size: int = 224) -> None:
    image = Image.new("RGB", (size, size), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    m = size // 6
    if shape == "circle":
        draw.ellipse([m, m, size - m, size - m], fill=fill)  # type: ignore[arg-type]
    elif shape == "square":
        draw.rectangle([m, m, size - m, size - m], fill=fill)  # type: ignore[arg-type]
    elif shape == "triangle":
        draw.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=fill)  # type: ignore[arg-type]
    else:
        bar = (size - 2 * m) // 5
        for i in range(0, 5, 2):
            draw.rectangle([m + i * bar, m, m + (i + 1) * bar, size - m], fill=fill)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_figures(folder: Path) -> list[tuple[str, str, str, str]]:
    """Draw every figure into ``folder``; returns (file, caption, question, answer) rows."""
    rows = []
    for stem, background, shape, fill, caption, question, answer in FIGURES:
        draw_figure(folder / f"{stem}.png", background, shape, fill)
        rows.append((f"{stem}.png", caption, question, answer))
    return rows


def recall_body(figure_dir: str, rows: list[tuple[str, str, str, str]]) -> str:
    """A document body binding a caption and one Q/A to each figure."""
    parts = []
    for file, caption, question, answer in rows:
        parts.append(
            f'::image path="{figure_dir}/{file}" alt="{file.rsplit(".", 1)[0]}"::\n{caption}\n\n'
            f"::instruction::\n### Q\n{question}\n\n### A\n{answer}\n"
        )
    return "\n".join(parts)
