"""Whole-run speed: a complete ``dlm train`` with dlm's levers against the plain step.

What a user waits for is a whole run: start-up, ingest, every image through
the vision tower in the first epoch (the feature cache is cold in a new
store), the live check of the first cached micro-batch, every epoch, the
commit. ``benchmarks/train_throughput.py`` measures one warm steady-state step
instead; this measures the run.

Each run is ``dlm train DOC`` in a subprocess on a fresh store, timed from
launch to exit with the adapter committed. The two paths differ only in the
step: ``plain`` runs with ``DLM_LEVERS=none`` (``model(**batch).loss``,
backward, AdamW: the transformers + PEFT step, no feature cache, no length
batching, no recompute), ``dlm`` with the levers ``dlm train`` pulls by
default. Everything around the step (loading, ingest, planning, commit) is
the same code in both, so the ratio is what the levers buy in a real run.
Paths alternate (ABBA) over ``--repeats`` so a busy host slows both alike;
each figure is the median with its min–max, and the ratio is given as the
ratio of medians and as the min–max of the per-repeat ratios.

The document is the seed recipe's (``benchmarks/seed_recipe.py``): five
figures pulled by ``training.sources`` with sidecar captions plus one question
each, 10 examples, ``num_epochs`` set per run.

Shapes (``--shape``):
    seed   the seed recipe on an offline tiny base (``--base``, default
           tiny-paligemma): mostly start-up and overhead, as on a real GPU.
    mid    the same document on a mid-size base: ``train_throughput.py``'s
           ``--config mid`` model (the real vocabulary and image-token count,
           narrow and shallow towers, random weights) for ``--family``, built
           into the run's ``DLM_HOME`` and registered for ``dlm train``
           through dlm's own ``register_bases`` hook (a plugin object this
           script registers before handing over to dlm's CLI).

Usage::

    python benchmarks/whole_run.py --shape seed --epochs 1 3 10 --repeats 3
    python benchmarks/whole_run.py --shape mid --family qwen2 --epochs 1 3 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "demo"))

BENCH_BASES_ENV = "DLM_BENCH_BASES"  # folder of bench-base.json rows the wrapper registers


# ----------------------------------------------------------------- the mid base


def mid_key(family: str) -> str:
    return f"bench-mid-{family}"


def build_mid_base(family: str, home: Path) -> str:
    """Write the mid-size model for ``family`` into ``home/bases/<key>``; return the key."""
    import attrs
    import torch
    import train_throughput as tt
    from transformers import AutoModelForImageTextToText

    from dlm.family import TINY_MARKER
    from dlm.plugins import get_registry

    key = mid_key(family)
    target = home / "bases" / key
    if (target / "bench-base.json").is_file():
        return key
    registry = get_registry()
    tiny_key, real_key = tt.FAMILIES[family]
    tiny, real = registry.base(tiny_key), registry.base(real_key)
    fam = registry.family_for(tiny)
    tiny_dir = fam.materialize(tiny, home)
    side = real.image.width
    dims = tt._dims(real, "mid")
    config = tt._model_config(family, tiny_dir, real, dims, side)
    processor = tt._processor(family, fam, tiny, real, tiny_dir, side)
    image_processor = getattr(processor, "image_processor", None)
    if hasattr(image_processor, "image_seq_length") and hasattr(processor, "image_seq_length"):
        # what a saved processor is reloaded with (PaliGemma keeps it there)
        image_processor.image_seq_length = processor.image_seq_length
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    staging = target.with_name(f".{key}.build")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    vision = sum(p.numel() for n, p in model.named_parameters() if "language_model" not in n)
    total = sum(p.numel() for p in model.parameters())
    t, v = dims["text"], dims["vision"]
    row = {
        "from": tiny_key,
        "key": key,
        "revision": f"{key}-1",
        "image": attrs.asdict(real.image),
        "text": {
            "num_layers": t["layers"],
            "hidden_size": t["hidden"],
            "intermediate_size": t["intermediate"],
            "num_heads": t["heads"],
            "num_kv_heads": t["kv_heads"],
            "vocab_size": t["vocab"],
            "max_position": tiny.text.max_position,
            "head_dim": t["head_dim"],
        },
        "vision": {
            "num_layers": v["layers"],
            "hidden_size": v["hidden"],
            "intermediate_size": v["intermediate"],
            "num_heads": v["heads"],
            "patches_per_image": real.vision.patches_per_image,
        },
        "params": {"total": total, "vision": vision, "language": total - vision},
        "context_length": max(real.context_length, tiny.context_length),
        # the real base's pinned image settings, not the tiny base's smaller ones
        "image_settings": real.image_settings,
    }
    (staging / TINY_MARKER).write_text(json.dumps({"revision": row["revision"]}))
    (staging / "bench-base.json").write_text(json.dumps(row, indent=2))
    staging.rename(target)
    return key


def _bench_plugin(folder: Path, rows_of_others: dict[str, Any]) -> Any:
    """A dlm plugin (an object with hook implementations) registering the built mid bases.

    Each bench base is its tiny base's row (``rows_of_others``: what the
    installed family plugins register) with the mid model's dimensions.
    """
    import attrs

    from dlm import hookimpl
    from dlm.records import ImageGeometry, ParamCounts, TextConfig, VisionConfig

    class BenchBases:
        @hookimpl
        def register_bases(self, register: Any) -> None:
            for row_file in sorted(folder.glob("*/bench-base.json")):
                row = json.loads(row_file.read_text())
                tiny = rows_of_others[row["from"]]
                register(
                    attrs.evolve(
                        tiny,
                        image_settings=row.get("image_settings") or tiny.image_settings,
                        key=row["key"],
                        revision=row["revision"],
                        hub_id=f"local/{row['key']}",
                        image=ImageGeometry(**row["image"]),
                        text=TextConfig(**row["text"]),
                        vision=VisionConfig(**row["vision"], block_mask=tiny.vision.block_mask),
                        params=ParamCounts(**row["params"]),
                        context_length=row["context_length"],
                    )
                )

    return BenchBases()


def run_as_dlm(argv: list[str]) -> int:
    """``dlm ARGV`` with the bench bases registered (the child side of a timed run)."""
    from dlm.plugins.manager import get_plugin_manager

    folder = Path(os.environ[BENCH_BASES_ENV])
    pm, _infos = get_plugin_manager()
    others: list[Any] = []
    pm.hook.register_bases(register=others.append)
    pm.register(_bench_plugin(folder, {row.key: row for row in others}), name="bench-bases")
    sys.argv = ["dlm", *argv]
    from dlm.cli import main

    main()
    return 0


# ----------------------------------------------------------------- the runs


def write_document(folder: Path, base: str, epochs: int) -> Path:
    from seed_recipe import DLM_ID, write_recipe

    shutil.rmtree(folder, ignore_errors=True)
    doc = write_recipe(folder, base)
    text = doc.read_text()
    doc.write_text(text.replace("  num_epochs: 3\n", f"  num_epochs: {epochs}\n"))
    assert DLM_ID in text
    return doc


def timed_run(doc: Path, env: dict[str, str], wrapper: bool) -> dict[str, Any]:
    """The seed recipe's timed ``dlm train``, on a fresh store (a cold feature cache)."""
    from seed_recipe import DLM_ID, timed_train

    shutil.rmtree(Path(env["DLM_HOME"]) / "store" / DLM_ID, ignore_errors=True)
    dlm = [sys.executable, __file__, "--as-dlm"] if wrapper else None
    return timed_train(doc, env, force=True, dlm=dlm)


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    home = (args.work / "dlm-home").resolve()
    env = dict(os.environ, DLM_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("DLM_LEVERS", None)
    wrapper = args.shape == "mid"
    if wrapper:
        os.environ["DLM_HOME"] = str(home)
        base = build_mid_base(args.family, home)
        env[BENCH_BASES_ENV] = str(home / "bases")
    else:
        base = args.base
    rows = []
    for epochs in args.epochs:
        doc = write_document(args.work / f"doc-{epochs}", base, epochs)
        # one untimed run builds the tiny base and warms the page cache
        timed_run(doc, env, wrapper) if not rows else None
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "dlm": []}
        for repeat in range(args.repeats):
            order = ("plain", "dlm") if repeat % 2 == 0 else ("dlm", "plain")
            for path in order:
                path_env = dict(env, DLM_LEVERS="none") if path == "plain" else env
                runs[path].append(timed_run(doc, path_env, wrapper))
                print(
                    f"  {epochs} epochs, {path:5}: {runs[path][-1]['wall_s']:.1f} s",
                    file=sys.stderr,
                )
        plain = [r["wall_s"] for r in runs["plain"]]
        ours = [r["wall_s"] for r in runs["dlm"]]
        loops = (
            [r["train_loop_s"] for r in runs["plain"]],
            [r["train_loop_s"] for r in runs["dlm"]],
        )
        paired = [p / d for p, d in zip(plain, ours, strict=True)]
        rows.append(
            {
                "epochs": epochs,
                "steps": runs["dlm"][0]["steps"],
                "micro_batch": runs["dlm"][0]["micro_batch"],
                "plain_wall_s": _spread(plain),
                "dlm_wall_s": _spread(ours),
                "ratio": round(statistics.median(plain) / statistics.median(ours), 2),
                "ratio_range": [round(min(paired), 2), round(max(paired), 2)],
                "plain_loop_s": _spread(loops[0]),
                "dlm_loop_s": _spread(loops[1]),
                "loop_ratio": round(statistics.median(loops[0]) / statistics.median(loops[1]), 2),
                "dlm_levers": runs["dlm"][0]["levers"],
                "dlm_vision_features": runs["dlm"][0]["vision_features"],
            }
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "shape": args.shape,
        "base": base,
        "family": args.family if args.shape == "mid" else None,
        "examples": 10,
        "repeats": args.repeats,
        "host": {"cpu": _cpu(), "cores": os.cpu_count(), "load_avg_1m_at_end": load},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--as-dlm"]:
        return run_as_dlm(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("seed", "mid"), default="seed")
    parser.add_argument("--base", default="tiny-paligemma", help="the seed shape's base")
    parser.add_argument("--family", default="qwen2", choices=("qwen2", "paligemma"))
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dlm-whole-run"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['shape']} on {result['base']}, host {result['host']['cpu']}")
    for row in result["rows"]:
        p, d = row["plain_wall_s"], row["dlm_wall_s"]
        print(
            f"{row['epochs']:3} epochs ({row['steps']} steps): plain {p['median']:.1f} s "
            f"[{p['min']:.1f}-{p['max']:.1f}], dlm {d['median']:.1f} s "
            f"[{d['min']:.1f}-{d['max']:.1f}], ratio {row['ratio']:.2f} "
            f"[{row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
