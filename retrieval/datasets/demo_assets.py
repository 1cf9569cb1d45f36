"""What the demo catalogue says about each packaged asset: names, nouns, blurbs, licenses.

Why a separate module: the builder stays small, and this table is the one place to edit when an
asset is added, renamed or re-described. Descriptions were written by looking at each file.
"""

from __future__ import annotations

# folder -> (collection phrase, genre tag, kind word for titles, "suited to ..." phrase, stems)
SPRITES: dict[str, tuple[str, str, str, str, str]] = {
    "items": (
        "platformer art",
        "platformer",
        "pickup",
        "platformers and collect-a-thons",
        "coinBronze coinGold coinSilver gold_1 star gemBlue gemGreen gemRed gemYellow "
        "keyBlue keyGreen keyRed keyYellow flagGreen1 flagRed1 flagYellow1",
    ),
    "enemies": (
        "platformer art",
        "platformer",
        "enemy",
        "platformer levels",
        "bee fishGreen fishPink fly frog ladybug mouse saw slimeBlock slimeBlue "
        "slimeGreen slimePurple wormGreen wormPink",
    ),
    "alien": (
        "platformer art",
        "platformer",
        "character",
        "platformer games as the player character",
        "alienBlue_front alienBlue_jump",
    ),
    "animated_characters": (
        "toon characters",
        "platformer",
        "character",
        "side-scrolling games; walk, climb and fall frames ship alongside",
        "femaleAdventurer_idle femaleAdventurer_jump femalePerson_idle "
        "femalePerson_jump maleAdventurer_idle maleAdventurer_jump "
        "malePerson_idle malePerson_jump robot_idle robot_jump "
        "zombie_idle zombie_jump",
    ),
    "space_shooter": (
        "space shooter art",
        "space shooter",
        "space",
        "arcade space shooters",
        "playerShip1_blue playerShip1_green playerShip1_orange playerShip2_orange "
        "playerShip3_orange playerLife1_blue playerLife1_green playerLife1_orange "
        "laserBlue01 laserRed01 meteorGrey_big1 meteorGrey_med1 "
        "meteorGrey_small1 meteorGrey_tiny1",
    ),
    "tiles": (
        "platformer art",
        "platformer",
        "tile",
        "tile-based platformer levels",
        "grass grassHalf grassHill_left dirt dirtHalf dirtHill_left sand sandHalf "
        "sandHill_left snow snowHalf snowHill_left stone stoneHalf stoneHill_left planet "
        "planetHalf planetHill_left bomb boxCrate boxCrate_double brickBrown brickGrey "
        "bridgeA bush cactus doorClosed_mid grass_sprout ladderMid lava leverLeft lockRed "
        "lockYellow mushroomRed plantPurple rock signExit signLeft signRight snow_pile "
        "spikes switchGreen switchRed torch1 water",
    ),
    "topdown_tanks": (
        "top-down tanks art",
        "top-down",
        "top-down",
        "top-down tank and strategy games",
        "tank_blue tank_dark tank_green tank_red tank_sand tankBody_huge "
        "tankBody_bigRed tankBody_darkLarge treeGreen_large treeBrown_large "
        "tileGrass1 tileSand1 tileGrass_roadCrossing tileSand_roadCrossing "
        "tracksLarge",
    ),
}

