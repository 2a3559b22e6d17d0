"""The COCO precision-recall error breakdown (C75, C50, Loc, Sim, Oth, BG, FN) of a detector's results.

Hoiem, Chodpathumwan, Dai, "Diagnosing Error in Object Detectors" (ECCV 2012), as the COCO API's ``analyze()``
computes it and as the appendix figures of de Rijk et al., "Structural Knowledge Distillation for Object Detection"
(NeurIPS 2022) show it. Each setting is more permissive than the one before, and its area under the PR curve is
the AP a detector would have without the errors that setting forgives:

- ``C75`` / ``C50``: AP at box IoU .75 / .50;
- ``Loc``: AP at IoU .10 (localisation errors and duplicates forgiven);
- ``Sim``: ``Loc`` with the false positives on objects of another class of the same supercategory removed;
- ``Oth``: ``Loc`` with every class confusion removed;
- ``BG``: also every background false positive removed (precision 1 up to the recall that ``Oth`` reaches);
- ``FN``: also every missed object found (precision 1 everywhere, AP 1).

The numbers come from MMDetection's own analysis script (``tools/analysis_tools/coco_error_analysis.py``, shipped
inside the mmdet package): its ``analyze_results`` runs unchanged, wrapped because on this stack it cannot be used
as a library (see :func:`load_coco_error_analysis` and :func:`pr_breakdown`).
"""
import contextlib
import copy
import importlib.util
import io
import json
import os.path as osp
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

SETTINGS = ('C75', 'C50', 'Loc', 'Sim', 'Oth', 'BG', 'FN')
AREAS = ('all', 'small', 'medium', 'large')
# pycocotools' default area ranges (COCOeval.params.areaRng), which mmdet's script keeps when given no ``areas``
AREA_RANGES = ((0, 1e5**2), (0, 32**2), (32**2, 96**2), (96**2, 1e5**2))
# mmdet's makeplot colours (from the COCO API's analyze()): one per setting, C75 first
SETTING_COLORS = ((1.0, 1.0, 1.0), (0.31, 0.51, 0.74), (0.75, 0.31, 0.30), (0.36, 0.90, 0.38), (0.50, 0.39, 0.64),
                  (1.0, 0.6, 0.0), (0.85, 0.85, 0.85))
# the bars of the comparison figure: the same, but C75 dark grey (white bars would not show a gain)
BAR_COLORS = ((0.35, 0.35, 0.35), ) + SETTING_COLORS[1:]

_MODULE = None


