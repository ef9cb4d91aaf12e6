"""Frontmatter schema: values, defaults, and errors at the offending key or value."""

from __future__ import annotations

import pytest

from dlm.errors import DocumentError
from dlm.format import (
    DEFAULT_IMAGE_INCLUDE,
    ExportSettings,
    Frontmatter,
    Source,
    TrainingSettings,
    frontmatter_from_mapping,
    frontmatter_position,
    parse,
)

ULID = "01JZ8XKQ3M5N7P9R2S4T6V8W0Y"
HEAD = f"---\ndlm_id: {ULID}\ndlm_version: 10\nbase_model: paligemma-3b-mix-224\n"


def fm(extra: str = "") -> Frontmatter:
    return parse(HEAD + extra + "---\n").frontmatter


def error(yaml_lines: str, *, head: str = HEAD) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        parse(head + yaml_lines + "---\n", "doc.dlm")
    return info.value


def at(exc: DocumentError) -> tuple[int, int, str]:
    return exc.line, exc.col, exc.message


def test_minimal_frontmatter_takes_the_record_defaults() -> None:
    assert fm() == Frontmatter(dlm_id=ULID, base_model="paligemma-3b-mix-224")
    assert fm("training:\nexport:\n") == fm()


def test_every_field_is_read() -> None:
    front = fm(
        "system_prompt: |\n  Be brief.\n  Cite figures.\n"
        "training:\n"
        "  adapter: lora\n"
        "  lora_r: 8\n"
        "  lora_alpha: 16\n"
        "  lora_dropout: 0\n"
        "  target_modules: [q_proj, v_proj]\n"
        "  sequence_len: 1024\n"
        "  micro_batch_size: 2\n"
        "  grad_accum: 4\n"
        "  learning_rate: 1e-4\n"
        "  num_epochs: 5\n"
        "  lr_scheduler: linear\n"
        "  warmup_ratio: 0.0\n"
        "  precision: bf16\n"
        "  seed: 0\n"
        "  sources:\n"
        "    - path: ./paper-figures\n"
        '      include: ["**/*.png", "**/*.jpg"]\n'
        "      exclude: drafts/**\n"
        "    - path: more\n"
        "export:\n"
        "  default_quant: Q8_0\n"
        "  default_temperature: 0\n"
        "  default_top_p: 1\n"
    )
    assert front == Frontmatter(
        dlm_id=ULID,
        base_model="paligemma-3b-mix-224",
        system_prompt="Be brief.\nCite figures.\n",
        training=TrainingSettings(
            adapter="lora",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=("q_proj", "v_proj"),
            sequence_len=1024,
            micro_batch_size=2,
            grad_accum=4,
            learning_rate=1e-4,
            num_epochs=5,
            lr_scheduler="linear",
            warmup_ratio=0.0,
            precision="bf16",
            seed=0,
            sources=(
                Source("./paper-figures", ("**/*.png", "**/*.jpg"), ("drafts/**",)),
                Source("more", DEFAULT_IMAGE_INCLUDE, ()),
            ),
        ),
        export=ExportSettings("Q8_0", 0.0, 1.0),
    )
    assert [s.line for s in front.training.sources] == [24, 27]
    assert type(front.training.lora_dropout) is float
    assert type(front.training.sources[0].include) is tuple


def test_target_modules_regex_and_nulls() -> None:
    front = fm(
        "training:\n  target_modules: '.*language_model.*\\.(q_proj|v_proj)'\n"
        "  micro_batch_size: null\n  precision:\n"
    )
    assert front.training.target_modules == ".*language_model.*\\.(q_proj|v_proj)"
    assert front.training.micro_batch_size is None
    assert front.training.precision is None


# ----------------------------------------------------------------- positions of errors


