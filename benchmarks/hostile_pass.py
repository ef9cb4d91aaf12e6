"""Hostile-input pass (issue 13): kill -9 at varied moments, and concurrent commands.

Two categories, each run against the real CLI (``python -m dlm``) in a fresh
temporary ``DLM_HOME`` (never the user's), on the offline tiny base
``tiny-qwen2-vl`` with the recall document of ``tests/e2e/recall.py``
trained for a few steps.

**kill9**: ``dlm train`` (first commit), ``dlm train`` (retrain, a further
version), ``dlm export --target hf-snapshot`` and ``dlm export --target gguf
--quant F16 --no-smoke`` are started in their own process group and the whole
group is SIGKILLed at a moment given either as a fraction of the command's
last measured uninterrupted duration or by a file appearing (the tiny base's
build folder, the converter's extraction folder, the store's blobs, a
training log, an adapter staging folder, a new version folder, an export's
staging or set-aside folder). After each kill, independently of dlm's own
checks:

- ``dlm verify DOC`` exits 0 (or 1 saying "no store" when nothing was ever
  committed), with no traceback;
- ``adapter/current.txt`` is absent or names a version whose folder holds
  exactly the files, sizes and sha256 the manifest records;
- every version committed before the kill is still there, byte for byte,
  and still recorded;
- ``exports/<name>`` is absent, byte-identical to the export before the kill,
  or exactly what the manifest records (done or pending); a previous export
  that vanished from its name must be intact in its set-aside folder;
- the same command run again succeeds (a "took over a lock left by dead
  pid" notice is fine), after which verify exits 0 and the same checks hold.

A trigger that the command outruns (it finished first) is reported under
``missed`` and not counted as a kill.

**concurrent**: pairs of commands started together (or the second when the
first has reached a given point): two trains of one document, train +
export, train + prompt, export + export (same target), export + repeated
verify, train + ``dlm cache clear``, two trains of different documents in one
``DLM_HOME`` (fresh, so both build the tiny base at once), train + ``dlm
show``, two first GGUF exports of different documents (both extract the
converter at once), train + repeated verify. Each command must succeed or
refuse with a clean lock message (exit 1, ``store is locked by``, no
traceback); afterwards verify exits 0, every recorded version matches its
files, ``current.txt`` names a recorded version, and each successful train
added exactly one version.

Prints one JSON summary: per category ``tried``, ``clean``, ``failures``
(each with what broke and a reproduction), plus per-trial details and
leftovers (temporary folders left by killed runs: notes, not failures).

Usage::

    .venv/bin/python benchmarks/hostile_pass.py             # both categories, ~10 min on 2 cores
    .venv/bin/python benchmarks/hostile_pass.py --only kill9 --keep
    .venv/bin/python benchmarks/hostile_pass.py --only concurrent --out summary.json

``--keep`` leaves the temporary ``DLM_HOME`` folders for inspection.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASE = "tiny-qwen2-vl"
VERSION_RE = re.compile(r"^v(\d{4,})$")
LOCK_REFUSAL = "store is locked by"
TIMEOUT = 400.0

# ------------------------------------------------------------------ plumbing


class Home:
    """One temporary ``DLM_HOME`` with its own ``TMPDIR``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "dlm-home"
        self.tmp = root / "tmp"
        self.docs = root / "docs"
        for folder in (self.home, self.tmp, self.docs):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DLM_HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
        self.env.pop("DLM_PLUGINS", None)
        self.env.pop("DLM_TEST_PAUSE_AT", None)
        self._count = 0

    def new_doc(self, epochs: int) -> Doc:
        """``dlm init`` + the recall body (tests/e2e/recall.py), in a folder of its own."""
        self._count += 1
        folder = self.docs / f"doc{self._count}"
        folder.mkdir()
        os.environ["DLM_HOME"] = str(self.home)  # write_recall_document runs `dlm init`
        from tests.e2e.recall import write_recall_document

        path, rows = write_recall_document(folder, BASE, training={"num_epochs": epochs})
        from dlm.format import parse_file

        dlm_id = parse_file(path).frontmatter.dlm_id.upper()
        return Doc(self, path, self.home / "store" / dlm_id, folder / "figures" / rows[0][0])


