"""The synthetic domain-shift benchmark: procedural street scenes in a "game" and a "real" style.

LabOR (Shin et al., ICCV 2021) adapts a segmentation model trained on a labelled *source* domain (GTA5: video-game
frames, labels for free) to an unlabelled *target* domain (Cityscapes: real photos), asking a human to label only a
tiny fraction of target pixels. Nothing can be downloaded here, so the default data is a procedural benchmark with
the same structure:

    source  "game-like" street scenes: flat saturated colours, crisp edges, even light
    target  "real-like" street scenes: shifted and muted colours, textures, shadows,
            blur, sensor noise, and a different layout distribution

Both domains share 9 classes (SYNTHETIC_CLASSES below) and the same kind of geometry (sky, skyline, a road in
perspective, sidewalks, cars, persons, poles, signs), so a model can transfer shape cues but not colour cues. One
number, `shift`, scales every difference between the domains: shift=0 makes the target look exactly like the source;
`thing_shift` does the same for the colours of the things alone.

The long-tail variant (`scenes="long-tail"`, train.py --scenes long-tail; section 2c) has Cityscapes' 19 classes,
with its pixel shares and its rare things (rider, truck, bus, train, motorcycle) in a minority of the scenes.

    make_scene         one scene (pure, vectorised numpy): image (H, W, 3) uint8, label (H, W) uint8
    SyntheticStreets   a Dataset of scenes, generated once
    synthetic_split    SyntheticStreets, cached per process (the runs of a table or sweep share their scenes)

Images are float tensors (3, H, W) in [0, 1], labels long tensors (H, W) of class indices 0..8 (long-tail: 0..18,
Cityscapes' train IDs), as in data.py.
"""
import functools
import zlib

import numpy as np
import torch

# -----------------------------------------------------------------------------
# 1. The benchmark's 9 classes (train IDs 0..8 in this order), 9 of Cityscapes' 19, in Cityscapes' official colours
# (data.py places them among the Cityscapes train IDs; tests/test_data.py checks the colours against its palette).
SYNTHETIC_CLASSES = (
    "road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole", "traffic sign")
SYNTHETIC_PALETTE = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
                              (0, 0, 142), (220, 20, 60), (153, 153, 153), (220, 220, 0)], dtype=np.uint8)  # (9, 3)
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE, SIGN = range(9)
DOMAINS = ("source", "target")


def to_tensors(image, label):
    """uint8 (H, W, 3) image and (H, W) label -> float (3, H, W) in [0, 1] and long (H, W) (data.py's loaders too)."""
    image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return image.contiguous(), torch.from_numpy(label.astype(np.int64))


# -----------------------------------------------------------------------------
# 2a. Style and layout knobs of the synthetic benchmark (calibrate the gap here)
#
# The renderer paints "kinds" of surface. Kinds 0..8 are the classes; four more are
# parts that carry another class's label but look different (a head is `person`,
# a car window is `car`, a lane marking is `road`, a tree trunk is `vegetation`).
KINDS = SYNTHETIC_CLASSES + ("skin", "window", "marking", "trunk")
KIND_TO_CLASS = np.array([*range(9), PERSON, CAR, ROAD, VEGETATION], dtype=np.uint8)  # (13,)
SKIN, WINDOW, MARKING, TRUNK = range(9, 13)

# Source (GTA5-like): flat, saturated, every class its own clearly separated colour.
SOURCE_COLORS = {
    "road": (70, 70, 80), "sidewalk": (210, 160, 200), "building": (160, 100, 60),
    "vegetation": (40, 180, 40), "sky": (80, 170, 250), "car": (20, 50, 210),
    "person": (230, 40, 40), "pole": (180, 180, 180), "traffic sign": (250, 220, 0),
    "skin": (240, 190, 150), "window": (20, 20, 40), "marking": (250, 250, 250),
    "trunk": (110, 70, 30),
}
# Target (Cityscapes-like): muted colours, and several classes move *towards another
# class's source colour*, so a colour-only classifier trained on source fails:
# sky and buildings -> grey like source poles, persons and poles -> dark like source
# road, vegetation -> olive/dark, signs -> blue like source cars, cars -> any colour.
TARGET_COLORS = {
    "road": (125, 120, 125), "sidewalk": (150, 135, 140), "building": (185, 180, 170),
    "vegetation": (90, 105, 60), "sky": (205, 215, 225), "car": (90, 90, 95),
    "person": (55, 50, 65), "pole": (75, 75, 80), "traffic sign": (40, 80, 190),
    "skin": (200, 160, 130), "window": (40, 45, 55), "marking": (200, 200, 195),
    "trunk": (80, 65, 50),
}
# Real cars come in many colours: each target car picks one (red looks like a source person).
TARGET_CAR_COLORS = np.array(
    [(170, 30, 30), (225, 225, 230), (30, 30, 35), (140, 140, 150), (40, 60, 120)], np.float32)