@pytest.mark.parametrize(
    ("yaml_lines", "expected"),
    [
        ("training:\n  lora_r: 0\n", (6, 11, "training.lora_r must be a positive integer, got 0")),
        (
            "training:\n  lora_r: 2.5\n",
            (6, 11, "training.lora_r must be a positive integer, got 2.5"),
        ),
        (
            "training:\n  lora_alpha: '16'\n",
            (6, 15, "training.lora_alpha must be a positive integer, got '16'"),
        ),
        (
            "training:\n  num_epochs: true\n",
            (6, 15, "training.num_epochs must be a positive integer, got true"),
        ),
        (
            "training:\n  lora_dropout: 1\n",
            (6, 17, "training.lora_dropout must be a number with 0 <= x < 1, got 1"),
        ),
        (
            "training:\n  lora_dropout: -0.1\n",
            (6, 17, "training.lora_dropout must be a number with 0 <= x < 1, got -0.1"),
        ),
        (
            "training:\n  learning_rate: 0\n",
            (6, 18, "training.learning_rate must be a number > 0, got 0"),
        ),
        (
            "training:\n  learning_rate: .inf\n",
            (6, 18, "training.learning_rate must be a number > 0, got inf"),
        ),
        (
            "training:\n  warmup_ratio: 1.5\n",
            (6, 17, "training.warmup_ratio must be a number with 0 <= x < 1, got 1.5"),
        ),
        (
            "training:\n  lr_scheduler: cosin\n",
            (
                6,
                17,
                "training.lr_scheduler must be one of: cosine, linear, constant; got 'cosin'",
            ),
        ),
        (
            "training:\n  adapter: qlora\n",
            (6, 12, "training.adapter must be one of: lora; got 'qlora'"),
        ),
        (
            "training:\n  seed: -1\n",
            (6, 9, "training.seed must be an integer from 0 to 4294967295, got -1"),
        ),
        (
            "training:\n  micro_batch_size: 0\n",
            (6, 21, "training.micro_batch_size must be a positive integer, got 0"),
        ),
        (
            "training:\n  sequence_len: -5\n",
            (6, 17, "training.sequence_len must be a positive integer, got -5"),
        ),
        (
            "export:\n  default_top_p: 0\n",
            (6, 18, "export.default_top_p must be a number with 0 < x <= 1, got 0"),
        ),
        (
            "export:\n  default_temperature: -1\n",
            (6, 24, "export.default_temperature must be a number >= 0, got -1"),
        ),
        (
            "export:\n  default_quant: ''\n",
            (6, 18, "export.default_quant must be a non-empty string, got ''"),
        ),
        (
            "system_prompt: 12\n",
            (5, 16, "system_prompt must be a non-empty string, got 12"),
        ),
        ("training: 3\n", (5, 11, "training must be a mapping of settings, got 3")),
        (
            "training:\n  target_modules: []\n",
            (
                6,
                19,
                "training.target_modules must be a regular expression or a list of module "
                "names, got a list",
            ),
        ),
        (
            "training:\n  target_modules: [q_proj, '']\n",
            (6, 28, "training.target_modules[1] must be a non-empty string, got ''"),
        ),
        (
            "training:\n  sources: ./figs\n",
            (6, 12, "training.sources must be a list of folders, got './figs'"),
        ),
        (
            "training:\n  sources:\n    - ./figs\n",
            (7, 7, "training.sources[0] must be a mapping with a 'path', got './figs'"),
        ),
        (
            "training:\n  sources:\n    - path: a\n    - include: ['*.png']\n",
            (8, 7, "training.sources[1] is missing the required key 'path'"),
        ),
        (
            "training:\n  sources:\n    - path: a\n      include: ['*.png', 3]\n",
            (8, 26, "training.sources[0].include[1] must be a non-empty string, got 3"),
        ),
        (
            "training:\n  sources:\n    - path: a\n      exclude: ['[z-a]']\n",
            (
                8,
                17,
                "training.sources[0].exclude has an invalid glob pattern '[z-a]': "
                "bad character range z-a",
            ),
        ),
        (
            "training:\n  sources:\n    - path: a\n      include: /abs/*.png\n",
            (
                8,
                16,
                "training.sources[0].include pattern '/abs/*.png' is not relative to the "
                "source folder",
            ),
        ),
        (
            "training:\n  sources:\n    - path: a\n      recursive: true\n",
            (8, 7, "unknown key 'recursive' in 'training.sources[0]'"),
        ),
    ],
)
def test_value_errors_point_at_the_value(yaml_lines: str, expected: tuple[int, int, str]) -> None:
    assert at(error(yaml_lines)) == expected


def test_flow_mapping_errors_have_real_columns() -> None:
    assert at(error("training: {lora_r: 8, lora_alpha: 0}\n")) == (
        5,
        35,
        "training.lora_alpha must be a positive integer, got 0",
    )


def test_null_value_error_points_at_the_key() -> None:
    assert at(error("training:\n  lora_r:\n  seed: 3\n")) == (
        6,
        3,
        "training.lora_r must be a positive integer, got nothing",
    )


def test_invalid_target_modules_regex() -> None:
    exc = error("training:\n  target_modules: '(q_proj'\n")
    assert exc.line == 6 and exc.col == 19
    assert exc.message.startswith("training.target_modules is not a valid regular expression")


def test_unknown_keys_with_hints() -> None:
    exc = error("trainng:\n  lora_r: 3\n")
    assert at(exc) == (5, 1, "unknown key 'trainng' in the frontmatter")
    assert exc.hint == "did you mean 'training'?"

    exc = error("lora_r: 3\n")
    assert exc.hint == "'lora_r' belongs under 'training:' (indent it below that key)"

    exc = error("sources:\n  - path: x\n")
    assert exc.hint == "'sources' belongs under 'training:' (indent it below that key)"

    exc = error("training:\n  learning_rte: 1e-4\n")
    assert at(exc) == (6, 3, "unknown key 'learning_rte' in 'training'")
    assert exc.hint == "did you mean 'learning_rate'?"

    exc = error("training:\n  default_quant: Q8_0\n")
    assert exc.hint == "'default_quant' belongs under 'export:' (indent it below that key)"

    exc = error("training:\n  base_model: x\n")
    assert exc.hint == "'base_model' is a top-level key (move it out of 'training:')"

    exc = error("colour: blue\n")
    assert (exc.hint or "").startswith("known keys: dlm_id, dlm_version, base_model")


