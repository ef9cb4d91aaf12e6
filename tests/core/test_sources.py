"""``training.sources`` expansion, glob matching, and document path safety."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from dlm.errors import DocumentError
from dlm.format import (
    Document,
    Frontmatter,
    ImageSection,
    ProseSection,
    expand_sources,
    parse_file,
    resolve_document_path,
    serialize,
)
from dlm.format.globs import glob_to_regex, matches

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"


def write(path: Path, data: bytes | str = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def document(folder: Path, sources_yaml: str, body: str = "") -> Document:
    text = (
        f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n"
        f"training:\n  sources:\n{sources_yaml}---\n{body}"
    )
    return parse_file(write(folder / "doc.dlm", text))


def images(doc: Document) -> list[tuple[str, str | None, str]]:
    return [
        (s.path, s.alt, s.caption)
        for s in doc.sections
        if isinstance(s, ImageSection) and s.from_source is not None
    ]


# ----------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.png", "a.png", True),
        ("**/*.png", "x/y/a.png", True),
        ("*.png", "x/a.png", False),
        ("*.png", "A.PNG", True),
        ("x/**", "x/a/b.png", True),
        ("x/**", "xy/a.png", False),
        ("x/**/b.png", "x/b.png", True),
        ("x/**/b.png", "x/1/2/b.png", True),
        ("?.png", "a.png", True),
        ("?.png", "ab.png", False),
        ("[ab].png", "b.png", True),
        ("[!ab].png", "c.png", True),
        ("[!ab].png", "a.png", False),
        ("[a.png", "[a.png", True),
        ("a+b(1).png", "a+b(1).png", True),
        ("fig**.png", "fig1.png", True),
        ("fig**.png", "fig/1.png", False),
        ("./*.png", "a.png", True),
    ],
)
def test_glob_matching(pattern: str, path: str, expected: bool) -> None:
    assert bool(glob_to_regex(pattern).fullmatch(path)) is expected


def test_matches_any_pattern() -> None:
    assert matches("a/b.jpg", ("*.png", "**/*.jpg"))
    assert not matches("a/b.gif", ("*.png", "**/*.jpg"))
    assert not matches("a.png", ())


# ----------------------------------------------------------------- expansion


def test_nested_folders_sorted_with_alt_and_sidecar_captions(tmp_path: Path) -> None:
    figs = tmp_path / "paper-figures"
    write(figs / "b.png")
    write(figs / "a.jpg")
    write(figs / "a.txt", "  Caption for a.\r\nSecond line.\n\n")
    write(figs / "sub" / "deep" / "c.PNG")
    write(figs / "sub" / "notes.md", "not an image")
    write(figs / "z.webp")
    doc = document(
        tmp_path,
        "    - path: ./paper-figures\n",
        '::image path="hand.png"::\nby hand\n',
    )
    expanded = expand_sources(doc)
    assert expanded.sections[0] == ImageSection("hand.png", caption="by hand")
    assert images(expanded) == [
        ("paper-figures/a.jpg", "a", "Caption for a.\nSecond line."),
        ("paper-figures/b.png", "b", ""),
        ("paper-figures/sub/deep/c.PNG", "c", ""),
        ("paper-figures/z.webp", "z", ""),
    ]
    for section in expanded.sections[1:]:
        assert section.line == 7  # the line of the directive's 'path' key
        assert section.from_source == "./paper-figures"
    # The original document is unchanged; expanding again changes nothing.
    assert len(doc.sections) == 1
    assert expand_sources(expanded) == expanded
    # Expanded sections are never written back.
    assert serialize(expanded) == serialize(doc)


def test_include_exclude_and_sidecars_are_never_images(tmp_path: Path) -> None:
    figs = tmp_path / "figs"
    for name in ("keep/a.png", "keep/b.gif", "drafts/c.png", "d.png", "d.txt", "e.TXT"):
        write(figs / name)
    doc = document(
        tmp_path,
        '    - path: figs\n      include: ["**/*"]\n      exclude: ["drafts/**", "*.gif", "**/*.gif"]\n',
    )
    assert [p for p, _, _ in images(expand_sources(doc))] == ["figs/d.png", "figs/keep/a.png"]


def test_several_directives_keep_order_and_skip_duplicates(tmp_path: Path) -> None:
    write(tmp_path / "one" / "z.png")
    write(tmp_path / "one" / "sub" / "y.png")
    write(tmp_path / "two" / "a.png")
    doc = document(
        tmp_path,
        "    - path: two\n    - path: one\n    - path: ./one/sub/\n",
    )
    expanded = expand_sources(doc)
    assert [p for p, _, _ in images(expanded)] == ["two/a.png", "one/sub/y.png", "one/z.png"]
    assert [s.line for s in expanded.sections] == [7, 8, 8]


def test_source_at_the_document_folder(tmp_path: Path) -> None:
    write(tmp_path / "x.png")
    doc = document(tmp_path, "    - path: .\n")
    assert images(expand_sources(doc)) == [("x.png", "x", "")]


def test_missing_or_non_folder_source(tmp_path: Path) -> None:
    doc = document(tmp_path, "    - path: a\n    - path: nowhere\n")
    write(tmp_path / "a" / "i.png")
    with pytest.raises(DocumentError) as info:
        expand_sources(doc)
    assert (info.value.line, info.value.col) == (8, 1)
    assert info.value.message.startswith("source folder 'nowhere' does not exist")
    assert info.value.render().startswith(f"{tmp_path / 'doc.dlm'}:8:1: source folder")

    write(tmp_path / "file.png")
    doc = document(tmp_path, "    - path: file.png\n")
    with pytest.raises(DocumentError, match="is not a folder"):
        expand_sources(doc)


def test_caption_that_is_not_utf8(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.png")
    write(tmp_path / "f" / "a.txt", b"\xff\xfe bad")
    with pytest.raises(DocumentError, match=re.escape("caption file 'f/a.txt' is not valid UTF-8")):
        expand_sources(document(tmp_path, "    - path: f\n"))


NOBODY = 65534  # the conventional uid/gid of "nobody"


def _expand_as_nobody(doc: Document) -> dict[str, object]:
    """``expand_sources(doc)`` in a forked child that dropped root, since root
    reads any folder (and CI runs as root). Returns what it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                expand_sources(doc)
                result: dict[str, object] = {"raised": None}
            except DocumentError as exc:
                result = {"raised": "DocumentError", "message": exc.message, "line": exc.line}
                result["path"] = exc.path
            except BaseException as exc:  # reported, so a broken child cannot pass
                result = {"raised": repr(exc)}
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    assert data, "the unprivileged child died before reporting"
    return json.loads(data)  # type: ignore[no-any-return]


