"""Side-by-side pictures of several detectors' predictions on the same images, as in appendix C of de Rijk et al.,
"Structural Knowledge Distillation for Object Detection" (NeurIPS 2022): baseline / distilled / teacher, with
correct predictions in yellow, wrong ones in red and the ground truth in white.

A prediction (at or above a score threshold) is *correct* when it overlaps a not yet matched ground-truth box of its
class with IoU >= ``iou_thr``; predictions are matched greedily in descending score order, each ground-truth box at
most once, the best-overlapping box first: the matching of pycocotools' ``COCOeval.evaluateImg`` at one IoU
threshold. Every other prediction is *wrong*, with the reason kept (``duplicate``, ``class``, ``localisation``,
``background``). Crowd regions (``iscrowd``) never make a prediction correct and are never missed; a prediction that
matches no regular box but lies in a crowd region of its class (intersection over the prediction's area >=
``iou_thr``, COCO's crowd rule) is *ignored*, as COCO neither rewards nor penalises it, and drawn in grey.

Detections are COCO result dicts (``image_id``, ``category_id``, ``bbox`` as x, y, w, h in original pixels,
``score``), ground truth COCO annotation dicts, images (H, W, 3) uint8 RGB arrays.
"""
import functools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmkd.utils.safe_save import atomic_write

# RGB colours, exact so that a picture can be read back by colour
CORRECT_COLOUR = (255, 255, 0)
WRONG_COLOUR = (255, 0, 0)
GT_COLOUR = (255, 255, 255)
IGNORED_COLOUR = (160, 160, 160)
TEXT_COLOUR = (0, 0, 0)
TITLE_BACKGROUND = (255, 255, 255)
CANVAS_COLOUR = (48, 48, 48)  # the gaps between panels and the padding of grid rows
STATUS_COLOURS = dict(correct=CORRECT_COLOUR, wrong=WRONG_COLOUR, ignored=IGNORED_COLOUR)

DEFAULT_SCORE_THR = 0.3
DEFAULT_IOU_THR = 0.5
# below this IoU with a box of its class a wrong prediction is a background error, not a poor localisation (the
# background threshold of Hoiem et al. and TIDE)
LOCALISATION_IOU = 0.1
GAP = 8  # pixels between panels and between the rows of a grid
DEFAULT_PANEL_SIZE = 512


class MatchedDetection(NamedTuple):
    """A shown prediction and what the matching made of it.

    Attributes:
        detection: the COCO result dict.
        status: ``correct``, ``wrong`` or ``ignored`` (in a crowd region).
        error: why a wrong prediction is wrong (``duplicate``, ``class``, ``localisation``, ``background``); None
            otherwise.
        gt_index: the index (in the image's annotations) of the matched ground truth, the crowd region of an ignored
            prediction, or the box that explains the error; None for a background error.
    """
    detection: dict
    status: str
    error: Optional[str]
    gt_index: Optional[int]


class ImageMatch(NamedTuple):
    """The matching of one model's predictions on one image.

    Attributes:
        detections: the shown predictions (score >= the threshold) in descending score order.
        annotations: the image's ground truth (COCO annotation dicts, crowd regions included).
        matched_by: for each annotation, the index in ``detections`` of the prediction that matched it, else None.
    """
    detections: List[MatchedDetection]
    annotations: List[dict]
    matched_by: List[Optional[int]]

    def count(self, status: str) -> int:
        """Shown predictions with ``status`` (``correct``, ``wrong``, ``ignored``)."""
        return sum(d.status == status for d in self.detections)

    @property
    def missed(self) -> int:
        """Regular (non-crowd) ground-truth boxes that no shown prediction matched."""
        return sum(m is None and not a.get('iscrowd') for a, m in zip(self.annotations, self.matched_by))

    def counts(self) -> Dict[str, int]:
        """Numbers of correct, wrong, ignored predictions and missed objects, and wrong predictions by error."""
        counts = {k: self.count(k) for k in ('correct', 'wrong', 'ignored')}
        counts['missed'] = self.missed
        for error in ('duplicate', 'class', 'localisation', 'background'):
            counts[error] = sum(d.error == error for d in self.detections)
        return counts


