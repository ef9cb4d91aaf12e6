"""Fixtures for the GGUF exporter: the pinned converter, extracted once per session.

The sdist comes from the user cache (``dlm gguf fetch`` in ``.ci/run`` fills it;
otherwise pip downloads it once, ~1 min), so each session's isolated DLM_HOME
gets the converter in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pinned_converter(session_home: Path):
    from dlm_export_gguf.llama_cpp import fetch_converter

    return fetch_converter(session_home)


def make_base(architecture: str, *, family: str = "probe", **hints: object):
    """A registry row with only what the probe reads filled in meaningfully.

    ``hints`` are the base's declared :class:`dlm.records.ExportHints` fields.
    """
    from dlm.records import (
        BaseSpec,
        ExportHints,
        ImageGeometry,
        ParamCounts,
        TextConfig,
        VisionConfig,
    )

    return BaseSpec(
        key=f"probe-{architecture.lower()}",
        family=family,
        hub_id=f"example/{architecture}",
        revision="0" * 40,
        architecture=architecture,
        license="Apache-2.0",
        image=ImageGeometry(width=112, height=112, tokens_per_image=16, image_token="<image>"),
        text=TextConfig(2, 64, 128, 4, 2, 1000, 2048),
        vision=VisionConfig(3, 32, 64, 2, 64),
        params=ParamCounts(total=1000, vision=100, language=900),
        context_length=2048,
        export_hints=ExportHints(**hints),  # type: ignore[arg-type]
    )
