"""The Ollama Modelfile: FROM lines, a Go TEMPLATE restating the family's chat template, stops.

Ollama templates are Go templates, the family's chat template is Jinja; no
general translation exists. Instead the Jinja template is *rendered* with
marker messages, and the text around each marker gives the pieces of a turn
(system block, user turn, assistant turn, generation prompt, the default
system block when none is given). The Go template is assembled from those
pieces and checked by rendering both on sample conversations. A template that
does not decompose this way (turns that change with their position) raises
:class:`TemplateShapeError`; the export then leaves TEMPLATE out, Ollama uses
the chat template stored in the GGUF, and the export says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

_SYS = "\x02DLM-SYSTEM\x03"
_U1, _U2, _U3 = "\x02DLM-USER-1\x03", "\x02DLM-USER-2\x03", "\x02DLM-USER-3\x03"
_A1, _A2 = "\x02DLM-ASSISTANT-1\x03", "\x02DLM-ASSISTANT-2\x03"


class TemplateShapeError(Exception):
    """The chat template does not decompose into fixed per-role turn pieces."""


def render_jinja(
    template: str,
    messages: Sequence[dict[str, Any]],
    *,
    add_generation_prompt: bool,
    special_tokens: dict[str, str] | None = None,
) -> str:
    """Render a chat template the way transformers does (trim/lstrip blocks, sandboxed)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateShapeError(f"the chat template refused the conversation: {message}")

    def strftime_now(fmt: str) -> str:
        # templates that print "today" get the export date (a Go template cannot compute it)
        import datetime

        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent)
    tokens = {"bos_token": "", "eos_token": "", **(special_tokens or {})}
    return env.from_string(template).render(
        messages=list(messages),
        add_generation_prompt=add_generation_prompt,
        raise_exception=raise_exception,
        strftime_now=strftime_now,
        **tokens,
    )


@attrs.frozen
class ChatShape:
    """The literal text around each part of a conversation."""

    system_prefix: str  # everything before the system text (incl. a BOS)
    system_suffix: str
    no_system: str  # what stands before the first turn when no system prompt is given
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation_prompt: str

    def render(self, system: str | None, turns: Sequence[tuple[str, str]]) -> str:
        """What the Go template renders for ``turns`` (role, content) + the generation prompt."""
        out = [self.system_prefix + system + self.system_suffix if system else self.no_system]
        for role, content in turns:
            if role == "user":
                out.append(self.user_prefix + content + self.user_suffix)
            else:
                out.append(self.assistant_prefix + content + self.assistant_suffix)
        out.append(self.generation_prompt)
        return "".join(out)


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise TemplateShapeError(f"adding {what} changes the text before it")
    return text[len(prefix) :]