# Scalar style knobs. Every knob is interpolated source -> target by `shift`
# (value = source + shift * (target - source)), so shift=0 renders target like source.
SOURCE_STYLE = dict(
    class_jitter=6.0,     # std of the per-image colour jitter of each kind (0..255 units)
    instance_jitter=4.0,  # std of the extra jitter of each object instance
    brightness=0.0,       # per-image global gain varies in [1 - b, 1 + b]
    texture=0.0,          # amplitude of per-class textures (windows, tiles, leaves, clouds)
    illumination=0.0,     # strength of a random linear light gradient across the image
    shadow=0.0,           # how much shadows (under cars, a building's shadow band) darken
    desaturation=0.0,     # fraction of colour saturation removed
    blur=0.0,             # blend weight of a 3x3 box blur (1 = fully blurred)
    noise=0.0,            # std of Gaussian sensor noise (0..255 units)
)
TARGET_STYLE = dict(
    class_jitter=15.0, instance_jitter=12.0, brightness=0.2, texture=22.0,
    illumination=0.35, shadow=0.45, desaturation=0.3, blur=1.0, noise=6.0,
)

# Layout distributions: (low, high) ranges drawn uniformly, fractions of the image size.
# Counts are integer ranges (inclusive). These are interpolated by `shift` too.
SOURCE_LAYOUT = dict(
    horizon=(0.30, 0.45),          # horizon row / H
    road_width=(0.30, 0.40),       # road half-width at the bottom row / W
    sidewalk=(0.35, 0.55),         # sidewalk width / road half-width
    buildings=(5, 9), building_height=(0.08, 0.25),  # skyline, height / H
    trees=(0, 2), cars=(1, 4), persons=(1, 2), poles=(1, 3),
    car_size=1.0, person_size=1.0, sign_size=1.0,  # size multipliers
)
TARGET_LAYOUT = dict(
    horizon=(0.40, 0.55), road_width=(0.25, 0.35), sidewalk=(0.45, 0.70),
    buildings=(7, 12), building_height=(0.12, 0.35),
    trees=(1, 4), cars=(3, 7), persons=(2, 4), poles=(2, 4),
    car_size=0.85, person_size=1.15, sign_size=1.0,
)

# How much of each procedural pattern every class gets; the whole table is scaled by
# the `texture` knob. Columns: blotches, fine grain, windows, paving tiles.
TEXTURE_WEIGHTS = np.array([
    [0.4, 0.6, 0.0, 0.0],   # road: worn asphalt
    [0.2, 0.3, 0.0, 1.0],   # sidewalk: paving slabs
    [0.3, 0.2, 1.2, 0.0],   # building: rows of dark windows
    [1.0, 0.8, 0.0, 0.0],   # vegetation: leaves
    [0.6, 0.0, 0.0, 0.0],   # sky: clouds
    [0.1, 0.2, 0.0, 0.0],   # car
    [0.2, 0.3, 0.0, 0.0],   # person
    [0.1, 0.2, 0.0, 0.0],   # pole
    [0.0, 0.1, 0.0, 0.0],   # traffic sign
], dtype=np.float32)  # (9, 4)

MAX_OBJECTS = 16  # random numbers are drawn for this many objects of each type, always


# -----------------------------------------------------------------------------
# 2b. The scene generator


def _lerp(a, b, t):
    """Linear interpolation a + t * (b - a), elementwise for tuples and arrays."""
    return np.asarray(a, np.float32) + t * (np.asarray(b, np.float32) - np.asarray(a, np.float32))


def _pick(low_high, u):
    """Map a uniform number u in [0, 1) into the range (low, high)."""
    return float(low_high[0] + u * (low_high[1] - low_high[0]))


def _count(low_high, u):
    """Map a uniform number u in [0, 1) to an integer count in round(low)..round(high)."""
    low, high = int(round(float(low_high[0]))), int(round(float(low_high[1])))
    return int(np.clip(low + int(u * (high - low + 1)), 0, MAX_OBJECTS))


def _scene_rngs(domain, split, index, seed):
    """Two independent generators (layout, style) seeded from (domain, split, index, seed).

    Python's hash() is salted per process, so the strings are hashed with crc32.
    Separate streams mean a change of style (e.g. shift) never reshuffles the layout.
    """
    key = zlib.crc32(f"{domain}/{split}".encode())
    layout_seq, style_seq = np.random.SeedSequence([key, int(index), int(seed)]).spawn(2)
    return np.random.default_rng(layout_seq), np.random.default_rng(style_seq)


class _Canvas:
    """Painter's algorithm on an instance map: later shapes cover earlier ones.

    Every painted shape becomes a new instance id; `kinds[id]` says what it is.
    Shapes are evaluated only inside their bounding box, so small objects are cheap.
    """

    def __init__(self, height, width, background_kind):
        """Start with one instance (id 0) of `background_kind` covering everything."""
        self.H, self.W = height, width
        self.ys = np.arange(height, dtype=np.float32)[:, None] + 0.5  # (H, 1) pixel centres
        self.xs = np.arange(width, dtype=np.float32)[None, :] + 0.5   # (1, W)
        self.inst = np.zeros((height, width), dtype=np.int32)        # (H, W)
        self.kinds = [background_kind]

    def paint(self, mask, kind, box=(0, None, 0, None)):
        """Give the pixels of `mask` (inside `box` = y0, y1, x0, x1) a new instance id."""
        y0, y1, x0, x1 = box
        self.inst[y0:y1, x0:x1][mask] = len(self.kinds)
        self.kinds.append(kind)

    def _box(self, top, bottom, left, right):
        """Integer pixel bounds covering [top, bottom) x [left, right), clipped to the image."""
        y0, y1 = max(int(np.floor(top)), 0), min(int(np.ceil(bottom)), self.H)
        x0, x1 = max(int(np.floor(left)), 0), min(int(np.ceil(right)), self.W)
        return y0, y1, x0, x1

    def rect(self, top, bottom, left, right, kind):
        """Axis-aligned rectangle; at least one pixel wide and tall so thin poles never vanish."""
        if right - left < 1:
            c = (left + right) / 2
            left, right = c - 0.5, c + 0.5
        if bottom - top < 1:
            c = (top + bottom) / 2
            top, bottom = c - 0.5, c + 0.5
        y0, y1, x0, x1 = self._box(top, bottom, left, right)
        if y0 >= y1 or x0 >= x1:
            return
        ys, xs = self.ys[y0:y1], self.xs[:, x0:x1]
        mask = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)  # (h, w)
        self.paint(mask, kind, (y0, y1, x0, x1))

    def ellipse(self, cy, cx, ry, rx, kind):
        """Filled ellipse; radii are at least 0.6 px so tiny far-away objects stay visible."""
        ry, rx = max(ry, 0.6), max(rx, 0.6)
        y0, y1, x0, x1 = self._box(cy - ry, cy + ry, cx - rx, cx + rx)
        if y0 >= y1 or x0 >= x1:
            return
        ys, xs = self.ys[y0:y1], self.xs[:, x0:x1]
        mask = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1  # (h, w)
        self.paint(mask, kind, (y0, y1, x0, x1))


