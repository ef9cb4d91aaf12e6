"""Third-party bases for an existing family, registered through core's public API only.

``test-community-vl`` is a registry row only (planning, ``dlm init``).
``tiny-community-vl`` is built offline by the qwen2-vl family, like its own
tiny base, but everything core and the exporters read about it is declared
here: its pinned image settings and its export hints. The GGUF exporter
converts it (tests/gguf/test_third_party.py) with no line of dlm-export-gguf
naming it.
"""

from dlm import hookimpl
from dlm.family import FIT_KEEP_ASPECT, FIT_KEY
from dlm.kit import QWEN2_SPLIT_PATTERN
from dlm.records import (
    BaseSpec,
    ExportHints,
    ImageGeometry,
    ParamCounts,
    Pretokenizer,
    TextConfig,
    VisionConfig,
)

TINY_SIDE = 112  # 8 x 8 patches of 14 px, merged 2 x 2 -> 16 LM tokens


def community_base() -> BaseSpec:
    return BaseSpec(
        key="test-community-vl",
        family="qwen2-vl",
        hub_id="dlm-tests/test-community-vl",
        revision="0" * 40,
        architecture="Qwen2VLForConditionalGeneration",
        license="Apache-2.0",
        image=ImageGeometry(
            width=448, height=448, tokens_per_image=256, image_token="<|image_pad|>"
        ),
        text=TextConfig(
            num_layers=28,
            hidden_size=1536,
            intermediate_size=8960,
            num_heads=12,
            num_kv_heads=2,
            vocab_size=151936,
            max_position=32768,
        ),
        vision=VisionConfig(
            num_layers=32,
            hidden_size=1280,
            intermediate_size=5120,
            num_heads=16,
            patches_per_image=1024,
        ),
        params=ParamCounts(total=2_210_000_000, vision=675_000_000, language=1_535_000_000),
        context_length=32768,
        description="test fixture: a community checkpoint of the Qwen2-VL family",
    )


def tiny_community_base() -> BaseSpec:
    """The qwen2-vl family's offline toy model, under this plugin's key and declarations."""
    return BaseSpec(
        key="tiny-community-vl",
        family="qwen2-vl",
        hub_id="local/tiny-community-vl",
        revision="local-community-v1",
        architecture="Qwen2VLForConditionalGeneration",
        license="Apache-2.0",
        image=ImageGeometry(
            width=TINY_SIDE,
            height=TINY_SIDE,
            tokens_per_image=16,
            image_token="<|image_pad|>",
            token_side=28,
        ),
        text=TextConfig(
            num_layers=2,
            hidden_size=64,
            intermediate_size=176,
            num_heads=4,
            num_kv_heads=2,
            vocab_size=2112,
            max_position=4096,
        ),
        vision=VisionConfig(
            num_layers=3, hidden_size=64, intermediate_size=256, num_heads=4, patches_per_image=64
        ),
        params=ParamCounts(total=670_656, vision=307_584, language=363_072),
        context_length=4096,
        tiny=True,
        description="test fixture: a third party's tiny Qwen2-VL, exported to GGUF by its hints",
        # images keep their aspect within 112 x 112 pixels (4 to 16 tokens)
        image_settings={
            "size": {"shortest_edge": 56 * 56, "longest_edge": TINY_SIDE * TINY_SIDE},
            FIT_KEY: FIT_KEEP_ASPECT,
        },
        # both halves convert as Qwen2VLForConditionalGeneration; only the pre-tokenizer
        # needs naming (written out, though the defaults would give the same route)
        export_hints=ExportHints(
            text_architecture="Qwen2VLForConditionalGeneration",
            mmproj_architecture="Qwen2VLForConditionalGeneration",
            pretokenizer=Pretokenizer("qwen2", QWEN2_SPLIT_PATTERN, normalizer="NFC"),
        ),
        extra={"seed": 4242},  # the qwen2-vl family's tiny build reads it
    )


@hookimpl
def register_bases(register):
    register(community_base())
    register(tiny_community_base())