class Doc:
    def __init__(self, home: Home, path: Path, store: Path, image: Path) -> None:
        self.home, self.path, self.store, self.image = home, path, store, image

    def args(self, command: str) -> list[str]:
        doc = str(self.path)
        return {
            "train": ["train", doc],
            "export-hf": ["export", doc, "--target", "hf-snapshot"],
            "export-gguf": ["export", doc, "--target", "gguf", "--quant", "F16", "--no-smoke"],
            "prompt": ["prompt", doc, "--image", str(self.image), "What is this?"],
            "verify": ["verify", doc],
            "show": ["show", doc],
            "cache-clear": ["cache", "clear", doc],
        }[command]

    def repro(self, command: str) -> str:
        return f"DLM_HOME={self.home.home} dlm {' '.join(self.args(command))}"


EXPORT_NAMES = {"export-hf": "hf-snapshot", "export-gguf": "gguf-f16"}


class Run:
    """A ``dlm`` command in its own process group, output captured to files."""

    def __init__(self, doc: Doc, command: str, tag: str) -> None:
        self.doc, self.command = doc, command
        logs = doc.home.root / "runs"
        logs.mkdir(exist_ok=True)
        self.out_path = logs / f"{tag}.out"
        self.err_path = logs / f"{tag}.err"
        self._out = self.out_path.open("w")
        self._err = self.err_path.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dlm", *doc.args(command)],
            env=doc.home.env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self.rc: int | None = None
        self.seconds = 0.0

    def done(self) -> bool:
        if self.rc is None and self.proc.poll() is not None:
            self._finish()
        return self.rc is not None

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = -999
            return self.rc
        self._finish()
        assert self.rc is not None
        return self.rc

    def kill(self) -> None:
        """SIGKILL the whole process group and wait until none of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self._finish()

    def _finish(self) -> None:
        if self.rc is None:
            self.rc = self.proc.returncode
            self.seconds = time.monotonic() - self.started
            self._out.close()
            self._err.close()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def run(doc: Doc, command: str, tag: str) -> Run:
    r = Run(doc, command, tag)
    r.wait()
    return r


def tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------- store states


def hash_tree(root: Path) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                found[full.relative_to(root).as_posix()] = (-1, "not a file")
                continue
            digest = hashlib.sha256()
            with full.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
            found[full.relative_to(root).as_posix()] = (full.stat().st_size, digest.hexdigest())
    return found


def recorded(files: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {rel: (int(f["size"]), f["sha256"]) for rel, f in files.items()}


class State:
    """What the store holds, read without dlm's code."""

    def __init__(self, store: Path) -> None:
        self.problems: list[str] = []
        self.manifest: dict[str, Any] | None = None
        manifest = store / "manifest.json"
        if manifest.is_file():
            try:
                self.manifest = json.loads(manifest.read_text())
            except ValueError as exc:
                self.problems.append(f"manifest.json does not parse ({exc})")
        current = store / "adapter" / "current.txt"
        self.current: str | None = None
        if current.exists():
            text = current.read_text(errors="replace").strip()
            if not VERSION_RE.match(text):
                self.problems.append(f"current.txt holds {text[:40]!r}")
            self.current = text
        versions = store / "adapter" / "versions"
        self.versions: dict[str, dict[str, tuple[int, str]]] = {}
        self.hidden: list[str] = []
        if versions.is_dir():
            for name in sorted(os.listdir(versions)):
                if VERSION_RE.match(name):
                    self.versions[name] = hash_tree(versions / name)
                else:
                    self.hidden.append(f"adapter/versions/{name}")
        exports = store / "exports"
        self.exports: dict[str, dict[str, tuple[int, str]]] = {}
        self.asides: dict[str, dict[str, tuple[int, str]]] = {}
        if exports.is_dir():
            for name in sorted(os.listdir(exports)):
                if not name.startswith("."):
                    self.exports[name] = hash_tree(exports / name)
                else:
                    self.hidden.append(f"exports/{name}")
                    if name.startswith(".old-"):
                        self.asides[name] = hash_tree(exports / name)

    @property
    def adapters(self) -> dict[str, Any]:
        return (self.manifest or {}).get("adapters", {})

    def committed(self) -> dict[str, dict[str, tuple[int, str]]]:
        """Versions that are recorded and whose files match the record."""
        return {
            v: files
            for v, files in self.versions.items()
            if v in self.adapters and recorded(self.adapters[v]["files"]) == files
        }

    def consistency(self) -> list[str]:
        """The invariants any state must meet, kill or no kill."""
        problems = list(self.problems)
        if self.current is not None and VERSION_RE.match(self.current):
            if self.current not in self.versions:
                problems.append(f"current.txt names {self.current}, which has no folder")
            elif self.current not in self.adapters:
                problems.append(f"current.txt names {self.current}, not in the manifest")
            elif recorded(self.adapters[self.current]["files"]) != self.versions[self.current]:
                problems.append(f"current {self.current}'s files differ from the manifest")
        for version, entry in self.adapters.items():
            if version not in self.versions:
                problems.append(f"recorded version {version} has no folder")
            elif recorded(entry["files"]) != self.versions[version]:
                problems.append(f"recorded version {version}'s files differ from the manifest")
        if self.adapters and self.current is None:
            problems.append("versions are recorded but current.txt is gone")
        manifest = self.manifest or {}
        for name, files in self.exports.items():
            options = []
            if name in manifest.get("exports", {}):
                options.append(recorded(manifest["exports"][name]["files"]))
            if name in manifest.get("pending_exports", {}):
                options.append(recorded(manifest["pending_exports"][name]["entry"]["files"]))
            if files not in options:
                problems.append(f"exports/{name} matches no recorded export (half written?)")
        return problems


