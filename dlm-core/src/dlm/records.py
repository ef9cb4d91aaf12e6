"""Records passed across the plugin contract.

Plain, frozen ``attrs`` classes (serialised with ``cattrs``): a plugin builds
them, core reads them. Nothing here imports torch, so listing plugins and
bases stays fast.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from dlm.family import Family


# --------------------------------------------------------------------------- bases


@attrs.frozen
class ImageGeometry:
    """How a base sees an image.

    ``width``/``height`` is the size every image is resized to before the
    processor (``resize="pinned"``), or the tile size when the base tiles
    (``resize="tiles"``, up to ``max_tiles`` tiles plus a thumbnail).
    ``tokens_per_image`` is the number of placeholder tokens one image (or
    one tile) expands to in the language model's sequence. Whether a pinned
    image is stretched to ``width``×``height`` or keeps its aspect ratio is
    the adapter's image setting ``fit`` (see :meth:`dlm.family.Family.image_fit`).
    """

    width: int
    height: int
    tokens_per_image: int
    image_token: str
    resize: str = "pinned"  # "pinned" | "tiles"
    max_tiles: int = 1
    #: Pixels per LM-token side when the processor takes any sides that are
    #: multiples of it within ``width * height`` pixels (Qwen2-VL: 28), so a
    #: pinned image can keep its aspect ratio; 0: only the pinned size.
    token_side: int = 0

    def max_image_tokens(self) -> int:
        if self.resize == "tiles":
            # tiles plus the thumbnail tile
            return self.tokens_per_image * (self.max_tiles + (1 if self.max_tiles > 1 else 0))
        return self.tokens_per_image


@attrs.frozen
class TextConfig:
    """The language model's real hyperparameters (from its ``config.json``)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    max_position: int
    #: Attention head size when it is not ``hidden_size // num_heads`` (Mistral
    #: Small 3.1: 32 heads of 128 in a 5120-wide model); ``None``: that quotient.
    head_dim: int | None = None


@attrs.frozen
class VisionConfig:
    """The vision tower's real hyperparameters.

    ``patches_per_image`` is the sequence length inside the tower for one
    image (or tile), before any merging into LM tokens.
    """

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    patches_per_image: int
    #: Whether the tower's attention builds one dense block-diagonal mask over
    #: the patches of every image in a batch (transformers' Pixtral): the
    #: planner then counts that ``patches x patches`` mask too.
    block_mask: bool = False


@attrs.frozen
class ParamCounts:
    total: int
    vision: int  # vision tower + projector
    language: int


@attrs.frozen
class Pretokenizer:
    """A byte-level BPE pre-tokenizer llama.cpp implements under ``name``.

    It is identified by what ``tokenizer.json`` spells: the ``normalizer``
    type (``""``: none) and the regex of the ``Split`` step, followed by a
    plain ``ByteLevel`` step. When the converter does not recognise a
    tokenizer's hash (every retrained tiny tokenizer), the GGUF exporter
    names ``name`` only if the tokenizer splits exactly like this.
    """

    name: str
    split_pattern: str
    normalizer: str = ""


@attrs.frozen
class ExportHints:
    """What a converter needs to know about a base that its checkpoint does not say.

    Declared by the family on each :class:`BaseSpec`; read by export targets
    (dlm-export-gguf), never by family name. The defaults fit an architecture
    llama.cpp's converter registers under its own name for both halves.
    """

    #: The converter architecture of the language model; ``""``: ``BaseSpec.architecture``.
    text_architecture: str = ""
    #: The converter architecture of the vision projector (mmproj); ``""``: ``BaseSpec.architecture``.
    mmproj_architecture: str = ""
    #: Write both architectures into the staged ``config.json`` before converting,
    #: because the checkpoint's own config names neither (native InternVL).
    write_architectures: bool = False
    #: Tensor-name prefixes to rewrite, ``(old, new)``, in the mmproj converter's
    #: input (names the converter would otherwise skip).
    mmproj_renames: tuple[tuple[str, str], ...] = ()
    #: A token whose LM embedding row the mmproj needs and cannot reach in the
    #: checkpoint's layout (Pixtral's ``[IMG_BREAK]``); ``""``: none.
    mmproj_token_embedding: str = ""
    #: The llama.cpp pre-tokenizer the tokenizer splits like, for a tokenizer
    #: whose hash the converter does not know; ``None``: none is named.
    pretokenizer: Pretokenizer | None = None