def _split(text: str, marker: str, what: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise TemplateShapeError(f"{what} does not appear exactly once")
    before, after = text.split(marker)
    return before, after


def derive_chat_shape(template: str, special_tokens: dict[str, str] | None = None) -> ChatShape:
    """Decompose ``template``; messages are tried as text parts (as families send them), then strings."""
    errors = []
    for as_parts in (True, False):
        try:
            return _derive(template, special_tokens, as_parts)
        except TemplateShapeError as exc:
            errors.append(str(exc))
        except Exception as exc:  # a template that cannot render these messages at all
            errors.append(f"{type(exc).__name__}: {exc}")
    raise TemplateShapeError("; ".join(dict.fromkeys(errors)))


def _derive(template: str, special_tokens: dict[str, str] | None, as_parts: bool) -> ChatShape:
    def render(messages: list[tuple[str, str]], gen: bool = False) -> str:
        return render_jinja(
            template,
            [
                {
                    "role": role,
                    "content": [{"type": "text", "text": content}] if as_parts else content,
                }
                for role, content in messages
            ],
            add_generation_prompt=gen,
            special_tokens=special_tokens,
        )

    u1 = [("user", _U1)]
    u1a1 = [*u1, ("assistant", _A1)]
    u1a1u2 = [*u1a1, ("user", _U2)]
    u1a1u2a2 = [*u1a1u2, ("assistant", _A2)]

    r_u1, r_u1a1, r_u1a1u2 = render(u1), render(u1a1), render(u1a1u2)
    user_turn = _strip_prefix(r_u1a1u2, r_u1a1, "a user turn")
    user_prefix, user_suffix = _split(user_turn, _U2, "the user message")
    assistant_turn = _strip_prefix(render(u1a1u2a2), r_u1a1u2, "an assistant turn")
    assistant_prefix, assistant_suffix = _split(assistant_turn, _A2, "the assistant message")
    generation_prompt = _strip_prefix(render(u1, gen=True), r_u1, "the generation prompt")

    first_user = user_prefix + _U1 + user_suffix
    if not r_u1.endswith(first_user):
        raise TemplateShapeError("the first user turn differs from later ones")
    no_system = r_u1[: -len(first_user)]
    r_sys = render([("system", _SYS), *u1])
    if not r_sys.endswith(first_user):
        raise TemplateShapeError("a system prompt changes the user turn after it")
    system_prefix, system_suffix = _split(r_sys[: -len(first_user)], _SYS, "the system prompt")

    shape = ChatShape(
        system_prefix=system_prefix,
        system_suffix=system_suffix,
        no_system=no_system,
        user_prefix=user_prefix,
        user_suffix=user_suffix,
        assistant_prefix=assistant_prefix,
        assistant_suffix=assistant_suffix,
        generation_prompt=generation_prompt,
    )
    # the pieces must reproduce whole conversations, with and without a system prompt
    samples: list[tuple[str | None, list[tuple[str, str]]]] = [
        (
            _SYS,
            [("user", _U1), ("assistant", _A1), ("user", _U2), ("assistant", _A2), ("user", _U3)],
        ),
        (None, [("user", _U1), ("assistant", _A1), ("user", _U3)]),
        (None, [("user", _U3)]),
    ]
    for system, turns in samples:
        messages = ([("system", system)] if system else []) + turns
        if shape.render(system, turns) != render(messages, gen=True):
            raise TemplateShapeError("its pieces do not reproduce a whole conversation")
    return shape


def _go_literal(text: str) -> str:
    # Go template text is literal except for action delimiters
    return text.replace("{{", '{{"{{"}}')


def go_template(shape: ChatShape) -> str:
    """The Ollama TEMPLATE equivalent to ``shape`` (no whitespace trimming: literals are exact)."""
    lit = _go_literal
    return (
        f"{{{{ if .System }}}}{lit(shape.system_prefix)}{{{{ .System }}}}{lit(shape.system_suffix)}"
        f"{{{{ else }}}}{lit(shape.no_system)}{{{{ end }}}}"
        "{{ range .Messages }}"
        f'{{{{ if eq .Role "user" }}}}{lit(shape.user_prefix)}{{{{ .Content }}}}{lit(shape.user_suffix)}'
        f'{{{{ else if eq .Role "assistant" }}}}{lit(shape.assistant_prefix)}{{{{ .Content }}}}'
        f"{lit(shape.assistant_suffix)}{{{{ end }}}}"
        "{{ end }}"
        f"{lit(shape.generation_prompt)}"
    )


def _triple_quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise TemplateShapeError(f'the {what} contains """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile_text(
    *,
    model_file: str,
    mmproj_file: str,
    template: str | None,
    system: str | None,
    stops: Sequence[str],
    temperature: float | None,
    top_p: float | None,
    header: Sequence[str] = (),
) -> str:
    lines = [f"# {line}" if line else "#" for line in header]
    lines += [f"FROM ./{model_file}", f"FROM ./{mmproj_file}"]
    if template is not None:
        lines.append(f"TEMPLATE {_triple_quoted(template, 'chat template')}")
    if system:
        lines.append(f"SYSTEM {_triple_quoted(system, 'system prompt')}")
    for stop in dict.fromkeys(stops):  # de-duplicated, in order
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature:g}")
    if top_p is not None:
        lines.append(f"PARAMETER top_p {top_p:g}")
    return "\n".join(lines) + "\n"
