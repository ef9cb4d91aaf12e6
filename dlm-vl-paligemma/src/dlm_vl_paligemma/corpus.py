"""The small English corpus the tiny base's BPE is trained on.

PaliGemma's task prefixes (``caption en``, ``answer en …``, ``detect …``)
and plain prose about pictures, colours, shapes and everyday things, so
the words a tiny test document uses become whole pieces. Changing this
text changes the tiny tokenizer: bump the tiny base's revision when you do.
"""

from __future__ import annotations

CORPUS = """\
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
A picture is worth a thousand words, but a caption tells you which words matter.
Describe this image. What is in this picture? What colour is the square?
What shape is this? Which animal do you see? How many objects are there?
Which component is this? It is the cache layer, the query encoder, the reranker or the language model.
The image shows a red square on a white background. The square is bright red.
A red circle on a white page. A blue square on a cream page.
A green triangle on a dark page. Yellow bars on a navy page.
The picture shows a green circle in the middle of a black field.
There is a blue triangle pointing up, and a yellow star beside it.
The photo shows an orange cat sleeping on a wooden chair near the window.
A small brown dog runs across the grass with a ball in its mouth.
The chart shows sales rising from January to June and falling in July.
The diagram has three boxes joined by arrows: input, model, and output.
The figure is a line plot; the x axis is time and the y axis is loss.
In the top left corner there is a logo; in the bottom right, a signature.
The sky is blue, the clouds are white, and the sun is low over the hills.
Purple, pink, cyan, magenta, grey, gray, silver, gold, teal, navy, olive and maroon are colours too.
Shapes include the square, the rectangle, the circle, the oval, the triangle, the diamond,
the hexagon, the pentagon, the star, the cross, the ring, the stripe, the bar and the line.
Numbers: zero, one, two, three, four, five, six, seven, eight, nine, ten, twenty, hundred.
0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14 50% #1 $5 (a) [b] {c} <d>
The answer is yes. The answer is no. The answer is red. The answer is blue.
It is a red square. It is a green circle. It is a blue triangle. It is a yellow star.
This is a photograph of a mountain lake at dawn, with mist rising off the water.
The kitchen table holds a bowl of apples, a loaf of bread, and a glass of milk.
A woman in a green coat is reading a book on a park bench under an old oak tree.
The street is wet after the rain, and the lights of the shops shine on the stones.
Two children are building a sandcastle while the waves come in behind them.
The map marks the river in blue, the roads in red, and the forests in dark green.
The label on the bottle reads: keep in a cool, dry place, away from sunlight.
The screenshot shows a settings page with a toggle switched on and a save button.
The receipt lists bread, eggs, coffee and tea, with a total at the bottom.
The slide says: results improved after training, and errors fell by half.
Question: what does the sign say? Answer: the sign says stop.
Question: where is the cat? Answer: the cat is on the chair.
Question: what time is shown on the clock? Answer: it is ten past three.
Question: is the door open or closed? Answer: the door is open.
Please look at the image and answer the question in one short sentence.
The model learns from the document: prose, questions and answers, and images.
Each image section has a path and an alt text; its body is the caption.
Training adds a small adapter to the language model and leaves the base unchanged.
The query encoder turns a question into a vector; the reranker orders the results.
If the answer is unknown, say that you do not know rather than guessing.
Good captions are short, concrete, and mention colour, shape, size and position.
The left half of the image is dark and the right half is light.
The object in the centre is large; the objects around it are small.
Above the table hangs a lamp; below it sleeps a dog; beside it stands a chair.
She said, "Look at the bird!" and he asked, "Which one?"
It's raining; we're late; they'll wait; I'd rather walk; you've seen it; he's here.
North, south, east, west. Up, down, left, right, front, back, inside, outside.
The quick brown fox jumps over the lazy dog, and the lazy dog does not mind.
Water boils at one hundred degrees and freezes at zero degrees Celsius.
Every document is plain text that a person can read, edit, and keep in version control.
"""
