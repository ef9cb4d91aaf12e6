"""The small English corpus the tiny base's BPE is trained on.

PaliGemma's task prefixes (``caption en``, ``answer en …``, ``detect …``),
a few lines of its own and the kit's shared English (:data:`dlm.kit.TINY_PROSE`,
:data:`dlm.kit.TINY_SCENES`) about pictures, colours, shapes and everyday
things, so the words a tiny test document uses become whole pieces. Changing
this text changes the tiny tokenizer: bump the tiny base's revision when you do.
"""

from __future__ import annotations

from dlm.kit import TINY_PROSE, TINY_SCENES

_PALIGEMMA = """\
caption en
caption en
describe en
answer en What is in this picture?
answer en Which component is this?
answer en What colour is the square?
question en the cache layer
detect cat ; dog
segment the red circle
ocr
Which component is this? It is the cache layer, the query encoder, the reranker or the language model.
A red circle on a white page. A blue square on a cream page.
A green triangle on a dark page. Yellow bars on a navy page.
Shapes include the square, the rectangle, the circle, the oval, the triangle, the diamond,
the hexagon, the pentagon, the star, the cross, the ring, the stripe, the bar and the line.
The query encoder turns a question into a vector; the reranker orders the results.
"""

CORPUS = _PALIGEMMA + TINY_PROSE + TINY_SCENES