# Objects stand on the ground at (ground_y, x) with `unit` = the road's half-width at
# that row, which is the perspective scale (roughly one lane, ~3.5 m). r: the object's
# 6 uniform randoms (r[0], r[1] were used to place it); size: a layout size multiplier.

def _draw_car(canvas, ground_y, x, unit, r, size):
    """A car seen from behind: wide lower body, narrower cabin with a dark rear window."""
    w = unit * 0.55 * size * (0.85 + 0.3 * r[2])
    h = w * (0.6 + 0.2 * r[3])
    canvas.rect(ground_y - 0.55 * h, ground_y, x - w / 2, x + w / 2, CAR)
    canvas.rect(ground_y - h, ground_y - 0.5 * h, x - 0.37 * w, x + 0.37 * w, CAR)
    canvas.rect(ground_y - 0.9 * h, ground_y - 0.6 * h, x - 0.3 * w, x + 0.3 * w, WINDOW)
    return (ground_y, x, w, h)


def _draw_person(canvas, ground_y, x, unit, r, size):
    """A pedestrian: a thin tall ellipse for the body and a circle for the head."""
    h = unit * 0.6 * size * (0.85 + 0.3 * r[3])
    canvas.ellipse(ground_y - 0.42 * h, x, 0.42 * h, 0.13 * h, PERSON)
    canvas.ellipse(ground_y - 0.9 * h, x, 0.1 * h, 0.08 * h, SKIN)


def _draw_pole(canvas, ground_y, x, unit, r, size):
    """A thin vertical bar, often with a square or round traffic sign (`size` times as big) on top."""
    h = unit * (1.3 + 0.6 * r[3])
    canvas.rect(ground_y - h, ground_y, x - 0.03 * unit, x + 0.03 * unit, POLE)
    if r[4] < 0.75:
        s = max(unit * 0.25 * size * (0.8 + 0.4 * r[5]), 1.5)
        if r[5] < 0.5:
            canvas.rect(ground_y - h, ground_y - h + s, x - s / 2, x + s / 2, SIGN)
        else:
            canvas.ellipse(ground_y - h + s / 2, x, s / 2, s / 2, SIGN)


def _draw_tree(canvas, ground_y, x, unit, r, size):
    """A tree: a trunk and a big elliptic crown (both labelled vegetation, as in Cityscapes)."""
    trunk = unit * (0.8 + 0.4 * r[3])
    crown = unit * (0.6 + 0.5 * r[4])
    canvas.rect(ground_y - trunk, ground_y, x - 0.06 * unit, x + 0.06 * unit, TRUNK)
    canvas.ellipse(ground_y - trunk - 0.5 * crown, x, crown * 0.8, crown, VEGETATION)


