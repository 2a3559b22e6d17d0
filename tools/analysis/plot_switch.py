"""Draw the teacher/student switch history of a CoLAD or LAD-with-switch run, with the networks' losses.

The run's scalars are those that mmengine's ``LocalVisBackend`` writes to
``<work_dir>/<timestamp>/vis_data/scalars.json``: one JSON object per line, one line per logging interval of
training (``'step'`` = the global iteration, ``'iter'``, ``'lr'``, the losses, ...) and per validation.
The switch keys (issue 10, CoLAD) are, for each network ``<name>``:

- ``'switch.share.<name>'``: fraction in [0, 1] of the iteration's assignment units with candidates (GT x level,
  GT, image or batch) whose labels that network assigned;
- ``'switch.rho.<name>'``: the mean switch criterion (std/mean or Fisher) of that network over the units where it
  is defined (an iteration where it is defined nowhere does not log it, so the record repeats the last logged
  value; a run that never logged it has no key: drawn as a gap);
- ``'<name>.loss'`` (and ``'<name>.loss_cls'``, ...): that network's losses (CoLAD). A LAD run trains one
  network, the student (networks ``teacher`` and ``student``), whose losses are logged without a prefix
  (``'loss'``, ``'loss_cls'``, ...): they are drawn as the student's.

mmengine's ``LogProcessor`` averages the scalars its ``mean_pattern`` matches over its window (``window_size``, 50
in mmdet's default runtime) and writes the others as their value at the logging iteration: mmkd's CoLAD and
LAD-with-switch configs add ``switch`` to ``mean_pattern`` (window means, like the losses); without it the plot
shows one iteration's switch per logger interval. In distributed training the values are rank 0's.

The PNG has three panels against the iteration: the share of labels that each network assigned (stacked
when the shares sum to one), each network's rho, and the losses (the totals; every term with
``--all-losses``). Usage::

    python tools/analysis/plot_switch.py work_dirs/colad_paa-r101_paa-r50_fpn_1x_coco -o switch.png
    python tools/analysis/plot_switch.py work_dirs/run/20260101_120000 -o switch.png --smooth 5
    python tools/analysis/plot_switch.py work_dirs/run/20260101_120000/vis_data/scalars.json -o switch.png

A work dir gives its latest run (timestamp folders sort by time); a run folder or the JSON file itself give
that run.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

RHO = 'switch.rho.'
SHARE = 'switch.share.'
SCALARS = osp.join('vis_data', 'scalars.json')
# the label of unprefixed losses when no network is named 'student'
UNPREFIXED = 'trained network'


@dataclass
class SwitchHistory:
    """The switch scalars of a run, one entry per logged training step.

    Attributes:
        path: the scalars file they come from.
        networks: the network names, in the order their switch keys first appear.
        steps: the global iteration of each logged step, shape (T,).
        share: network name -> fraction of the labels it assigned, shape (T,) (NaN where not logged).
        rho: network name -> its mean switch criterion, shape (T,).
        losses: network name (or ``UNPREFIXED``) -> loss key without the prefix (``'loss'``,
            ``'loss_cls'``, ...) -> values, shape (T,).
    """
    path: str
    networks: List[str]
    steps: np.ndarray
    share: Dict[str, np.ndarray] = field(default_factory=dict)
    rho: Dict[str, np.ndarray] = field(default_factory=dict)
    losses: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)


def find_scalars_file(path: str) -> str:
    """The ``scalars.json`` of a run.

    Args:
        path: the JSON file, a run folder (``<work_dir>/<timestamp>``, holding ``vis_data/scalars.json``),
            its ``vis_data`` folder, or a work dir (its latest run is taken).

    Returns:
        str: the path of the scalars file.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such file or folder (expected a work dir, a run folder or a '
                                'scalars.json)')
    for candidate in (osp.join(path, SCALARS), osp.join(path, 'scalars.json')):
        if osp.isfile(candidate):
            return candidate
    # mmengine names run folders by their start time (%Y%m%d_%H%M%S): the last in name order is the latest
    runs = sorted(glob.glob(osp.join(glob.escape(path), '*', SCALARS)))
    if not runs:
        raise FileNotFoundError(f'{path}: found no {SCALARS} in it nor in any of its run folders '
                                f'(<work_dir>/<timestamp>/{SCALARS}); was the run logged with LocalVisBackend?')
    return runs[-1]


