"""A third-party base for an existing family, registered through core's public API only."""

from dlm import hookimpl
from dlm.records import BaseSpec, ImageGeometry, ParamCounts, TextConfig, VisionConfig


@hookimpl
def register_bases(register):
    register(
        BaseSpec(
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
    )
