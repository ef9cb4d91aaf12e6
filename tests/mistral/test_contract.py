"""The family contract (dlm.testing) on tiny-mistral3."""

from dlm.testing import FamilyContract


class TestMistral3Contract(FamilyContract):
    base_key = "tiny-mistral3"
