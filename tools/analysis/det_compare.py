"""Pictures of 1 to 4 detectors' predictions side by side on the same images, as in appendix C of de Rijk et al.,
"Structural Knowledge Distillation for Object Detection" (NeurIPS 2022): baseline / distilled / teacher.

Every shown prediction (score >= ``--score-thr``) is drawn in **yellow** when it is correct (IoU >= ``--iou-thr``
with a ground-truth box of its class that no higher-scoring prediction took: COCO's greedy matching), in **red**
otherwise (wrong class, poor localisation, duplicate or background), in grey when COCO would ignore it (it lies in a
crowd region of its class), labelled with class name and score; the ground truth is drawn first, thinner, in
**white**. Each panel's title gives the model's name and its numbers of correct and wrong predictions and of missed
objects. See :mod:`mmkd.analysis.qualitative` for the matching.

**Sources** in the order given: ``--model NAME CONFIG CHECKPOINT`` (a plain mmdet detector, a distiller's training
checkpoint with its config, or an exported student; predicted here, on the chosen images only) or ``--results NAME
FILE`` (a COCO result JSON, e.g. from ``tools/test.py`` with ``CocoMetric``'s ``outfile_prefix``).

**Images** from the test set of the first model's config (``--data-root`` / ``--ann-file`` replace its own); with
``--results`` only, from ``--ann-file`` and ``--img-dir``. Choose them with ``--images`` (ids or file names),
``--random N`` (with ``--seed``: the same images for every model and every run; the default is ``--random 4``),
``--best N`` / ``--worst N`` (the images where the second model of ``--compare A B``, default the second column,
has the most / fewest more correct predictions than the first: where distillation helped or hurt; this predicts the
two models on every image).

**Output** in ``--out-dir``: one ``<file name>.png`` per image (a row of panels, with ``--gt-panel`` first the
ground truth alone), ``grid.png`` with ``--grid`` (rows images, columns models), and ``det_compare.json`` (the
settings, and per image and model the counts: correct, wrong, ignored, missed, and the wrong ones by error).
Usage::

    Q=work_dirs/quickstart
    python tools/analysis/det_compare.py \\
        --model baseline configs/toy/retinanet_tiny-w16_toy.py $(cat $Q/baseline_seed0/last_checkpoint) \\
        --model ssim configs/ssim_kd/ssim_retinanet_tiny-w32-w16_toy.py $(cat $Q/ssim_seed0/last_checkpoint) \\
        --model teacher configs/toy/retinanet_tiny-w32_toy.py $(cat $Q/teacher/last_checkpoint) \\
        --out-dir work_dirs/det_compare --random 4 --seed 0 --grid --work-dir work_dirs/det_compare
    python tools/analysis/det_compare.py --model ... --model ... --out-dir DIR --best 3 --compare baseline ssim
    python tools/analysis/det_compare.py --results baseline base.bbox.json --results ssim ssim.bbox.json \\
        --ann-file data/coco/annotations/instances_val2017.json --img-dir data/coco/val2017 --images 139 285
"""
import argparse
import contextlib
import hashlib
import io
import json
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

import cv2
import torch

from mmkd.analysis import (ModelSpec, build_test_set, cached_detections, detections_file, load_coco, load_detector,
                           model_specs, predict_detections)
from mmkd.analysis.detections import Source, add_source_arguments, annotation_file
from mmkd.analysis.error_breakdown import detection_problem
from mmkd.analysis.qualitative import (DEFAULT_IOU_THR, DEFAULT_PANEL_SIZE, DEFAULT_SCORE_THR, ImageMatch, choose_named,
                                       choose_random, compare_row, display_scale, group_by_image, match_detections,
                                       rank_by_gain, stack_rows, write_png)
from mmkd.utils.safe_save import atomic_write

