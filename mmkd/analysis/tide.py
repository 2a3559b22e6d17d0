"""TIDE error breakdown of a detector's results, with the ``tidecv`` package.

Bolya, Foley, Hays, Hoffman, "TIDE: A General Toolbox for Identifying Object Detection Errors" (ECCV 2020). At the
positive IoU threshold (.5) and the background threshold (.1), every false positive and missed object gets one
type; an error type's dAP is how much AP50 rises when only the errors of that type are fixed:

- ``Cls``: right place (IoU >= .5 with an object of another class), wrong class;
- ``Loc``: right class, .1 <= IoU < .5 with an object of that class;
- ``Both``: wrong class and .1 <= IoU < .5;
- ``Dupe``: right class and IoU >= .5, but the object is already matched by a higher-scoring detection;
- ``Bkg``: IoU < .1 with every object;
- ``Miss``: an object no detection finds (after the fixes above);
- special ``FalsePos`` / ``FalseNeg``: every false positive removed / every missed object found.

``tidecv`` 1.0.1 computes everything; :func:`tide_errors` wraps three things it gets wrong on this stack (see
:func:`tide_ground_truth` and :func:`_scoped_tide`); its plots are not used (:func:`plot_tide_comparison` draws one
comparison chart instead).
"""
import contextlib
import copy
import io
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Sequence

import numpy as np

MAIN_ERRORS = ('Cls', 'Loc', 'Both', 'Dupe', 'Bkg', 'Miss')
SPECIAL_ERRORS = ('FalsePos', 'FalseNeg')


def tide_ground_truth(coco_gt):
    """tidecv's ground truth (``tidecv.data.Data``) of a pycocotools ``COCO``, read by tidecv's own COCO loader.

    tidecv's ``datasets.COCO`` reads every annotation's ``segmentation`` (to build masks that box mode never uses)
    and ``iscrowd``; a box-only annotation file, which pycocotools and mmdet read (the toy shapes, many converted
    datasets), fails with ``KeyError: 'segmentation'``, and an empty segmentation list with an ``IndexError`` in
    ``pycocotools.mask.frPyObjects``. The loader is given a copy of the annotations where a missing or empty
    segmentation is the box's polygon and a missing ``iscrowd`` is 0.
    """
    from tidecv import datasets
    dataset = copy.deepcopy(coco_gt.dataset)
    for ann in dataset['annotations']:
        if not ann.get('segmentation'):
            x, y, w, h = ann['bbox']
            ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        ann.setdefault('iscrowd', 0)
    with tempfile.TemporaryDirectory(prefix='mmkd_tide.') as tmp:
        path = osp.join(tmp, 'annotations.json')
        with open(path, 'w') as f:
            json.dump(dataset, f)
        return datasets.COCO(path, name='ground truth')


@contextlib.contextmanager
def _scoped_tide():
    """A ``tidecv.TIDE`` whose side effects stay inside this block.

    ``TIDE()`` builds its plotter at once, which changes matplotlib's global settings (``sns.set(style=
    'whitegrid')``, a seaborn palette, ``figure.dpi``: every later figure of the process would change) and creates a
    folder in the user's data directory (``~/.local/share/tidecv``, failing where that is read-only). Here the
    settings are restored on exit, the folder is a temporary one, and the tables it prints are swallowed.
    """
    import matplotlib
    from tidecv import TIDE
    previous = os.environ.get('TIDE_PATH')
    with tempfile.TemporaryDirectory(prefix='mmkd_tide_path.') as tmp, matplotlib.rc_context(), \
            contextlib.redirect_stdout(io.StringIO()):
        os.environ['TIDE_PATH'] = tmp
        try:
            yield TIDE()
        finally:
            if previous is None:
                os.environ.pop('TIDE_PATH', None)
            else:
                os.environ['TIDE_PATH'] = previous


