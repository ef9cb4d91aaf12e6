"""The family contract (dlm.testing) on tiny-paligemma."""

from dlm.testing import FamilyContract


class TestPaliGemmaContract(FamilyContract):
    base_key = "tiny-paligemma"
