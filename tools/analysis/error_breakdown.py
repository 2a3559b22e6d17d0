"""COCO PR-curve error breakdown and TIDE errors of one to three detectors on their test set.

Hoiem, Chodpathumwan, Dai, "Diagnosing Error in Object Detectors" (ECCV 2012), as the COCO API's ``analyze()``
and MMDetection's ``coco_error_analysis.py`` compute it: the area under the PR curve at IoU .75 (C75), .5 (C50),
.1 (Loc), with supercategory confusions (Sim), all class confusions (Oth), background false positives (BG) and
missed objects (FN) forgiven, overall and per object size, as in the appendix of de Rijk et al., "Structural
Knowledge Distillation for Object Detection" (NeurIPS 2022); and Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors" (ECCV 2020): the AP50 gained by fixing each error type.

**Models.** ``--model NAME CONFIG CHECKPOINT`` (a plain mmdet detector, an mmkd distiller's training checkpoint or
an exported student: :func:`mmkd.analysis.load_detector`) and / or ``--results NAME FILE`` (COCO result JSON made
elsewhere), one to three in all, in the order given: the first is the baseline, the second is drawn as its gain,
the third (e.g. the teacher) as an outline. Detections of a ``--model`` are cached in
``WORK_DIR/detections/NAME/clean.json`` (recomputed when the config, the checkpoint or the test set changes).

**Output** in ``--work-dir``: ``error_breakdown.{json,md,png}`` (every AP of the breakdown, a table, the bar
figure), ``pr_curves_NAME.png`` (each model's PR curves per setting and size), ``tide.{json,md,png}`` (unless
``--no-tide``). Usage::

    python tools/analysis/error_breakdown.py --work-dir work_dirs/errors \\
        --model baseline configs/toy/retinanet_tiny-w16_toy.py work_dirs/quickstart/baseline_seed0/epoch_10.pth \\
        --model ssim configs/ssim_kd/ssim_retinanet_tiny-w32-w16_toy.py work_dirs/quickstart/ssim_seed0/epoch_10.pth \\
        --model teacher configs/toy/retinanet_tiny-w32_toy.py work_dirs/quickstart/teacher/epoch_10.pth
    python tools/analysis/error_breakdown.py --work-dir out --ann-file val.json --results a a.json --results b b.json
"""
import argparse
import contextlib
import io
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence, TextIO

from mmkd.analysis.detections import add_source_arguments