def tide_errors(gt_data, detections: Sequence[dict], name: str = 'model') -> dict:
    """TIDE's errors of ``detections`` (COCO result dicts) against ``gt_data`` (from :func:`tide_ground_truth`).

    Returns:
        dict: ``ap50`` (tidecv's AP at IoU .5, in %), ``main`` {error: dAP in AP points} and ``special``
        {FalsePos / FalseNeg: dAP}, ``counts`` {error: number of errors of that type} (Miss: missed objects).
        Without any detection tidecv cannot compute an AP (it divides by zero): then ``ap50`` is 0, dAPs are None
        and ``counts`` has every object missed.
    """
    from tidecv.data import Data
    if not detections:
        counts = dict.fromkeys(MAIN_ERRORS, 0)
        counts['Miss'] = sum(1 for a in gt_data.annotations if not a['ignore'])
        return dict(ap50=0.0, main=dict.fromkeys(MAIN_ERRORS), special=dict.fromkeys(SPECIAL_ERRORS), counts=counts)
    preds = Data(name)
    for det in detections:
        preds.add_detection(det['image_id'], det['category_id'], float(det['score']), [float(v) for v in det['bbox']])
    with _scoped_tide() as tide:
        run = tide.evaluate(gt_data, preds, mode=tide.BOX, name=name)
        main = tide.get_main_errors()[name]
        special = tide.get_special_errors()[name]
        counts = {err.short_name: n for err, n in run.count_errors().items()}
    main = {e: float(main[e]) for e in MAIN_ERRORS}
    special = {e: float(special[e]) for e in SPECIAL_ERRORS}
    return dict(ap50=float(run.ap), main=main, special=special, counts={e: int(counts[e]) for e in MAIN_ERRORS})


def tide_table(results: Dict[str, dict]) -> str:
    """A Markdown table of the TIDE results of several models: AP50, the dAP of each error type, FP / FN."""
    head = ['model', 'AP50'] + list(MAIN_ERRORS) + list(SPECIAL_ERRORS)
    lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
    for name, res in results.items():
        values = [res['ap50']] + [res['main'][e] for e in MAIN_ERRORS] + [res['special'][e] for e in SPECIAL_ERRORS]
        lines.append(f'| {name} | ' + ' | '.join('-' if v is None else f'{v:.2f}' for v in values) + ' |')
    counts = ['| model | ' + ' | '.join(MAIN_ERRORS) + ' |', '|---|' + '---:|' * len(MAIN_ERRORS)]
    for name, res in results.items():
        counts.append(f'| {name} | ' + ' | '.join(str(res['counts'][e]) for e in MAIN_ERRORS) + ' |')
    return ('dAP: AP50 points gained by fixing only that error type (tidecv; AP50 in %)\n\n' + '\n'.join(lines) +
            '\n\nNumber of errors of each type (Miss: objects missed)\n\n' + '\n'.join(counts) + '\n')


def plot_tide_comparison(results: Dict[str, dict], path: str) -> None:
    """The dAP of each error type (main and special) for every model as grouped bars, to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(results)
    types = list(MAIN_ERRORS) + list(SPECIAL_ERRORS)
    x = np.arange(len(types), dtype=float)
    x[len(MAIN_ERRORS):] += 0.6  # a gap between the main and the special errors
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(1.0 * len(types) + 2.5, 4.2))
    for i, name in enumerate(names):
        res = results[name]
        values = [res['main'][t] for t in MAIN_ERRORS] + [res['special'][t] for t in SPECIAL_ERRORS]
        pos = x - 0.4 + width * (i + 0.5)
        heights = [0.0 if v is None else v for v in values]
        label = f'{name} (AP50 {res["ap50"]:.1f})'
        bars = ax.bar(pos, heights, width, label=label, hatch='///' if i == 0 else None, edgecolor='black', lw=0.5)
        ax.bar_label(bars, labels=['-' if v is None else f'{v:.1f}' for v in values], fontsize=6.5, padding=1)
    ax.set_xticks(x, types)
    ax.set_ylabel('dAP (AP50 points)')
    ax.set_title('TIDE errors: main (left), special (right)')
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
