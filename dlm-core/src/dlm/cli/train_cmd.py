"""``dlm train``: train the document's LoRA adapter and commit a new version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dlm.cli.options import report_to as report_to_option
from dlm.cli.output import console, err_console, json_option, print_json


@click.command("train")
@click.argument("doc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="Train even where the planner refuses (recorded in the run)."
)
@click.option(
    "--i-accept-license", "accept_license", is_flag=True, help="Accept a gated base's licence."
)
@click.option(
    "--allow-outside", is_flag=True, help="Allow image paths outside the document's folder."
)
@click.option(
    "--assume", metavar="HOST", help="Plan as if on another host (e.g. cuda:24); see `dlm doctor`."
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Train data parallel in N processes on this host (one per GPU; CPU processes use "
    "gloo). The planner shards the base with FSDP when one device cannot hold it.",
)
@click.option(
    "--accelerate-config",
    metavar="FILE",
    help="Run across machines as an accelerate config describes (num_processes, num_machines, "
    "machine_rank, main_process_ip/port); `default` reads the one `accelerate config` wrote. "
    "Run the same command on every machine.",
)
@click.option(
    "--report-to",
    "report_to",
    multiple=True,
    metavar="NAME",
    callback=report_to_option,
    help="Report the run to these experiment trackers (tensorboard, wandb, mlflow, trackio; "
    "repeat it or separate with commas), instead of the document's training.report_to; "
    "`none` reports to none.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its last checkpoint (refused if the document, "
    "base or settings changed since).",
)
@json_option()
def train(
    doc: Path,
    force: bool,
    accept_license: bool,
    allow_outside: bool,
    assume: str | None,
    processes: int | None,
    accelerate_config: str | None,
    report_to: tuple[str, ...] | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Train a LoRA adapter from DOC and commit it as the next adapter version."""
    from dlm.engine.training.train import TrainOptions, run_training

    result = run_training(
        doc,
        TrainOptions(
            force=force,
            allow_outside=allow_outside,
            accept_license=accept_license,
            assume=assume,
            processes=processes,
            accelerate_config=accelerate_config,
            report_to=report_to,
            resume=resume,
        ),
        err_console,
    )
    if as_json:
        print_json(_as_json(doc, result))
        return
    if not result.version:
        console.print(
            f"this machine's ranks finished in {result.seconds:.1f} s; machine 0 commits the adapter"
        )
        return
    console.print(
        f"committed adapter {result.version}: {result.steps} steps, final loss "
        f"{result.final_loss:.4f}, {result.seconds:.1f} s training "
        f"({result.startup_seconds:.1f} s from start to first step)"
    )
    verdict = _training_run(result).get("verdict")
    if verdict:
        console.print(f"  {verdict['sentence']}")
        if verdict.get("warning"):
            err_console.print(f"[yellow]warning:[/yellow] {verdict['warning']}")
    console.print(f"  adapter  {result.adapter_dir}")
    console.print(f"  log      {result.log_path}")
    if result.plot_path:
        console.print(f"  loss     {result.plot_path}")
    for name, folder in result.trackers.items():
        console.print(f"  {name:<8} {folder or 'in its own store (see its settings)'}")


def _as_json(doc: Path, result: Any) -> dict[str, Any]:
    """What ``--json`` prints; the details come from the committed training_run.json."""
    committed = bool(result.version)
    run_path = result.adapter_dir / "training_run.json" if committed else None
    run = _training_run(result)
    speed = run.get("speed", {})
    held_out = run.get("held_out") or {}
    return {
        "document": str(doc),
        "dlm_id": run.get("dlm_id"),
        "committed": committed,  # false on a machine other than machine 0
        "adapter_version": result.version or None,
        "adapter": str(result.adapter_dir) if committed else None,
        "training_run": str(run_path) if run_path is not None else None,
        "log": str(result.log_path) if committed else None,
        "loss_plot": str(result.plot_path) if result.plot_path else None,
        "trackers": result.trackers,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "seconds": result.seconds,
        "startup_seconds": result.startup_seconds,
        "world_size": run.get("world_size"),
        "strategy": run.get("strategy"),
        "levers": speed.get("levers"),
        "vision_features": speed.get("vision_features"),
        "examples": run.get("data", {}).get("examples"),
        "held_out": {
            "examples": (held_out.get("data") or {}).get("examples", 0),
            "scores": held_out.get("scores", []),
        },
        "verdict": run.get("verdict"),
    }


def _training_run(result: Any) -> dict[str, Any]:
    """The committed adapter's training_run.json (empty where nothing was committed here)."""
    if not result.version:
        return {}
    path = result.adapter_dir / "training_run.json"
    return json.loads(path.read_text()) if path.is_file() else {}