def mmdet_script_path() -> str:
    """Where the installed mmdet keeps ``coco_error_analysis.py`` (``mmdet/.mim/tools/analysis_tools/``)."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools', 'coco_error_analysis.py')


class _SerialPool:
    """Stands in for ``multiprocessing.Pool`` inside mmdet's script: runs ``starmap`` in this process.

    mmdet's ``analyze_results`` sends its per-category function to ``Pool(processes=48)``; pickling a function of a
    module loaded from a file path (not importable by name) fails, and 48 forked copies of a process holding torch
    threads are neither needed nor safe.
    """

    def __init__(self, processes: Optional[int] = None):
        self.processes = processes

    def __enter__(self) -> '_SerialPool':
        return self

    def __exit__(self, *exc) -> None:
        return None

    def starmap(self, func, iterable) -> list:
        return [func(*args) for args in iterable]


def load_coco_error_analysis():
    """MMDetection's ``coco_error_analysis`` module, loaded from the installed mmdet package (once), with its
    process pool replaced by :class:`_SerialPool`.

    The script is not part of an importable package (it lives in ``mmdet/.mim/tools``), so it is loaded from its
    path under a private module name; the change of ``Pool`` applies to this private copy only.

    Raises:
        FileNotFoundError: the installed mmdet does not ship the script.
    """
    global _MODULE
    if _MODULE is None:
        path = mmdet_script_path()
        if not osp.isfile(path):
            raise FileNotFoundError(f'mmdet\'s error analysis script {path} is missing: the error breakdown runs '
                                    'its analyze_results (install mmdet 3.x from a wheel, which ships .mim/tools)')
        spec = importlib.util.spec_from_file_location('_mmkd_mmdet_coco_error_analysis', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.Pool = _SerialPool
        _MODULE = module
    return _MODULE


def check_results(coco_gt, detections: Sequence[dict], source: str = 'the detections') -> None:
    """Checks that every detection names an image and a category of ``coco_gt`` and has a box and a score.

    Raises:
        ValueError: naming ``source``, the first offending detection and how many there are.
    """
    image_ids, cat_ids = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for what, known, key in (('image id', image_ids, 'image_id'), ('category id', cat_ids, 'category_id')):
        bad = [d for d in detections if not isinstance(d, dict) or d.get(key) not in known]
        if bad:
            raise ValueError(f'{source}: {len(bad)} detection(s) with an unknown {what}, first {bad[0]!r}; the '
                             f'annotations have {what}s {sorted(known)[:10]}{" ..." if len(known) > 10 else ""}')
    for det in detections:
        problem = detection_problem(det)
        if problem:
            raise ValueError(f'{source}: {problem}')


def _number(value) -> bool:
    # bool is an int subclass, and NaN / inf compare unpredictably when detections are sorted by score
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def detection_problem(det) -> Optional[str]:
    """What makes ``det`` no valid COCO box result (``None`` when it is one): a finite number ``score`` and a
    ``bbox`` of 4 finite numbers x, y, w, h with w, h >= 0 (strings, NaN or negative sizes would otherwise give
    wrong numbers or a traceback inside pycocotools)."""
    box = det.get('bbox') if isinstance(det, dict) else None
    if not isinstance(det, dict) or not _number(det.get('score')) or not isinstance(box, (list, tuple)) \
            or len(box) != 4 or not all(_number(v) for v in box) or box[2] < 0 or box[3] < 0:
        return (f'a detection without a finite numeric "score" and a "bbox" of 4 finite numbers (x, y, w, h) with '
                f'w, h >= 0: {str(det)[:200]}')
    return None


def gt_dataset(coco_gt, supercategories: Optional[Mapping[str, str]] = None) -> dict:
    """The annotation dict of ``coco_gt`` with the categories' supercategories replaced by ``supercategories``
    (category name -> supercategory; categories not named keep theirs).

    Raises:
        KeyError: ``supercategories`` names a category the annotations do not have.
    """
    dataset = copy.deepcopy(coco_gt.dataset)
    if supercategories:
        names = {c['name'] for c in dataset['categories']}
        unknown = sorted(set(supercategories) - names)
        if unknown:
            raise KeyError(f'supercategories name categories {unknown} that the annotations do not have '
                           f'(they have {sorted(names)})')
        for cat in dataset['categories']:
            cat['supercategory'] = supercategories.get(cat['name'], cat.get('supercategory'))
    # mmdet's script pairs COCOeval's category index (ids sorted) with the file's category order
    dataset['categories'] = sorted(dataset['categories'], key=lambda c: c['id'])
    return dataset


def gt_counts(dataset: dict) -> np.ndarray:
    """Ground-truth objects per category and area range that COCOeval scores (not crowd, not ignored, area in
    range, bounds included), shape (K, 4), categories in id order, areas as :data:`AREAS`."""
    cat_index = {c['id']: k for k, c in enumerate(sorted(dataset['categories'], key=lambda c: c['id']))}
    counts = np.zeros((len(cat_index), len(AREA_RANGES)), dtype=np.int64)
    for ann in dataset['annotations']:
        if ann.get('iscrowd', 0) or ann.get('ignore', 0):
            continue
        for a, (lo, hi) in enumerate(AREA_RANGES):
            if lo <= ann['area'] <= hi:
                counts[cat_index[ann['category_id']], a] += 1
    return counts


def pr_breakdown(coco_gt, detections: Sequence[dict], supercategories: Optional[Mapping[str, str]] = None) -> dict:
    """The PR-curve error breakdown of ``detections`` against ``coco_gt``, by mmdet's ``analyze_results``.

    mmdet's function takes file paths, writes PNGs and returns nothing; it is run on a temporary annotation file
    (with ``supercategories`` applied) and the detections, with its ``makeplot`` replaced by a recorder of the
    precision array it is given for all classes. Averages over categories then count only the categories with
    ground truth of that size (as COCOeval's AP does): mmdet (like the COCO API's ``analyze()``) sets the -1
    "no object of this size" entries to 0 before averaging, which would lower a size's numbers by the share of
    categories without objects of that size, and then its C75 / C50 would not be COCO's AP75 / AP50 by size.

    Args:
        coco_gt: pycocotools ``COCO`` of the ground truth.
        detections: COCO result dicts (``image_id``, ``category_id``, ``bbox`` x, y, w, h, ``score``).
        supercategories: category name -> supercategory, overriding the annotation file's (``Sim`` forgives
            confusions within a supercategory).

    Returns:
        dict: ``ap`` {area: {setting: AP in [0, 1]}} (None for a size without ground truth), ``curves``
        {area: {setting: 101 precisions at recalls 0, .01, ..., 1}}, ``num_gt`` {area: objects},
        ``categories`` {area: categories with objects of that size}.
    """
    check_results(coco_gt, detections)
    dataset = gt_dataset(coco_gt, supercategories)
    counts = gt_counts(dataset)
    num_recalls = 101
    if detections:
        precision = _run_mmdet_analysis(dataset, detections)
    else:
        # loadRes cannot read an empty result list; without detections every setting but FN has precision 0
        precision = np.zeros((len(SETTINGS), num_recalls, counts.shape[0], len(AREAS)))
        precision[SETTINGS.index('FN')] = 1.0
    out = dict(ap={}, curves={}, num_gt={}, categories={})
    for a, area in enumerate(AREAS):
        present = counts[:, a] > 0
        out['num_gt'][area] = int(counts[:, a].sum())
        out['categories'][area] = int(present.sum())
        if not present.any():
            out['ap'][area] = {s: None for s in SETTINGS}
            out['curves'][area] = {s: None for s in SETTINGS}
            continue
        curves = precision[:, :, present, a].mean(axis=2)  # (settings, recalls)
        out['ap'][area] = {s: float(curves[i].mean()) for i, s in enumerate(SETTINGS)}
        out['curves'][area] = {s: [float(v) for v in curves[i]] for i, s in enumerate(SETTINGS)}
    return out


def _run_mmdet_analysis(dataset: dict, detections: Sequence[dict]) -> np.ndarray:
    """mmdet's ``analyze_results`` on ``dataset`` and ``detections``: its all-class precision array with the
    per-setting, -1-zeroed values, shape (7 settings, 101 recalls, K categories, 4 areas)."""
    module = load_coco_error_analysis()
    recorded = {}

    def record(rs, ps, out_dir, class_name, iou_type):
        if class_name == 'allclass':
            recorded['ps'] = np.array(ps, dtype=np.float64, copy=True)

    original = module.makeplot
    module.makeplot = record
    try:
        with tempfile.TemporaryDirectory(prefix='mmkd_error_breakdown.') as tmp:
            ann_file = osp.join(tmp, 'annotations.json')
            with open(ann_file, 'w') as f:
                json.dump(dataset, f)
            # loadRes adds keys to the dicts it gets: give it copies
            results = [dict(d, bbox=list(d['bbox'])) for d in detections]
            with contextlib.redirect_stdout(io.StringIO()):
                module.analyze_results(results, ann_file, ['bbox'], osp.join(tmp, 'plots'))
    finally:
        module.makeplot = original
    if 'ps' not in recorded:
        raise RuntimeError(f'mmdet\'s analyze_results ({mmdet_script_path()}) drew no all-class plot: this wrapper '
                           'reads the precision array from that call')
    return recorded['ps'][..., 0]  # the only maxDets (100)


def breakdown_table(results: Dict[str, dict]) -> str:
    """A Markdown table of the breakdowns of several models: a row per model and size, a column per setting; from
    the second model on, the change against the first (the baseline) in brackets."""
    names = list(results)
    lines = ['| model | size | ' + ' | '.join(SETTINGS) + ' |', '|---|---|' + '---:|' * len(SETTINGS)]
    base = results[names[0]]['ap']
    for area in AREAS:
        for name in names:
            cells = []
            for s in SETTINGS:
                value, ref = results[name]['ap'][area][s], base[area][s]
                if value is None:
                    cells.append('-')
                elif name == names[0] or ref is None:
                    cells.append(f'{value:.3f}')
                else:
                    cells.append(f'{value:.3f} ({value - ref:+.3f})')
            lines.append(f'| {name} | {area} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_pr_panels(result: dict, title: str, path: str) -> None:
    """One model's PR curves per setting in mmdet's ``makeplot`` style (stacked areas, AP in the legend), a panel
    per size, to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    recalls = np.linspace(0, 1, 101)
    fig, axes = plt.subplots(1, len(AREAS), figsize=(4.2 * len(AREAS), 4.2), squeeze=False)
    for ax, area in zip(axes[0], AREAS):
        curves = result['curves'][area]
        if curves[SETTINGS[0]] is None:
            ax.text(0.5, 0.5, f'no {area} objects', ha='center', va='center')
        else:
            lower = np.zeros(len(recalls))
            for s, color in zip(SETTINGS, SETTING_COLORS):
                upper = np.asarray(curves[s])
                ax.plot(recalls, upper, color='black', linewidth=0.5)
                ax.fill_between(recalls, lower, upper, color=color, label=f'[{result["ap"][area][s]:.3f}] {s}')
                lower = upper
            ax.legend(loc='lower left', fontsize='small')
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel='recall',
            ylabel='precision',
            title=f'{title}: {area} ({result["num_gt"][area]} objects)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_breakdown_comparison(results: Dict[str, dict], path: str) -> None:
    """AP per setting and size of one to three models, the SSIM paper's appendix Fig. 2 style, to ``path`` (PNG).

    A panel per size, a bar per setting in the setting's colour: the first model (the baseline) hatched; the
    second model's gain over it solid on top (a loss: the part the second model does not reach left white with a
    red edge); a third model (e.g. the teacher) as a black dashed outline of its bar. Values printed: the
    baseline's inside its bar, the second model's (and the third's, marked ``T``) above.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    names = list(results)
    if not 1 <= len(names) <= 3:
        raise ValueError(f'the comparison figure shows one to three models, got {len(names)}: {names}')
    fig, axes = plt.subplots(1, len(AREAS), figsize=(4.6 * len(AREAS), 4.4), squeeze=False, sharey=True)
    x = np.arange(len(SETTINGS))
    for ax, area in zip(axes[0], AREAS):
        base = results[names[0]]['ap'][area]
        if base[SETTINGS[0]] is None:
            ax.text(0.5, 0.5, f'no {area} objects', ha='center', va='center', transform=ax.transAxes)
        else:
            for i, (s, color) in enumerate(zip(SETTINGS, BAR_COLORS)):
                b = base[s]
                edge = color
                ax.bar(x[i], b, 0.7, color='white', edgecolor=edge, hatch='///', linewidth=0.8)
                ax.text(x[i], b / 2, f'{b:.3f}', rotation=90, ha='center', va='center', fontsize=6.5)
                top, label = b, []
                if len(names) > 1:
                    m = results[names[1]]['ap'][area][s]
                    if m >= b:
                        ax.bar(x[i], m - b, 0.7, bottom=b, color=color, edgecolor=edge, linewidth=0.8)
                    else:
                        ax.bar(x[i], b - m, 0.7, bottom=m, color='white', edgecolor='red', linewidth=1.0)
                    top, label = max(top, m), [f'{m:.3f}']
                if len(names) > 2:
                    t = results[names[2]]['ap'][area][s]
                    ax.bar(x[i], t, 0.8, fill=False, edgecolor='black', linestyle='--', linewidth=1.0)
                    top, label = max(top, t), label + [f'T {t:.3f}']
                if label:
                    ax.text(x[i], top + 0.01, '\n'.join(label), ha='center', va='bottom', fontsize=6.5)
        ax.set_xticks(x, SETTINGS)
        ax.set(ylim=(0, 1.18), title=f'{area} ({results[names[0]]["num_gt"][area]} objects)')
    axes[0][0].set_ylabel('AP (area under the PR curve)')
    handles = [Patch(facecolor='white', edgecolor=BAR_COLORS[0], hatch='///', label=f'{names[0]} (baseline)')]
    if len(names) > 1:
        handles += [
            Patch(facecolor='gray', label=f'{names[1]}: gain over {names[0]}'),
            Patch(facecolor='white', edgecolor='red', label=f'{names[1]}: loss against {names[0]}')
        ]
    if len(names) > 2:
        handles.append(Patch(fill=False, edgecolor='black', linestyle='--', label=f'{names[2]} (T)'))
    fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize='small', frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_supercategories(items: Optional[List[str]]) -> Optional[Dict[str, str]]:
    """``SUPER=CLASS,CLASS ...`` arguments as a category name -> supercategory dict (None for no arguments).

    Raises:
        ValueError: an item without ``=`` or classes, or a class in two supercategories.
    """
    if not items:
        return None
    mapping = {}
    for item in items:
        sup, _, classes = item.partition('=')
        names = [c.strip() for c in classes.split(',') if c.strip()]
        if not sup or not names:
            raise ValueError(f'--supercategories {item!r}: expected SUPERCATEGORY=CLASS[,CLASS...]')
        for name in names:
            if name in mapping and mapping[name] != sup:
                raise ValueError(f'--supercategories: class {name!r} is in {mapping[name]!r} and in {sup!r}')
            mapping[name] = sup
    return mapping