MAX_MODELS = 3


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='tools/analysis/error_breakdown.py',
        description='COCO PR-curve error breakdown (C75 ... FN, per size) and TIDE errors of 1-3 detectors')
    add_source_arguments(
        parser,
        'sources',
        model_help='a detector: its name, an mmdet / mmkd config, its checkpoint (the first one is the baseline)',
        results_help='precomputed detections: a name and a COCO result JSON (a list of image_id, category_id, bbox, '
        'score)')
    parser.add_argument('--work-dir', required=True, help='the folder of the outputs and the cached detections')
    parser.add_argument('--data-root', help="the test set's data root instead of the config's")
    parser.add_argument(
        '--ann-file',
        help="the COCO annotation file instead of the config's (absolute or relative to the data root); "
        'needed when only --results are given')
    parser.add_argument('--num-images', type=int, help='analyse only the first N images of the test set')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    parser.add_argument('--device', default='cpu', help='device of the detectors (default cpu)')
    parser.add_argument(
        '--supercategories',
        nargs='+',
        metavar='SUPER=CLASS,CLASS',
        help='supercategories instead of the annotation file\'s (Sim forgives confusions within one), e.g. '
        'round=circle,ring angular=square,triangle,cross')
    parser.add_argument('--no-tide', action='store_true', help='skip the TIDE analysis')
    args = parser.parse_args(argv)
    sources = args.sources or []
    if not 1 <= len(sources) <= MAX_MODELS:
        parser.error(f'--model / --results given {len(sources)} times: the error breakdown compares 1 to '
                     f'{MAX_MODELS} models')
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        parser.error(f'the model names must differ (they name files and legend entries), got {names}')
    # --results names are not checked by model_specs, and pr_curves_NAME.png is written only after the analysis
    odd = [n for n in names if not n.strip('.') or not all(c.isalnum() or c in '-_.+' for c in n)]
    if odd:
        parser.error(f'model names {odd}: use letters, digits and - _ . + only (they name files)')
    if all(s.kind == 'results' for s in sources) and not args.ann_file:
        parser.error('only --results given: pass --ann-file, the COCO annotations the results are for')
    if args.num_images is not None and args.num_images < 1:
        parser.error(f'--num-images must be >= 1, got {args.num_images}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def read_results(name: str, path: str) -> List[dict]:
    """The detections of a COCO result JSON (a list of dicts, or a dict with a ``detections`` list as this tool
    caches them)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'--results {name}: {path} does not exist')
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f'--results {name}: {path} is not JSON ({e})') from None
    if isinstance(data, dict) and isinstance(data.get('detections'), list):
        data = data['detections']
    if not isinstance(data, list):
        raise ValueError(f'--results {name}: {path} holds a {type(data).__name__}; expected a COCO result list '
                         '(dicts with image_id, category_id, bbox, score)')
    return data


def subset_coco(coco_gt, image_ids: Sequence[int]):
    """A pycocotools ``COCO`` with only the images ``image_ids`` of ``coco_gt`` and their annotations."""
    from pycocotools.coco import COCO
    keep = set(image_ids)
    dataset = dict(coco_gt.dataset)
    dataset['images'] = [im for im in coco_gt.dataset['images'] if im['id'] in keep]
    dataset['annotations'] = [a for a in coco_gt.dataset['annotations'] if a['image_id'] in keep]
    sub = COCO()
    sub.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        sub.createIndex()
    return sub


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> dict:
    """Run the analyses and write the outputs; returns what ``error_breakdown.json`` holds (with the TIDE results
    under ``tide`` unless ``--no-tide``)."""
    args = parse_args(argv)
    stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    from mmengine.config import Config

    from mmkd.analysis import (build_test_set, cached_detections, coco_evaluate, dataset_key, detections_file,
                               load_coco, load_detector, model_specs, predict_detections)
    from mmkd.analysis.detections import annotation_file
    from mmkd.analysis.error_breakdown import (SETTINGS, breakdown_table, check_results, parse_supercategories,
                                               plot_breakdown_comparison, plot_pr_panels, pr_breakdown)
    from mmkd.utils.safe_save import atomic_write

    supercategories = parse_supercategories(args.supercategories)
    specs = {s.name: s for s in model_specs([(s.name, *s.paths) for s in args.sources if s.kind == 'model'])} \
        if any(s.kind == 'model' for s in args.sources) else {}
    results = {s.name: read_results(s.name, s.paths[0]) for s in args.sources if s.kind == 'results'}
    os.makedirs(args.work_dir, exist_ok=True)

    # the ground truth: the first model's test set, or the --ann-file of --results
    indices = list(range(args.num_images)) if args.num_images else None
    dataset = None
    if specs:
        first = next(iter(specs.values()))
        dataset = build_test_set(Config.fromfile(first.config), ann_file=args.ann_file, data_root=args.data_root)
        if indices is not None and len(indices) >= len(dataset):
            indices = None  # --num-images beyond the test set: all of it (an index past its end would raise)
        ann_file = annotation_file(dataset)
    else:
        ann_file = args.ann_file
        if not osp.isabs(ann_file) and args.data_root and not osp.isfile(ann_file):
            ann_file = osp.join(args.data_root, ann_file)
        if not osp.isfile(ann_file):
            raise FileNotFoundError(f'--ann-file {args.ann_file}: {ann_file} does not exist')
    coco_gt = full_gt = load_coco(ann_file)
    image_ids = coco_gt.getImgIds()
    if dataset is not None:
        image_ids = [dataset.get_data_info(i)['img_id'] for i in (indices or range(len(dataset)))]
    elif args.num_images:
        image_ids = image_ids[:args.num_images]
    if len(image_ids) != len(coco_gt.getImgIds()):
        coco_gt = subset_coco(coco_gt, image_ids)
    say(f'error_breakdown: {len(image_ids)} images, {len(coco_gt.getAnnIds())} objects of {ann_file}')

    detections = {}
    for kind, name, _ in args.sources:
        if kind == 'results':
            check_results(full_gt, results[name], f'--results {name}')
            keep = set(image_ids)
            detections[name] = [d for d in results[name] if d['image_id'] in keep]
            continue
        spec = specs[name]
        test_set = build_test_set(
            Config.fromfile(spec.config), ann_file=args.ann_file, data_root=args.data_root, indices=indices)

        def compute(spec=spec, test_set=test_set):
            model, _ = load_detector(spec, args.device)
            started = time.time()

            def progress(done: int, total: int) -> None:
                if done == total or done % max(1, total // 10) < args.batch_size:
                    left = (time.time() - started) / done * (total - done)
                    say(f'  [{spec.name}] {done}/{total} images, about {left:.0f} s left')

            return predict_detections(model, test_set, args.batch_size, progress=progress)

        # keyed on the test set too: another --data-root / --ann-file / --num-images recomputes
        detections[name] = cached_detections(
            spec, detections_file(args.work_dir, name, 'clean'), compute, log=say, data=dataset_key(test_set))

    names = [s.name for s in args.sources]
    sups = {
        c['name']: (supercategories or {}).get(c['name'], c.get('supercategory'))
        for c in coco_gt.loadCats(coco_gt.getCatIds())
    }
    if len(set(sups.values())) == 1:
        say(f'  note: every category is in supercategory {next(iter(sups.values()))!r}, so Sim equals Oth; '
            '--supercategories sets others')
    breakdowns, coco_stats = {}, {}
    for name in names:
        started = time.time()
        breakdowns[name] = pr_breakdown(coco_gt, detections[name], supercategories)
        coco_stats[name] = coco_evaluate(coco_gt, detections[name])
        ap = breakdowns[name]['ap']['all']
        say(f'  [{name}] ' + ' '.join(f'{s} {ap[s]:.3f}' for s in SETTINGS) + f' ({time.time() - started:.1f} s)')
        plot_pr_panels(breakdowns[name], name, osp.join(args.work_dir, f'pr_curves_{name}.png'))
    summary = dict(
        models=names,
        baseline=names[0],
        ann_file=osp.abspath(ann_file),
        num_images=len(image_ids),
        supercategories=sups,
        settings=list(SETTINGS),
        coco=coco_stats,
        breakdown=breakdowns)
    atomic_write(json.dumps(summary, indent=1), osp.join(args.work_dir, 'error_breakdown.json'))
    atomic_write(
        f'COCO PR-curve error breakdown (AP, area under each PR curve), {len(image_ids)} images of {ann_file}; '
        f'in brackets: the change against {names[0]}\n\n' + breakdown_table(breakdowns),
        osp.join(args.work_dir, 'error_breakdown.md'))
    plot_breakdown_comparison(breakdowns, osp.join(args.work_dir, 'error_breakdown.png'))
    say(f'  -> {args.work_dir}/error_breakdown.{{json,md,png}}, pr_curves_*.png')

    if not args.no_tide:
        from mmkd.analysis.tide import plot_tide_comparison, tide_errors, tide_ground_truth, tide_table
        gt_data = tide_ground_truth(coco_gt)
        tide = {name: tide_errors(gt_data, detections[name], name) for name in names}
        atomic_write(json.dumps(dict(models=names, tide=tide), indent=1), osp.join(args.work_dir, 'tide.json'))
        atomic_write(tide_table(tide), osp.join(args.work_dir, 'tide.md'))
        plot_tide_comparison(tide, osp.join(args.work_dir, 'tide.png'))
        for name in names:
            say(f'  [{name}] TIDE AP50 {tide[name]["ap50"]:.2f}, dAP ' +
                ' '.join(f'{e} {v:.2f}' for e, v in tide[name]['main'].items() if v is not None))
        say(f'  -> {args.work_dir}/tide.{{json,md,png}}')
        summary['tide'] = tide
    return summary


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(f'error_breakdown: {e}')
