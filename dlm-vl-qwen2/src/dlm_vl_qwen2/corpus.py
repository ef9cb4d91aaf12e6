"""The small English corpus the tiny base's byte-level BPE is trained on.

Plain prose about pictures, colours, shapes and everyday things, so the
words a tiny test document uses become whole tokens. Changing this text
changes the tiny tokenizer: bump the tiny base's revision when you do.
"""

from __future__ import annotations

CORPUS = """\
A picture is worth a thousand words, but a caption tells you which words matter.
Describe this image. What is in this picture? What colour is the square?
What shape is this? Which animal do you see? How many objects are there?
The image shows a red square on a white background. The square is bright red.
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
the hexagon, the pentagon, the star, the cross, the ring, the stripe and the line.
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
You are a helpful assistant. Answer briefly and accurately.
Please look at the image and answer the question in one short sentence.
The model learns from the document: prose, questions and answers, and images.
Each image section has a path and an alt text; its body is the caption.
Training adds a small adapter to the language model and leaves the base unchanged.
An adapter can be exported, merged, quantized, and served on a laptop.
If the answer is unknown, say that you do not know rather than guessing.
Good captions are short, concrete, and mention colour, shape, size and position.
The left half of the image is dark and the right half is light.
The object in the centre is large; the objects around it are small.
Above the table hangs a lamp; below it sleeps a dog; beside it stands a chair.
She said, "Look at the bird!" and he asked, "Which one?"
It's raining; we're late; they'll wait; I'd rather walk; you've seen it; he's here.
Spring, summer, autumn, winter. Monday, Tuesday, Wednesday, Thursday, Friday.
North, south, east, west. Up, down, left, right, front, back, inside, outside.
The quick brown fox jumps over the lazy dog, and the lazy dog does not mind.
Light travels faster than sound, which is why we see lightning before thunder.
Water boils at one hundred degrees and freezes at zero degrees Celsius.
The train leaves at nine in the morning and arrives before noon.
Every document is plain text that a person can read, edit, and keep in version control.
Museums display paintings, sculptures, ceramics, tapestries, manuscripts and photographs.
The gardener planted tulips, daffodils, roses, lilies, sunflowers, lavender and rosemary.
A bicycle, a motorcycle, an airplane, a helicopter, a submarine, a tractor and a bus.
The orchestra tuned its violins, cellos, flutes, clarinets, trumpets, drums and harps.
Scientists measured temperature, pressure, humidity, velocity, acceleration and density.
The recipe needs flour, butter, sugar, vanilla, cinnamon, yeast, salt and warm water.
Hospitals employ doctors, nurses, surgeons, pharmacists, therapists and receptionists.
Her luggage contained sweaters, trousers, scarves, gloves, umbrellas and sandals.
The library catalogue lists novels, biographies, encyclopedias, atlases and dictionaries.
Volcanoes, glaciers, canyons, deserts, rainforests, meadows and islands shape the planet.
Engineers designed bridges, tunnels, towers, railways, harbours, dams and highways.
The detective examined fingerprints, footprints, letters, photographs and a broken watch.
Mathematics studies geometry, algebra, probability, statistics, calculus and topology.
Computers process information with processors, memory, storage, keyboards and monitors.
The festival featured jugglers, acrobats, magicians, dancers, singers and storytellers.
Animals at the zoo: elephants, giraffes, zebras, penguins, kangaroos, tigers, monkeys.
Insects such as butterflies, beetles, dragonflies, grasshoppers and ants crawl or fly.
The weather forecast predicts thunderstorms, hailstones, fog, drizzle and strong winds.
Furniture: sofas, armchairs, wardrobes, bookshelves, cupboards, mattresses and desks.
The carpenter used hammers, screwdrivers, chisels, saws, drills, nails and sandpaper.
Children learned geography, history, chemistry, biology, literature and philosophy.
Musicians practise scales, chords, melodies, rhythms, harmonies and improvisation.
A thermometer, a barometer, a compass, a telescope, a microscope and a magnifying glass.
Photographers adjust exposure, aperture, shutter speed, focus, contrast and saturation.
The painter mixed crimson, scarlet, turquoise, indigo, violet, emerald and ochre paints.
Transparent, translucent, opaque, glossy, matte, rough, smooth, striped and spotted surfaces.
Triangles, rectangles, parallelograms, trapezoids, octagons, spheres, cubes and cylinders.
Beautiful, enormous, microscopic, ancient, modern, fragile, sturdy, elegant, peculiar.
Quickly, slowly, carefully, suddenly, quietly, loudly, gently, rarely, frequently.
Journalists interviewed politicians, athletes, economists, farmers and astronauts.
The spacecraft orbited the moon, photographed craters, and returned with samples of dust.
Rivers flow through valleys into lakes and oceans, carrying sediment and nutrients.
Factories manufacture automobiles, appliances, textiles, medicines and electronics.
The committee reviewed budgets, proposals, schedules, contracts and regulations.
Breakfast included pancakes, strawberries, blueberries, yoghurt, honey and orange juice.
Sportspeople play football, basketball, tennis, volleyball, cricket, hockey and chess.
Emotions like happiness, sadness, anger, surprise, curiosity and gratitude are universal.
Languages include English, French, Spanish, German, Chinese, Arabic, Hindi and Japanese.
Cities such as London, Paris, Tokyo, Cairo, Sydney, Toronto and Nairobi attract visitors.
Architecture combines columns, arches, domes, balconies, staircases and courtyards.
The pharmacist explained dosage, ingredients, side effects and storage instructions.
Geologists classify minerals, crystals, fossils, sediments and volcanic rocks.
Programmers write functions, variables, loops, conditions, classes and documentation.
Newspapers publish headlines, editorials, advertisements, obituaries and crosswords.
Astronomers observe galaxies, nebulae, comets, asteroids, planets and constellations.
"""
