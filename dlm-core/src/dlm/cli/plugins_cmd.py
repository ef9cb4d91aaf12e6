"""``dlm plugins``: what is installed, what each plugin implements, what failed."""

from __future__ import annotations

import attrs
import click

from dlm.cli.output import console, err_console, json_option, print_json


@click.command("plugins")
@json_option()
def plugins(as_json: bool) -> None:
    """List plugins: distribution, version, hooks, what they register, load errors and
    conflicts (a name two plugins register is used from neither)."""
    from dlm.cli.app import load_plugin_commands
    from dlm.plugins import get_registry

    load_plugin_commands()  # a command that collides is reported like any conflict
    registry = get_registry()
    provides: dict[str, list[str]] = {}
    for thing, plugin in sorted(registry.provider.items()):
        provides.setdefault(plugin, []).append(thing)
    rows = []
    for info in registry.plugins:
        row = attrs.asdict(info)
        row.pop("error_detail")
        row["problems"] = info.problems
        row["provides"] = provides.get(info.name, [])
        rows.append(row)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="dlm plugins")
    for column in ("plugin", "distribution", "version", "hooks", "provides", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"] + (" (built-in)" if row["builtin"] else ""),
            row["distribution"],
            row["version"],
            ", ".join(row["hooks"]),
            ", ".join(row["provides"]),
            "\n".join(row["problems"]),
            style="red" if row["problems"] else None,
        )
    console.print(table)
    for row in rows:
        for problem in row["conflicts"]:
            err_console.print(f"plugins: {row['name']}: {problem}", style="bold red", markup=False)
