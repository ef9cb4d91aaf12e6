"""docs/cookbook.md runs as written, and the README points at what exists.

Every ```bash block of the cookbook is run, in order, as one script in an
empty folder (the page promises exactly that); ```sh and ```python blocks
are shown, not run (they need Ollama or a real base's download).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, run_dlm

COOKBOOK = REPO / "docs" / "cookbook.md"
README = REPO / "README.md"


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_cookbook_runs_as_written(tmp_path: Path) -> None:
    blocks = bash_blocks(COOKBOOK.read_text())
    assert len(blocks) >= 6
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = dict(os.environ)
    # `dlm` and `python` as an installed user has them: this interpreter's bin folder
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    out = result.stdout
    # what the text around the blocks says they do
    assert "the query encoder" in out  # the adapter tells the figures apart
    assert "untrained" in out  # scan-3 has no sidecar caption
    assert "verdict: fits" in out  # qwen2-vl-2b-instruct on an assumed 24 GiB GPU
    assert (tmp_path / "figures-snapshot" / "adapter").is_dir()
    assert (tmp_path / "figures-ollama" / "Modelfile").is_file()
    assert '"verdict"' in (tmp_path / "plan.json").read_text()


def test_the_readme_links_resolve_and_lists_every_command() -> None:
    readme = README.read_text()
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", readme):
        assert (REPO / link).is_file(), link
    assert "docs/cookbook.md" in readme and "docs/troubleshooting.md" in readme

    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `dlm ([a-z]+(?: [a-z]+)?)", table, flags=re.M))

    def commands(*group: str) -> list[str]:
        help_text = run_dlm(*group, "--help").stdout
        section = help_text.split("Commands:", 1)[1]
        return [line.split()[0] for line in section.splitlines() if line.startswith("  ")]

    expected = set(commands())
    expected |= {f"gguf {sub}" for sub in commands("gguf")}
    expected.discard("gguf")
    assert expected <= {name.strip() for name in listed}, expected - listed