MAX_COLUMNS = 4


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='tools/analysis/det_compare.py',
        description='predictions of 1-4 detectors side by side: correct yellow, wrong red, ground truth white')
    add_source_arguments(
        parser,
        'columns',
        model_help='a detector to run (a column; repeat, columns in the order given)',
        results_help='precomputed detections, a COCO result JSON (a column)')
    parser.add_argument('--out-dir', required=True, help='folder of the PNG files and det_compare.json')
    parser.add_argument('--data-root', help="the test set's data root instead of the config's")
    parser.add_argument(
        '--ann-file',
        help="the COCO annotation file instead of the config's (relative: to the data root); needed with --results only"
    )
    parser.add_argument(
        '--img-dir',
        help="with --results only: the folder the annotation file's file names are in (relative: to --data-root)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument('--images', nargs='+', metavar='ID_OR_FILE', help='the images, by id or file name')
    choice.add_argument('--random', type=int, metavar='N', help='N images drawn with --seed (default: 4)')
    choice.add_argument(
        '--best',
        type=int,
        metavar='N',
        help='the N images where the second --compare model gains the most correct predictions over the first')
    choice.add_argument('--worst', type=int, metavar='N', help='the N images where it gains the least (loses most)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --random (default 0)')
    parser.add_argument(
        '--compare',
        nargs=2,
        metavar=('A', 'B'),
        help='the two columns that --best / --worst rank by (default: the first two)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=DEFAULT_SCORE_THR,
        help=f'predictions below this score are not drawn (default {DEFAULT_SCORE_THR}, as mmdet\'s visualiser)')
    parser.add_argument(
        '--iou-thr',
        type=float,
        default=DEFAULT_IOU_THR,
        help=f'IoU a correct prediction needs with its ground truth (default {DEFAULT_IOU_THR}, COCO\'s AP50)')
    parser.add_argument('--gt-panel', action='store_true', help='first panel: the image with its ground truth only')
    parser.add_argument('--grid', action='store_true', help='also write grid.png: rows images, columns models')
    parser.add_argument(
        '--panel-size',
        type=int,
        default=DEFAULT_PANEL_SIZE,
        help=f'smaller images are enlarged to this longer side; grid panels have it (default {DEFAULT_PANEL_SIZE})')
    parser.add_argument('--work-dir', help='cache the detections there (work_dir/detections/NAME/*.json)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    args.columns = getattr(args, 'columns', None) or []
    if not 1 <= len(args.columns) <= MAX_COLUMNS:
        parser.error(f'{len(args.columns)} columns given (--model / --results); det_compare shows 1 to {MAX_COLUMNS}')
    names = [c.name for c in args.columns]
    if len(set(names)) != len(names):
        parser.error(f'the model names must differ (they title the panels), got {names}')
    for option in ('random', 'best', 'worst'):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f'--{option} must be >= 1, got {getattr(args, option)}')
    if args.images is None and args.best is None and args.worst is None and args.random is None:
        args.random = 4
    ranked = args.best is not None or args.worst is not None
    if ranked:
        if args.compare is None:
            if len(names) < 2:
                parser.error('--best / --worst rank by the difference between two models: give at least two')
            args.compare = names[:2]
        unknown = [n for n in args.compare if n not in names]
        if unknown or args.compare[0] == args.compare[1]:
            parser.error(f'--compare needs two different column names of {names}, got {args.compare}')
    elif args.compare is not None:
        parser.error('--compare is for --best / --worst')
    for option in ('score_thr', 'iou_thr'):
        if not 0 <= getattr(args, option) <= 1:
            parser.error(f'--{option.replace("_", "-")} must be in [0, 1], got {getattr(args, option)}')
    if args.panel_size < 64:
        parser.error(f'--panel-size must be >= 64, got {args.panel_size}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda asked for, but torch sees no CUDA device')
    return args


def check_columns(columns: Sequence[Source]) -> Dict[str, ModelSpec]:
    """The models' specs, and every result file present, before anything is loaded.

    Raises:
        ValueError, FileNotFoundError: naming the model and the file.
    """
    triples = [(c.name, *c.paths) for c in columns if c.kind == 'model']
    specs = {s.name: s for s in model_specs(triples)} if triples else {}
    for column in columns:
        if column.kind == 'results' and not osp.isfile(column.paths[0]):
            raise FileNotFoundError(f'--results {column.name!r}: {column.paths[0]!r} does not exist')
    return specs


def read_results(column: Source, image_ids: Sequence[int], categories: Dict[int, str]) -> List[dict]:
    """The detections of a COCO result JSON (a list of result dicts, or mmkd's cached ``{"detections": [...]}``)
    on ``image_ids``.

    Raises:
        ValueError: the file is no result list, or an entry lacks a key or names an unknown category.
    """
    path = column.paths[0]
    try:
        with open(path) as f:
            results = json.load(f)
    except ValueError as e:
        raise ValueError(f'--results {column.name!r}: {path} is not JSON ({e})') from None
    if isinstance(results, dict) and 'detections' in results:
        results = results['detections']
    if not isinstance(results, list):
        raise ValueError(f'--results {column.name!r}: {path} holds a {type(results).__name__}, expected a list of '
                         'COCO result dicts (image_id, category_id, bbox, score)')
    wanted = set(image_ids)
    kept = []
    for index, det in enumerate(results):
        if not isinstance(det, dict) or not {'image_id', 'category_id', 'bbox', 'score'} <= set(det):
            raise ValueError(f'--results {column.name!r}: entry {index} of {path} is not a COCO result dict with '
                             f'image_id, category_id, bbox and score: {str(det)[:120]}')
        problem = detection_problem(det)
        if problem:
            raise ValueError(f'--results {column.name!r}: entry {index} of {path}: {problem}')
        if det['category_id'] not in categories:
            raise ValueError(f'--results {column.name!r}: entry {index} of {path} has category_id '
                             f'{det["category_id"]}, not one of the annotation file\'s {sorted(categories)}')
        if det['image_id'] in wanted:
            kept.append(det)
    return kept


class ImageSource:
    """The images that can be shown: their COCO records and files, and the ground truth."""

    def __init__(self, args: argparse.Namespace, specs: Dict[str, ModelSpec]):
        if specs:
            from mmengine.config import Config
            first = next(iter(specs.values()))
            dataset = quiet(
                build_test_set, Config.fromfile(first.config), ann_file=args.ann_file, data_root=args.data_root)
            self.ann_file = annotation_file(dataset)
            self.paths = {}
            for index in range(len(dataset)):
                info = dataset.get_data_info(index)
                self.paths[info['img_id']] = info['img_path']
            self.source = f'the test set of {first.config}'
        else:
            if not args.ann_file or not args.img_dir:
                raise ValueError('with --results only, give --ann-file and --img-dir (where the images are)')
            self.ann_file = _under(args.data_root, args.ann_file)
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'--ann-file {self.ann_file!r} does not exist')
            self.paths = None
            self.source = self.ann_file
        self.coco = load_coco(self.ann_file)
        self.images = [img for img in self.coco.dataset['images'] if self.paths is None or img['id'] in self.paths]
        if self.paths is None:
            folder = _under(args.data_root, args.img_dir)
            self.paths = {img['id']: osp.join(folder, img['file_name']) for img in self.images}
        self.categories = {c['id']: c['name'] for c in self.coco.dataset.get('categories', [])}
        self.annotations = group_by_image(self.coco.dataset.get('annotations', []))

    def read(self, image_id: int):
        """The (H, W, 3) uint8 RGB image."""
        path = self.paths[image_id]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f'image {image_id}: {path} is missing or not an image')
        return image[..., ::-1]


