"""The plugin contract: the hooks a dlm plugin may implement.

This module and :mod:`dlm.records` (with :mod:`dlm.family`) are the whole
public API a plugin codes against. Every hook receives a ``register``
callback (the pattern of ``simonw/llm``): a plugin calls it once per thing
it provides. Hooks are few and stable; new needs add arguments to the
records, not new hooks.

A plugin is a module (or object) with functions decorated by
:data:`hookimpl`, published under the ``dlm`` entry-point group::

    [project.entry-points.dlm]
    my_family = "my_package.plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # records only; importing this module stays cheap
    import click

    from dlm.exporter import Exporter
    from dlm.family import Family
    from dlm.records import BaseSpec

PROJECT = "dlm"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_bases(register: Callable[[BaseSpec], None]) -> None:
    """Register base models (registry rows): call ``register(BaseSpec(...))`` per base.

    Every base names its family by ``BaseSpec.family``; that family must be
    registered too (by this plugin or another).
    """


@hookspec
def register_families(register: Callable[[Family], None]) -> None:
    """Register model families: call ``register(FamilySubclass())`` per family.

    A family knows how to materialize, load, collate, prompt and LoRA-target
    every base that names it. See :class:`dlm.family.Family`.
    """


@hookspec
def register_exporters(register: Callable[[Exporter], None]) -> None:
    """Register export targets: call ``register(ExporterSubclass())`` per target."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add extra commands to the ``dlm`` CLI (``@cli.command()`` on the group given)."""
