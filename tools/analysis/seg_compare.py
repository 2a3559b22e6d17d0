"""Compare segmentors on one validation split: per-class IoU like Table 1 of the paper, and pictures side by side.

Kothandaraman, Nambiar, Mittal, "Domain Adaptive Knowledge Distillation for Driving Scene Semantic Segmentation"
(WACV 2021 Workshops), Table 1: per-class IoU, mIoU and mAcc of the teacher, the student alone and the distilled
students on the target domain's validation set.

**Models.** Two to six ``--model NAME CONFIG CHECKPOINT``: an mmseg config whose model is an ``EncoderDecoder``, or
an mmkd config that deploys one (a ``SegOutputSpaceAdaptation`` or ``DomainAdaptiveDistiller`` run: its student,
see :class:`mmkd.models.utils.Deployable`), with a checkpoint of that training run or of the exported network
(``tools/export_student.py``). Only the deployable network is built; its weights load strictly (every key and
shape, through :func:`mmkd.utils.teacher.load_weights_strictly`: the same readings as a distiller's teacher).

**Split.** The ``test_dataloader`` of ``--split-config`` (default: the first model's config), i.e. the target
domain's validation set for the configs of ``configs/seg_dakd``; ``--cfg-options`` edits that config (e.g.
``test_dataloader.dataset.data_root=...``). Every model predicts every image of it (``test_step``: the model's own
``test_cfg``, predictions at the label's size).

**Metrics** of every model, with mmseg's ``IoUMetric`` as ``tools/test.py`` computes them: its ``process``
(``intersect_and_union`` per image, pixels labelled with the evaluator's ``ignore_index`` left out), the areas
summed over the split, then ``total_area_to_metrics``; per-class IoU and accuracy, mIoU and mAcc (means over the
classes that have a value, as ``IoUMetric``), aAcc; all in %.

**Output** in ``--out``: ``seg_compare.md`` (a table like the paper's Table 1: rows models; columns mIoU, the
classes' IoU, mAcc, aAcc), ``seg_compare.json`` (every number; null for a class with no pixel in the labels nor in
the predictions), ``seg_compare.png`` (one row per chosen image, columns image / ground truth / each model's
prediction, coloured with the Cityscapes palette for Cityscapes class names, else the dataset's palette; ignored
pixels black). Usage::

    python tools/analysis/seg_compare.py \\
        --model teacher configs/seg_dakd/adaptseg_deeplabv3plus-w32_toy-scenes.py work_dirs/teacher/iter_400.pth \\
        --model student configs/seg_dakd/adaptseg_deeplabv3plus-w8_toy-scenes.py work_dirs/student/iter_400.pth \\
        --model 'dakd (c)' configs/seg_dakd/dakd-c_deeplabv3plus-w32-w8_toy-scenes.py work_dirs/dakd_c/iter_400.pth \\
        --out work_dirs/seg_compare --images 4
    python tools/analysis/seg_compare.py --model ... --model ... --out DIR --indices 0 7 19 --device cuda
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner
from mmseg.evaluation import IoUMetric
from mmseg.models.segmentors import EncoderDecoder
from mmseg.utils import cityscapes_classes, cityscapes_palette

import mmkd  # noqa: F401  (registers mmkd's models and datasets, installs the checkpoint allow-list)
from mmkd.registry import SEG_MODELS
from mmkd.utils.build import build_in_scope, load_config, model_config
from mmkd.utils.teacher import deployable_network_config, freeze, load_weights_strictly

MIN_MODELS, MAX_MODELS = 2, 6
IGNORE_COLOUR = (0, 0, 0)
PANEL_INCHES = 3.0  # width of one picture of the grid
TITLE_INCHES = 0.4  # the row of column titles above the grid
DPI = 100


# ---------------------------------------------------------------------------------------------- models
class Model:
    """One compared model: its name, config and checkpoint paths, and the built network.

    Args:
        name: the name in the table and the picture.
        config: the config file (or ``mmseg::`` path).
        checkpoint: the checkpoint file.
    """

    def __init__(self, name: str, config: str, checkpoint: str):
        self.name, self.config, self.checkpoint = name, config, checkpoint
        self.network: Optional[EncoderDecoder] = None
        self.deployed_from: Optional[str] = None  # the mmkd model type whose network this is, if any


def build_network(model: Model, device: str) -> EncoderDecoder:
    """Build the ``EncoderDecoder`` that ``model.config`` deploys and load ``model.checkpoint`` into it strictly.

    Returns:
        EncoderDecoder: the network in eval mode on ``device``, frozen.

    Raises:
        TypeError: the deployed network is not an ``EncoderDecoder``.
        RuntimeError, FileNotFoundError: see :func:`~mmkd.utils.teacher.load_weights_strictly`.
    """
    cfg = load_config(model.config, f'seg_compare: the config of model {model.name!r}')
    model_cfg = model_config(cfg, f'seg_compare: the config of model {model.name!r}')
    scope = cfg.get('default_scope', 'mmseg')
    network = deployable_network_config(model_cfg, scope, f'seg_compare: the config {model.config!r} of model '
                                        f'{model.name!r}')
    prefixes = ()
    if network is not None:
        model.deployed_from = str(model_cfg.get('type'))
        prefix, model_cfg = network
        model_cfg, prefixes = ConfigDict(model_cfg), (prefix, )
    with DefaultScope.overwrite_default_scope(scope):
        net = build_in_scope(model_cfg, SEG_MODELS)
    if not isinstance(net, EncoderDecoder):
        raise TypeError(f'seg_compare: model {model.name!r} ({model.config}) deploys a {type(net).__name__}, not an '
                        'mmseg EncoderDecoder')
    load_weights_strictly(net, model.checkpoint, f'seg_compare: the checkpoint of model {model.name!r}', prefixes)
    model.network = freeze(net).to(device)
    return model.network


def config_classes(cfg: Config) -> Optional[Tuple[str, ...]]:
    """The class names of a config's test dataset (its ``metainfo`` or its type's ``METAINFO``), or ``None``."""
    loader = cfg.get('test_dataloader')
    dataset = loader.get('dataset') if isinstance(loader, dict) else None
    while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):  # wrappers
        dataset = dataset['dataset']
    if not isinstance(dataset, dict):
        return None
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        from mmseg.registry import DATASETS
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
            cls = DATASETS.get(dataset.get('type')) if isinstance(dataset.get('type'), str) else dataset.get('type')
        classes = getattr(cls, 'METAINFO', {}).get('classes')
    return None if classes is None else tuple(classes)


def check_classes(models: List[Model], classes: Sequence[str], split: str) -> None:
    """Every network predicts ``len(classes)`` classes, and no model's own test dataset names other classes.

    Raises:
        ValueError: naming the model, its classes and the split's.
    """
    for model in models:
        num = model.network.decode_head.out_channels
        if num != len(classes):
            raise ValueError(f'seg_compare: model {model.name!r} ({model.config}) predicts {num} classes, the split of '
                             f'{split} has {len(classes)}: {list(classes)}; all models must predict the same classes')
        own = config_classes(load_config(model.config))
        if own is not None and own != tuple(classes):
            raise ValueError(f'seg_compare: model {model.name!r} ({model.config}) was configured for the classes '
                             f'{list(own)}, the split of {split} has {list(classes)}; all models must predict the '
                             'same classes')


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(network: EncoderDecoder, dataloader, classes: Sequence[str], ignore_index: int,
             keep: Dict[str, int]) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Predict every image of ``dataloader`` and compute its metrics with mmseg's ``IoUMetric``.

    Args:
        network: the segmentor (eval mode).
        dataloader: the split's test dataloader.
        classes: the split's class names (C of them).
        ignore_index: the label value left out of the metrics.
        keep: image path -> grid row, for the images whose (H, W) predictions and labels are returned.

    Returns:
        tuple: the metrics (``IoU`` and ``Acc`` per class, None where undefined; ``mIoU``, ``mAcc``, ``aAcc``;
        ``num_images``; all in %) and, by image path, the kept (H, W) int64 ``(prediction, label)``.
    """
    metric = IoUMetric(ignore_index=ignore_index, iou_metrics=['mIoU'], prefix='seg_compare')
    metric.dataset_meta = dict(classes=tuple(classes))
    kept = {}
    with torch.no_grad():
        for batch in dataloader:
            outputs = network.test_step(batch)
            metric.process(batch, [sample.to_dict() for sample in outputs])  # as mmengine's Evaluator gives them
            for sample in outputs:
                if sample.img_path in keep:
                    kept[sample.img_path] = tuple(
                        m.data.squeeze(0).cpu().numpy().astype(np.int64)
                        for m in (sample.pred_sem_seg, sample.gt_sem_seg))
    areas = [sum(parts) for parts in zip(*metric.results)]
    per_class = IoUMetric.total_area_to_metrics(*areas, metrics=['mIoU'])
    result = {}
    for key in ('IoU', 'Acc'):
        values = per_class[key]
        result[key] = {name: None if np.isnan(v) else 100 * float(v) for name, v in zip(classes, values)}
        # IoUMetric.compute_metrics' summary: the mean over the classes that have a value
        result['m' + key] = 100 * float(np.nanmean(values))
    result['aAcc'] = 100 * float(per_class['aAcc'])
    result['num_images'] = len(metric.results)
    return result, kept