def compare(before: State, after: State) -> list[str]:
    """What a kill may not do: lose or change a committed version or export."""
    problems = []
    for version, files in before.committed().items():
        if after.versions.get(version) != files:
            problems.append(f"committed version {version} changed or vanished")
        elif version not in after.adapters:
            problems.append(f"committed version {version} dropped from the manifest")
    if before.current is not None and after.current is None:
        problems.append(f"current.txt (was {before.current}) vanished")
    if after.current is not None and after.current != before.current:
        old = [int(v[1:]) for v in before.versions] + (
            [int(before.current[1:])] if before.current else []
        )
        if VERSION_RE.match(after.current) and old and int(after.current[1:]) <= max(old):
            problems.append(f"current moved to {after.current}, not a new version")
    for name, files in before.exports.items():
        now = after.exports.get(name)
        if now is None:
            if not any(files == kept for kept in after.asides.values()):
                problems.append(f"exports/{name} vanished and no set-aside copy is intact")
        elif now != files and not _recorded_export(after, name, now):
            problems.append(f"exports/{name} changed into something unrecorded")
    return problems


def _recorded_export(state: State, name: str, files: dict[str, tuple[int, str]]) -> bool:
    manifest = state.manifest or {}
    entries = [manifest.get("exports", {}).get(name)]
    pending = manifest.get("pending_exports", {}).get(name)
    if pending:
        entries.append(pending["entry"])
    return any(e and recorded(e["files"]) == files for e in entries)


def verify_problems(doc: Doc, tag: str, *, store_may_be_absent: bool) -> tuple[list[str], str]:
    """``dlm verify``'s verdict as problems, and its output."""
    result = run(doc, "verify", tag)
    text = result.stdout + result.stderr
    if "Traceback" in text:
        return [f"verify printed a traceback: {tail(result.stderr)}"], text
    if result.rc == 0:
        return [], text
    if result.rc == 1 and store_may_be_absent and "no store" in result.stderr:
        return [], text
    return [f"verify exited {result.rc}: {tail(text)}"], text


def leftovers(home: Home) -> list[str]:
    """Temporary folders killed runs left (notes): TMPDIR, bases, converter, stores."""
    found = [f"TMPDIR/{p.name}" for p in sorted(home.tmp.iterdir())]
    for folder, label in ((home.home / "bases", "bases"), (home.home / "llama.cpp", "llama.cpp")):
        if folder.is_dir():
            found += [f"{label}/{n}" for n in sorted(os.listdir(folder)) if n.startswith(".")]
    stores = home.home / "store"
    if stores.is_dir():
        for store in sorted(stores.iterdir()):
            found += [f"store/{store.name[-6:]}/{h}" for h in State(store).hidden]
    return [f for f in found if not f.endswith(".lock")]


# ------------------------------------------------------------------- kill -9


class Appears:
    """A file or folder matching ``pattern`` exists (and is not in ``exclude``)."""

    def __init__(self, pattern: str, nonempty: bool = False, exclude: set[str] | None = None):
        self.pattern, self.nonempty, self.exclude = pattern, nonempty, exclude or set()

    def __call__(self) -> bool:
        for hit in glob.glob(self.pattern):
            if hit in self.exclude:
                continue
            if not self.nonempty or (os.path.isfile(hit) and os.path.getsize(hit) > 0):
                return True
        return False


