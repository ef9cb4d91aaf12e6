"""``dlm prompt``: ask the trained adapter about images. Prints only the answer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dlm.cli.options import adapter_version as check_adapter_version
from dlm.cli.options import finite
from dlm.cli.output import json_option, print_json
from dlm.errors import UsageError


@click.command("prompt")
@click.argument("doc", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("question", required=False)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Image to ask about; repeat for several images.",
)
@click.option("--max-tokens", default=128, show_default=True, type=click.IntRange(1, 8192))
@click.option(
    "--temp",
    "temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 5),
    callback=finite,
    help="Sampling temperature; 0 is greedy.",
)
@click.option(
    "--adapter-version",
    metavar="vNNNN",
    callback=check_adapter_version,
    help="Use this version instead of the current one.",
)
@click.option("--force", is_flag=True, help="Run even where the planner refuses this host.")
@json_option()
def prompt(
    doc: Path,
    question: str | None,
    images: tuple[Path, ...],
    max_tokens: int,
    temperature: float,
    adapter_version: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION (or stdin) about the --image files with the trained adapter."""
    from dlm.engine.prompting import (
        check_prompt_images,
        choose_device,
        generate,
        load_adapter_for,
    )
    from dlm.format import parse_file
    from dlm.plugins import get_registry

    document = parse_file(doc)
    base = get_registry().base(document.frontmatter.base_model)
    check_prompt_images(base, list(images))
    if question is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no question: pass it as an argument or on stdin", subject="prompt")
        question = sys.stdin.read().strip()
    if not question:
        raise UsageError("the question is empty", subject="prompt")
    device = choose_device(base, force=force)
    loaded = load_adapter_for(doc, adapter_version=adapter_version, device=device)
    answer = generate(
        loaded, list(images), question, max_tokens=max_tokens, temperature=temperature
    )
    if as_json:
        print_json(
            {
                "answer": answer,
                "question": question,
                "images": [str(path) for path in images],
                "adapter_version": loaded.version,
                "base": base.key,
                "device": device,
                "temperature": temperature,
                "max_tokens": max_tokens,
            }
        )
        return
    click.echo(answer)
