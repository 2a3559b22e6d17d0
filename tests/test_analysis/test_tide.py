"""TIDE errors (mmkd.analysis.tide, tidecv underneath) on the hand-made set of test_error_breakdown.py.

TIDE at IoU .5 (background below .1), detections by descending score per image:

    d4 ring on A (circle), IoU 1, wrong class            -> Cls  (A is already taken by d1: not fixable, removed)
    d5 square on E (circle), IoU 1, wrong class          -> Cls  (fixed: a circle hit on E at score .85)
    d3 square on C, IoU .3                               -> Loc
    d6 circle on nothing                                 -> Bkg
    d7 circle on A after d1, IoU .90                     -> Dupe
    D (square) found by no detection                     -> Miss
    d1, d2 are hits; no detection is both mislabelled and mislocated (Both 0).

AP50 (pycocotools' 101-point AP at IoU .5, averaged over the three classes): circle 25.5/101 (d6 FP, then d1 at
recall .5), ring .5 (d4 FP, then d2), square 0 -> (25.5/101 + .5) / 3 = 25.08 %. dAP of a fix, in AP points:

    Bkg (drop d6): circle 51/101                         -> +25.5/101/3 = 8.42
    Loc (d3 becomes a hit on C): square d5 FP, d3 TP     -> +25.5/101/3 = 8.42
    Cls: ring without d4 -> 1 (+.5); circle d6 FP, d1 TP, d5 TP, d7 FP: precision 2/3 up to recall 1 -> 2/3;
         square loses only a false positive: still 0     -> (2/3 - 25.5/101 + .5)/3 = 30.47
    Dupe (drop d7, after the last hit), Miss (D: square still has no hit), Both: 0
    FalsePos (every false positive dropped): circle 51/101, ring 1, square 0 -> (51/101 + 1)/3 - AP50 = 25.08
"""
import json
import os

import matplotlib
import pytest

from mmkd.analysis.tide import (MAIN_ERRORS, SPECIAL_ERRORS, plot_tide_comparison, tide_errors, tide_ground_truth,
                                tide_table)
from .test_error_breakdown import hand_made_detections, hand_made_gt

H = 25.5 / 101


def test_hand_made_errors():
    gt = tide_ground_truth(hand_made_gt())  # box-only annotations: tidecv's own loader needs 'segmentation'
    result = tide_errors(gt, hand_made_detections(), 'model')
    assert result['counts'] == dict(Cls=2, Loc=1, Both=0, Dupe=1, Bkg=1, Miss=1)
    assert result['ap50'] == pytest.approx((H + .5) / 3 * 100)
    expected = dict(Cls=(2 / 3 - H + .5) / 3, Loc=H / 3, Both=0, Dupe=0, Bkg=H / 3, Miss=0)
    for error, value in expected.items():
        assert result['main'][error] == pytest.approx(value * 100, abs=1e-9), error
    assert result['special']['FalsePos'] == pytest.approx(((2 * H + 1) / 3 - (H + .5) / 3) * 100)
    # the ground truth is reusable: a second run gives the same numbers
    assert tide_errors(gt, hand_made_detections(), 'again') == result


def test_matplotlib_settings_untouched(monkeypatch, tmp_path):
    """tidecv's TIDE() sets seaborn's style and figure.dpi for the whole process and makes a folder under the
    user's data directory; the wrapper keeps both inside the call."""
    monkeypatch.setenv('TIDE_PATH', str(tmp_path / 'mine'))
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # whatever earlier tests did
        before = dict(matplotlib.rcParams)
        tide_errors(tide_ground_truth(hand_made_gt()), hand_made_detections())
        changed = {k for k, v in matplotlib.rcParams.items() if before[k] != v}
    assert not changed
    assert not (tmp_path / 'mine').exists()
    assert os.environ['TIDE_PATH'] == str(tmp_path / 'mine')


def test_no_detections():
    result = tide_errors(tide_ground_truth(hand_made_gt()), [])
    assert result['ap50'] == 0
    assert all(v is None for v in result['main'].values()) and all(v is None for v in result['special'].values())
    assert result['counts'] == dict(Cls=0, Loc=0, Both=0, Dupe=0, Bkg=0, Miss=5)


def test_table_and_figure(tmp_path):
    gt = tide_ground_truth(hand_made_gt())
    results = dict(a=tide_errors(gt, hand_made_detections(), 'a'), b=tide_errors(gt, [], 'b'))
    table = tide_table(results)
    assert f'| a | {(H + .5) / 3 * 100:.2f} | {(2 / 3 - H + .5) / 3 * 100:.2f} |' in table
    assert '| b | 0.00 | ' + ' | '.join(['-'] * (len(MAIN_ERRORS) + len(SPECIAL_ERRORS))) + ' |' in table
    assert '| a | 2 | 1 | 0 | 1 | 1 | 1 |' in table
    plot_tide_comparison(results, str(tmp_path / 'tide.png'))
    assert (tmp_path / 'tide.png').read_bytes()[:4] == b'\x89PNG'
    json.dumps(results)  # the tool writes them as JSON