def quiet(function, *args, **kwargs):
    """``function(*args, **kwargs)`` without what it prints (pycocotools' and mmengine's lines on loading
    annotations and checkpoints)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


def _under(root: Optional[str], path: str) -> str:
    return path if root is None or osp.isabs(path) else osp.join(root, path)


def model_detections(spec: ModelSpec, image_ids: Sequence[int], args: argparse.Namespace, everything: bool,
                     say) -> List[dict]:
    """Predict ``spec`` on ``image_ids`` of its config's test set (cached in ``--work-dir``)."""
    from mmengine.config import Config
    cfg = Config.fromfile(spec.config)
    full = quiet(build_test_set, cfg, ann_file=args.ann_file, data_root=args.data_root)
    index_of = {full.get_data_info(i)['img_id']: i for i in range(len(full))}
    absent = [i for i in image_ids if i not in index_of]
    if absent:
        raise ValueError(f'model {spec.name!r}: the test set of {spec.config} has no image with id {absent[:5]} '
                         '(its config reads another annotation file: pass --ann-file / --data-root)')

    def compute() -> List[dict]:
        model, _ = quiet(load_detector, spec, args.device)
        dataset = full if everything else quiet(
            build_test_set,
            cfg,
            ann_file=args.ann_file,
            data_root=args.data_root,
            indices=[index_of[i] for i in image_ids])
        return predict_detections(model, dataset, batch_size=args.batch_size)

    if not args.work_dir:
        return compute()
    data = osp.abspath(annotation_file(full))
    if everything:  # the whole test set: the same cache as the other analysis tools
        tag = 'clean' if args.ann_file is None and args.data_root is None else f'clean-{_digest(data)}'
    else:
        tag = f'images-{_digest(data, *sorted(image_ids))}'
    return cached_detections(spec, detections_file(args.work_dir, spec.name, tag), compute, log=say)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def output_stem(file_name: str, taken: set, image_id: int) -> str:
    """The PNG's name for an image: its file name without folders' slashes and extension, unique."""
    stem = osp.splitext(file_name.replace('\\', '/'))[0].replace('/', '_')
    if stem in taken or stem in ('grid', 'det_compare'):
        stem = f'{stem}_{image_id}'
    taken.add(stem)
    return stem


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> dict:
    """Choose the images, get every column's detections, draw and write the pictures; returns what
    ``det_compare.json`` holds."""
    args = parse_args(argv)
    stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    specs = check_columns(args.columns)
    data = ImageSource(args, specs)
    if not data.images:
        raise ValueError(f'{data.source} has no images')
    all_ids = [img['id'] for img in data.images]
    detections: Dict[str, List[dict]] = {}

    def get(column: Source, step: int, image_ids: Sequence[int]) -> None:
        start = time.time()
        everything = len(image_ids) == len(all_ids)
        if column.kind == 'model':
            detections[column.name] = model_detections(specs[column.name], image_ids, args, everything, say)
            origin = f'{column.paths[0]}, {column.paths[1]}'
        else:
            detections[column.name] = read_results(column, image_ids, data.categories)
            origin = column.paths[0]
        shown = sum(d['score'] >= args.score_thr for d in detections[column.name])
        say(f'[{step}/{len(args.columns)}] {column.name}: {len(detections[column.name])} detections ({shown} with '
            f'score >= {args.score_thr}) on {len(image_ids)} images in {time.time() - start:.1f} s ({origin})')

    order = list(args.columns)
    if args.images is not None:
        chosen = choose_named(data.images, args.images)
        how = 'chosen'
    elif args.random is not None:
        chosen = choose_random(data.images, args.random, args.seed)
        how = f'random (seed {args.seed})'
    else:
        first, second = (next(c for c in args.columns if c.name == n) for n in args.compare)
        order = [first, second] + [c for c in args.columns if c not in (first, second)]
        for column in (first, second):
            get(column, order.index(column) + 1, all_ids)
        matches = {c.name: _matches(detections[c.name], all_ids, data.annotations, args) for c in (first, second)}
        count = args.best if args.best is not None else args.worst
        ranked = rank_by_gain(matches[first.name], matches[second.name], count, largest=args.best is not None)
        by_id = {img['id']: img for img in data.images}
        chosen = [by_id[i] for i in ranked]
        how = f'{"most" if args.best is not None else "fewest"} more correct predictions of {second.name} than ' \
              f'{first.name}'
    chosen_ids = [img['id'] for img in chosen]
    say(f'det_compare: {len(args.columns)} columns on {len(chosen_ids)} images ({how}) of {data.source}; '
        f'score >= {args.score_thr}, IoU >= {args.iou_thr}')
    for step, column in enumerate(order, 1):
        if column.name not in detections:
            get(column, step, chosen_ids)

    names = [c.name for c in args.columns]
    per_image = {name: _matches(detections[name], chosen_ids, data.annotations, args) for name in names}
    record = dict(
        score_thr=args.score_thr,
        iou_thr=args.iou_thr,
        chosen=how,
        annotation_file=data.ann_file,
        columns=[dict(name=c.name, kind=c.kind, files=list(c.paths)) for c in args.columns],
        images=[],
        grid=None)
    taken, grid_rows, written = set(), [], []
    for img in chosen:
        image = data.read(img['id'])
        matches = [per_image[name][img['id']] for name in names]
        titles = [f'{name}: {_summary(m)}' for name, m in zip(names, matches)]
        gt = data.annotations.get(img['id'], [])
        objects = sum(not a.get('iscrowd') for a in gt)
        gt_title = f'ground truth: {objects} object{"s" * (objects != 1)}' if args.gt_panel else None
        scale = display_scale(*image.shape[:2], args.panel_size)
        row, _ = compare_row(image, matches, titles, data.categories, scale, gt_title)
        path = osp.join(args.out_dir, output_stem(img['file_name'], taken, img['id']) + '.png')
        size = write_png(row, path)
        written.append((path, size))
        if args.grid:
            exact = display_scale(*image.shape[:2], args.panel_size, exact=True)
            grid_rows.append(compare_row(image, matches, titles, data.categories, exact, gt_title)[0])
        record['images'].append(
            dict(
                id=img['id'],
                file_name=img['file_name'],
                png=path,
                size=list(size),
                counts={
                    name: m.counts()
                    for name, m in zip(names, matches)
                }))
    if args.grid:
        path = osp.join(args.out_dir, 'grid.png')
        size = write_png(stack_rows(grid_rows), path)
        record['grid'] = dict(png=path, size=list(size))
        written.append((path, size))
    summary = osp.join(args.out_dir, 'det_compare.json')
    atomic_write(json.dumps(record, indent=1), summary)
    for path, (width, height) in written:
        say(f'Saved {path} ({width}x{height} px)')
    say(f'Saved {summary}')
    return record


def _matches(detections: List[dict], image_ids: Sequence[int], annotations: Dict[int, List[dict]],
             args: argparse.Namespace) -> Dict[int, ImageMatch]:
    by_image = group_by_image(detections)
    return {
        i: match_detections(by_image.get(i, []), annotations.get(i, []), args.score_thr, args.iou_thr)
        for i in image_ids
    }


def _summary(match: ImageMatch) -> str:
    text = f'{match.count("correct")} correct, {match.count("wrong")} wrong, {match.missed} missed'
    ignored = match.count('ignored')
    return text + (f', {ignored} in crowd' if ignored else '')


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f'det_compare: error: {error}')
