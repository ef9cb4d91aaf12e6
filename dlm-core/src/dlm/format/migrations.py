"""Schema migrations: the one registry that upgrades old frontmatter.

A migration takes the raw frontmatter mapping of schema ``N`` (as ruamel.yaml
read it, comments attached) and returns it as schema ``N + 1``. The parser runs
the chain from a document's ``dlm_version`` up to :data:`CURRENT_VERSION`
before validating, so the schema code only ever sees current documents, and the
serializer writes the migrated mapping back with its comments.

Register a step with ``@migration(from_version=N)``. Steps must be contiguous:
a version with no path to the current one is refused with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from dlm.format.document import CURRENT_VERSION

RawMapping = MutableMapping[str, Any]
Migration = Callable[[RawMapping], RawMapping]

#: ``from_version`` → the step that produces ``from_version + 1``.
MIGRATIONS: dict[int, Migration] = {}


class SchemaVersionError(Exception):
    """A ``dlm_version`` this dlm cannot read; the parser locates it in the file."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


def migration(*, from_version: int) -> Callable[[Migration], Migration]:
    """Register ``func`` as the step from schema ``from_version`` to the next one."""

    def register(func: Migration) -> Migration:
        if from_version in MIGRATIONS:
            raise ValueError(f"a migration from schema {from_version} is already registered")
        if not 1 <= from_version < CURRENT_VERSION:
            raise ValueError(
                f"cannot register a migration from schema {from_version}: "
                f"it must lead to a version up to {CURRENT_VERSION}"
            )
        MIGRATIONS[from_version] = func
        return func

    return register


def oldest_supported_version() -> int:
    """The oldest schema with an unbroken chain of migrations to the current one."""
    version = CURRENT_VERSION
    while version - 1 in MIGRATIONS:
        version -= 1
    return version


def check_version(version: int) -> None:
    """Raise :class:`SchemaVersionError` unless ``version`` can be read (maybe migrated)."""
    if version > CURRENT_VERSION:
        raise SchemaVersionError(
            f"dlm_version {version} is newer than this dlm: "
            f"this dlm supports schema up to {CURRENT_VERSION}; upgrade dlm",
            hint="upgrade with `pip install -U dlm-core`",
        )
    oldest = oldest_supported_version()
    if version < oldest:
        raise SchemaVersionError(
            f"dlm_version {version} is too old: there is no migration from it "
            f"(this dlm reads schema {oldest} to {CURRENT_VERSION})",
            hint=f"rewrite the frontmatter for schema {CURRENT_VERSION} (see docs/format.md)",
        )


def migrate(raw: RawMapping, version: int) -> RawMapping:
    """Upgrade ``raw`` (schema ``version``) to :data:`CURRENT_VERSION`, step by step."""
    check_version(version)
    while version < CURRENT_VERSION:
        raw = MIGRATIONS[version](raw)
        produced = raw.get("dlm_version")
        if produced != version + 1:
            # A step that forgets the bump would loop or skip; fail loudly instead.
            raise RuntimeError(
                f"migration from schema {version} produced dlm_version {produced!r}, "
                f"expected {version + 1}"
            )
        version += 1
    return raw


# ----------------------------------------------------------------- the steps


@migration(from_version=9)
def _v9_to_v10(raw: RawMapping) -> RawMapping:
    """Schema 10 added ``::image::`` sections and ``training.sources``.

    Both are new, optional syntax: every valid v9 frontmatter is a valid v10
    frontmatter, so the step only declares the new version. Assigning to the
    existing key keeps its position and comments in the round-trip mapping.
    """
    raw["dlm_version"] = 10
    return raw