def test_unreadable_subfolder_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    # pytest's tmp_path is private to its owner; nobody must reach the files.
    shared = Path(tempfile.mkdtemp(prefix="dlm-unreadable-")) if os.geteuid() == 0 else tmp_path
    shared.chmod(0o755)
    try:
        write(shared / "f" / "a.png")
        locked = shared / "f" / "locked"
        write(locked / "b.png")
        doc = document(shared, "    - path: f\n")
        # readable, the folder expands (and every module the expansion needs
        # is loaded before the child loses access to the interpreter's files)
        assert len(images(expand_sources(doc))) == 2
        locked.chmod(0)
        try:
            if os.geteuid() == 0:
                raised = _expand_as_nobody(doc)
            else:
                with pytest.raises(DocumentError) as info:
                    expand_sources(doc)
                raised = {"raised": "DocumentError", "message": info.value.message}
                raised |= {"line": info.value.line, "path": info.value.path}
        finally:
            locked.chmod(0o755)
    finally:
        if shared != tmp_path:
            shutil.rmtree(shared)
    assert raised["raised"] == "DocumentError", raised
    assert re.search(r"cannot read folder .*locked of source 'f'", str(raised["message"])), raised
    # placed: at the directive's line in the document
    assert (raised["path"], raised["line"]) == (str(shared / "doc.dlm"), 7), raised


def test_listing_errors_stop_the_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "f" / "a.png")
    real_walk = os.walk

    def failing_walk(top, onerror=None, followlinks=False):  # type: ignore[no-untyped-def]
        assert onerror is not None
        onerror(PermissionError(13, "Permission denied", str(Path(top) / "sub")))
        yield from real_walk(top, followlinks=followlinks)

    monkeypatch.setattr("dlm.format.sources.os.walk", failing_walk)
    with pytest.raises(DocumentError) as info:
        expand_sources(document(tmp_path, "    - path: f\n"))
    assert info.value.line == 7
    assert info.value.message.endswith("sub of source 'f': Permission denied")


def test_empty_source_folder_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    doc = document(tmp_path, "    - path: empty\n", "text\n")
    assert expand_sources(doc).sections == (ProseSection("text"),)


# ----------------------------------------------------------------- leaving the folder