def _layout(rng, L, H, W):
    """Draw the geometry of one street scene into a _Canvas.

    Returns the canvas and a dict with the horizon row and the car boxes
    (ground_y, x, w, h), which the renderer needs to cast shadows.
    All random numbers are drawn in fixed-size blocks first, so the same seed gives
    the same scene skeleton whatever the layout parameters are.
    """
    g = rng.random(12)                              # global scene parameters
    objects = rng.random((5, MAX_OBJECTS, 6))       # cars, persons, poles, trees, buildings
    canvas = _Canvas(H, W, background_kind=SKY)
    ys, xs = canvas.ys, canvas.xs

    horizon = H * float(np.clip(_pick(L["horizon"], g[0]), 0.1, 0.8))
    vanish_x = W * (0.35 + 0.3 * g[1])               # vanishing point on the horizon
    bottom_x = W * (0.40 + 0.2 * g[2])               # road centre at the bottom row
    half_bottom = W * _pick(L["road_width"], g[3])   # road half-width at the bottom row
    sidewalk = _pick(L["sidewalk"], g[4])            # sidewalk width / road half-width

    def ground(t):
        """Row, road centre and road half-width at depth t (0 = horizon, 1 = bottom row)."""
        return horizon + t * (H - horizon), vanish_x + (bottom_x - vanish_x) * t, half_bottom * t

    # Skyline: buildings standing on the horizon, taller towards the image sides
    # (they are closer to the camera there).
    for r in objects[4, :_count(L["buildings"], g[5])]:
        left, width = W * (1.1 * r[0] - 0.05), W * (0.08 + 0.2 * r[1])
        tall = 1 + 1.5 * abs(left + width / 2 - vanish_x) / W
        height = H * _pick(L["building_height"], r[2]) * tall
        canvas.rect(horizon - height, horizon + 1, left, left + width, BUILDING)

    # Ground in perspective: everything below the horizon, as full-image masks.
    t = np.clip((ys - horizon) / (H - horizon), 1e-3, None)  # (H, 1) depth of each row
    centre = vanish_x + (bottom_x - vanish_x) * t             # (H, 1)
    half = half_bottom * t                                    # (H, 1)
    d = xs - centre                                           # (H, W) offset from road centre
    below = ys > horizon                                      # (H, 1)
    outer = half * (1 + sidewalk)                             # (H, 1) sidewalk's outer edge
    left_kind, right_kind = (BUILDING if u < 0.65 else VEGETATION for u in g[6:8])
    canvas.paint(below & (d < -outer), left_kind)             # facades / hedges
    canvas.paint(below & (d > outer), right_kind)
    canvas.paint(below & (np.abs(d) <= outer), SIDEWALK)
    canvas.paint(below & (np.abs(d) < half), ROAD)
    dashes = (2.0 / t) % 1 < 0.5                              # (H, 1) dash length ~ 1/depth
    canvas.paint(below & dashes & (np.abs(d) < 0.03 * half + 0.3), MARKING)
    if "presence" in L:   # --scenes long-tail (2c): some scenes get terrain, walls or fences by the street
        counts, extra = _long_tail_draws(rng, L["presence"])
        _paint_verges(canvas, counts, extra, (horizon, vanish_x, bottom_x, half_bottom, sidewalk), d, below, outer, half)

    # Objects at a random depth t (far = small = high up) and a lateral offset in
    # units of the road half-width: cars on the road, persons on the sidewalks,
    # poles at the kerb's outer edge, trees just behind it.
    todo = []  # (t, draw function, ground_y, x, unit, randoms, size)

    def place(row, count, depth, across, draw, size, randoms=objects):
        """Queue `count` objects of one type, with randoms from randoms[row]."""
        for r in randoms[row, :count]:
            t = depth[0] + (depth[1] - depth[0]) * r[0]
            y, c, unit = ground(t)
            todo.append((t, draw, y, c + unit * across(r), unit, r, size))

    side = lambda r: 1 if r[1] < 0.5 else -1  # noqa: E731  left or right sidewalk
    place(0, _count(L["cars"], g[8]), (0.08, 1.0), lambda r: 1.3 * r[1] - 0.65,
          _draw_car, L["car_size"])
    place(1, _count(L["persons"], g[9]), (0.12, 1.0),
          lambda r: side(r) * (1 + sidewalk * (0.25 + 0.5 * r[2])), _draw_person, L["person_size"])
    place(2, _count(L["poles"], g[10]), (0.10, 0.9),
          lambda r: side(r) * (1 + sidewalk * 0.9), _draw_pole, float(L["sign_size"]))
    place(3, _count(L["trees"], g[11]), (0.05, 0.55),
          lambda r: side(r) * (1 + sidewalk * (1.1 + 0.3 * r[2])), _draw_tree, 1.0)
    if "presence" in L:   # ... and some get the rarer objects: riders, trucks, buses, trains, (motor)bikes, lights
        _place_long_tail(place, counts, extra, side, sidewalk)

    cars = []  # painter's algorithm: far to near, so nearer objects cover farther ones
    for _, draw, y, x, unit, r, size in sorted(todo, key=lambda o: o[0]):
        box = draw(canvas, y, x, unit, r, size)
        if box is not None:
            cars.append(box)
    return canvas, dict(horizon=horizon, cars=cars)