class KillPass:
    def __init__(self, home: Home, epochs: int, log: Callable[[str], None]) -> None:
        self.home, self.epochs, self.log = home, epochs, log
        self.trials: list[dict[str, Any]] = []
        self.missed: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.durations: dict[str, float] = {}
        self._n = 0

    def trial(
        self, doc: Doc, command: str, label: str, when: float | str, trigger: Appears | None = None
    ) -> None:
        """Start ``command``, SIGKILL its group at ``when`` (fraction of its measured
        duration) or when ``trigger`` fires (+ ``when`` seconds if a number), check."""
        self._n += 1
        tag = f"kill{self._n:02d}-{command}"
        before = State(doc.store)
        had_commit = before.current is not None
        cmd = doc.args(command)
        r = Run(doc, command, tag)
        fired = False
        if trigger is None:
            assert isinstance(when, float)
            measured = self.durations.get(command, 15.0)
            at = when * measured
            how = f"at {when:.2f} of its {measured:.1f} s run"
            while not r.done() and time.monotonic() - r.started < at:
                time.sleep(0.005)
            fired = not r.done()
        else:
            how = f"when {label} appeared" + (f" +{when}s" if isinstance(when, float) else "")
            deadline = r.started + TIMEOUT
            while not r.done() and time.monotonic() < deadline:
                if trigger():
                    fired = True
                    break
                time.sleep(0.002)
            if fired and isinstance(when, float):
                time.sleep(when)
        killed_at = time.monotonic() - r.started
        if r.done():
            self.log(f"  {tag}: missed ({how}): finished first, rc {r.rc}")
            self.missed.append({"trial": tag, "command": " ".join(cmd[:1]), "moment": how})
            if r.rc == 0:
                self.durations[command] = r.seconds
            return
        r.kill()
        record: dict[str, Any] = {
            "trial": tag,
            "command": f"dlm {' '.join(a for a in cmd if not a.startswith('/'))}",
            "moment": how,
            "killed_after_s": round(killed_at, 2),
        }
        problems: list[str] = []
        after = State(doc.store) if doc.store.exists() else before
        problems += [f"after the kill: {p}" for p in after.consistency()]
        problems += [f"after the kill: {p}" for p in compare(before, after)]
        vp, vtext = verify_problems(doc, f"{tag}-verify", store_may_be_absent=not had_commit)
        problems += [f"after the kill: {p}" for p in vp]
        record["state_after_kill"] = {
            "current": after.current,
            "versions": sorted(after.versions),
            "exports": sorted(after.exports),
            "hidden": after.hidden,
            "verify": tail(vtext, 2),
        }
        again = run(doc, command, f"{tag}-again")
        record["next_run"] = {"rc": again.rc, "seconds": round(again.seconds, 1)}
        if "took over a lock" in again.stderr:
            record["next_run"]["notice"] = "took over a lock left by dead pid"
        if again.rc != 0 or "Traceback" in again.stderr:
            problems.append(f"the next `dlm {cmd[0]}` exited {again.rc}: {tail(again.stderr)}")
        else:
            self.durations[command] = again.seconds
        final = State(doc.store)
        problems += [f"after the next run: {p}" for p in final.consistency()]
        problems += [f"after the next run: {p}" for p in compare(before, final)]
        vp, _ = verify_problems(doc, f"{tag}-verify2", store_may_be_absent=False)
        problems += [f"after the next run: {p}" for p in vp]
        if command.startswith("train") and again.rc == 0 and final.current == before.current:
            problems.append("the next train did not move current.txt to a new version")
        record["clean"] = not problems
        self.trials.append(record)
        state = "clean" if not problems else "FAILED"
        self.log(f"  {tag}: killed {how} after {killed_at:.1f}s -> {state}")
        if problems:
            self.failures.append(
                {
                    "trial": tag,
                    "moment": how,
                    "problems": problems,
                    "reproduction": (
                        f"export DLM_HOME={doc.home.home}; setsid dlm {' '.join(cmd)} & "
                        + (
                            f"until compgen -G '{trigger.pattern}'; do sleep 0.005; done; "
                            if trigger is not None
                            else f"sleep {killed_at:.1f}; "
                        )
                        + f"kill -9 -- -$!; dlm verify {doc.path}"
                    ),
                }
            )

    def run_all(self) -> None:
        home, store_glob = self.home, lambda d, p: str(d.store / p)
        bases = str(home.home / "bases")
        # First commits: each trial on a fresh document (the next run commits v0001).
        firsts = [
            ("the tiny base's build folder", 0.3, lambda d: Appears(f"{bases}/.*.build-*")),
            (
                "the store lock's holder record",
                None,
                lambda d: Appears(store_glob(d, "lock"), True),
            ),
            ("the store's blobs", None, lambda d: Appears(store_glob(d, "blobs/*"))),
            ("0.5", 0.5, None),
            ("a training log", None, lambda d: Appears(store_glob(d, "logs/*.jsonl"), True)),
            (
                "the adapter staging folder",
                None,
                lambda d: Appears(store_glob(d, "adapter/*/.st*")),
            ),
        ]
        for label, when, make in firsts:
            doc = home.new_doc(self.epochs)
            self.trial(doc, "train", label, when if when else "", make(doc) if make else None)
        # Retrains on the last document (one version per clean next run).
        if State(doc.store).current is None:
            run(doc, "train", "retrain-setup")

        def new_in(sub: str, pattern: str, nonempty: bool = False) -> Appears:
            existing = set(glob.glob(store_glob(doc, f"{sub}/{pattern}")))
            return Appears(store_glob(doc, f"{sub}/{pattern}"), nonempty, existing)

        retrains: list[tuple[str, Any, Callable[[], Appears] | None]] = [
            ("0.2", 0.2, None),
            ("a new training log", None, lambda: new_in("logs", "*.jsonl", True)),
            ("0.6", 0.6, None),
            ("the adapter staging folder", None, lambda: new_in("adapter/versions", ".st*")),
            ("the adapter staging folder", 0.05, lambda: new_in("adapter/versions", ".st*")),
            ("a new version folder", None, lambda: new_in("adapter/versions", "v*")),
            ("0.9", 0.9, None),
        ]
        for label, when, make in retrains:
            self.trial(doc, "train", label, when if when else "", make() if make else None)
        # Exports of that document: the first on an empty exports/, later ones replace.
        for command, fractions in (("export-hf", (0.3, 0.7, 0.95)), ("export-gguf", (0.4, 0.75))):
            name = EXPORT_NAMES[command]
            triggers: list[tuple[str, Any, Callable[[], Appears] | None]] = []
            if command == "export-gguf":
                converter = str(home.home / "llama.cpp")
                triggers.append(
                    (
                        "the converter's extraction folder",
                        None,
                        lambda c=converter: Appears(f"{c}/.*"),
                    )
                )
            triggers += [
                (
                    "the export staging folder",
                    None,
                    lambda n=name: new_in("exports", f".staging-{n}-*"),
                ),
                *((f"{f}", f, None) for f in fractions),
                (
                    "the export set-aside folder",
                    None,
                    lambda n=name: new_in("exports", f".old-{n}-*"),
                ),
            ]
            for label, when, make in triggers:
                self.trial(doc, command, label, when if when else "", make() if make else None)

    def summary(self) -> dict[str, Any]:
        return {
            "tried": len(self.trials),
            "clean": sum(t["clean"] for t in self.trials),
            "failures": self.failures,
            "missed": self.missed,
            "trials": self.trials,
            "measured_s": {k: round(v, 1) for k, v in self.durations.items()},
            "leftovers": leftovers(self.home),
        }


