"""The offline demo: init → figures → train → prompt → export, on tiny-qwen2-vl.

Runs the real CLI in subprocesses, exactly as a user would type it, inside
``demo-output/`` (its own DLM_HOME there too, so it leaves ~/.dlm alone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import recall_body, write_figures

from dlm.format import parse_file, render_new_document

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-output"
BASE = "tiny-qwen2-vl"


def dlm(*args: str) -> str:
    print(f"\n$ dlm {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "dlm", *args], cwd=OUT, text=True, stdout=subprocess.PIPE
    )
    if result.returncode != 0:
        sys.exit(f"demo: `dlm {args[0]}` failed with exit code {result.returncode}")
    print(result.stdout, end="", flush=True)
    return result.stdout.strip()


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    os.environ.setdefault("DLM_HOME", str(OUT / "dlm-home"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    dlm("init", "diagrams.dlm", "--base", BASE)
    rows = write_figures(OUT / "figures")
    doc = parse_file(OUT / "diagrams.dlm")
    # trained with the settings `dlm init` wrote: the base's recommended ones
    frontmatter = attrs.evolve(
        doc.frontmatter,
        system_prompt="You answer questions about the figures of our retrieval paper.",
    )
    (OUT / "diagrams.dlm").write_text(
        render_new_document(frontmatter, recall_body("figures", rows))
    )
    print(f"\nwrote {len(rows)} figures and their captions + Q/A into diagrams.dlm")

    dlm("show", "diagrams.dlm")
    dlm("train", "diagrams.dlm")
    correct = 0
    for file, _caption, question, answer in rows:
        got = dlm("prompt", "diagrams.dlm", "--image", f"figures/{file}", question)
        correct += got == answer
        print(f"   expected: {answer!r} → {'✓' if got == answer else '✗'}")
    dlm("export", "diagrams.dlm")
    dlm("verify", "diagrams.dlm")
    print(
        f"\ndemo: {correct}/{len(rows)} figures answered exactly; "
        f"{time.monotonic() - started:.0f} s end to end; everything is under {OUT}"
    )


if __name__ == "__main__":
    main()
