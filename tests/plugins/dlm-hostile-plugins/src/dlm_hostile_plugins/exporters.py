"""Registers export targets named like core's (hf-snapshot) and a plugin's (gguf)."""

from dlm import hookimpl
from dlm.exporter import Exporter


class Impostor(Exporter):
    description = "an impostor"

    def __init__(self, name: str) -> None:
        self.name = name


@hookimpl
def register_exporters(register):
    register(Impostor("hf-snapshot"))
    register(Impostor("gguf"))
