"""Which architectures a llama.cpp converter can convert, read from its source.

The converter registers model classes with ``@ModelBase.register("Arch", ...)``;
a class converts the language model unless its ``model_arch`` is
``MODEL_ARCH.MMPROJ`` (the ``MmprojModel`` subclasses), which convert the
vision projector (``--mmproj``). Recent revisions split the classes into a
``conversion/`` package and route each architecture through
``TEXT_MODEL_MAP`` / ``MMPROJ_MODEL_MAP`` in ``conversion/__init__.py``; an
architecture converts only when the map names it *and* that module registers
it. Older revisions keep everything in ``convert_hf_to_gguf.py``.

This reads the source with :mod:`ast` and never imports it (importing it
imports torch), so probing stays cheap.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attrs


@attrs.frozen
class Registrations:
    """Architectures the converter at ``revision`` registers, per side."""

    revision: str
    text: frozenset[str]
    mmproj: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "text": sorted(self.text),
            "mmproj": sorted(self.mmproj),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Registrations:
        text = data["text"]
        mmproj = data["mmproj"]
        assert isinstance(text, list) and isinstance(mmproj, list)
        return cls(revision=str(data["revision"]), text=frozenset(text), mmproj=frozenset(mmproj))


@attrs.define
class _Class:
    module: str
    name: str
    bases: list[str]
    arch: str | None  # "MMPROJ" / other MODEL_ARCH member assigned in the body
    registered: list[str]
    imports: dict[str, str]  # the module's `from .x import Name` table


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript):  # Generic[...] and the like
        return _dotted(node.value)
    return ""


def _registered_names(node: ast.ClassDef) -> list[str]:
    # `ModelBase.register(...)`; single-file converters called the base `Model`.
    names: list[str] = []
    for deco in node.decorator_list:
        if not isinstance(deco, ast.Call):
            continue
        owner, _, method = _dotted(deco.func).rpartition(".")
        if method != "register" or owner.rsplit(".", 1)[-1] not in ("ModelBase", "Model"):
            continue
        names.extend(
            arg.value
            for arg in deco.args
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        )
    return names


def _assigned_arch(node: ast.ClassDef) -> str | None:
    for stmt in node.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "model_arch" and value is not None:
                return _dotted(value).rsplit(".", 1)[-1] or "?"
    return None


def _module_classes(module: str, tree: ast.Module) -> list[_Class]:
    imports: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module is not None:
            origin = stmt.module.rsplit(".", 1)[-1]
            for alias in stmt.names:
                imports[alias.asname or alias.name] = origin
    return [
        _Class(
            module=module,
            name=node.name,
            bases=[_dotted(base).rsplit(".", 1)[-1] for base in node.bases],
            arch=_assigned_arch(node),
            registered=_registered_names(node),
            imports=imports,
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def _string_dict(tree: ast.Module, name: str) -> dict[str, str] | None:
    for stmt in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(stmt, ast.AnnAssign):
            target, value = stmt.target, stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name) and target.id == name and isinstance(value, ast.Dict):
            return {
                k.value: v.value
                for k, v in zip(value.keys, value.values, strict=True)
                if isinstance(k, ast.Constant)
                and isinstance(v, ast.Constant)
                and isinstance(k.value, str)
                and isinstance(v.value, str)
            }
    return None


def read_registrations(root: Path, revision: str) -> Registrations:
    """Parse the converter under ``root`` (a llama.cpp checkout or the pinned extract)."""
    sources: dict[str, Path] = {"convert_hf_to_gguf": root / "convert_hf_to_gguf.py"}
    package = root / "conversion"
    if package.is_dir():
        for path in sorted(package.glob("*.py")):
            sources[path.stem] = path
    trees = {
        module: ast.parse(path.read_text(encoding="utf-8")) for module, path in sources.items()
    }

    classes: list[_Class] = []
    for module, tree in trees.items():
        if module != "__init__":
            classes.extend(_module_classes(module, tree))
    by_module = {(c.module, c.name): c for c in classes}
    by_name: dict[str, list[_Class]] = {}
    for c in classes:
        by_name.setdefault(c.name, []).append(c)

    def resolve(cls: _Class, base: str) -> _Class | None:
        if (cls.module, base) in by_module:
            return by_module[(cls.module, base)]
        origin = cls.imports.get(base)
        if origin is not None and (origin, base) in by_module:
            return by_module[(origin, base)]
        candidates = by_name.get(base, [])
        return candidates[0] if len(candidates) == 1 else None

    def is_mmproj(cls: _Class, seen: frozenset[tuple[str, str]] = frozenset()) -> bool:
        if cls.arch is not None:
            return cls.arch == "MMPROJ"
        key = (cls.module, cls.name)
        for base in cls.bases:
            parent = resolve(cls, base)
            if parent is not None and (parent.module, parent.name) not in seen:
                return is_mmproj(parent, seen | {key})
        return False

    registered: dict[str, dict[str, set[str]]] = {"text": {}, "mmproj": {}}
    for cls in classes:
        side = "mmproj" if is_mmproj(cls) else "text"
        for arch in cls.registered:
            registered[side].setdefault(arch, set()).add(cls.module)

    init = trees.get("__init__")
    text_map = _string_dict(init, "TEXT_MODEL_MAP") if init is not None else None
    mmproj_map = _string_dict(init, "MMPROJ_MODEL_MAP") if init is not None else None

    def supported(side: str, routing: dict[str, str] | None) -> frozenset[str]:
        if routing is None:  # single-file converter: registration is enough
            return frozenset(registered[side])
        # the map routes the import; the class must be registered in that module
        return frozenset(
            arch for arch, module in routing.items() if module in registered[side].get(arch, ())
        )

    return Registrations(
        revision=revision,
        text=supported("text", text_map),
        mmproj=supported("mmproj", mmproj_map),
    )
