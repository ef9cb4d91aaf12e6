"""The small corpus the tiny base's byte-level BPE is trained on.

Everyday English about pictures, shapes, colours and software components,
plus InternVL's two default system messages (repeated, so the tiny
tokenizer learns them as a few tokens instead of hundreds of bytes).
Changing this text changes the tiny tokenizer: bump ``TINY_REVISION``.
"""

from __future__ import annotations

from dlm_vl_internvl.templates import STYLES

_ENGLISH = """\
Describe this image. What is in this picture? Which component is this?
The image shows a red circle on a white page. The circle is bright red.
A blue square on a cream page. A green triangle on a dark page.
Yellow bars on a navy page. Three yellow bars stand side by side.
The cache layer keeps recent answers close. The query encoder turns words into vectors.
The reranker sorts the candidates. The language model writes the final answer.
The picture shows a cat on a wooden chair near the window, asleep in the sun.
A small brown dog runs across the grass with a ball in its mouth.
The chart shows sales rising from January to June and falling in July.
The diagram has three boxes joined by arrows: input, model, and output.
The figure is a line plot; the x axis is time and the y axis is loss.
In the top left corner there is a logo; in the bottom right, a signature.
The sky is blue, the clouds are white, and the sun is low over the hills.
Purple, pink, cyan, magenta, grey, silver, gold, teal, olive and maroon are colours too.
Shapes include the square, the rectangle, the circle, the oval, the triangle, the diamond,
the hexagon, the pentagon, the star, the cross, the ring, the stripe, the bar and the line.
Numbers: zero, one, two, three, four, five, six, seven, eight, nine, ten, twenty, hundred.
0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2025 3.14 50% #1 $5 (a) [b] {c} <d>
The answer is yes. The answer is no. The answer is red. The answer is blue.
It is a red circle. It is a blue square. It is a green triangle. It is a yellow bar.
Question: what does the sign say? Answer: the sign says stop.
Question: where is the cat? Answer: the cat is on the chair.
Question: is the door open or closed? Answer: the door is open.
You are a helpful assistant. Answer briefly and accurately.
Please look at the image and answer the question in one short sentence.
The model learns from the document: prose, questions and answers, and images.
Each image section has a path and an alt text; its body is the caption.
Training adds a small adapter to the language model and leaves the base unchanged.
An adapter can be exported, merged, quantized, and served on a laptop.
If the answer is unknown, say that you do not know rather than guessing.
Good captions are short, concrete, and mention colour, shape, size and position.
The left half of the image is dark and the right half is light.
Large images are cut into tiles, and a small thumbnail of the whole image comes last.
She said, "Look at the bird!" and he asked, "Which one?"
It's raining; we're late; they'll wait; I'd rather walk; you've seen it; he's here.
North, south, east, west. Up, down, left, right, front, back, inside, outside.
The quick brown fox jumps over the lazy dog, and the lazy dog does not mind.
Every document is plain text that a person can read, edit, and keep in version control.
"""

CORPUS = _ENGLISH + "".join(
    f"{style.system_message}\n" * 8 for _name, style in sorted(STYLES.items())
)