def test_sources_outside_the_document_folder_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "doc"
    write(tmp_path / "outside" / "a.png")
    doc = document(home, "    - path: ../outside\n")
    with pytest.raises(DocumentError) as info:
        expand_sources(doc)
    assert info.value.line == 7
    assert "uses '..' to leave the document's folder" in info.value.message
    assert info.value.hint == "pass --allow-outside to allow it"
    assert images(expand_sources(doc, allow_outside=True)) == [("../outside/a.png", "a", "")]

    doc = document(home, f"    - path: {tmp_path / 'outside'}\n")
    with pytest.raises(DocumentError, match="is absolute"):
        expand_sources(doc)
    assert images(expand_sources(doc, allow_outside=True)) == [
        (f"{tmp_path / 'outside'}/a.png", "a", "")
    ]


def test_symlinks_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "doc"
    outside = tmp_path / "outside"
    write(outside / "secret.png")
    write(home / "figs" / "ok.png")
    os.symlink(outside, home / "linked")
    doc = document(home, "    - path: linked\n")
    with pytest.raises(DocumentError) as info:
        expand_sources(doc)
    assert "goes through a symlink" in info.value.message
    assert info.value.hint == "pass --allow-outside to allow it"

    # An image inside the folder that links outside is refused too.
    os.symlink(outside / "secret.png", home / "figs" / "sneaky.png")
    doc = document(home, "    - path: figs\n")
    with pytest.raises(DocumentError, match=re.escape("figs/sneaky.png' goes through a symlink")):
        expand_sources(doc)
    paths = [p for p, _, _ in images(expand_sources(doc, allow_outside=True))]
    assert paths == ["figs/ok.png", "figs/sneaky.png"]


def test_symlinks_inside_the_folder_are_followed_once(tmp_path: Path) -> None:
    home = tmp_path / "doc"
    write(home / "figs" / "real" / "a.png")
    os.symlink(home / "figs" / "real", home / "figs" / "alias")
    os.symlink(home / "figs", home / "figs" / "real" / "loop")  # must not hang
    doc = document(home, "    - path: figs\n")
    paths = [p for p, _, _ in images(expand_sources(doc))]
    assert "figs/real/a.png" in paths or "figs/alias/a.png" in paths
    assert len(paths) == len(set(paths))


# ----------------------------------------------------------------- resolve_document_path


def _doc_at(folder: Path) -> Document:
    return Document(Frontmatter(dlm_id=ULID, base_model="b"), path=folder / "d.dlm")


def test_resolve_relative_paths(tmp_path: Path) -> None:
    doc = _doc_at(tmp_path)
    assert resolve_document_path(doc, "figures/a.png", 3) == tmp_path.resolve() / "figures/a.png"
    # '..' that stays inside is fine; nothing needs to exist.
    assert resolve_document_path(doc, "a/../b.png", 3) == tmp_path.resolve() / "b.png"


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("../x.png", "path '../x.png' uses '..' to leave the document's folder"),
        ("a/../../x.png", "path 'a/../../x.png' uses '..' to leave the document's folder"),
        ("..", "path '..' uses '..' to leave the document's folder"),
        ("/etc/passwd", "path '/etc/passwd' is absolute"),
    ],
)
def test_resolve_refuses_leaving_the_folder(tmp_path: Path, rel: str, message: str) -> None:
    doc = _doc_at(tmp_path / "d")
    (tmp_path / "d").mkdir()
    with pytest.raises(DocumentError) as info:
        resolve_document_path(doc, rel, 12)
    assert (info.value.line, info.value.col) == (12, 1)
    assert info.value.message.startswith(message)
    assert "pass --allow-outside to allow it" in (info.value.hint or "")
    assert resolve_document_path(doc, rel, 12, allow_outside=True).is_absolute()


def test_resolve_refuses_symlinks_leaving_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(tmp_path, home / "up")
    os.symlink("/etc/hostname", home / "host.png")
    doc = _doc_at(home)
    for rel in ("up/x.png", "host.png", "up/home/x.png/../../x.png"):
        with pytest.raises(DocumentError, match="goes through a symlink"):
            resolve_document_path(doc, rel, 4)
    # A link that comes back inside the folder is fine.
    assert resolve_document_path(doc, "up/home/a.png", 4) == home.resolve() / "a.png"


def test_resolve_reports_symlink_loops_and_empty_paths(tmp_path: Path) -> None:
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    doc = _doc_at(tmp_path)
    with pytest.raises(DocumentError, match=re.escape("cannot resolve 'loop/x.png'")):
        resolve_document_path(doc, "loop/x.png", 2)
    with pytest.raises(DocumentError, match="empty path"):
        resolve_document_path(doc, "  ", 2)
