"""Checks for option values click's own types let through."""

from __future__ import annotations

import math
import re

import click

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
