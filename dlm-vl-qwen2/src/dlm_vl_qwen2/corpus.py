"""The small English corpus the tiny base's byte-level BPE is trained on.

The kit's shared English (:data:`dlm.kit.TINY_PROSE`, :data:`dlm.kit.TINY_SCENES`)
plus a wider vocabulary of everyday nouns, so the words a tiny test document
uses become whole tokens. Changing this text changes the tiny tokenizer: bump
the tiny base's revision when you do.
"""

from __future__ import annotations

from dlm.kit import TINY_PROSE, TINY_SCENES

_QWEN2 = """\
Shapes include the square, the rectangle, the circle, the oval, the triangle, the diamond,
the hexagon, the pentagon, the star, the cross, the ring, the stripe and the line.
You are a helpful assistant. Answer briefly and accurately.
An adapter can be exported, merged, quantized, and served on a laptop.
Spring, summer, autumn, winter. Monday, Tuesday, Wednesday, Thursday, Friday.
Light travels faster than sound, which is why we see lightning before thunder.
The train leaves at nine in the morning and arrives before noon.
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

CORPUS = _QWEN2 + TINY_PROSE + TINY_SCENES
