"""The small corpus the tiny base's byte-level BPE is trained on.

Everyday English about pictures, shapes, colours and software components
(lines of its own plus the kit's :data:`dlm.kit.TINY_PROSE`), and InternVL's
two default system messages (repeated, so the tiny tokenizer learns them as a
few tokens instead of hundreds of bytes). Changing this text changes the tiny
tokenizer: bump ``TINY_REVISION``.
"""

from __future__ import annotations

from dlm.kit import TINY_PROSE
from dlm_vl_internvl.templates import STYLES

_INTERNVL = """\
Describe this image. What is in this picture? Which component is this?
The image shows a red circle on a white page. The circle is bright red.
A blue square on a cream page. A green triangle on a dark page.
Yellow bars on a navy page. Three yellow bars stand side by side.
The cache layer keeps recent answers close. The query encoder turns words into vectors.
The reranker sorts the candidates. The language model writes the final answer.
The picture shows a cat on a wooden chair near the window, asleep in the sun.
Purple, pink, cyan, magenta, grey, silver, gold, teal, olive and maroon are colours too.
Shapes include the square, the rectangle, the circle, the oval, the triangle, the diamond,
the hexagon, the pentagon, the star, the cross, the ring, the stripe, the bar and the line.
0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2025 3.14 50% #1 $5 (a) [b] {c} <d>
It is a red circle. It is a blue square. It is a green triangle. It is a yellow bar.
You are a helpful assistant. Answer briefly and accurately.
An adapter can be exported, merged, quantized, and served on a laptop.
Large images are cut into tiles, and a small thumbnail of the whole image comes last.
"""

CORPUS = (
    _INTERNVL
    + TINY_PROSE
    + "".join(f"{style.system_message}\n" * 8 for _name, style in sorted(STYLES.items()))
)