def table(models: List[Model], results: List[dict], classes: Sequence[str]) -> str:
    """The Markdown table: rows models, columns mIoU, the classes' IoU, mAcc, aAcc (in %)."""

    def cell(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    header = ['model', 'mIoU', *classes, 'mAcc', 'aAcc']
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for model, result in zip(models, results):
        cells = [model.name, cell(result['mIoU']), *(cell(result['IoU'][c]) for c in classes)]
        lines.append('| ' + ' | '.join(cells + [cell(result['mAcc']), cell(result['aAcc'])]) + ' |')
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- the picture
def class_colours(classes: Sequence[str], palette: Optional[Sequence]) -> np.ndarray:
    """(256, 3) uint8 RGB colour of every label value: the Cityscapes colour of a Cityscapes class name, else the
    dataset's ``palette`` entry, else a fixed random colour; values that are no class (255 = ignore) black."""
    colours = np.zeros((256, 3), np.uint8)
    colours[:] = IGNORE_COLOUR
    cityscapes = dict(zip(cityscapes_classes(), cityscapes_palette()))
    fallback = np.random.default_rng(0).integers(0, 256, (len(classes), 3))
    for index, name in enumerate(classes):
        if name in cityscapes:
            colours[index] = cityscapes[name]
        elif palette is not None and index < len(palette):
            colours[index] = palette[index]
        else:
            colours[index] = fallback[index]
    return colours


def grid_figure_size(rows: int, columns: int, aspect: float) -> Tuple[float, float]:
    """(width, height) in inches of the grid: ``PANEL_INCHES`` wide pictures of height/width ``aspect``, a title
    row above."""
    return columns * PANEL_INCHES, rows * PANEL_INCHES * aspect + TITLE_INCHES


def plot_grid(path: str, images: List[np.ndarray], labels: List[np.ndarray], predictions: Dict[str, List[np.ndarray]],
              titles: Dict[str, str], colours: np.ndarray) -> Tuple[int, int]:
    """Write the PNG: one row per image, columns image / ground truth / each model's prediction.

    Args:
        path: the PNG.
        images: (H, W, 3) uint8 RGB pictures, one per row.
        labels: their (H, W) labels.
        predictions: model name -> its (H, W) predictions, one per row.
        titles: model name -> its column title.
        colours: (256, 3) uint8 colour of every label value.

    Returns:
        tuple: the figure's (width, height) in pixels.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    columns = [('image', images), ('ground truth', [colours[label] for label in labels])]
    columns += [(titles[name], [colours[np.clip(p, 0, 255)] for p in preds]) for name, preds in predictions.items()]
    height, width = images[0].shape[:2]
    size = grid_figure_size(len(images), len(columns), height / width)
    fig = plt.figure(figsize=size, dpi=DPI)
    top = 1 - TITLE_INCHES / size[1]
    row_height = top / len(images)
    for c, (title, pictures) in enumerate(columns):
        for r, picture in enumerate(pictures):
            ax = fig.add_axes((c / len(columns), top - (r + 1) * row_height, 1 / len(columns), row_height))
            ax.imshow(picture, interpolation='nearest', aspect='auto')
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=DPI, format='png')
    plt.close(fig)
    return round(size[0] * DPI), round(size[1] * DPI)


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='tools/analysis/seg_compare.py',
        description='per-class IoU (Table 1) and a picture grid of 2-6 segmentors on one validation split')
    parser.add_argument(
        '--model',
        nargs=3,
        action='append',
        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
        required=True,
        help='a compared model (2 to 6 of them): its name, an mmseg / mmkd config, its checkpoint')
    parser.add_argument('--out', required=True, help='the folder of seg_compare.{md,json,png}')
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument('--images', type=int, default=4, help='pictures in the grid, spread over the split (default 4)')
    chosen.add_argument('--indices', type=int, nargs='+', help='the split\'s images in the grid, by index')
    parser.add_argument(
        '--split-config', help="the config whose test_dataloader is the split (default: the first "
        "model's)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override settings of the split config, key=value')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    if not MIN_MODELS <= len(args.model) <= MAX_MODELS:
        parser.error(f'--model is given {len(args.model)} times; seg_compare compares {MIN_MODELS} to {MAX_MODELS} '
                     'models')
    names = [name for name, _, _ in args.model]
    if len(set(names)) != len(names):
        parser.error(f'the model names must differ, got {names}')
    if args.images < 1:
        parser.error(f'--images must be >= 1, got {args.images}')
    if args.indices is not None and (min(args.indices) < 0 or len(set(args.indices)) != len(args.indices)):
        parser.error(f'--indices must be distinct indices >= 0, got {args.indices}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda asked for, but torch sees no CUDA device')
    return args


def check_files(models: List[Model]) -> None:
    """Fail before any model is built where a config or checkpoint file is missing."""
    for model in models:
        for what, path in (('config', model.config), ('checkpoint', model.checkpoint)):
            if what == 'config' and '::' in path:
                continue
            if not osp.isfile(path):
                kind = 'is a folder, not a file' if osp.isdir(path) else 'does not exist'
                raise FileNotFoundError(f'seg_compare: the {what} of model {model.name!r} ({path}) {kind}')


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> dict:
    """Evaluate the models and write the outputs; returns what the JSON file holds."""
    args = parse_args(argv)
    stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    models = [Model(*spec) for spec in args.model]
    check_files(models)
    split = args.split_config or models[0].config
    cfg = load_config(split, 'seg_compare: the split config')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if not isinstance(cfg.get('test_dataloader'), dict):
        raise KeyError(f'seg_compare: the split config {split} has no test_dataloader')
    MMLogger.get_instance('mmengine', log_level='WARNING')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataloader = Runner.build_dataloader(cfg.test_dataloader)
    dataset = dataloader.dataset
    classes = tuple(dataset.metainfo['classes'])
    evaluator = cfg.get('test_evaluator') or {}
    ignore_index = evaluator.get('ignore_index', 255) if isinstance(evaluator, dict) else 255
    for model in models:
        build_network(model, args.device)
    check_classes(models, classes, split)

    indices = args.indices
    if indices is None:
        indices = np.linspace(0, len(dataset) - 1, min(args.images, len(dataset))).round().astype(int).tolist()
    bad = [i for i in indices if i >= len(dataset)]
    if bad:
        raise IndexError(f'seg_compare: --indices {bad} are past the split of {split}, which has {len(dataset)} images')
    keep = {dataset.get_data_info(i)['img_path']: row for row, i in enumerate(indices)}
    say(f'seg_compare: {len(models)} models on the test split of {split} ({type(dataset).__name__}, {len(dataset)} '
        f'images, {len(classes)} classes) on {args.device}')

    results, kept = [], {}
    for step, model in enumerate(models, 1):
        start = time.time()
        result, kept[model.name] = evaluate(model.network, dataloader, classes, ignore_index, keep)
        result['seconds'] = round(time.time() - start, 2)
        results.append(result)
        origin = f', the network of a {model.deployed_from}' if model.deployed_from else ''
        say(f'[{step}/{len(models)}] {model.name}: mIoU {result["mIoU"]:.2f}, mAcc {result["mAcc"]:.2f}, aAcc '
            f'{result["aAcc"]:.2f} on {result["num_images"]} images in {result["seconds"]:.1f} s ({model.config}'
            f'{origin})')
        model.network.cpu()  # the next model gets the device's memory

    os.makedirs(args.out, exist_ok=True)
    paths = sorted(keep, key=keep.get)
    images = [cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1] for path in paths]
    labels = [kept[models[0].name][path][1] for path in paths]
    colours = class_colours(classes, dataset.metainfo.get('palette'))
    titles = {m.name: f'{m.name} ({r["mIoU"]:.1f} mIoU)' for m, r in zip(models, results)}
    png = osp.join(args.out, 'seg_compare.png')
    size = plot_grid(png, images, labels, {m.name: [kept[m.name][p][0] for p in paths]
                                           for m in models}, titles, colours)
    markdown = table(models, results, classes)
    record = dict(
        split=dict(config=split, dataset=type(dataset).__name__, num_images=len(dataset), ignore_index=ignore_index),
        classes=list(classes),
        models=[
            dict(name=m.name, config=m.config, checkpoint=m.checkpoint, deployed_from=m.deployed_from, **r)
            for m, r in zip(models, results)
        ],
        grid=dict(png=png, indices=list(indices), images=paths, size=list(size)))
    with open(osp.join(args.out, 'seg_compare.md'), 'w') as f:
        f.write(markdown)
    with open(osp.join(args.out, 'seg_compare.json'), 'w') as f:
        json.dump(record, f, indent=1)
    say(f'\n{markdown}\nSaved {png} ({size[0]}x{size[1]} px), seg_compare.md and seg_compare.json in {args.out}')
    return record


if __name__ == '__main__':
    main()