def box_iou(boxes: np.ndarray, others: np.ndarray, crowd: Optional[np.ndarray] = None) -> np.ndarray:
    """Pairwise IoU of COCO boxes, as pycocotools' ``maskUtils.iou`` computes it.

    Args:
        boxes: (N, 4) boxes x, y, w, h.
        others: (M, 4) boxes x, y, w, h.
        crowd: (M, ) bool; for a crowd box the overlap is the intersection over the area of the box of ``boxes``.

    Returns:
        np.ndarray: (N, M) overlaps in [0, 1].
    """
    a = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = np.asarray(others, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    bottom = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] * a[:, 3])[:, None]
    union = area_a + (b[:, 2] * b[:, 3])[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], np.broadcast_to(area_a, union.shape), union)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(detections: Sequence[dict],
                     annotations: Sequence[dict],
                     score_thr: float = DEFAULT_SCORE_THR,
                     iou_thr: float = DEFAULT_IOU_THR) -> ImageMatch:
    """Match one image's predictions to its ground truth (see the module's docstring).

    Args:
        detections: COCO result dicts of the image (any order).
        annotations: COCO annotation dicts of the image (``bbox``, ``category_id``, optional ``iscrowd``).
        score_thr: predictions below this score are not shown and not matched.
        iou_thr: the IoU a correct prediction needs with its ground-truth box.

    Returns:
        ImageMatch: the shown predictions with their status, and which prediction matched each annotation.
    """
    shown = sorted((d for d in detections if d['score'] >= score_thr), key=lambda d: -d['score'])  # stable, as COCO
    annotations = list(annotations)
    crowd = np.array([bool(a.get('iscrowd')) for a in annotations], bool)
    gt_classes = np.array([a['category_id'] for a in annotations])
    overlaps = box_iou([d['bbox'] for d in shown], [a['bbox'] for a in annotations], crowd)
    matched_by: List[Optional[int]] = [None] * len(annotations)
    result = []
    for index, det in enumerate(shown):
        same = gt_classes == det['category_id']
        ious = overlaps[index]
        # COCO keeps the last of equally good boxes (it replaces on >=), so ties resolve the same way here
        best, best_iou = None, min(iou_thr, 1 - 1e-10)
        for g in np.flatnonzero(same & ~crowd):
            if matched_by[g] is None and ious[g] >= best_iou:
                best, best_iou = int(g), ious[g]
        if best is not None:
            matched_by[best] = index
            result.append(MatchedDetection(det, 'correct', None, best))
            continue
        in_crowd = np.flatnonzero(same & crowd & (ious >= iou_thr))
        if in_crowd.size:
            result.append(MatchedDetection(det, 'ignored', None, int(in_crowd[np.argmax(ious[in_crowd])])))
            continue
        result.append(MatchedDetection(det, 'wrong', *_error(ious, same & ~crowd, ~same & ~crowd, iou_thr)))
    return ImageMatch(result, annotations, matched_by)


def _error(ious: np.ndarray, same: np.ndarray, other: np.ndarray, iou_thr: float) -> Tuple[str, Optional[int]]:
    """Why an unmatched prediction is wrong, and the ground-truth box that shows it (the best-overlapping one)."""
    for error, candidates in (('duplicate', same & (ious >= iou_thr)), ('class', other & (ious >= iou_thr)),
                              ('localisation', same & (ious >= LOCALISATION_IOU))):
        found = np.flatnonzero(candidates)
        if found.size:
            return error, int(found[np.argmax(ious[found])])
    return 'background', None


def group_by_image(items: Sequence[dict]) -> Dict[int, List[dict]]:
    """COCO result or annotation dicts by their ``image_id``."""
    groups: Dict[int, List[dict]] = {}
    for item in items:
        groups.setdefault(item['image_id'], []).append(item)
    return groups


# ---------------------------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) of ``size`` pixels, else PIL's own scalable font."""
    try:
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont('DejaVu Sans', fallback_to_default=True), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default(size)


def line_widths(long_side: int) -> Tuple[int, int]:
    """(prediction, ground truth) box line widths in pixels for a panel whose longer side is ``long_side``: 2 and 1
    on a 512 px panel, 3 and 2 on an 800x1333 one; the ground truth thinner so that predictions stay visible."""
    width = max(2, round(long_side / 450))
    return width, max(1, width - 1)


def font_sizes(long_side: int) -> Tuple[int, int]:
    """(label, title) font sizes in pixels for a panel whose longer side is ``long_side`` (10 / 15 px on a 512 px
    panel, 22 / 32 px on an 800x1333 one)."""
    return int(np.clip(round(long_side * 0.018), 10, 22)), int(np.clip(round(long_side * 0.03), 14, 32))


def title_height(long_side: int) -> int:
    """Height in pixels of the title strip above a panel."""
    return round(font_sizes(long_side)[1] * 1.7)


