"""InternVL's chat templates, as Jinja for the native processor.

The original checkpoints format conversations in Python (InternVL's
``conversation.py``), by a named template in their ``config.json``. Both
styles are ChatML turns with a default system message; they differ in the
separator after each turn and in the BOS token:

- ``internvl2_5`` (InternVL 2.5 / 3, Qwen2 tokenizer): turns end with
  ``<|im_end|>\\n``; no BOS.
- ``internlm2-chat`` (InternVL2 with InternLM2): turns end with ``<|im_end|>``
  and nothing after it; the InternLM2 tokenizer prepends ``<s>``.

An image is written as ``<IMG_CONTEXT>\\n`` before the text, which the
processor expands to ``<img>`` + one ``<IMG_CONTEXT>`` per image token of
every tile + ``</img>`` — the same ids the original ``model.chat`` builds
from ``<image>\\n``.
"""

from __future__ import annotations

import attrs

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
VIDEO = "<video>"


@attrs.frozen
class TemplateStyle:
    name: str
    system_message: str
    separator: str
    bos: bool


STYLES = {
    style.name: style
    for style in (
        TemplateStyle(
            name="internvl2_5",
            system_message=(
                "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位"
                "联合开发的多模态大语言模型。"
            ),
            separator=IM_END + "\n",
            bos=False,
        ),
        TemplateStyle(
            name="internlm2-chat",
            system_message=(
                "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                "是一个有用无害的人工智能助手。"
            ),
            separator=IM_END,
            bos=True,
        ),
    )
}


def style(name: str) -> TemplateStyle:
    try:
        return STYLES[name]
    except KeyError:
        known = ", ".join(sorted(STYLES))
        raise ValueError(f"unsupported InternVL chat template {name!r} (known: {known})") from None


def _quoted(text: str) -> str:
    """A Jinja string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def chat_template(name: str) -> str:
    """The Jinja chat template of InternVL's named conversation template."""
    s = style(name)
    sep = _quoted(s.separator)
    content = (
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{ " + _quoted(IMG_CONTEXT + "\n") + " }}"
        "{%- elif part['type'] == 'video' -%}{{ " + _quoted(VIDEO + "\n") + " }}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
    )
    return (
        ("{%- if bos_token -%}{{ bos_token }}{%- endif -%}" if s.bos else "")
        + "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set turns = messages[1:] -%}"
        "{%- for message in messages[:1] -%}"
        "{{ '" + IM_START + "system\\n' }}" + content + "{{ " + sep + " }}"
        "{%- endfor -%}"
        "{%- else -%}"
        "{%- set turns = messages -%}"
        "{{ " + _quoted(IM_START + "system\n" + s.system_message) + " }}{{ " + sep + " }}"
        "{%- endif -%}"
        "{%- for message in turns -%}"
        "{{ '" + IM_START + "' + message['role'] + '\\n' }}" + content + "{{ " + sep + " }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '" + IM_START + "assistant\\n' }}{%- endif -%}"
    )