def read_scalars(path: str) -> List[dict]:
    """The records of a scalars file, one JSON object per non-empty line.

    Args:
        path: a ``scalars.json`` written by ``LocalVisBackend``.

    Returns:
        list[dict]: the records in file order; each has the key ``'_line'`` (its 1-based line number).
    """
    records = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}, line {number}: not valid JSON ({error.msg}): {line.strip()[:80]!r}')
            if not isinstance(record, dict):
                raise ValueError(f'{path}, line {number}: expected a JSON object of scalars, got '
                                 f'{type(record).__name__}: {line.strip()[:80]!r}')
            record['_line'] = number
            records.append(record)
    return records


def _value(record: dict, key: str, path: str) -> float:
    value = record.get(key, math.nan)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}, line {record['_line']}: {key!r} should be a number, got {value!r}")
    return float(value)


def switch_history(records: List[dict], path: str) -> SwitchHistory:
    """Collect the switch scalars and the losses of the training records that have switch keys.

    Args:
        records: the records of ``read_scalars``.
        path: the scalars file (for messages).

    Returns:
        SwitchHistory: the history, steps in file order.
    """
    networks = []
    for record in records:
        for key in record:
            for prefix in (RHO, SHARE):
                if key.startswith(prefix) and key[len(prefix):] not in networks:
                    networks.append(key[len(prefix):])
    if not networks:
        raise ValueError(f'{path}: this run has no switch history ({RHO}<name> / {SHARE}<name> keys): '
                         'was it a CoLAD / LAD-with-switch run?')
    # validation records carry metrics, not switch keys: only training steps are drawn
    train = [r for r in records if any(k.startswith((RHO, SHARE)) for k in r)]
    steps = []
    for record in train:
        step = record.get('step', record.get('iter'))
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ValueError(f"{path}, line {record['_line']}: a record with switch keys has no numeric 'step' "
                             f"or 'iter' (got {step!r})")
        steps.append(float(step))

    def series(key: str) -> np.ndarray:
        return np.array([_value(r, key, path) for r in train], dtype=float)

    history = SwitchHistory(path=path, networks=networks, steps=np.array(steps))
    for name in networks:
        history.share[name] = series(SHARE + name)
        history.rho[name] = series(RHO + name)
    owners = {name: {} for name in networks}
    owners[UNPREFIXED] = {}
    for key in sorted({k for r in train for k in r}):
        owner = next((name for name in networks if key.startswith(name + '.')), None)
        term = key[len(owner) + 1:] if owner else key
        if term.startswith('loss'):
            owners[owner or UNPREFIXED][term] = series(key)
    # a network's losses are prefixed by its name; unprefixed ones belong to a LAD run's one trained network,
    # its student
    if owners[UNPREFIXED] and 'student' in owners and not owners['student']:
        owners['student'] = owners.pop(UNPREFIXED)
    history.losses = {name: terms for name, terms in owners.items() if terms}
    return history


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last ``window`` logged values, NaN (not logged) ignored.

    Args:
        values: shape (T,).
        window: number of logged values to average (1: unchanged).

    Returns:
        np.ndarray: shape (T,); NaN where the window holds no value.
    """
    if window == 1:
        return values
    valid = ~np.isnan(values)
    sums = np.cumsum(np.where(valid, values, 0.0))
    counts = np.cumsum(valid)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def plot_switch_history(history: SwitchHistory,
                        out: str,
                        window: int = 1,
                        all_losses: bool = False,
                        size: tuple = (10.0, 9.0),
                        dpi: int = 100) -> str:
    """Draw the history to a PNG of ``size`` inches x ``dpi`` pixels.

    Args:
        history: the run's switch history.
        out: the PNG path (its folder is created).
        window: moving-average window, in logged steps, applied to every curve.
        all_losses: also draw every loss term (``loss_cls``, ``loss_bbox``, ...), not only the totals.
        size: figure (width, height) in inches.
        dpi: pixels per inch.

    Returns:
        str: ``out``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    steps = history.steps
    fig, (ax_share, ax_rho, ax_loss) = plt.subplots(3, 1, sharex=True, figsize=size, dpi=dpi)
    shares = [smooth(history.share[name], window) for name in history.networks]
    stacked = np.stack(shares)
    # the units of a step are split between the networks: a stack shows who taught; lines otherwise
    if np.allclose(np.nansum(stacked, axis=0), 1.0, atol=1e-2) and not np.isnan(stacked).any():
        ax_share.stackplot(steps, stacked, labels=history.networks, alpha=0.8)
    else:
        for name, values in zip(history.networks, shares):
            ax_share.plot(steps, values, label=name)
    ax_share.set_ylim(0, 1)
    ax_share.set_ylabel('share of labels assigned')
    source = history.path if len(history.path) <= 80 else '...' + history.path[-77:]
    smoothing = f'\nmoving average over {window} logged steps' if window > 1 else ''
    ax_share.set_title(f'switch history of {source}{smoothing}', fontsize=9)
    for name in history.networks:
        ax_rho.plot(steps, smooth(history.rho[name], window), label=name)
    ax_rho.set_ylabel('rho (switch criterion)')
    # one colour per network in every panel (the stack's and the lines' order); a line style per loss term
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    styles = ['--', ':', '-.']
    for index, (owner, terms) in enumerate(history.losses.items()):
        position = history.networks.index(owner) if owner in history.networks else len(history.networks) + index
        drawn = [term for term in terms if term == 'loss' or all_losses or 'loss' not in terms]
        for number, term in enumerate(sorted(drawn, key=lambda t: (t != 'loss', t))):
            style = '-' if term == 'loss' else styles[number % len(styles)]
            ax_loss.plot(
                steps,
                smooth(terms[term], window),
                style,
                color=colours[position % len(colours)],
                label=f'{owner} {term}')
    ax_loss.set_ylabel('loss')
    ax_loss.set_xlabel('iteration')
    for ax in (ax_share, ax_rho, ax_loss):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc='upper right', fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi, format='png')
    plt.close(fig)
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Draw the switch history of a CoLAD / LAD-with-switch run')
    parser.add_argument(
        'run', help='a work dir (its latest run), a run folder <work_dir>/<timestamp>, or its '
        'vis_data/scalars.json')
    parser.add_argument('-o', '--out', required=True, help='the PNG to write')
    parser.add_argument('--smooth', type=int, default=1, help='moving average over this many logged steps')
    parser.add_argument('--all-losses', action='store_true', help='also draw every loss term, not only totals')
    parser.add_argument('--dpi', type=int, default=100, help='pixels per inch of the 10 x 9 inch figure')
    args = parser.parse_args(argv)
    if args.smooth < 1:
        parser.error(f'--smooth must be >= 1, got {args.smooth}')
    if args.dpi < 1:
        parser.error(f'--dpi must be >= 1, got {args.dpi}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        path = find_scalars_file(args.run)
        history = switch_history(read_scalars(path), path)
    except (FileNotFoundError, ValueError) as error:
        print(f'plot_switch.py: error: {error}', file=sys.stderr)
        return 1
    out = plot_switch_history(history, args.out, args.smooth, args.all_losses, dpi=args.dpi)
    print(osp.abspath(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
