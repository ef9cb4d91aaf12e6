"""The Modelfile: a Go TEMPLATE derived by rendering the family's Jinja chat template."""

from __future__ import annotations

import pytest
from dlm_export_gguf.modelfile import (
    TemplateShapeError,
    derive_chat_shape,
    go_template,
    modelfile_text,
    render_jinja,
)

MISTRAL_LIKE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "[SYSTEM_PROMPT]{{ messages[0]['content'] }}[/SYSTEM_PROMPT]"
    "{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}"
    "{% for m in rest %}{% if m['role'] == 'user' %}[INST]{{ m['content'] }}[/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)

# the last user turn is rendered differently: no fixed per-role pieces
POSITIONAL = (
    "{% for m in messages %}{% if loop.last %}<last>{{ m['content'] }}</last>"
    "{% else %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endif %}{% endfor %}"
)


def _qwen2_template() -> str:
    from dlm_vl_qwen2.tiny import chat_template

    return chat_template()


def test_qwen2_template_pieces() -> None:
    shape = derive_chat_shape(_qwen2_template())
    assert shape.system_prefix == "<|im_start|>system\n"
    assert shape.system_suffix == "<|im_end|>\n"
    assert shape.no_system == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert (shape.user_prefix, shape.user_suffix) == ("<|im_start|>user\n", "<|im_end|>\n")
    assert shape.assistant_prefix == "<|im_start|>assistant\n"
    assert shape.generation_prompt == "<|im_start|>assistant\n"


@pytest.mark.parametrize("system", [None, "Answer briefly."])
def test_shape_renders_like_the_jinja_template(system: str | None) -> None:
    specials = {"bos_token": "<s>", "eos_token": "</s>"}
    for template in (_qwen2_template(), MISTRAL_LIKE):
        shape = derive_chat_shape(template, specials)
        turns = [("user", "What is red?"), ("assistant", "A colour."), ("user", "And blue?")]
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": r, "content": c} for r, c in turns
        ]
        expected = render_jinja(
            template, messages, add_generation_prompt=True, special_tokens=specials
        )
        assert shape.render(system, turns) == expected


def test_mistral_like_template_keeps_bos_in_both_heads() -> None:
    shape = derive_chat_shape(MISTRAL_LIKE, {"bos_token": "<s>", "eos_token": "</s>"})
    assert shape.system_prefix == "<s>[SYSTEM_PROMPT]"
    assert shape.no_system == "<s>"
    assert shape.assistant_suffix == "</s>"
    assert shape.generation_prompt == ""


def test_position_dependent_template_is_refused() -> None:
    with pytest.raises(TemplateShapeError):
        derive_chat_shape(POSITIONAL)


def test_go_template_is_literal_and_escapes_delimiters() -> None:
    shape = derive_chat_shape(_qwen2_template())
    text = go_template(shape)
    assert "{{-" not in text and "-}}" not in text  # trimming would eat the newlines
    assert text.startswith("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n")
    assert text.endswith("{{ end }}{{ end }}<|im_start|>assistant\n")
    weird = derive_chat_shape("{% for m in messages %}{{ '{{' }}{{ m['content'] }}{% endfor %}")
    assert '{{"{{"}}' in go_template(weird)


def test_modelfile_text() -> None:
    text = modelfile_text(
        model_file="m-Q4_K_M.gguf",
        mmproj_file="mmproj-m-F16.gguf",
        template="T",
        system="Be brief.",
        stops=["<|im_end|>", "<|endoftext|>", "<|im_end|>"],
        temperature=0.7,
        top_p=0.9,
        header=["made by a test"],
    )
    assert text.splitlines() == [
        "# made by a test",
        "FROM ./m-Q4_K_M.gguf",
        "FROM ./mmproj-m-F16.gguf",
        'TEMPLATE """T"""',
        'SYSTEM """Be brief."""',
        'PARAMETER stop "<|im_end|>"',
        'PARAMETER stop "<|endoftext|>"',
        "PARAMETER temperature 0.7",
        "PARAMETER top_p 0.9",
    ]
    with pytest.raises(TemplateShapeError):
        modelfile_text(
            model_file="m",
            mmproj_file="p",
            template=None,
            system='say """hi"""',
            stops=[],
            temperature=None,
            top_p=None,
        )