@attrs.frozen
class BaseSpec:
    """One registry row: a base model a document can name in ``base_model``.

    Core and every plugin read the typed fields only. ``extra`` is private to
    the family that registers the base (tiny-build seeds, shipped configs):
    core and other plugins never read it.
    """

    key: str
    family: str
    hub_id: str
    revision: str
    architecture: str
    license: str
    image: ImageGeometry
    text: TextConfig
    vision: VisionConfig
    params: ParamCounts
    context_length: int
    license_url: str | None = None
    gated: bool = False  # needs --i-accept-license (licence acceptance recorded)
    redistributable: bool = True  # may an export bundle the base weights?
    tiny: bool = False  # offline toy base built locally
    cuda_first: bool = False  # refused on Apple Silicon unless --force
    description: str = ""
    #: The processor settings training starts from, e.g. the pinned size
    #: (``family.bind(base)`` applies them to a fresh run; saved with every adapter).
    image_settings: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    #: Training settings that suit this base (``training:`` keys and values,
    #: e.g. a tiny base's learning rate); ``dlm init`` writes them into a new
    #: document, where the user sees and changes them.
    recommended_training: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    export_hints: ExportHints = ExportHints()
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)


# --------------------------------------------------------------------- examples


@attrs.frozen
class ImageRef:
    """An image as training and prompting see it: bytes in the blob store."""

    sha256: str
    blob_path: Path
    source: str  # the path as the document wrote it


class ExampleKind(enum.StrEnum):
    CAPTION = "caption"  # (image, caption prompt) -> caption
    QA = "qa"  # (image, question) -> answer
    TEXT_QA = "text-qa"  # question -> answer, no image
    TEXT = "text"  # prose, language modelling, no image

    @property
    def has_image(self) -> bool:
        return self in (ExampleKind.CAPTION, ExampleKind.QA)


@attrs.frozen
class TrainingExample:
    """One supervised example built from the document's sections.

    ``origin`` is ``path:line`` of the section it came from; ``section_id``
    its identity hash. Labels cover ``completion`` (and the end-of-turn
    token) only; for ``TEXT`` the prompt is empty and the prose is the
    completion.
    """

    section_id: str
    origin: str
    kind: ExampleKind
    prompt: str
    completion: str
    images: tuple[ImageRef, ...] = ()
    system_prompt: str | None = None


@attrs.frozen
class TokenCount:
    """Token budget of one example as the family's processor counts it."""

    image: int
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.image + self.prompt + self.completion


# ---------------------------------------------------------------------- exports


class Verdict(enum.StrEnum):
    SUPPORTED = "SUPPORTED"
    PARTIAL = "PARTIAL"
    UNSUPPORTED = "UNSUPPORTED"


@attrs.frozen
class ProbeResult:
    verdict: Verdict
    reason: str = ""
    detail: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)


@attrs.frozen
class ExportRequest:
    """Everything an exporter needs; it writes only inside ``out_dir``.

    ``out_dir`` is a staging directory: the dispatcher renames it into place
    when ``export`` returns, and deletes it when it raises, so an exporter
    never leaves a half-written export behind.
    """

    document: Path
    dlm_id: str
    base: BaseSpec
    family: Family
    base_dir: Path  # materialized base weights (from Family.materialize)
    adapter_dir: Path  # the committed adapter version
    adapter_version: str  # "v0001"
    training_run: dict[str, Any]
    out_dir: Path
    system_prompt: str | None
    export_settings: dict[str, Any]
    options: dict[str, Any]  # target-specific CLI options (quant, smoke, strict...)
    smoke_examples: tuple[TrainingExample, ...] = ()


@attrs.frozen
class ExportResult:
    """What an exporter wrote. Paths are relative to ``out_dir``."""

    files: tuple[str, ...]
    primary: str  # the artifact to show the user first
    manifest: dict[str, Any] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()
