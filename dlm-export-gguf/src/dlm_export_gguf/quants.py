"""The ``--quant`` names: which llama.cpp file type each is, and which the converter writes."""

from __future__ import annotations

#: ``--quant`` names -> llama.cpp file types (``LLAMA_FTYPE_*``). F32/F16/BF16 come
#: straight from the converter; the rest are quantized from its F16 output.
QUANT_FTYPES: dict[str, str] = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
CONVERTER_OUTTYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}
