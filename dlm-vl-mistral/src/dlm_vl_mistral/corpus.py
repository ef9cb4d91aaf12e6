"""The small corpus the tiny base's byte-level BPE is trained on.

Plain English about pictures, shapes, colours and software parts, plus the
Mistral Small default system message, so that a tiny test document and the
template's own text become short token runs. Changing this text changes the
tiny tokenizer: bump :data:`dlm_vl_mistral.bases.TINY_REVISION` when you do.
"""

from __future__ import annotations

CORPUS = """\
You are Mistral Small 3, a Large Language Model (LLM) created by Mistral AI, a French startup headquartered in Paris.
Your knowledge base was last updated on 2023-10-01. The current date is 2025-03-17.
When you're not sure about some information, you say that you don't have the information and don't make up anything.
If the user's question is not clear, ambiguous, or does not provide enough context for you to accurately answer the
question, you do not try to answer it right away and you rather ask the user to clarify their request
(e.g. "What are some good restaurants around me?" => "Where are you?" or "When is the next flight to Tokyo" => "Where do you travel from?")
You are a helpful assistant. Answer briefly, and only with what the image shows.
Describe this image. What is in this picture? Which component is this? What colour is the shape?
A red circle on a white page. A blue square on a cream page. A green triangle on a dark page.
Yellow bars on a navy page. Purple stripes on a grey page. An orange ring on a black page.
The cache layer, the query encoder, the reranker, the language model, the tokenizer, the router.
It is the cache layer. It is the query encoder. It is the reranker. It is the language model.
The picture shows a red square in the middle of a white field, with a thin black border.
The photo shows a brown dog asleep on a green sofa next to a tall window.
The chart shows the loss falling from the first step to the last, then levelling off.
The diagram has four boxes joined by arrows: images, text, adapter, and answers.
In the top right corner there is a small logo; in the bottom left, a page number.
Shapes: circle, square, triangle, rectangle, oval, diamond, hexagon, star, cross, ring, bar, line.
Colours: red, blue, green, yellow, orange, purple, pink, cyan, white, black, grey, cream, navy, gold.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 24 100 1540 2025 3.1 50% one two three four five six seven eight.
Question: what does the sign say? Answer: it says stop.
Question: how many bars are there? Answer: there are three bars.
Question: is the light on or off? Answer: the light is on.
The model reads the document: prose, questions with answers, and images with captions.
An image section has a path and alt text, and the text below it is the caption.
Training adds a small adapter to the language model; the base model stays unchanged.
The adapter can be exported, merged, quantized and served on a single machine.
If you do not know the answer, say so instead of guessing.
Good captions are short and concrete: they name the colour, the shape, its size and its place.
Paris is a city in France. Tokyo is a city in Japan. The flight leaves at nine and lands at noon.
She asked, "Which one is it?" and he said, "The one on the left." It's late; we're here; they'll go.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday. North, south, east and west.
Up, down, left, right, above, below, inside, outside, in front of, behind, next to, between.
The quick brown fox jumps over the lazy dog while the lazy dog looks the other way.
Every document is plain text that people can read, change and keep under version control.
"""
