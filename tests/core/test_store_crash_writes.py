"""Kills inside the store's writes, not only between them (issue 21).

The pause-point crash tests (test_store_adapters.py, test_store_exports.py)
stop a commit between its steps. Here strace kills the committing process
on entry to *each* write, truncate, mkdir, rename, unlink and fsync system
call of an adapter commit and of an export, one run per call, so a step that
is not atomic on its own (a file written in place, a rename before the data
is written) leaves a state that the checks below see: after every kill the
store reads back the previous version or the new, complete one, and
`dlm verify` passes.

A kill cannot show a missing fsync (the page cache outlives the process), so
the untouched run's trace is also checked for the order a power loss needs:
everything under a directory fsync'ed before the directory is renamed into
place, and each rename made durable (its directory fsync'ed) before the next.

Each run is one short child (tests/core/store_write_child.py) on a copy of a
prepared store; calls made before the child's start marker (Python's own
start-up) are counted once in an untouched run and skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from dlm.cli import cli
from dlm.errors import StoreError
from dlm.format import render_new_document
from dlm.format.document import Frontmatter
from dlm.store.adapters import current_version
from dlm.store.exports import EXTERNAL_RECORD, read_external_record, recover_exports, stage_export
from dlm.store.lock import StoreLock
from dlm.store.manifest import hash_tree, load_manifest
from dlm.store.paths import StorePaths
from dlm.store.verify import verify_store
from tests.core import store_crash_child as crash
from tests.core import store_write_child as child
from tests.core.test_store_adapters import commit

DLM_ID = "01J9Z6M8Q5X2V7K3T4R1N0PBCD"
NAME = "hf-snapshot"
STRACE = shutil.which("strace")

# What can change a file or a directory. "?" lets strace ignore a name this
# architecture lacks (aarch64 has no rename, mkdir, unlink or rmdir).
WRITES = ("write", "pwrite64", "writev", "pwritev", "ftruncate")
SYNCS = ("fsync", "fdatasync")
RENAMES = ("rename", "renameat", "renameat2")
MKDIRS = ("mkdir", "mkdirat")
UNLINKS = ("unlink", "unlinkat", "rmdir")
TRACED = ",".join(f"?{name}" for name in (*WRITES, *SYNCS, *RENAMES, *MKDIRS, *UNLINKS))


def _strace_works() -> str | None:
    """Why these tests cannot run here, or None."""
    if STRACE is None:
        return "strace is not installed (scripts/bootstrap installs it where apt-get can)"
    probe = subprocess.run(
        [STRACE, "-qq", "-o", os.devnull, "-e", "inject=write:signal=KILL:when=1", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:  # `true` writes nothing: any other failure is ptrace refused
        return None
    return f"strace cannot trace here: {probe.stderr.strip()[:200]}"


WHY_NOT = _strace_works()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))]


# ------------------------------------------------------------- tracing


@attrs.frozen
class Call:
    name: str
    fd_path: str | None  # the file behind the first argument, when it is a descriptor
    strings: tuple[str, ...]  # the quoted arguments (paths, for the path calls)
    result: str  # "?" when the process died in the call

    def __str__(self) -> str:
        target = self.fd_path if self.fd_path is not None else " -> ".join(self.strings)
        return f"{self.name}({target})"


CALL_RE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+= (?P<result>\S+)")
FD_RE = re.compile(r"^-?\d+<(?P<path>[^>]*)>")
STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse(log: str) -> list[Call]:
    calls = []
    for line in log.splitlines():
        match = CALL_RE.match(line)
        if match is None:
            continue  # "+++ killed by SIGKILL +++" and the like
        args = match["args"]
        fd = FD_RE.match(args)
        strings = tuple(STRING_RE.findall(args))
        if match["name"] in ("mkdirat", "unlinkat", "renameat", "renameat2"):
            # "AT_FDCWD</cwd>, "path"" or "5</dir>, "name"": absolute paths
            # ignore the directory; relative ones are joined to it.
            dirs = re.findall(r'(?:^|, )(?:AT_FDCWD|\d+)<([^>]*)>, "', args)
            strings = tuple(
                s if s.startswith("/") or i >= len(dirs) else f"{dirs[i]}/{s}"
                for i, s in enumerate(strings)
            )
        calls.append(Call(match["name"], fd["path"] if fd else None, strings, match["result"]))
    return calls


def is_marker(call: Call, marker: bytes) -> bool:
    return call.name == "write" and call.strings == (marker.decode(),)


@attrs.frozen
class Run:
    returncode: int
    before: list[Call]  # Python's start-up, up to and including the start marker
    work: list[Call]  # the store's work, between the markers
    stderr: str


def traced(action: str, tag: str, *extra: str, home: Path, inject: str | None = None) -> Run:
    assert STRACE is not None
    log = home.parent / "strace.log"
    command = [STRACE, "-qq", "-y", "-s", "4096", "-o", str(log), "-e", f"trace={TRACED}"]
    if inject is not None:
        command += ["-e", f"inject={inject}"]
    command += [sys.executable, str(Path(child.__file__)), action, DLM_ID, tag, *extra]
    env = {**os.environ, "DLM_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    calls = parse(log.read_text(errors="replace"))
    starts = [i for i, c in enumerate(calls) if is_marker(c, child.BEGIN)]
    assert len(starts) == 1, (proc.returncode, proc.stderr[-2000:])
    ends = [i for i, c in enumerate(calls) if is_marker(c, child.END)]
    stop = ends[0] if ends else len(calls)
    return Run(proc.returncode, calls[: starts[0] + 1], calls[starts[0] + 1 : stop], proc.stderr)


def kill_points(baseline: Run) -> list[tuple[int, str]]:
    """(index in the work, strace inject spec) for every call of the work.

    strace counts injectable calls per syscall and per process, start-up
    included, so the n-th ``fsync`` of the work is ``when=`` start-up's
    fsyncs plus n.
    """
    before = Counter(c.name for c in baseline.before)
    seen: Counter[str] = Counter()
    points = []
    for index, call in enumerate(baseline.work):
        seen[call.name] += 1
        when = before[call.name] + seen[call.name]
        points.append((index, f"{call.name}:signal=KILL:when={when}"))
    return points


# ---------------------------------------------------------- durability


def durability_problems(work: Iterable[Call]) -> list[str]:
    """What a power loss right after the work could undo that a reader relies on.

    - a directory renamed into place must have had every file written under
      it, and every directory that got new entries (itself included),
      fsync'ed first, or the new name can point at empty files;
    - an atomic write's temporary file must be fsync'ed before its rename;
    - a rename must be made durable (its directories fsync'ed) before the
      next rename, which a reader may take as the commit point, and before
      the work ends.
    """
    dirty: dict[str, str] = {}  # path -> what changed it, until an fsync of it
    renamed: dict[str, str] = {}  # directory -> the rename in it not yet durable
    problems: list[str] = []

    def under(path: str, root: str) -> bool:
        return path == root or path.startswith(root + "/")

    for call in work:
        if call.name in WRITES and call.fd_path is not None:
            dirty[call.fd_path] = call.name
            dirty.setdefault(os.path.dirname(call.fd_path), f"new entry from {call.name}")
        elif call.name in MKDIRS and call.result == "0":
            dirty[os.path.dirname(call.strings[-1])] = "mkdir"
        elif call.name in SYNCS and call.fd_path is not None:
            dirty.pop(call.fd_path, None)
            renamed.pop(call.fd_path, None)
        elif call.name in RENAMES and call.result == "0":
            if len(call.strings) != 2:  # unreadable, so nothing would be checked
                problems.append(f"cannot read the paths of {call}")
                continue
            src, dst = call.strings
            for directory, what in renamed.items():
                problems.append(f"rename to {dst} before {what} was durable ({directory})")
            renamed.clear()
            for path, what in sorted(dirty.items()):
                if under(path, src):
                    problems.append(f"{path} ({what}) not fsync'ed before its rename to {dst}")
            dirty = {p: w for p, w in dirty.items() if not under(p, src)}
            for directory in {os.path.dirname(src), os.path.dirname(dst)}:
                renamed[directory] = f"the rename to {dst}"
    for directory, what in renamed.items():
        problems.append(f"{what} was never made durable ({directory} not fsync'ed)")
    return problems


# ------------------------------------------------------------ fixtures


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # strace -y prints resolved paths; the child's own paths must match them
    home = tmp_path.resolve() / "home"
    monkeypatch.setenv("DLM_HOME", str(home))
    return home


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    """A document on the store, for `dlm verify`."""
    path = tmp_path / "doc.dlm"
    frontmatter = Frontmatter(dlm_id=DLM_ID, base_model="tiny-qwen2-vl")
    path.write_text(render_new_document(frontmatter, "Prose.\n"))
    return path


def dlm_verify(doc: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", str(doc)])
    assert result.exit_code == 0, result.output


def hidden(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def export(paths: StorePaths, tag: str, out: Path | None = None) -> None:
    with (
        StoreLock(paths.lock_file, command="export", notice=lambda m: None),
        stage_export(paths, NAME, out=out) as staging,
    ):
        crash.write_tree(staging, crash.export_files(tag))


def kill_everywhere(
    action: str,
    tag: str,
    *extra: str,
    home: Path,
    check: Callable[[str], None],
    out: Path | None = None,
) -> int:
    """Run ``action`` untouched, then once per call of its work killed on
    entry to that call, each time on a fresh copy of ``home`` (and ``out``).
    ``check(where)`` judges the state after each run. Asserts the untouched
    run's durability; returns the number of kill points."""
    saved = {place: place.parent / f"pristine-{place.name}" for place in (home, out) if place}
    for place, copy in saved.items():
        shutil.copytree(place, copy, symlinks=True)
    baseline = traced(action, tag, *extra, home=home)
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    problems = durability_problems(baseline.work)
    assert not problems, "\n".join(problems)
    check("the untouched run")
    for index, inject in kill_points(baseline):
        for place, copy in saved.items():
            shutil.rmtree(place, ignore_errors=True)
            shutil.copytree(copy, place, symlinks=True)
        run = traced(action, tag, *extra, home=home, inject=inject)
        where = f"killed on entry to call {index + 1}, {baseline.work[index]}"
        # killed, and exactly where the untouched run made that call
        assert run.returncode in (-9, 128 + 9), (where, run.returncode, run.stderr[-2000:])
        assert [c.name for c in run.work] == [c.name for c in baseline.work[: index + 1]], where
        assert run.work[-1].result == "?", where
        check(where)
    return len(baseline.work)


# --------------------------------------------------------------- tests


def test_kill_in_every_call_of_an_adapter_commit(home: Path, doc: Path) -> None:
    paths = StorePaths.for_id(DLM_ID)
    assert commit(paths, "one") == "v0001"
    currents: Counter[str] = Counter()

    def check(where: str) -> None:
        try:
            current = current_version(paths)
        except StoreError as exc:  # a torn or empty current.txt
            pytest.fail(f"{where}: {exc.message}")
        assert current in ("v0001", "v0002"), where
        manifest = load_manifest(paths)
        for version, tag in (("v0001", "one"), ("v0002", "two")):
            # the current version, and any version the manifest vouches for,
            # is complete: no empty, short or missing file is read back
            if version == current or version in manifest.adapters:
                files = crash.read_tree(paths.version_dir(version))
                assert files == crash.adapter_files(tag), (where, version)
                assert manifest.adapters[version].files == hash_tree(paths.version_dir(version))
        assert [p for p in verify_store(paths) if p.is_error] == [], where
        dlm_verify(doc)
        currents[current] += 1

        # the next commit clears what the dead one left and goes on
        new = commit(paths, "three")
        assert new > current, where
        assert crash.read_tree(paths.version_dir(new)) == crash.adapter_files("three"), where
        assert verify_store(paths) == [], where
        assert hidden(paths.versions) == [], where
        dlm_verify(doc)

    points = kill_everywhere("commit", "two", home=home, check=check)
    # lock, staging writes, fsyncs, rename, manifest, flip, unlock: all reached
    assert points >= 25, points
    assert currents["v0001"] > 0 and currents["v0002"] > 1, currents


def _export_state(folder: Path, skip: tuple[str, ...] = ()) -> str:
    if not folder.exists():
        return "absent"
    tree = crash.read_tree(folder, skip=skip)
    for tag in ("old", "new"):
        if tree == crash.export_files(tag):
            return tag
    return "partial"


def test_kill_in_every_call_of_a_store_export(home: Path, doc: Path) -> None:
    paths = StorePaths.for_id(DLM_ID)
    commit(paths, "one")
    export(paths, "old")
    target = paths.export_dir(NAME)
    outcomes: Counter[str] = Counter()

    def check(where: str) -> None:
        # absent (between the two renames of the swap), old or new; never partial
        state = _export_state(target)
        assert state != "partial", where
        assert [p for p in verify_store(paths) if p.is_error] == [], where
        dlm_verify(doc)

        # what the next export does first: finish or undo the interrupted one
        with StoreLock(paths.lock_file, command="export", notice=lambda m: None):
            recover_exports(paths)
        recovered = _export_state(target)
        assert recovered in ("old", "new"), where
        assert state in ("absent", recovered), where
        manifest = load_manifest(paths)
        assert manifest.exports[NAME].files == hash_tree(target), where
        assert manifest.pending_exports == {}, where
        assert hidden(paths.exports) == [], where
        assert verify_store(paths) == [], where
        dlm_verify(doc)
        outcomes[f"{state}->{recovered}"] += 1

    points = kill_everywhere("export", "new", home=home, check=check)
    assert points >= 25, points
    assert {"old->old", "absent->old", "new->new"} <= set(outcomes), outcomes


def test_kill_in_every_call_of_an_export_to_a_folder(home: Path, tmp_path: Path) -> None:
    paths = StorePaths.for_id(DLM_ID)
    commit(paths, "one")
    out = tmp_path.resolve() / "ship"
    export(paths, "old", out=out)
    outcomes: Counter[str] = Counter()

    def check(where: str) -> None:
        state = _export_state(out, skip=(EXTERNAL_RECORD,))
        assert state != "partial", where
        if state != "absent":
            # its record describes it exactly, or a re-export would refuse it
            files = {k: v for k, v in hash_tree(out).items() if k != EXTERNAL_RECORD}
            assert read_external_record(out) == files, where
        assert [p for p in verify_store(paths) if p.is_error] == [], where
        outcomes[state] += 1
        export(paths, "newer", out=out)  # replaces it and clears the dead one's work
        assert crash.read_tree(out, skip=(EXTERNAL_RECORD,)) == crash.export_files("newer")
        assert hidden(out.parent) == [], where

    points = kill_everywhere("export-out", "new", str(out), home=home, out=out, check=check)
    assert points >= 20, points
    assert {"old", "absent", "new"} <= set(outcomes), outcomes
