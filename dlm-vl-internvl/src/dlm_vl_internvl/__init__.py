"""InternVL for dlm: the ``internvl`` family, ``internvl3-2b``, ``internvl2-2b`` and ``tiny-internvl``."""

__version__ = "0.1.0"
