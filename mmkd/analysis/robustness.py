"""Robustness of detectors to image corruptions: mPC and rPC of the Robust Detection Benchmark.

Michaelis et al., "Benchmarking Robustness in Object Detection: Autonomous Driving when Winter is Coming" (arXiv
2019), Sec. 3: a detector is evaluated on the clean test set (performance P, here COCO AP) and on the test set under
each of 15 corruptions at 5 severities (AP_{c,s}).

* mPC (mean Performance under Corruption) = (1 / (N_c N_s)) sum_c sum_s AP_{c,s};
* rPC (relative Performance under Corruption) = mPC / P, given in %.

de Rijk et al., "Structural Knowledge Distillation for Object Detection" (NeurIPS 2022), Table 3, reports RetinaNet
on COCO as AP / mPC / rPC = 36.5 / 18.0 / 49.4 (vanilla) and 40.1 / 20.1 / 50.1 (SSIM distilled).

The means here run over the cells that were evaluated (a ``--corruptions`` / ``--severities`` subset for a quick run
gives the mean over that subset, which is not comparable with the full benchmark's; the outputs say so).
"""
import io
import json
import math
from typing import List, Mapping, Sequence

from mmkd.datasets.transforms.corruption import CORRUPTION_GROUPS, CORRUPTIONS, SEVERITIES
from mmkd.utils.safe_save import atomic_write

FULL_BENCHMARK_CELLS = len(CORRUPTIONS) * len(SEVERITIES)


def resolve_corruptions(names: Sequence[str]) -> List[str]:
    """Corruption names from ``--corruptions`` words: names, group names (noise, blur, weather, digital) or 'all';
    in the benchmark's order, each once.

    Raises:
        ValueError: an unknown word, or no word at all.
    """
    if not names:
        raise ValueError('no corruption: give names, a group (noise, blur, weather, digital) or all')
    chosen = set()
    for name in names:
        if name == 'all':
            chosen.update(CORRUPTIONS)
        elif name in CORRUPTION_GROUPS:
            chosen.update(CORRUPTION_GROUPS[name])
        elif name in CORRUPTIONS:
            chosen.add(name)
        else:
            raise ValueError(f'unknown corruption {name!r}: expected all, a group ({", ".join(CORRUPTION_GROUPS)}) '
                             f'or one of {", ".join(CORRUPTIONS)}')
    return [c for c in CORRUPTIONS if c in chosen]


def resolve_severities(severities: Sequence[int]) -> List[int]:
    """Sorted distinct severities, each in 1..5.

    Raises:
        ValueError: none, or one outside 1..5 (the clean set, severity 0, is always evaluated).
    """
    if not severities:
        raise ValueError('no severity: give some of 1 2 3 4 5')
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise ValueError(f'severity {bad[0]}: expected integers from 1 to 5 (the clean test set, severity 0, is '
                         'always evaluated)')
    return sorted(set(int(s) for s in severities))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize_model(clean: float, cells: Mapping[str, Mapping[int, float]]) -> dict:
    """mPC, rPC and the per-corruption and per-severity means of one model.

    Args:
        clean: the model's clean performance P (e.g. COCO AP in [0, 1]).
        cells: ``cells[corruption][severity]`` = the performance on that corrupted test set; only the cells present
            count.

    Returns:
        dict: ``clean``; ``mPC`` (mean over every present cell); ``rPC`` = mPC / clean (a fraction; NaN when the
        clean performance is 0); ``per_corruption`` (mean over that corruption's severities); ``per_severity``
        (severity -> mean over the corruptions evaluated at it, severity 0 = clean); ``num_cells``.
    """
    values = [float(v) for by_severity in cells.values() for v in by_severity.values()]
    m_pc = _mean(values)
    severities = sorted({int(s) for by_severity in cells.values() for s in by_severity})
    per_severity = {0: float(clean)}
    for severity in severities:
        per_severity[severity] = _mean([float(by[s]) for by in cells.values() for s in by if int(s) == severity])
    return dict(
        clean=float(clean),
        mPC=m_pc,
        rPC=m_pc / clean if clean > 0 else math.nan,
        per_corruption={
            c: _mean([float(v) for v in by.values()])
            for c, by in cells.items() if by
        },
        per_severity=per_severity,
        num_cells=len(values))


