"""The family contract (dlm.testing) on tiny-internvl."""

from dlm.testing import FamilyContract


class TestInternVLContract(FamilyContract):
    base_key = "tiny-internvl"
