"""dlm-export-gguf: export a dlm VL adapter to GGUF + mmproj + an Ollama Modelfile.

Targets ``gguf`` and ``ollama`` (the same files, the Modelfile first). The
llama.cpp revision is pinned in :mod:`dlm_export_gguf.llama_cpp`.
"""

from dlm_export_gguf.errors import GGUFExportError
from dlm_export_gguf.llama_cpp import LLAMA_CPP_COMMIT, LLAMA_CPP_PYTHON_VERSION

__version__ = "0.1.0"

__all__ = ["LLAMA_CPP_COMMIT", "LLAMA_CPP_PYTHON_VERSION", "GGUFExportError", "__version__"]