def _smooth_noise(rng, H, W, cell):
    """Smooth random field in [-1, 1]: uniform noise on a coarse grid, bilinearly upsampled."""
    grid = rng.uniform(-1, 1, (H // cell + 2, W // cell + 2)).astype(np.float32)
    y, x = np.arange(H, dtype=np.float32) / cell, np.arange(W, dtype=np.float32) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]                    # (H, 1), (1, W)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx      # (H, W)
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy                              # (H, W)


def _box_blur(image):
    """3x3 mean filter as two separable passes over shifted views (edges replicated)."""
    p = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")       # (H+2, W+2, 3)
    p = (p[:, :-2] + p[:, 1:-1] + p[:, 2:]) / 3                     # (H+2, W, 3)
    return (p[:-2] + p[1:-1] + p[2:]) / 3                           # (H, W, 3)


def _render(rng, canvas, scene, style, colors):
    """Turn the instance map into an RGB float image (H, W, 3) in the given style.

    `style` and `colors` are already interpolated by `shift`; with the source values
    every effect after step 1 is zero and the image stays flat and crisp. colors["base"]
    holds one colour per kind, colors["texture"] one row of TEXTURE_WEIGHTS per kind.
    """
    H, W = canvas.inst.shape
    kinds = np.array(canvas.kinds)                                   # (K,) kind of each instance
    # 1. One flat colour per instance: kind colour + per-image and per-instance jitter.
    jitter = (rng.standard_normal((len(colors["base"]), 3)) * style["class_jitter"])[kinds] \
        + rng.standard_normal((len(kinds), 3)) * style["instance_jitter"]  # (K, 3)
    car_colors = colors["car"][rng.integers(len(colors["car"]), size=len(kinds))]
    inst_colors = np.where((kinds == CAR)[:, None], car_colors, colors["base"][kinds]) + jitter
    image = inst_colors.astype(np.float32)[canvas.inst]              # (H, W, 3)
    gain = float(1 + style["brightness"] * rng.uniform(-1, 1))
    if not any(style[k] for k in ("texture", "illumination", "shadow", "desaturation", "blur", "noise")):
        return image * gain                                          # flat and crisp

    ys, xs = canvas.ys, canvas.xs                                    # (H, 1), (1, W)
    # 2. Per-class textures: each class mixes four procedural patterns.
    patterns = np.stack([
        _smooth_noise(rng, H, W, cell=8),                            # blotches / clouds
        _smooth_noise(rng, H, W, cell=2),                            # fine grain
        -(((xs % 7) < 3) & ((ys % 6) < 3)).astype(np.float32),       # dark windows
        -(((xs % 9) < 1) | ((ys % 5) < 1)).astype(np.float32),       # paving joints
    ], axis=-1)                                                      # (H, W, 4)
    texture = (patterns * colors["texture"][kinds[canvas.inst]]).sum(-1)  # (H, W)
    image += style["texture"] * texture[..., None]

    # 3. Illumination: a random linear gradient of light across the image.
    gx, gy = rng.uniform(-1, 1, 2).astype(np.float32)
    light = 1 + style["illumination"] * (gx * (xs / W - 0.5) + gy * (ys / H - 0.5))  # (H, W)
    image *= light[..., None]

    # 4. Shadows: a flat dark ellipse under every car, and (often) a diagonal band
    #    across the ground, as if cast by a building.
    shade = np.zeros((H, W), np.float32)
    for ground_y, x, w, h in scene["cars"]:
        under = ((ys - ground_y) / (0.12 * h + 0.5)) ** 2 + ((xs - x) / (0.6 * w + 0.5)) ** 2 <= 1
        shade = np.maximum(shade, under)
    bx, slope, width, on = rng.uniform(0, 1, 4).astype(np.float32)
    horizon = scene["horizon"]
    band = np.abs(xs - W * bx - (2 * slope - 1) * (ys - horizon)) < W * (0.05 + 0.15 * width)
    shade = np.maximum(shade, band & (ys > horizon) & (on < 0.7))
    image *= (1 - style["shadow"] * shade)[..., None]

    # 5. Muted colours, 6. lens blur, 7. sensor noise.
    gray = image.mean(-1, keepdims=True)                             # (H, W, 1)
    image = gray + (image - gray) * (1 - min(style["desaturation"], 1.0))
    b = min(style["blur"], 1.0)
    image = (1 - b) * image + b * _box_blur(image)
    image += style["noise"] * rng.standard_normal((H, W, 3), dtype=np.float32)
    return image * gain


# -----------------------------------------------------------------------------
# 2c. The long-tail variant (--scenes long-tail): Cityscapes' 19 classes and its statistics
#
# The balanced scenes above have 9 classes, each in nearly every image. Cityscapes has 19, and
# several "things" (rider, truck, bus, train, motorcycle) appear in a minority of its images and
# cover well under 1% of its pixels. The long-tail scenes keep the street and the renderer and add
# ten kinds of surface, each drawn in a share of the scenes (LONG_TAIL_PRESENCE). Pixel shares and
# presence follow Cityscapes' (python -m tools.benchmark_stats --scenes long-tail prints them beside
# Cityscapes' figures; docs/experiments.md cites the sources). Both domains draw their layout from
# the same table, so the statistics do not move with `shift`: the gap is the style alone.
SCENES = ("balanced", "long-tail")
LONG_TAIL_CLASSES = (  # Cityscapes' 19 classes, in train-ID order (data.CITYSCAPES_CLASSES)
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
LONG_TAIL_PALETTE = np.array([  # their official colours (data.CITYSCAPES_PALETTE; tests/test_longtail.py checks)
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
    dtype=np.uint8)  # (19, 3)
LONG_TAIL_KINDS = ("wall", "fence", "traffic light", "terrain", "rider", "truck", "bus", "train", "motorcycle",
                   "bicycle")  # kinds 13..22, after the 13 of 2a
WALL, FENCE, LIGHT, TERRAIN, RIDER, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(13, 23)
LONG_TAIL_KIND_TO_CLASS = np.array(  # (23,) every kind's label among LONG_TAIL_CLASSES
    [LONG_TAIL_CLASSES.index(name) for name in [SYNTHETIC_CLASSES[c] for c in KIND_TO_CLASS] + list(LONG_TAIL_KINDS)],
    dtype=np.uint8)

# Their colours join the tables of 2a: distinct in the game, muted in the real style, where
# riders turn dark like persons, buses yellow like signs and trucks white like sky.
SOURCE_COLORS.update({
    "wall": (150, 150, 210), "fence": (200, 160, 110), "traffic light": (250, 130, 0),
    "terrain": (150, 240, 130), "rider": (240, 0, 130), "truck": (0, 20, 110), "bus": (0, 120, 150),
    "train": (0, 150, 100), "motorcycle": (70, 70, 255), "bicycle": (150, 20, 50),
})
TARGET_COLORS.update({
    "wall": (165, 155, 145), "fence": (125, 115, 100), "traffic light": (45, 45, 40),
    "terrain": (120, 130, 80), "rider": (70, 55, 60), "truck": (205, 205, 200), "bus": (215, 195, 90),
    "train": (185, 185, 170), "motorcycle": (45, 45, 50), "bicycle": (65, 60, 70),
})
LONG_TAIL_TEXTURES = np.array([  # as TEXTURE_WEIGHTS: blotches, fine grain, windows, paving tiles
    [0.3, 0.4, 0.0, 0.6],   # wall: blocks
    [0.2, 0.2, 0.8, 0.0],   # fence: slats
    [0.0, 0.1, 0.0, 0.0],   # traffic light
    [0.8, 0.8, 0.0, 0.0],   # terrain: grass
    [0.2, 0.3, 0.0, 0.0],   # rider
    [0.1, 0.2, 0.0, 0.0],   # truck
    [0.1, 0.2, 0.8, 0.0],   # bus: windows
    [0.1, 0.2, 1.0, 0.0],   # train: windows
    [0.1, 0.2, 0.0, 0.0],   # motorcycle
    [0.1, 0.2, 0.0, 0.0],   # bicycle
], dtype=np.float32)  # (10, 4)

# One layout for both domains (the keys of SOURCE_LAYOUT): a lower camera than the balanced
# scenes', so the road fills the bottom, and a dense skyline leaves little sky, as in Cityscapes.
LONG_TAIL_LAYOUT = dict(
    horizon=(0.25, 0.35), road_width=(0.55, 0.7), sidewalk=(0.25, 0.45),
    buildings=(10, 14), building_height=(0.25, 0.45),
    trees=(1, 4), cars=(0, 8), persons=(0, 6), poles=(1, 3),
    car_size=0.65, person_size=0.8, sign_size=1.6,
)
# The share of scenes that have each new class, and how many of it they get then (inclusive).
# Riders ride bicycles (4 in 5) or motorcycles, so those two are also present where riders are;
# "traffic sign" adds signposts near the camera to the signs on the poles of 2b.
LONG_TAIL_PRESENCE = {
    "wall": (0.33, (1, 2)), "fence": (0.45, (1, 2)), "terrain": (0.60, (1, 1)), "traffic light": (0.57, (1, 3)),
    "rider": (0.37, (1, 3)), "truck": (0.12, (1, 1)), "bus": (0.10, (1, 1)), "train": (0.04, (1, 1)),
    "motorcycle": (0.03, (1, 2)), "bicycle": (0.38, (1, 2)), "traffic sign": (0.85, (1, 2)),
}


def _long_tail_draws(rng, presence):
    """How many of each LONG_TAIL_PRESENCE class a scene gets, and 6 randoms per object (drawn after the
    balanced scene's, in fixed-size blocks): ({name: count}, {name: (MAX_OBJECTS, 6) randoms})."""
    u = rng.random((len(presence), 2))                        # present?, how many
    blocks = rng.random((len(presence), MAX_OBJECTS, 6))
    counts, randoms = {}, {}
    for (name, (p, many)), (has, n), block in zip(presence.items(), u, blocks):
        counts[name] = _count(many, n) if has < p else 0
        randoms[name] = block
    return counts, randoms


def _paint_verges(canvas, counts, randoms, street, d, below, outer, half):
    """Terrain (a grass strip behind one sidewalk), then walls and fences standing along a sidewalk's outer
    edge for a stretch of depth. street: (horizon, vanish_x, bottom_x, half_bottom, sidewalk)."""
    horizon, vanish_x, bottom_x, half_bottom, sidewalk = street
    side = lambda r: 1 if r[1] < 0.5 else -1  # noqa: E731
    for r in randoms["terrain"][:counts["terrain"]]:
        strip = (side(r) * d > outer) & (side(r) * d <= outer + half * (0.2 + 0.4 * r[2]))
        canvas.paint(below & strip, TERRAIN)
    for kind, name in ((WALL, "wall"), (FENCE, "fence")):
        for r in randoms[name][:counts[name]]:
            # the kerb's outer edge moves by `edge` pixels across per unit of depth t (0 = horizon)
            edge = bottom_x - vanish_x + side(r) * half_bottom * (1 + sidewalk)
            t = (canvas.xs - vanish_x) / (edge if abs(edge) > 1e-3 else 1e-3)   # (1, W) depth at each column
            ground_y = horizon + t * (canvas.H - horizon)
            tall = (0.15 + 0.2 * r[3]) * half_bottom * t                         # (1, W) height in pixels
            near = 0.1 + 0.5 * r[0]
            mask = (t >= near) & (t <= near + 0.2 + 0.5 * r[2]) & (canvas.ys <= ground_y) & (canvas.ys > ground_y - tall)
            canvas.paint(mask, kind)


def _draw_truck(canvas, ground_y, x, unit, r, size):
    """A truck from behind: a tall box."""
    w = unit * 0.7 * (0.9 + 0.2 * r[2])
    h = w * (1.0 + 0.3 * r[3])
    canvas.rect(ground_y - h, ground_y, x - w / 2, x + w / 2, TRUCK)
    return (ground_y, x, w, h)


def _draw_bus(canvas, ground_y, x, unit, r, size):
    """A bus from behind (its texture draws rows of windows)."""
    w = unit * 0.75 * (0.9 + 0.2 * r[2])
    h = w * (1.1 + 0.2 * r[3])
    canvas.rect(ground_y - h, ground_y, x - w / 2, x + w / 2, BUS)
    return (ground_y, x, w, h)


def _draw_train(canvas, ground_y, x, unit, r, size):
    """A tram seen from the side: a long box crossing the street."""
    w, h = unit * (1.8 + 0.8 * r[2]), unit * (0.8 + 0.2 * r[3])
    canvas.rect(ground_y - h, ground_y, x - w / 2, x + w / 2, TRAIN)
    return (ground_y, x, w, h)


def _draw_two_wheeler(canvas, ground_y, x, unit, r, kind, rider):
    """A bicycle or motorcycle from the side (two wheels and a frame), with a rider on it or parked."""
    wheel = unit * (0.06 if kind == BICYCLE else 0.07)
    span = unit * 0.2
    for dx in (-span / 2, span / 2):
        canvas.ellipse(ground_y - wheel, x + dx, wheel, wheel, kind)
    thick = 0.04 * unit if kind == BICYCLE else 0.08 * unit
    canvas.rect(ground_y - 2.2 * wheel - thick, ground_y - 1.2 * wheel, x - span / 2, x + span / 2, kind)
    if rider:   # the upper body above the saddle and a head
        h = unit * 0.25 * (0.9 + 0.2 * r[3])
        canvas.ellipse(ground_y - 2.2 * wheel - 0.45 * h, x, 0.45 * h, 0.12 * h + 0.5, RIDER)
        canvas.ellipse(ground_y - 2.2 * wheel - 1.0 * h, x, 0.14 * h, 0.11 * h, RIDER)  # (Cityscapes: all rider)


def _draw_ridden(canvas, ground_y, x, unit, r, size):
    """A rider on a bicycle (4 in 5) or a motorcycle."""
    _draw_two_wheeler(canvas, ground_y, x, unit, r, BICYCLE if r[5] < 0.8 else MOTORCYCLE, rider=True)


def _draw_bicycle(canvas, ground_y, x, unit, r, size):
    """A parked bicycle."""
    _draw_two_wheeler(canvas, ground_y, x, unit, r, BICYCLE, rider=False)


def _draw_motorcycle(canvas, ground_y, x, unit, r, size):
    """A parked motorcycle."""
    _draw_two_wheeler(canvas, ground_y, x, unit, r, MOTORCYCLE, rider=False)


def _draw_light(canvas, ground_y, x, unit, r, size):
    """A traffic light: a pole with a dark box on top."""
    h = unit * (1.2 + 0.5 * r[3])
    canvas.rect(ground_y - h, ground_y, x - 0.03 * unit, x + 0.03 * unit, POLE)
    canvas.rect(ground_y - h, ground_y - h + 0.4 * unit, x - 0.09 * unit, x + 0.09 * unit, LIGHT)


def _draw_signpost(canvas, ground_y, x, unit, r, size):
    """A short post with a traffic sign."""
    h, s = unit * (0.8 + 0.3 * r[3]), unit * 0.3 * (0.8 + 0.4 * r[5])
    canvas.rect(ground_y - h, ground_y, x - 0.03 * unit, x + 0.03 * unit, POLE)
    canvas.rect(ground_y - h - s / 2, ground_y - h + s / 2, x - s / 2, x + s / 2, SIGN)


def _place_long_tail(place, counts, randoms, side, sidewalk):
    """Queue the long-tail objects with `place` (as _layout does its own): big vehicles far down the road,
    riders near the kerb, parked (motor)bikes on the sidewalk, traffic lights at its outer edge."""
    block = np.stack([randoms[n] for n in LONG_TAIL_PRESENCE])   # (11, MAX_OBJECTS, 6)
    row = {n: k for k, n in enumerate(LONG_TAIL_PRESENCE)}
    road = lambda r: 1.2 * r[1] - 0.6  # noqa: E731
    for name, depth, across, draw in (
            ("truck", (0.1, 0.35), road, _draw_truck),
            ("bus", (0.1, 0.35), road, _draw_bus),
            ("train", (0.1, 0.25), lambda r: 0.0, _draw_train),
            ("rider", (0.12, 0.9), lambda r: side(r) * (0.7 + 0.2 * r[2]), _draw_ridden),
            ("bicycle", (0.12, 0.9), lambda r: side(r) * (1 + sidewalk * (0.3 + 0.5 * r[2])), _draw_bicycle),
            ("motorcycle", (0.12, 0.9), lambda r: side(r) * (0.8 + 0.15 * r[2]), _draw_motorcycle),
            ("traffic light", (0.1, 0.45), lambda r: side(r) * (1 + sidewalk * 0.9), _draw_light),
            ("traffic sign", (0.1, 0.45), lambda r: side(r) * (1 + sidewalk * 0.6), _draw_signpost)):
        place(row[name], counts[name], depth, across, draw, 1.0, randoms=block)


THINGS = ("car", "person", "pole", "traffic sign", "skin", "window",  # kinds that `thing_shift` colours
          "traffic light", "rider", "truck", "bus", "train", "motorcycle", "bicycle")


def make_scene(domain, index, split="train", seed=0, size=(96, 192), shift=1.0, thing_shift=None, scenes="balanced"):
    """Generate one synthetic street scene.

    domain: "source" (game-like) or "target" (real-like). `shift` only affects the
        target: it interpolates every style and layout knob from SOURCE_* (shift=0)
        to TARGET_* (shift=1) and extrapolates beyond 1 for an even harder gap.
    thing_shift: the same interpolation for the colours of the things (car, person, pole,
        sign and their parts) alone; None: `shift`. The target's things take on other
        classes' source colours (see TARGET_COLORS), so at the default an adapted model
        misses them whole; thing_shift < shift keeps them partly recognisable.
    index, split, seed: identify the scene; non-negative ints / any string.
    size: (H, W) in pixels (note: the real loaders take (W, H) like PIL / AdaptSegNet).
    scenes: "balanced" (the benchmark: 9 classes) or "long-tail" (Cityscapes' 19 classes
        and statistics, section 2c; its layout is the same in both domains).
    Returns image (H, W, 3) uint8 and label (H, W) uint8 with values 0..8
    (SYNTHETIC_CLASSES; long-tail: 0..18, LONG_TAIL_CLASSES). Deterministic: the same
    arguments give identical arrays.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if scenes not in SCENES:
        raise ValueError(f"scenes must be one of {SCENES}, got {scenes!r}")
    H, W = int(size[0]), int(size[1])
    s = 0.0 if domain == "source" else float(shift)
    t = s if domain == "source" or thing_shift is None else float(thing_shift)
    kinds, kind_to_class, textures = KINDS, KIND_TO_CLASS, TEXTURE_WEIGHTS[KIND_TO_CLASS]
    layout = {k: _lerp(SOURCE_LAYOUT[k], TARGET_LAYOUT[k], s) for k in SOURCE_LAYOUT}
    if scenes == "long-tail":
        kinds, kind_to_class = KINDS + LONG_TAIL_KINDS, LONG_TAIL_KIND_TO_CLASS
        textures = np.concatenate([textures, LONG_TAIL_TEXTURES])
        layout = dict(LONG_TAIL_LAYOUT, presence=LONG_TAIL_PRESENCE)
    style = {k: float(_lerp(SOURCE_STYLE[k], TARGET_STYLE[k], s)) for k in SOURCE_STYLE}
    colors = {
        "base": np.stack([_lerp(SOURCE_COLORS[k], TARGET_COLORS[k], t if k in THINGS else s)
                          for k in kinds]),                          # (13, 3) one colour per kind (long-tail 23)
        "car": _lerp(np.broadcast_to(SOURCE_COLORS["car"], TARGET_CAR_COLORS.shape),
                     TARGET_CAR_COLORS, t),                          # (5, 3) choices per car
        "texture": textures,                                         # (13, 4) texture weights per kind
    }
    layout_rng, style_rng = _scene_rngs(domain, split, index, seed)
    canvas, scene = _layout(layout_rng, layout, H, W)
    label = kind_to_class[np.array(canvas.kinds)][canvas.inst]       # (H, W) uint8
    image = _render(style_rng, canvas, scene, style, colors)         # (H, W, 3) float
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), label


class SyntheticStreets(torch.utils.data.Dataset):
    """The synthetic benchmark as a Dataset: all scenes generated once, kept as uint8.

    domain: "source" or "target"; split: any name (different names = different scenes);
    n: number of scenes, default 1000 for source train, 500 for target train, else 200.
    scenes: "balanced" (9 classes) or "long-tail" (Cityscapes' 19, section 2c).
    Items are (image float (3, H, W) in [0, 1], label long (H, W) in 0..8, long-tail 0..18).
    `images` (N, H, W, 3) and `labels` (N, H, W) hold the raw uint8 arrays.
    """

    def __init__(self, domain, split="train", n=None, size=(96, 192), shift=1.0, seed=0, thing_shift=None,
                 scenes="balanced"):
        """Generate the n scenes (a few ms each) and store them."""
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        if n is None:
            n = {("source", "train"): 1000, ("target", "train"): 500}.get((domain, split), 200)
        self.domain, self.split, self.size, self.shift, self.seed = domain, split, tuple(size), shift, seed
        self.scenes = scenes
        self.classes = SYNTHETIC_CLASSES if scenes == "balanced" else LONG_TAIL_CLASSES
        self.palette = SYNTHETIC_PALETTE if scenes == "balanced" else LONG_TAIL_PALETTE
        self.num_classes = len(self.classes)
        H, W = self.size
        self.images = np.zeros((n, H, W, 3), np.uint8)               # (N, H, W, 3)
        self.labels = np.zeros((n, H, W), np.uint8)                  # (N, H, W)
        for i in range(n):
            self.images[i], self.labels[i] = make_scene(domain, i, split, seed, self.size, shift, thing_shift,
                                                        scenes)

    def __len__(self):
        """Number of scenes."""
        return len(self.images)

    def __getitem__(self, i):
        """(image (3, H, W) float in [0, 1], label (H, W) long)."""
        return to_tensors(self.images[i], self.labels[i])


@functools.lru_cache(maxsize=6)
def synthetic_split(domain, split, n, seed, size, shift, thing_shift, scenes="balanced"):
    """SyntheticStreets(...), generated once per process: runs and notebooks in one process share their data (a
    few seconds a run saved; nothing writes to the scenes after they are made)."""
    return SyntheticStreets(domain, split, n=n, size=size, shift=shift, seed=seed, thing_shift=thing_shift,
                            scenes=scenes)
