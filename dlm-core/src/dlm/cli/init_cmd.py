"""``dlm init``: scaffold a new .dlm document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dlm.cli.output import console, json_option, print_json
from dlm.errors import DlmError, UnknownBaseError, UsageError

DEFAULT_BASE = "paligemma-3b-mix-224"

SAMPLE_BODY = """\
Notes about the figures in this folder. Prose like this trains text-only
where the base supports it.

::image path="figures/your-image.png" alt="your figure"::
Describe the figure here: this text is its caption, and the adapter learns
to answer with it when shown the image.

::instruction::
### Q
What does this figure show?

### A
Replace this with the answer the adapter should give for this image.
"""


@click.command("init")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--multimodal",
    is_flag=True,
    help="Changes nothing, kept so older guides' `dlm init DOC --multimodal` works: every dlm "
    "base is vision-language and every scaffold has an ::image:: section (default base "
    f"{DEFAULT_BASE}).",
)
@click.option("--base", "base_key", metavar="KEY", help="Base model key (see `dlm plugins`).")
@click.option(
    "--i-accept-license",
    "accept_license",
    is_flag=True,
    help="Accept a gated base's licence for this document (`dlm train` finds it).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@json_option()
def init(
    path: Path,
    multimodal: bool,
    base_key: str | None,
    accept_license: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Create a new .dlm document with a sample image section and bound Q/A.

    Every dlm base is vision-language, so --multimodal only states the
    intent; the scaffold always carries an ::image:: section. Nothing is
    written under DLM_HOME but a licence acceptance: the store is created
    by the first `dlm train`.
    """
    from ulid import ULID

    from dlm.format import render_new_document
    from dlm.format.document import Frontmatter
    from dlm.plugins import get_registry
    from dlm.store.atomic import atomic_write_text
    from dlm.store.licenses import license_refusal, record_acceptance

    key = base_key or DEFAULT_BASE
    registry = get_registry()
    try:
        base = registry.base(key)
    except UnknownBaseError as exc:  # the registry's hint suggests the closest key
        raise UsageError(exc.message, hint=exc.hint, subject="init") from None
    if path.exists() and not force:
        raise UsageError(
            f"{path} already exists", hint="pass --force to overwrite it", subject="init"
        )
    if base.gated and not accept_license:
        raise license_refusal(base, registry.bases.values())
    dlm_id = str(ULID())
    frontmatter = Frontmatter(dlm_id=dlm_id, base_model=key, training=_recommended(base))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_new_document(frontmatter, SAMPLE_BODY))
    if base.gated:
        record_acceptance(dlm_id, base, by="dlm init --i-accept-license", document=path)
    if as_json:
        print_json(
            {
                "document": str(path),
                "dlm_id": dlm_id,
                "base": key,
                "license": base.license,
                "license_accepted": base.gated,
                "image": "figures/your-image.png",
            }
        )
        return
    console.print(f"wrote {path} (dlm_id {dlm_id}, base {key})")
    if base.gated:
        console.print(f"{base.license} licence accepted for this document")
    console.print(
        "next: put an image at figures/your-image.png (relative to the document), "
        f"edit the caption and Q/A, check the plan with `dlm doctor {path}`, "
        f"then `dlm train {path}`"
    )


def _recommended(base: Any) -> Any:
    """The base's recommended ``training:`` settings, checked like a document's.

    A plugin that recommends a setting the schema refuses is a broken plugin,
    not a user mistake: the error names the base and the plugin's value.
    """
    from dlm.errors import PluginError
    from dlm.format.schema import training_from_mapping

    try:
        return training_from_mapping(
            base.recommended_training, path=f"<{base.key} recommended_training>"
        )
    except DlmError as exc:
        raise PluginError(
            f"base {base.key} recommends training settings the schema refuses: {exc.message}",
            hint="the plugin that registers this base is broken; report it to its authors",
        ) from None
