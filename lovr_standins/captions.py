"""A small bundled set of (clip caption, paraphrase) pairs for the demo and the tests: real text for a real
sentence encoder, standing in for clip captions (queries) and clip embeddings (gallery) until videos are encoded."""

SAMPLE_CAPTION_PAIRS = (
    ("A man rides a mountain bike down a rocky forest trail.", "A cyclist descends a stony path between trees."),
    ("Two children build a sandcastle on a sunny beach.", "Kids make a castle out of sand by the sea."),
    ("A chef slices onions on a wooden cutting board.", "A cook chops onions in a kitchen."),
    ("A red car drives along a coastal highway at sunset.", "A car travels on a road by the ocean in the evening."),
    ("A dog catches a frisbee in a grassy park.", "A puppy jumps to grab a flying disc on the lawn."),
    ("A woman plays the violin on a concert stage.", "A violinist performs in front of an audience."),
    ("Snow falls on a quiet mountain village at night.", "Flakes drift over a dark alpine town."),
    ("A giant rabbit stretches and yawns outside its burrow.", "A large bunny wakes up in front of its hole."),
    ("Firefighters spray water on a burning building.", "Fire crews hose down a house in flames."),
    (
        "A crowd cheers as a football player scores a goal.",
        "Fans celebrate when the striker puts the ball in the net.",
    ),
    ("An astronaut floats inside the space station.", "A crew member drifts weightless in orbit."),
    ("A baker pulls fresh bread out of a stone oven.", "Loaves come out of a hot oven at the bakery."),
    ("A fisherman casts a net from a small wooden boat.", "A man throws a fishing net off a rowing boat."),
    ("Students listen to a lecture in a large hall.", "A professor teaches a full auditorium."),
    ("A hot air balloon rises over green fields at dawn.", "A balloon lifts off above farmland in the early morning."),
    ("A cat sleeps curled up on a sunny windowsill.", "A kitten naps in the sunlight by the window."),
    ("Workers assemble cars on a factory line.", "Robots and people build vehicles in a plant."),
    ("A surfer rides a huge wave toward the shore.", "Someone on a surfboard glides down a big breaker."),
    ("A farmer drives a tractor through a wheat field.", "A tractor harvests golden grain."),
    ("A couple dances a tango in a dim ballroom.", "Two dancers move together in an elegant hall."),
    ("Rain pours down a busy city street with umbrellas.", "Pedestrians walk under umbrellas in a downpour."),
    ("A scientist looks through a microscope in a lab.", "A researcher examines a sample under magnification."),
    ("An eagle soars above snowy mountain peaks.", "A bird of prey glides over the summits."),
    ("A train crosses a long bridge over a river.", "A locomotive passes over water on a viaduct."),
    ("A boy blows out candles on a birthday cake.", "A child celebrates his birthday with a cake."),
    ("A diver swims beside a coral reef full of fish.", "Colourful fish surround a scuba diver underwater."),
    ("A carpenter sands a wooden table in his workshop.", "A woodworker smooths furniture in a shed."),
    ("Horses gallop across an open prairie.", "A herd of horses runs over the grassland."),
    ("A pilot checks instruments in an airplane cockpit.", "The captain prepares the plane's controls for takeoff."),
    ("A girl reads a book under a large oak tree.", "A young woman sits reading in the shade of a tree."),
    ("A street musician plays guitar for passers-by.", "A busker strums a guitar on the sidewalk."),
    ("Lava flows down the side of an erupting volcano.", "Molten rock streams from a volcanic eruption."),
    ("A gardener waters roses in a backyard.", "Someone sprinkles water on flowers in a garden."),
    ("A boxer trains by hitting a heavy punching bag.", "A fighter punches a sandbag at the gym."),
    ("Penguins waddle across the Antarctic ice.", "A group of penguins walks on the frozen shore."),
    ("A nurse takes a patient's blood pressure.", "A medical worker measures a patient's vital signs."),
    ("A skateboarder performs a trick on a ramp.", "A skater flips his board at the skate park."),
    ("Fireworks explode over a city skyline.", "Colourful lights burst in the night sky above buildings."),
    ("A mechanic repairs the engine of a truck.", "A technician fixes a lorry's motor in a garage."),
    ("An old man feeds pigeons in a town square.", "An elderly person throws bread to birds in a plaza."),
)

# Theme texts that fit several clips (positions in SAMPLE_CAPTION_PAIRS): multi-positive queries, like LoVR's
# theme -> clip task, where pass@k (any relevant clip) and recall@k (all of them) part ways.
SAMPLE_THEMES = (
    ("Sports and physical exercise.", (0, 9, 17, 33, 36)),
    ("Wild animals in nature.", (7, 22, 27, 34)),
    ("Music and dance performances.", (5, 19, 30)),
    ("Cooking and baking food.", (2, 11)),
    ("Vehicles and transportation.", (3, 16, 23, 28)),
    ("Fire, lava and dangerous heat.", (8, 31)),
)