def display_scale(height: int, width: int, panel_size: int, exact: bool = False) -> float:
    """The factor an image is drawn at: small images are enlarged so that their longer side is ``panel_size``
    (labels stay readable on a 256x256 toy image), larger ones keep their size unless ``exact``."""
    scale = panel_size / max(height, width)
    return scale if exact else max(1.0, scale)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> Tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _box_corners(bbox: Sequence[float], scale: float, height: int, width: int) -> Tuple[int, int, int, int]:
    """The inclusive pixel corners of a COCO box on a panel of ``height`` x ``width``, clipped to it."""
    x, y, w, h = (float(v) * scale for v in bbox)
    x0, y0 = int(np.clip(round(x), 0, width - 1)), int(np.clip(round(y), 0, height - 1))
    x1, y1 = int(np.clip(round(x + w) - 1, x0, width - 1)), int(np.clip(round(y + h) - 1, y0, height - 1))
    return x0, y0, x1, y1


def draw_panel(image: np.ndarray,
               match: Optional[ImageMatch],
               class_names: Dict[int, str],
               scale: float,
               annotations: Optional[Sequence[dict]] = None) -> np.ndarray:
    """Draw the ground truth (white, thinner, first) and the shown predictions (yellow / red / grey, labelled with
    class and score, highest score on top) on ``image`` enlarged by ``scale``.

    Args:
        image: (H, W, 3) uint8 RGB.
        match: the model's matching on this image; None for a ground-truth-only panel.
        class_names: category id -> name.
        scale: the drawing scale (nearest-neighbour enlargement, area-averaged reduction).
        annotations: the ground truth to draw when ``match`` is None.

    Returns:
        np.ndarray: (round(H * scale), round(W * scale), 3) uint8 RGB.
    """
    height, width = (round(s * scale) for s in image.shape[:2])
    interpolation = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    canvas = Image.fromarray(np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interpolation)))
    draw = ImageDraw.Draw(canvas)
    pred_width, gt_width = line_widths(max(height, width))
    label_font = _font(font_sizes(max(height, width))[0])
    for ann in (match.annotations if match is not None else annotations or ()):
        draw.rectangle(_box_corners(ann['bbox'], scale, height, width), outline=GT_COLOUR, width=gt_width)
    if match is None:
        return np.asarray(canvas)
    ordered = match.detections[::-1]  # ascending score: the most confident box is drawn last, on top
    for item in ordered:
        corners = _box_corners(item.detection['bbox'], scale, height, width)
        draw.rectangle(corners, outline=STATUS_COLOURS[item.status], width=pred_width)
    for item in ordered:  # labels after all boxes, so that no box line crosses a label
        det = item.detection
        text = f"{class_names.get(det['category_id'], det['category_id'])} {det['score']:.2f}"
        x0, y0, _, _ = _box_corners(det['bbox'], scale, height, width)
        text_w, text_h = _text_size(draw, text, label_font)
        pad = max(1, text_h // 5)
        box_h = text_h + 2 * pad
        top = y0 - box_h if y0 - box_h >= 0 else y0  # above the box, else inside its top edge
        left = min(x0, max(0, width - text_w - 2 * pad))
        draw.rectangle((left, top, left + text_w + 2 * pad - 1, top + box_h - 1), fill=STATUS_COLOURS[item.status])
        text_left, text_top, _, _ = draw.textbbox((0, 0), text, font=label_font)
        draw.text((left + pad - text_left, top + pad - text_top), text, fill=TEXT_COLOUR, font=label_font)
    return np.asarray(canvas)


def titled(panel: np.ndarray, title: str, strip_height: int, font_size: int) -> np.ndarray:
    """``panel`` below a white strip of ``strip_height`` pixels holding ``title`` (smaller font if it must fit)."""
    strip = Image.new('RGB', (panel.shape[1], strip_height), TITLE_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    size = font_size
    while size > 6 and _text_size(draw, title, _font(size))[0] > panel.shape[1] - 8:
        size -= 1
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
    draw.text((4 - left, (strip_height - (bottom - top)) // 2 - top), title, fill=TEXT_COLOUR, font=font)
    return np.concatenate([np.asarray(strip), panel], axis=0)


def side_by_side(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Panels of one height left to right, ``gap`` pixels of the canvas colour between them."""
    height = panels[0].shape[0]
    spacer = np.empty((height, gap, 3), np.uint8)
    spacer[:] = CANVAS_COLOUR
    parts = []
    for index, panel in enumerate(panels):
        parts += [spacer] * (index > 0) + [panel]
    return np.concatenate(parts, axis=1)


class PanelBox(NamedTuple):
    """Where an image's drawing lies in a composed picture: its top-left pixel and the scale it is drawn at."""
    left: int
    top: int
    scale: float


def compare_row(image: np.ndarray,
                matches: Sequence[ImageMatch],
                titles: Sequence[str],
                class_names: Dict[int, str],
                scale: float,
                gt_title: Optional[str] = None) -> Tuple[np.ndarray, List[PanelBox]]:
    """One image drawn once per model, side by side, each under its title; first the ground truth alone when
    ``gt_title`` is given.

    Args:
        image: (H, W, 3) uint8 RGB.
        matches: one :class:`ImageMatch` per model, in column order (all of the same annotations).
        titles: one title per model.
        class_names: category id -> name.
        scale: the drawing scale.
        gt_title: the title of a ground-truth-only first panel, or None for none.

    Returns:
        tuple: the (title + H * scale, n * W * scale + (n - 1) * GAP, 3) uint8 RGB picture and, per panel, where its
        image lies in it.
    """
    panels = [draw_panel(image, m, class_names, scale) for m in matches]
    titles = list(titles)
    if gt_title is not None:
        panels.insert(0, draw_panel(image, None, class_names, scale, matches[0].annotations if matches else ()))
        titles.insert(0, gt_title)
    long_side = max(panels[0].shape[:2])
    strip = title_height(long_side)
    row = side_by_side([titled(p, t, strip, font_sizes(long_side)[1]) for p, t in zip(panels, titles)])
    width = panels[0].shape[1]
    return row, [PanelBox(i * (width + GAP), strip, scale) for i in range(len(panels))]


def stack_rows(rows: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Rows of pictures top to bottom, left-aligned, narrower ones padded with the canvas colour."""
    width = max(r.shape[1] for r in rows)
    parts = []
    for index, row in enumerate(rows):
        padded = np.empty((row.shape[0] + (gap if index else 0), width, 3), np.uint8)
        padded[:] = CANVAS_COLOUR
        padded[padded.shape[0] - row.shape[0]:, :row.shape[1]] = row
        parts.append(padded)
    return np.concatenate(parts, axis=0)


def write_png(picture: np.ndarray, path: str) -> Tuple[int, int]:
    """Write an RGB picture as a PNG (atomically); returns its (width, height)."""
    ok, data = cv2.imencode('.png', np.ascontiguousarray(picture[..., ::-1]))
    if not ok:
        raise RuntimeError(f'could not encode the {picture.shape} picture for {path} as PNG')
    atomic_write(data.tobytes(), path)
    return picture.shape[1], picture.shape[0]


# ---------------------------------------------------------------------------------------------- choosing images
def choose_named(images: Sequence[dict], wanted: Sequence[str]) -> List[dict]:
    """The COCO image dicts named in ``wanted``: by id (a number) or by file name (the ``file_name``, or its last
    part), in the order given.

    Raises:
        ValueError: a name that fits no image, or fits several, naming it and some of the images there are.
    """
    by_id = {str(img['id']): img for img in images}
    by_name: Dict[str, List[dict]] = {}
    for img in images:
        for key in {img['file_name'], img['file_name'].replace('\\', '/').rsplit('/', 1)[-1]}:
            by_name.setdefault(key, []).append(img)
    chosen = []
    for token in wanted:
        if token in by_id:
            chosen.append(by_id[token])
            continue
        found = by_name.get(token, [])
        if len(found) != 1:
            examples = ', '.join(f"{img['id']} ({img['file_name']})" for img in images[:5])
            what = 'several images' if found else 'no image'
            raise ValueError(f'--images {token!r}: {what} of the test set with that id or file name (it has '
                             f'{len(images)} images, e.g. {examples})')
        chosen.append(found[0])
    return list({img['id']: img for img in chosen}.values())


def choose_random(images: Sequence[dict], count: int, seed: int) -> List[dict]:
    """``count`` images drawn without replacement with ``seed`` (the same for every model and every run), in the
    order of their ids."""
    ordered = sorted(images, key=lambda img: img['id'])
    picks = np.random.default_rng(seed).choice(len(ordered), size=min(count, len(ordered)), replace=False)
    return [ordered[i] for i in sorted(picks)]


def rank_by_gain(first: Dict[int, ImageMatch],
                 second: Dict[int, ImageMatch],
                 count: int,
                 largest: bool = True) -> List[int]:
    """The ``count`` image ids where ``second`` has the most (``largest``) or the fewest more correct predictions
    than ``first``; ties go to the image where it has fewer (resp. more) wrong ones, then to the lower id.

    Returns:
        list of int: image ids, the most telling first.
    """
    sign = 1 if largest else -1

    def key(image_id: int) -> tuple:
        a, b = first[image_id], second[image_id]
        gain = b.count('correct') - a.count('correct')
        fewer_wrong = a.count('wrong') - b.count('wrong')
        return -sign * gain, -sign * fewer_wrong, image_id

    return sorted(first, key=key)[:count]
