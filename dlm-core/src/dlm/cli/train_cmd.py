"""``dlm train``: train the document's LoRA adapter and commit a new version."""

from __future__ import annotations

from pathlib import Path

import click

from dlm.cli.output import console, err_console


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
def train(
    doc: Path,
    force: bool,
    accept_license: bool,
    allow_outside: bool,
    assume: str | None,
    processes: int | None,
    accelerate_config: str | None,
) -> None:
    """Train a LoRA adapter from DOC and commit it as the next adapter version."""
    from dlm.engine.train import TrainOptions, run_training

    result = run_training(
        doc,
        TrainOptions(
            force=force,
            allow_outside=allow_outside,
            accept_license=accept_license,
            assume=assume,
            processes=processes,
            accelerate_config=accelerate_config,
        ),
        err_console,
    )
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
    console.print(f"  adapter  {result.adapter_dir}")
    console.print(f"  log      {result.log_path}")
    if result.plot_path:
        console.print(f"  loss     {result.plot_path}")