# base name -> (noun, category tag, what it is / does)
NOUNS: dict[str, tuple[str, str, str]] = {
    "coin": ("coin", "collectible", "a round coin to collect for score or currency"),
    "gold": (
        "star coin",
        "collectible",
        "a gold coin stamped with a star; it is frame 1 of a spinning-coin animation",
    ),
    "star": ("star", "collectible", "a bonus star pickup for power-ups or level ratings"),
    "gem": ("gem", "collectible", "a faceted gem to collect as treasure"),
    "key": ("key", "collectible", "a key that opens the lock or door of the same colour"),
    "flag": ("flag", "checkpoint", "a waving flag on a pole that marks a checkpoint or the goal"),
    "bee": ("bee", "flying enemy", "a striped bee that buzzes through the air"),
    "fish": ("fish", "water enemy", "a fish that swims in water sections"),
    "fly": ("fly", "flying enemy", "a buzzing black fly"),
    "frog": ("frog", "enemy", "a hopping frog"),
    "ladybug": ("ladybug", "enemy", "a spotted ladybug that crawls along platforms"),
    "mouse": ("mouse", "enemy", "a small scurrying mouse"),
    "saw": ("saw blade", "hazard", "a spinning circular saw blade, a classic trap"),
    "slime block": ("slime block", "enemy", "a cube of slime with a face"),
    "slime": ("slime", "enemy", "a blob of slime that slides along the ground"),
    "worm": ("worm", "enemy", "a wriggling worm that crawls along the ground"),
    "alien": ("alien", "hero", "a friendly round alien hero"),
    "female adventurer": ("female adventurer", "hero", "an adventurer with a headband and satchel"),
    "female person": ("woman", "hero", "a casual character in a green top"),
    "male adventurer": ("male adventurer", "hero", "an adventurer in a green tunic"),
    "male person": ("man", "hero", "a casual character in an orange vest"),
    "robot": ("robot", "hero", "a blue humanoid robot with a single glowing eye"),
    "zombie": ("zombie", "monster", "a green-skinned zombie"),
    "player ship": ("player spaceship", "spaceship", "a player fighter ship seen from above"),
    "player life": ("life icon", "ui", "a small ship icon for the lives counter"),
    "laser": ("laser bolt", "projectile", "a laser projectile fired by ships"),
    "meteor": ("meteor", "obstacle", "a rocky asteroid to dodge or shoot"),
    "grass": ("grass ground", "terrain", "a block of grass-topped earth"),
    "dirt": ("dirt ground", "terrain", "a block of brown dirt terrain"),
    "sand": ("sand ground", "terrain", "a block of desert sand terrain"),
    "snow": ("snow ground", "terrain", "a block of snow-covered terrain"),
    "stone": ("stone ground", "terrain", "a block of grey stone terrain"),
    "planet": ("alien planet ground", "terrain", "a block of purple-topped alien-world terrain"),
    "bomb": ("bomb", "hazard", "a round black-powder bomb with a fuse"),
    "box crate": ("wooden crate", "prop", "a wooden crate to stand on, push or break"),
    "brick": ("brick block", "terrain", "a block of bricks for walls and castles"),
    "bridge a": ("log bridge", "terrain", "a row of log ends that forms a bridge"),
    "bush": ("bush", "decoration", "a round green bush for scenery"),
    "cactus": ("cactus", "decoration", "a desert cactus"),
    "door closed": ("locked door", "prop", "a wooden door with a keyhole"),
    "grass sprout": ("grass sprout", "decoration", "a small tuft of grass"),
    "ladder": ("ladder", "prop", "a wooden ladder section to climb"),
    "lava": ("lava", "hazard", "a block of molten lava that hurts on contact"),
    "lever": ("lever", "prop", "a lever to pull to open doors or trigger traps"),
    "lock": ("lock block", "prop", "a lock block that opens with the key of the same colour"),
    "mushroom": ("mushroom", "decoration", "a red mushroom"),
    "plant": ("plant", "decoration", "a leafy alien plant"),
    "rock": ("rock", "decoration", "a grey boulder"),
    "sign exit": ("exit sign", "prop", "a signpost that marks the level exit"),
    "sign": ("arrow sign", "prop", "a signpost pointing the way"),
    "snow pile": ("snow pile", "decoration", "a low drift of snow"),
    "spikes": ("spikes", "hazard", "a row of sharp floor spikes"),
    "switch": ("switch", "prop", "a push button switch to press"),
    "torch": ("torch", "decoration", "a burning wall torch"),
    "water": ("water", "terrain", "a block of water to swim through"),
    "tank": ("tank", "vehicle", "a complete tank seen from above"),
    "tank body": ("tank hull", "vehicle", "a tank hull without a barrel, seen from above"),
    "tree": ("tree", "decoration", "a tree canopy seen from above"),
    "tile grass": ("grass map tile", "terrain", "a square top-down grass map tile"),
    "tile sand": ("sand map tile", "terrain", "a square top-down sand map tile"),
    "tracks": ("tank tracks", "decal", "tread marks a tank leaves behind"),
}

COLOURS = (
    "blue",
    "green",
    "red",
    "yellow",
    "orange",
    "pink",
    "purple",
    "grey",
    "brown",
    "dark",
    "sand",
    "gold",
    "silver",
    "bronze",
)
QUALIFIERS = {
    "front": "front view",
    "jump": "jump pose",
    "idle": "idle pose",
    "left": "left",
    "right": "right",
    "half": "half-height platform",
    "hill": "slope",
    "double": "double",
    "big": "big",
    "large": "large",
    "huge": "huge",
    "med": "medium",
    "small": "small",
    "tiny": "tiny",
    "mid": "",
    "road": "",
    "crossing": "road crossing",
}

# sound family -> (title, what it sounds like / is for, tags, mood)
SOUNDS: dict[str, tuple[str, str, str, str]] = {
    "coin": (
        "Coin pickup",
        "a chime for collecting coins, points or items",
        "pickup reward",
        "cheerful",
    ),
    "error": (
        "Error buzz",
        "a negative blip for invalid actions or wrong answers in menus",
        "ui feedback error",
        "negative",
    ),
    "explosion": (
        "Explosion",
        "a noisy blast for destroyed enemies, bombs or crashes",
        "explosion impact",
        "intense",
    ),
    "fall": (
        "Falling whistle",
        "a falling cue for a character dropping off a ledge",
        "movement fall",
        "comic",
    ),
    "gameover": (
        "Game over jingle",
        "a short jingle played when the game ends",
        "jingle game-over",
        "sad",
    ),
    "hit": ("Hit", "a punchy impact for an attack landing", "impact combat", "action"),
    "hurt": ("Hurt", "a quick damage cue for when the player is hurt", "damage combat", "negative"),
    "jump": ("Jump", "a springy cue for a character's jump", "movement jump", "playful"),
    "laser": ("Laser shot", "a zappy sci-fi blaster shot", "weapon sci-fi shooting", "action"),
    "lose": ("Lose life", "a downbeat cue for losing a life or failing a level", "fail", "sad"),
    "phase jump": (
        "Phase jump",
        "a warping sci-fi whoosh for teleports or phase shifts",
        "sci-fi teleport",
        "mysterious",
    ),
    "rock hit": (
        "Rock hit",
        "a heavy stone impact, e.g. a meteor or boulder strike",
        "impact rock",
        "heavy",
    ),
    "secret": (
        "Secret found",
        "a discovery jingle for hidden areas and secrets",
        "jingle discovery",
        "magical",
    ),
    "upgrade": (
        "Power-up",
        "a positive cue for upgrades and power-ups",
        "powerup reward",
        "triumphant",
    ),
}

