"""The family contract (dlm.testing) on a third party's base: the test plugin's
tiny-community-vl, installed as a user would install a plugin, not imported."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlm.testing import FamilyContract


class TestThirdPartyContract(FamilyContract):
    base_key = "tiny-community-vl"

    @pytest.fixture(scope="class", autouse=True)
    def _installed_plugin(self, test_plugins_path: Path) -> Iterator[None]:
        """The pip-installed test plugins, on this process's path and its children's."""
        from dlm.plugins import reset

        path, before = str(test_plugins_path), os.environ.get("PYTHONPATH")
        sys.path.insert(0, path)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (path, before) if p)
        importlib.invalidate_caches()
        reset()
        yield
        sys.path.remove(path)
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
        reset()