# ---------------------------------------------------------------- concurrent


class ConcurrentPass:
    def __init__(self, home: Home, epochs: int, log: Callable[[str], None]) -> None:
        self.home, self.epochs, self.log = home, epochs, log
        self.pairings: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def pairing(
        self,
        name: str,
        first: tuple[Doc, str],
        second: tuple[Doc, str],
        start_second: Callable[[], bool] | None = None,
        *,
        repeat_second: bool = False,
    ) -> None:
        """Start ``first``; start ``second`` at once or when ``start_second`` holds
        (``repeat_second``: run it again and again until ``first`` ends)."""
        tag = f"pair{len(self.pairings) + 1:02d}"
        docs = {id(d): d for d, _ in (first, second)}
        before = {k: State(d.store) for k, d in docs.items()}
        a = Run(first[0], first[1], f"{tag}-a")
        if start_second is not None:
            while not a.done() and not start_second():
                time.sleep(0.005)
        runs = [a, Run(second[0], second[1], f"{tag}-b")]
        if repeat_second:
            while True:
                runs[-1].wait()
                if a.done():
                    break
                runs.append(Run(second[0], second[1], f"{tag}-b{len(runs)}"))
                time.sleep(0.3)
        for r in runs:
            r.wait()
        problems: list[str] = []
        outcomes = []
        for r in runs:
            what = f"dlm {r.command}"
            if "Traceback" in r.stderr:
                problems.append(f"{what} printed a traceback: {tail(r.stderr)}")
            if r.rc == 0:
                outcomes.append("ok")
            elif r.rc == 1 and LOCK_REFUSAL in r.stderr:
                outcomes.append("refused (lock)")
            else:
                outcomes.append(f"rc {r.rc}")
                problems.append(f"{what} exited {r.rc}: {tail(r.stderr)}")
        for key, doc in docs.items():
            after = State(doc.store)
            problems += after.consistency()
            problems += compare(before[key], after)
            trains = sum(1 for r in runs if r.doc is doc and r.command == "train" and r.rc == 0)
            added = set(after.committed()) - set(before[key].committed())
            if len(added) != trains:
                problems.append(f"{trains} successful train(s) but {len(added)} new version(s)")
            vp, _ = verify_problems(
                doc, f"{tag}-verify-{doc.path.parent.name}", store_may_be_absent=False
            )
            problems += vp
        shown = [f"{r.command}: {o}" for r, o in zip(runs, outcomes, strict=True)]
        if repeat_second:
            shown = [
                shown[0],
                f"{second[1]} x{len(runs) - 1}: {', '.join(sorted(set(outcomes[1:])))}",
            ]
        record = {
            "pairing": name,
            "outcomes": shown,
            "seconds": round(max(r.seconds for r in runs), 1),
            "clean": not problems,
        }
        self.pairings.append(record)
        self.log(f"  {tag} {name}: {record['outcomes']} -> {'clean' if not problems else 'FAILED'}")
        if problems:
            self.failures.append(
                {
                    "pairing": name,
                    "problems": problems,
                    "reproduction": f"{first[0].repro(first[1])} & {second[0].repro(second[1])}",
                }
            )

    def run_all(self) -> None:
        home = self.home
        a, b = home.new_doc(self.epochs), home.new_doc(self.epochs)

        def lock_held(doc: Doc) -> Callable[[], bool]:
            return Appears(str(doc.store / "lock"), nonempty=True)

        def training(doc: Doc) -> Callable[[], bool]:
            existing = set(glob.glob(str(doc.store / "logs" / "*.jsonl")))
            return Appears(str(doc.store / "logs" / "*.jsonl"), True, existing)

        # Fresh DLM_HOME: both build the tiny base at the same time.
        self.pairing("two trains of different documents, one DLM_HOME", (a, "train"), (b, "train"))
        # No converter yet: both extract it at the same time.
        self.pairing(
            "two first gguf exports of different documents", (a, "export-gguf"), (b, "export-gguf")
        )
        self.pairing("two trains of one document", (a, "train"), (a, "train"))
        self.pairing("train + export (mid-training)", (a, "train"), (a, "export-hf"), training(a))
        self.pairing("train + prompt (mid-training)", (a, "train"), (a, "prompt"), training(a))
        self.pairing("export + export, same target", (a, "export-hf"), (a, "export-hf"))
        self.pairing(
            "export + repeated verify", (a, "export-hf"), (a, "verify"), repeat_second=True
        )
        self.pairing(
            "train + cache clear (mid-training)", (a, "train"), (a, "cache-clear"), training(a)
        )
        self.pairing("train + show (lock held)", (a, "train"), (a, "show"), lock_held(a))
        self.pairing(
            "train + repeated verify", (a, "train"), (a, "verify"), lock_held(a), repeat_second=True
        )

    def summary(self) -> dict[str, Any]:
        return {
            "tried": len(self.pairings),
            "clean": sum(p["clean"] for p in self.pairings),
            "failures": self.failures,
            "pairings": self.pairings,
            "leftovers": leftovers(self.home),
        }


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("kill9", "concurrent"), default=None)
    parser.add_argument("--epochs", type=int, default=1, help="num_epochs of the documents")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DLM_HOMEs")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="dlm-hostile-"))
    started = time.monotonic()
    summary: dict[str, Any] = {"root": str(root), "base": BASE, "epochs": args.epochs}
    try:
        if args.only in (None, "kill9"):
            log("kill -9:")
            kills = KillPass(Home(root / "kill9"), args.epochs, log)
            kills.run_all()
            summary["kill9"] = kills.summary()
        if args.only in (None, "concurrent"):
            log("concurrent runs:")
            pairs = ConcurrentPass(Home(root / "concurrent"), args.epochs, log)
            pairs.run_all()
            summary["concurrent"] = pairs.summary()
    finally:
        summary["seconds"] = round(time.monotonic() - started, 1)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failed = any(summary[c]["failures"] for c in ("kill9", "concurrent") if c in summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