def summarize_robustness(results: Mapping[str, dict], metric: str = 'AP') -> dict:
    """The robustness summary of every model, for one COCO metric.

    Args:
        results: ``results[model]`` = ``dict(clean={metric: value, ...}, cells={corruption: {severity:
            {metric: value, ...}}})`` with COCO metrics in [0, 1] (as :func:`mmkd.analysis.coco_evaluate` gives).
        metric: which COCO metric P is ('AP', 'AP50', ...).

    Returns:
        dict: ``metric``, ``corruptions`` and ``severities`` evaluated (over all models), ``num_cells`` and
        ``full_benchmark`` (whether every model has all 75 cells), ``note`` (what the means run over), and
        ``models[name]`` as :func:`summarize_model` plus ``cells`` (corruption -> severity -> value).
    """
    models = {}
    corruptions, severities = set(), set()
    for name, result in results.items():
        cells = {c: {int(s): float(v[metric]) for s, v in by.items()} for c, by in result.get('cells', {}).items()}
        cells = {c: by for c, by in cells.items() if by}
        corruptions.update(cells)
        severities.update(s for by in cells.values() for s in by)
        models[name] = dict(summarize_model(float(result['clean'][metric]), cells), cells=cells)
    cell_counts = sorted({m['num_cells'] for m in models.values()})
    full = cell_counts == [FULL_BENCHMARK_CELLS]
    if full:
        note = (f'mPC: mean {metric} over all {len(CORRUPTIONS)} corruptions x {len(SEVERITIES)} severities of the '
                'Robust Detection Benchmark; rPC = mPC / clean.')
    else:
        counts = ' / '.join(str(n) for n in cell_counts)
        note = (f'mPC: mean {metric} over the {counts} evaluated (corruption, severity) cells only, of the '
                f'benchmark\'s {FULL_BENCHMARK_CELLS}: not comparable with full-benchmark numbers; rPC = mPC / clean.')
    return dict(
        metric=metric,
        corruptions=[c for c in CORRUPTIONS if c in corruptions],
        severities=sorted(severities),
        num_cells=cell_counts[0] if len(cell_counts) == 1 else cell_counts,
        full_benchmark=full,
        note=note,
        models=models)


def _pct(value: float) -> str:
    return '–' if value is None or math.isnan(value) else f'{100 * value:.1f}'


def robustness_markdown(summary: dict) -> str:
    """A Markdown table of ``summary`` (:func:`summarize_robustness`): one row per model; clean AP, mPC, rPC (%),
    then the mean over severities of every evaluated corruption; COCO numbers x 100 as in the papers."""
    metric = summary['metric']
    corruptions = summary['corruptions']
    header = ['model', f'clean {metric}', 'mPC', 'rPC (%)'] + corruptions
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
    for name, model in summary['models'].items():
        row = [name, _pct(model['clean']), _pct(model['mPC']), _pct(model['rPC'])]
        row += [_pct(model['per_corruption'].get(c, math.nan)) for c in corruptions]
        lines.append('| ' + ' | '.join(row) + ' |')
    severities = ', '.join(str(s) for s in summary['severities'])
    lines += [
        '', f'{summary["note"]} Severities: {severities}. Columns per corruption: mean {metric} over its '
        'severities. All numbers x 100.'
    ]
    return '\n'.join(lines) + '\n'


def write_robustness_json(summary: dict, path: str) -> None:
    """``summary`` as JSON at ``path``, atomically; NaN is written as null."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    atomic_write(json.dumps(clean(summary), indent=1) + '\n', path)


def plot_robustness(summary: dict, path: str, per_corruption: bool = True) -> None:
    """AP against severity (0 = clean) averaged over the corruptions, one line per model, to a PNG at ``path``;
    with ``per_corruption`` and several corruptions, one small panel per corruption beside it."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    metric = summary['metric']
    corruptions = summary['corruptions'] if per_corruption and len(summary['corruptions']) > 1 else []
    panels = 1 + len(corruptions)
    cols = min(panels, 4)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    axes = axes.ravel()
    for name, model in summary['models'].items():
        xs = sorted(model['per_severity'])
        axes[0].plot(xs, [100 * model['per_severity'][s] for s in xs], marker='o', label=name)
        for ax, corruption in zip(axes[1:], corruptions):
            by = model['cells'].get(corruption, {})
            xs = [0] + sorted(by)
            ax.plot(xs, [100 * model['clean']] + [100 * by[s] for s in xs[1:]], marker='o', markersize=3)
    axes[0].set_title(f'mean over {len(summary["corruptions"])} corruption(s)')
    axes[0].set_ylabel(f'{metric} (%)')
    axes[0].legend(fontsize=8)
    for ax, corruption in zip(axes[1:], corruptions):
        ax.set_title(corruption.replace('_', ' '), fontsize=9)
    for ax in axes[:panels]:
        ax.set_xlabel('severity (0 = clean)')
        ax.set_xticks(range(0, 6))
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.axis('off')
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100)
    plt.close(fig)
    atomic_write(buffer.getvalue(), path)
