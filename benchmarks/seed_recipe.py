"""The seed recipe's wall time: five figures, three epochs, ``dlm train`` to a committed adapter.

The seed (``shared/seed/multimodal-training.md``) expects a 5-image corpus
with 3 epochs to take about 5 minutes on an A100, for under a second of
compute: the rest is overhead. This times exactly what a user runs.

In ``--work`` it draws five figures with sidecar captions (``<stem>.txt``),
writes a ``.dlm`` whose ``training.sources`` pulls that folder plus one
question per figure, ``num_epochs: 3`` and everything else at dlm's
defaults (the planner picks the batch), and runs ``dlm train`` twice in a
subprocess, as a user would:

    first    a new store: images ingested, vision features computed live;
    retrain  the same document again: a new adapter version, features from
             the store's cache.

Each run's wall time is from launching ``dlm`` to its exit with the adapter
committed; ``training_run.json`` adds the steps, the levers and the time
from start to the first step.

The base's weights must be local: tiny bases are built offline in seconds
(``--home`` defaults to a fresh ``DLM_HOME`` under ``--work``); for a real
base pass the ``DLM_HOME`` that holds it (``--home ~/.dlm``).

Usage::

    python benchmarks/seed_recipe.py                       # tiny-paligemma, this host
    python benchmarks/seed_recipe.py --base tiny-qwen2-vl --json
    python benchmarks/seed_recipe.py --base paligemma-3b-mix-224 --home ~/.dlm
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "demo"))

from figures import FIGURES, draw_figure  # noqa: E402

#: The recipe's store id (a fixed ULID: every run starts from a fresh store).
DLM_ID = "01JSEEDRECPE5F1GVRES3EP0CH"

#: The fifth figure the demo's four lack.
FIFTH = (
    "purple-ring",
    (235, 235, 235),
    "circle",
    (130, 30, 160),
    "A purple disc on a light grey page.",
    "Which component is this?",
    "the router",
)


def write_recipe(folder: Path, base: str) -> Path:
    """Five figures with sidecar captions, and the document that trains on them."""
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    questions = []
    for stem, background, shape, fill, caption, question, answer in [*FIGURES, FIFTH]:
        draw_figure(figures / f"{stem}.png", background, shape, fill)
        (figures / f"{stem}.txt").write_text(caption + "\n")
        questions.append(
            f'::image path="figures/{stem}.png" alt="{stem}"::\n\n'
            f"::instruction::\n### Q\n{question}\n\n### A\nIt is {answer}.\n"
        )
    doc = folder / "seed-recipe.dlm"
    doc.write_text(
        "---\n"
        f"dlm_id: {DLM_ID}\n"
        "dlm_version: 10\n"
        f"base_model: {base}\n"
        "training:\n"
        "  num_epochs: 3\n"
        "  sources:\n"
        "    - path: ./figures\n"
        "---\n"
        "Five figures from our retrieval paper, with a caption each.\n\n" + "\n".join(questions)
    )
    return doc


def timed_train(
    doc: Path, env: dict[str, str], force: bool, dlm: list[str] | None = None
) -> dict[str, Any]:
    """``dlm train DOC`` in a subprocess; wall time to exit, plus its training_run.json.

    ``dlm`` is the command that runs dlm (default ``python -m dlm``).
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [
            *(dlm or [sys.executable, "-m", "dlm"]),
            "train",
            str(doc),
            *(["--force"] if force else []),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"dlm train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    adapter = next(
        line.split(None, 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith("adapter ")
    )
    run = json.loads((Path(adapter) / "training_run.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "version": Path(adapter).name,
        "steps": run["results"]["steps"],
        "train_loop_s": run["results"]["seconds"],
        "startup_to_first_step_s": run["results"]["startup_to_first_step_s"],
        "micro_batch": run["plan"]["micro_batch"],
        "grad_accum": run["plan"]["grad_accum"],
        "precision": run["plan"]["precision"],
        "levers": run["speed"]["levers"],
        "vision_features": run["speed"]["vision_features"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="tiny-paligemma")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dlm-seed-recipe"))
    parser.add_argument("--home", type=Path, help="DLM_HOME holding the base's weights")
    parser.add_argument("--force", action="store_true", help="pass --force to dlm train")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import shutil

    shutil.rmtree(args.work / "doc", ignore_errors=True)
    doc = write_recipe(args.work / "doc", args.base)
    home = args.home or args.work / "dlm-home"
    env = dict(os.environ, DLM_HOME=str(home), HF_HUB_OFFLINE="1")
    # a fresh store each time (bases stay: they are the "weights local" part)
    shutil.rmtree(home / "store" / DLM_ID, ignore_errors=True)
    # plan once: builds a tiny base (the recipe starts with the weights local)
    subprocess.run([sys.executable, "-m", "dlm", "doctor", str(doc)], env=env, capture_output=True)
    first = timed_train(doc, env, args.force)
    retrain = timed_train(doc, env, args.force)
    result = {"base": args.base, "images": 5, "epochs": 3, "first": first, "retrain": retrain}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, run in (("first", first), ("retrain", retrain)):
            print(
                f"{name:8} {run['wall_s']:6.1f} s wall ({run['steps']} steps, "
                f"{run['startup_to_first_step_s']:.1f} s to the first step, "
                f"{run['train_loop_s']:.1f} s training; micro-batch {run['micro_batch']} "
                f"x {run['grad_accum']}, {run['precision']}); {run['vision_features']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