# skimage file -> (title, description, tags, license, credit)
PHOTOS: dict[str, tuple[str, str, str, str, str]] = {
    "astronaut.png": (
        "Astronaut Eileen Collins portrait",
        "NASA portrait photo of astronaut "
        "Eileen Collins in her orange flight suit with a flag behind her",
        "people space nasa portrait",
        "Public domain",
        "NASA",
    ),
    "brick.png": (
        "Brick wall texture",
        "a greyscale close-up of a brick wall, handy as a wall or dungeon texture",
        "texture wall brick",
        "CC0-1.0",
        "CC0Textures",
    ),
    "camera.png": (
        "Photographer with camera",
        "a greyscale photo of a person holding a camera",
        "people camera",
        "CC0-1.0",
        "Lav Varshney",
    ),
    "cell.png": (
        "Cell in saline",
        "a microscope phase image of a single cell floating in saline",
        "science microscopy",
        "CC0-1.0",
        "Paul Müller et al.",
    ),
    "chelsea.png": (
        "Chelsea the tabby cat",
        "a colour photo of a tabby cat's face and whiskers",
        "animal cat pet",
        "CC0-1.0",
        "Stefan van der Walt",
    ),
    "clock_motion.png": (
        "Motion-blurred wall clock",
        "a greyscale photo of a wall clock smeared by horizontal camera motion",
        "object clock blur",
        "Public domain",
        "Stefan van der Walt",
    ),
    "coffee.png": (
        "Cup of coffee",
        "a cup of espresso with latte art on a saucer, on a wooden table",
        "food drink coffee",
        "CC0-1.0",
        "Rachel Michetti",
    ),
    "coins.png": (
        "Greek coins from Pompeii",
        "a greyscale museum photo of ancient Greek coins laid out in rows",
        "history coins museum",
        "No known copyright restrictions",
        "Brooklyn Museum",
    ),
    "grass.png": (
        "Grass texture",
        "a greyscale close-up of grass blades, usable as a ground texture",
        "texture nature grass",
        "CC0-1.0",
        "linolafett (DeviantArt)",
    ),
    "gravel.png": (
        "Gravel texture",
        "a greyscale close-up of gravel stones, usable as a ground texture",
        "texture ground gravel",
        "CC0-1.0",
        "CC0Textures",
    ),
    "horse.png": (
        "Horse silhouette",
        "a black-and-white silhouette of a horse",
        "animal horse silhouette clip-art",
        "CC0-1.0",
        "Andreas Preuss (marauder), openclipart",
    ),
    "hubble_deep_field.jpg": (
        "Hubble eXtreme Deep Field",
        "the Hubble telescope's deepest view "
        "of the universe, thousands of distant galaxies on black",
        "space galaxies nasa",
        "Public domain",
        "NASA",
    ),
    "ihc.png": (
        "Stained tissue micrograph",
        "an immunohistochemistry micrograph of colonic glands in brown and blue stain",
        "science microscopy",
        "No known copyright restrictions",
        "CMMI",
    ),
    "microaneurysms.png": (
        "Retina detail",
        "a small greyscale crop of a retina showing blood vessels and lesions",
        "science medical eye",
        "CC0-1.0",
        "Andreas Maier (HRF database)",
    ),
    "retina.jpg": (
        "Human retina fundus photo",
        "a colour fundus photograph of a healthy left eye's retina",
        "science medical eye",
        "CC0-1.0",
        "Mikael Häggström",
    ),
    "rocket.jpg": (
        "Falcon 9 rocket launch",
        "a SpaceX Falcon 9 lifting off from Cape Canaveral with DSCOVR on board",
        "space rocket launch",
        "Public domain",
        "SpaceX",
    ),
    "text.png": (
        "Corner detection text sample",
        "a greyscale image of printed letters and shapes from Wikipedia's corner-detection article",
        "text shapes",
        "Public domain",
        "Wikipedia",
    ),
}

ASSET_TAGS = ("sprite", "cartoon", "2d", "game asset", "cc0")  # every Kenney image gets these
SOUND_TAGS = ("sound effect", "sfx", "retro", "game asset", "cc0")  # every Kenney sound
SIZE_WORDS = ("big", "large", "huge", "med", "small", "tiny", "double")  # go before the noun
# kind word (SPRITES) -> how titles and descriptions name the asset
LABELS = {"tile": "platformer tile", "space": "sprite", "top-down": "top-down sprite"}