def test_choice_hint_suggests_the_close_value() -> None:
    assert error("training:\n  precision: BF16\n").hint == "did you mean 'bf16'?"


def test_required_keys() -> None:
    exc = error("", head=f"---\ndlm_id: {ULID}\ndlm_version: 10\n")
    assert at(exc) == (1, 1, "the frontmatter is missing the required key 'base_model'")
    assert exc.hint == (
        "every document needs dlm_id, dlm_version and base_model; `dlm init` writes them"
    )
    exc = error("", head="---\ndlm_version: 10\nbase_model: x\n")
    assert at(exc) == (1, 1, "the frontmatter is missing the required key 'dlm_id'")
    exc = error("", head=f"---\ndlm_id: {ULID}\nbase_model: x\n")
    assert at(exc) == (1, 1, "the frontmatter is missing the required key 'dlm_version'")


def test_dlm_id_must_be_a_ulid() -> None:
    exc = error("", head="---\ndlm_id: 01JZ...\ndlm_version: 10\nbase_model: x\n")
    assert at(exc) == (
        2,
        9,
        "dlm_id must be a 26-character ULID (Crockford base32), got '01JZ...'",
    )
    exc = error("", head=f"---\ndlm_id: {ULID.lower()}\ndlm_version: 10\nbase_model: x\n")
    assert exc.hint == f"ULIDs are written in upper case: {ULID}"
    # 'U' is not in Crockford's alphabet; a first digit above 7 overflows the timestamp.
    for bad in (ULID[:-1] + "U", "8" + ULID[1:]):
        assert error("", head=f"---\ndlm_id: {bad}\ndlm_version: 10\nbase_model: x\n").line == 2


def test_dlm_version_type() -> None:
    for value in ("ten", "0", "true", "10.0"):
        exc = error("", head=f"---\ndlm_id: {ULID}\ndlm_version: {value}\nbase_model: x\n")
        assert (exc.line, exc.col) == (3, 14)
        assert exc.message.startswith("dlm_version must be a positive integer")


def test_frontmatter_must_be_a_mapping() -> None:
    empty = error("", head="---\n# only a comment\n")
    assert at(empty) == (1, 1, "the frontmatter is empty")
    assert empty.hint == "write 'key: value' lines: dlm_id, dlm_version and base_model are required"
    assert at(error("", head="---\n- a\n- b\n")) == (
        2,
        1,
        "the frontmatter must be a mapping of keys, got a list",
    )


# ----------------------------------------------------------------- YAML errors


def test_yaml_syntax_error_is_at_its_real_line() -> None:
    exc = error("training:\n  lora_r: 8\n   bad: [1\n")
    assert exc.line == 7
    assert exc.message.startswith("invalid YAML in the frontmatter:")
    exc = error("system_prompt: 'unterminated\n")
    assert exc.line >= 5 and exc.message.startswith("invalid YAML in the frontmatter:")
    exc = error("training:\n\tlora_r: 8\n")
    assert (exc.line, exc.col) == (6, 1)


def test_duplicate_key() -> None:
    assert at(error("training:\n  seed: 1\n  seed: 2\n")) == (
        7,
        3,
        "duplicate key 'seed' in the frontmatter",
    )


def test_frontmatter_from_mapping_without_a_document() -> None:
    front, raw = frontmatter_from_mapping(
        {"dlm_id": ULID, "dlm_version": 10, "base_model": "b", "training": {"lora_r": 4}}
    )
    assert front.training.lora_r == 4
    assert raw["dlm_version"] == 10


def test_frontmatter_position_for_callers() -> None:
    doc = parse(
        HEAD + "training:\n  sequence_len: 512\n  sources:\n    - path: a\n    - path: b\n---\n"
    )
    raw = doc.raw_frontmatter
    assert frontmatter_position(raw, "base_model") == (4, 13)
    assert frontmatter_position(raw, "training.sequence_len") == (6, 17)
    assert frontmatter_position(raw, "training.sources[1].path") == (9, 13)
    assert frontmatter_position(raw, "training.sources[1]") == (9, 7)
    # Absent keys fall back to the closest parent that is written.
    assert frontmatter_position(raw, "training.sources[7]") == (8, 5)
    assert frontmatter_position(raw, "export.default_quant") == (1, 1)
    assert frontmatter_position(None, "training") == (1, 1)
