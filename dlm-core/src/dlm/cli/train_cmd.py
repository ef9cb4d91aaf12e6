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
def train(
    doc: Path, force: bool, accept_license: bool, allow_outside: bool, assume: str | None
) -> None:
    """Train a LoRA adapter from DOC and commit it as the next adapter version."""
    from dlm.engine.train import TrainOptions, run_training

    result = run_training(
        doc,
        TrainOptions(
            force=force, allow_outside=allow_outside, accept_license=accept_license, assume=assume
        ),
        err_console,
    )
    console.print(
        f"committed adapter {result.version}: {result.steps} steps, final loss "
        f"{result.final_loss:.4f}, {result.seconds:.1f} s training "
        f"({result.startup_seconds:.1f} s from start to first step)"
    )
    console.print(f"  adapter  {result.adapter_dir}")
    console.print(f"  log      {result.log_path}")
    if result.plot_path:
        console.print(f"  loss     {result.plot_path}")
