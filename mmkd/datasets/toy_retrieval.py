"""Toy retrieval: procedural "species" of patterned shapes, written in the CUB-200-2011 layout.

Each class is a species drawn from the seed: a shape family, an aspect ratio, two body colours, a
body pattern (stripes, checks, spots, rings, halves or a rim) with its own frequency and
orientation, and an optional mark of a third colour at a fixed place on the body. Species share
shapes, colours and patterns and differ in their combination and details, so telling them apart
needs more than a colour histogram. Every image shows one instance, rotated, scaled (the box of
the object spans 25-80 % of the image side, about 48 % on average), placed anywhere, with colour
jitter, uneven lighting, noise, a textured background with distractor shapes of the same families
and, in about half of the images, an occluding bar or disc over part of the body.

The files follow the official CUB-200-2011 layout under ``root`` (the folder named
``CUB_200_2011`` in the real dataset)::

    images.txt              <image_id> <class folder>/<file>.png
    image_class_labels.txt  <image_id> <class_id>            (1-based)
    classes.txt             <class_id> <NNN.name>
    bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (the whole object, occluded parts included)
    train_test_split.txt    <image_id> <is_training_image>   (1 for the first half of the classes)
    images/<NNN.name>/<name>_<NNNN>.png

Metric learning splits by class (train = first half of the class ids, test = the second half);
``train_test_split.txt`` holds that same split, not CUB's per-image one. ``ToyRetrievalDataset``
(mmkd/datasets/retrieval.py) reads the folder.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log

FORMAT_VERSION = 2
MARKER = '.toy_retrieval_complete.json'

SHAPES = ('disc', 'square', 'diamond', 'triangle', 'hexagon', 'star', 'cross', 'drop')
PATTERNS = ('stripes', 'checks', 'spots', 'rings', 'halves', 'rim')
# BGR, as cv2 writes them
COLOURS = {
    'red': (40, 40, 210),
    'orange': (30, 140, 240),
    'yellow': (40, 220, 230),
    'green': (60, 170, 50),
    'teal': (150, 150, 20),
    'blue': (200, 80, 30),
    'purple': (150, 40, 130),
    'pink': (180, 130, 240),
    'white': (235, 235, 235),
    'black': (30, 30, 30),
    'brown': (30, 70, 120),
    'grey': (128, 128, 128),
}
COLOUR_NAMES = tuple(COLOURS)
MARKS = ('none', 'head', 'tail', 'side')
# where a mark sits on the body, in object coordinates
MARK_POSITIONS = {'head': (0.0, -0.55), 'tail': (0.0, 0.55), 'side': (0.5, 0.0)}
# the longest radius of any body shape divided by its size (the aspect ratio only shrinks it)
MAX_RADIUS = 1.2


def _radius(shape: str, phi: np.ndarray) -> np.ndarray:
    """Boundary of a star-shaped body in polar form: the radius at angle ``phi``, about 1."""
    if shape == 'disc':
        return np.ones_like(phi)
    if shape == 'square':
        return 0.84 / np.maximum(np.abs(np.cos(phi)), np.abs(np.sin(phi)))
    if shape == 'diamond':
        return 1.0 / (np.abs(np.cos(phi)) + np.abs(np.sin(phi)))
    if shape in ('triangle', 'hexagon'):
        n = 3 if shape == 'triangle' else 6
        sector = 2 * np.pi / n
        return np.cos(np.pi / n) / np.cos(np.mod(phi + np.pi / 2, sector) - np.pi / n) * (1.15 if n == 3 else 1.0)
    if shape == 'star':
        return 0.72 + 0.28 * np.cos(5 * (phi + np.pi / 2))
    if shape == 'cross':
        c, s = np.abs(np.cos(phi)), np.abs(np.sin(phi))
        # an arm of half-width 0.35: the boundary is where the shorter coordinate reaches it
        return np.minimum(1.0 / np.maximum(c, s), 0.35 / np.maximum(np.minimum(c, s), 1e-6))
    # drop: round at one end, pointed at the other
    return 0.65 + 0.35 * np.sin(phi)


def _pattern(pattern: str, u: np.ndarray, v: np.ndarray, freq: float, theta: float) -> np.ndarray:
    """Which of the two body colours each point shows (0 or 1), in object coordinates ``u, v``."""
    a = u * np.cos(theta) + v * np.sin(theta)
    b = -u * np.sin(theta) + v * np.cos(theta)
    if pattern == 'stripes':
        return (np.sin(np.pi * freq * a) > 0).astype(np.float32)
    if pattern == 'checks':
        return ((np.sin(np.pi * freq * a) > 0) ^ (np.sin(np.pi * freq * b) > 0)).astype(np.float32)
    if pattern == 'spots':
        fa, fb = np.mod(a * freq / 2, 1) - 0.5, np.mod(b * freq / 2, 1) - 0.5
        return (fa**2 + fb**2 < 0.09).astype(np.float32)
    if pattern == 'rings':
        return (np.sin(np.pi * freq * np.sqrt(u**2 + v**2)) > 0).astype(np.float32)
    if pattern == 'halves':
        return (a > 0).astype(np.float32)
    return np.zeros_like(u)  # rim: drawn from the body's boundary by the caller


def _species(num_classes: int, seed: int) -> List[dict]:
    """Draw ``num_classes`` distinct species from ``seed``: each a dict of its defining parameters."""
    rng = np.random.default_rng([seed, 0])
    species, seen = [], set()
    while len(species) < num_classes:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        c1, c2, c3 = (COLOUR_NAMES[int(i)] for i in rng.choice(len(COLOUR_NAMES), 3, replace=False))
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        mark = MARKS[int(rng.integers(len(MARKS)))]
        aspect = float(rng.choice([0.6, 0.8, 1.0]))
        key = (shape, c1, c2, pattern, mark, aspect)
        freq, theta = float(rng.uniform(1.5, 4.0)), float(rng.uniform(0, np.pi))
        if key in seen:
            continue
        seen.add(key)
        name = f'{c1}_{c2}_{pattern}_{shape}'
        species.append(
            dict(
                name=name,
                shape=shape,
                colours=(c1, c2),
                mark_colour=c3,
                pattern=pattern,
                mark=mark,
                aspect=aspect,
                freq=freq,
                theta=theta))
    # names stay unique when two species differ only in mark or aspect
    counts: Dict[str, int] = {}
    for sp in species:
        counts[sp['name']] = counts.get(sp['name'], 0) + 1
        if counts[sp['name']] > 1:
            sp['name'] += f'_{counts[sp["name"]]}'
    return species


def _body(rng: np.random.Generator, grid: Tuple[np.ndarray, np.ndarray], sp: dict, centre: Tuple[float, float],
          size: float, angle: float, jitter: float) -> Tuple[np.ndarray, np.ndarray]:
    """Render one body of species ``sp`` at the pixel centres ``grid`` (y, x), each of shape (h, w).

    Returns:
        tuple: coverage (h, w) float32 in {0, 1} and colour (h, w, 3) float32.
    """
    yy, xx = grid
    dx, dy = (xx - centre[0]) / size, (yy - centre[1]) / size
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    # the aspect ratio squeezes the body across its axis
    u = u / sp['aspect']
    rho, phi = np.sqrt(u**2 + v**2), np.arctan2(v, u)
    bound = _radius(sp['shape'], phi)
    mask = (rho <= bound).astype(np.float32)
    if sp['pattern'] == 'rim':
        p = (rho > bound * 0.7).astype(np.float32)
    else:
        p = _pattern(sp['pattern'], u, v, sp['freq'], sp['theta'])
    c1, c2 = (np.array(COLOURS[n], np.float32) + rng.normal(0, jitter, 3) for n in sp['colours'])
    colour = c1 * (1 - p)[..., None] + c2 * p[..., None]
    if sp['mark'] != 'none':
        mu, mv = MARK_POSITIONS[sp['mark']]
        spot = ((u - mu)**2 + (v - mv)**2 < 0.2**2) & (mask > 0)
        colour[spot] = np.array(COLOURS[sp['mark_colour']], np.float32) + rng.normal(0, jitter, 3)
    return mask, colour


def _random_species(rng: np.random.Generator) -> dict:
    """A throw-away species for a background distractor."""
    c1, c2, c3 = (COLOUR_NAMES[int(i)] for i in rng.choice(len(COLOUR_NAMES), 3, replace=False))
    return dict(
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        colours=(c1, c2),
        mark_colour=c3,
        pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        mark=MARKS[int(rng.integers(len(MARKS)))],
        aspect=float(rng.uniform(0.6, 1.0)),
        freq=float(rng.uniform(1.5, 4.0)),
        theta=float(rng.uniform(0, np.pi)))


def _paste(img: np.ndarray, grid: Tuple[np.ndarray, np.ndarray], rng: np.random.Generator, sp: dict,
           centre: Tuple[float, float], size: float, jitter: float) -> np.ndarray:
    """Paint a body of species ``sp`` with a random rotation into ``img`` (H, W, 3) float32, in place.

    Only the window that can hold the body is rendered, which keeps the generation fast.

    Returns:
        np.ndarray: the body's coverage (H, W) float32 in {0, 1}.
    """
    h, w = img.shape[:2]
    reach = size * MAX_RADIUS + 1
    x0, x1 = max(0, int(centre[0] - reach)), min(w, int(np.ceil(centre[0] + reach)))
    y0, y1 = max(0, int(centre[1] - reach)), min(h, int(np.ceil(centre[1] + reach)))
    window = (grid[0][y0:y1, x0:x1], grid[1][y0:y1, x0:x1])
    mask, colour = _body(rng, window, sp, centre, size, rng.uniform(0, 2 * np.pi), jitter)
    m = mask[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - m) + colour * m
    full = np.zeros((h, w), np.float32)
    full[y0:y1, x0:x1] = mask
    return full


def _render(rng: np.random.Generator, sp: dict, image_size: int) -> Tuple[np.ndarray, List[int]]:
    """One instance of species ``sp``.

    Returns:
        tuple: the BGR uint8 image (image_size, image_size, 3) and the object's box [x, y, w, h] in pixels.
    """
    grid = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    yy, xx = grid
    # background: a base colour, smooth shading and blotches
    base = rng.uniform(40, 210, 3).astype(np.float32)
    img = np.empty((image_size, image_size, 3), np.float32)
    img[:] = base
    periods = image_size * rng.uniform(0.1, 0.4, 2)
    wave = np.sin(xx / periods[0] + rng.uniform(0, 6)) * np.cos(yy / periods[1])
    img += (rng.uniform(15, 40) * wave)[..., None] * rng.uniform(0.5, 1.0, 3)
    # distractors: smaller bodies of the same families, so colour and shape alone do not identify the class
    for _ in range(int(rng.integers(1, 4))):
        d_size = image_size * rng.uniform(0.08, 0.16)
        _paste(img, grid, rng, _random_species(rng), tuple(rng.uniform(0, image_size, 2)), d_size, 20)
    # the object: its half-extent is at most size * MAX_RADIUS, kept inside the image
    frac = rng.uniform(0.5, 0.8)
    size = image_size * frac / 2 / MAX_RADIUS
    margin = size * MAX_RADIUS
    centre = tuple(rng.uniform(margin, image_size - margin, 2))
    mask = _paste(img, grid, rng, sp, centre, size, 18)
    if rng.random() < 0.5:
        # an occluder over part of the body: a bar or a disc of a random colour
        occ = np.zeros((image_size, image_size), np.uint8)
        ox, oy = (int(c + rng.uniform(-margin, margin)) for c in centre)
        if rng.random() < 0.5:
            half = int(size * rng.uniform(0.15, 0.3))
            ang = rng.uniform(0, np.pi)
            dx, dy = int(image_size * np.cos(ang)), int(image_size * np.sin(ang))
            cv2.line(occ, (ox - dx, oy - dy), (ox + dx, oy + dy), 1, 2 * half)
        else:
            cv2.circle(occ, (ox, oy), int(size * rng.uniform(0.3, 0.6)), 1, -1)
        occ_f = occ.astype(np.float32)[..., None]
        img = img * (1 - occ_f) + rng.uniform(0, 255, 3).astype(np.float32) * occ_f
    # uneven lighting: a global gain and a linear ramp in a random direction
    ang = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - image_size / 2) * np.cos(ang) + (yy - image_size / 2) * np.sin(ang)) / image_size
    img *= (rng.uniform(0.75, 1.2) + rng.uniform(0, 0.5) * ramp)[..., None]
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return img, [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]


def _params(num_classes: int, images_per_class: int, image_size: int, seed: int) -> dict:
    """What the marker records: everything the bytes written depend on."""
    return dict(
        format_version=FORMAT_VERSION,
        num_classes=num_classes,
        images_per_class=images_per_class,
        image_size=image_size,
        seed=seed)


def _read_marker(root: str) -> Optional[dict]:
    """The parameters recorded in ``root``'s marker, or None when there is no marker."""
    path = osp.join(root, MARKER)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def generate_toy_retrieval(root: str,
                           num_classes: int = 100,
                           images_per_class: int = 32,
                           image_size: int = 64,
                           seed: int = 0) -> str:
    """Write the toy retrieval dataset in the CUB-200-2011 layout under ``root``.

    Writing is atomic (everything goes to a temporary sibling folder renamed to ``root`` at the end,
    the marker file ``.toy_retrieval_complete.json`` written last, holding the parameters), so a
    half-written ``root`` never appears; a symlinked ``root`` is written at its target. A ``root``
    whose marker holds the same parameters is reused as it is; one with different parameters, or a
    non-empty ``root`` without a marker, raises instead of being overwritten (delete it or pick
    another ``root``). The bytes written depend only on the parameters (and the cv2 PNG encoder);
    image ``i`` of class ``c`` depends only on ``seed``, ``c``, ``i`` and ``image_size``.

    Args:
        root (str): the dataset folder (the one holding ``images.txt``).
        num_classes (int): number of species; train = the first half by class id, test = the rest.
        images_per_class (int): images of each species.
        image_size (int): side of the square images in pixels.
        seed (int): the seed of the species and of every image.

    Returns:
        str: ``root``.
    """
    if num_classes < 2 or images_per_class < 2 or image_size < 16:
        raise ValueError('generate_toy_retrieval needs num_classes >= 2, images_per_class >= 2 and '
                         f'image_size >= 16, got {num_classes}, {images_per_class}, {image_size}')
    params = _params(num_classes, images_per_class, image_size, seed)
    found = _read_marker(root)
    if found is not None:
        if found == params:
            return root
        raise ValueError(f'{osp.join(root, MARKER)} records toy retrieval data made with {found}, '
                         f'but {params} was asked: delete {root} or choose another root')
    if osp.isdir(root) and os.listdir(root):
        raise FileExistsError(f'{root} is not empty and has no {MARKER}: not toy retrieval data, '
                              'or an interrupted copy; delete it or choose another root')
    # a symlinked root (e.g. data/ -> a scratch disk) gets the data at its target, the link kept
    dest = osp.realpath(root)
    parent = osp.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.toy_retrieval.', dir=parent)
    start = time.time()
    print_log(
        f'generating toy retrieval data ({num_classes} classes x {images_per_class} images, '
        f'{image_size}px) in {root}',
        logger='current')
    try:
        species = _species(num_classes, seed)
        digits = max(3, len(str(num_classes)))
        images, labels, boxes, split = [], [], [], []
        for c, sp in enumerate(species):
            folder = f'{c + 1:0{digits}d}.{sp["name"]}'
            os.makedirs(osp.join(tmp, 'images', folder))
            for i in range(images_per_class):
                img, box = _render(np.random.default_rng([seed, 1, c, i]), sp, image_size)
                rel = f'{folder}/{sp["name"]}_{i + 1:04d}.png'
                cv2.imwrite(osp.join(tmp, 'images', rel), img)
                image_id = len(images) + 1
                images.append(f'{image_id} {rel}')
                labels.append(f'{image_id} {c + 1}')
                boxes.append(f'{image_id} ' + ' '.join(f'{float(v):.1f}' for v in box))
                split.append(f'{image_id} {int(c < num_classes // 2)}')
            if (c + 1) % max(1, num_classes // 5) == 0 or c + 1 == num_classes:
                print_log(f'toy retrieval: {c + 1}/{num_classes} classes, {time.time() - start:.1f}s', logger='current')
        classes = [f'{c + 1} {c + 1:0{digits}d}.{sp["name"]}' for c, sp in enumerate(species)]
        for name, lines in (('images.txt', images), ('image_class_labels.txt', labels), ('classes.txt', classes),
                            ('bounding_boxes.txt', boxes), ('train_test_split.txt', split)):
            with open(osp.join(tmp, name), 'w') as f:
                f.write('\n'.join(lines) + '\n')
        with open(osp.join(tmp, MARKER), 'w') as f:
            json.dump(params, f)
        # mkdtemp makes the folder private to its owner; the data is meant to be shared like any other
        os.chmod(tmp, 0o755)
        if osp.isdir(dest) and not os.listdir(dest):
            os.rmdir(dest)
        try:
            os.rename(tmp, dest)
        except OSError:
            # another process may have finished the same data first
            if _read_marker(root) != params:
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
    return root
