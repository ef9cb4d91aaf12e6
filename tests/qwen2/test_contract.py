"""The family contract (dlm.testing) on tiny-qwen2-vl."""

from dlm.testing import FamilyContract


class TestQwen2VLContract(FamilyContract):
    base_key = "tiny-qwen2-vl"
