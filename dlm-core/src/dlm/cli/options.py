"""Checks for option values click's own types let through."""

from __future__ import annotations

import math
import re

import click

from dlm.format.checks import did_you_mean
from dlm.format.document import TRACKERS

_VERSION_RE = re.compile(r"v?\d{1,12}")


def adapter_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``v0002`` or ``2`` → ``v0002``. Anything else (``../../etc``) is a usage error:
    the value becomes a folder name inside the store."""
    if value is None:
        return None
    text = value.strip()
    if not _VERSION_RE.fullmatch(text):
        raise click.BadParameter(
            f"{value!r} is not an adapter version: expected vNNNN (e.g. v0002) or its number",
            ctx=ctx,
            param=param,
        )
    return f"v{int(text.removeprefix('v')):04d}"


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange compares with < and >, which every comparison with NaN passes."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def report_to(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...] | None:
    """``--report-to``, repeated or comma-separated: the trackers, in order, or ``()``
    for ``none``; ``None`` when not given (the document's ``training.report_to``)."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    if not names:
        raise click.BadParameter("name a tracker, or none", ctx=ctx, param=param)
    if "none" in names:
        raise click.BadParameter(
            "none turns every tracker off: give it alone", ctx=ctx, param=param
        )
    chosen: list[str] = []
    for name in names:
        if name not in TRACKERS:
            hint = did_you_mean(name, TRACKERS)
            raise click.BadParameter(
                f"{name!r} is not a tracker: choose from {', '.join(TRACKERS)}, or none"
                + (f" ({hint})" if hint else ""),
                ctx=ctx,
                param=param,
            )
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)
