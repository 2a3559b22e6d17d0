"""Robustness of detectors to image corruptions: clean AP, AP per corruption and severity, mPC and rPC.

The Robust Detection Benchmark (Michaelis et al., "Benchmarking Robustness in Object Detection: Autonomous Driving
when Winter is Coming", arXiv 2019): every model is evaluated (COCO bbox AP) on the clean test set and on the test
set under each chosen corruption at each chosen severity (the ``imagecorruptions`` package, 15 corruptions x 5
severities by default); mPC is the mean AP over the evaluated (corruption, severity) cells, rPC = mPC / clean AP.
de Rijk et al., "Structural Knowledge Distillation for Object Detection" (NeurIPS 2022), Table 3 compares a
RetinaNet with its SSIM-distilled version this way.

**Models.** ``--model NAME CONFIG CHECKPOINT``, repeated: any mmdet detector config with a plain, mmkd training
(its deployable network) or exported checkpoint (:func:`mmkd.analysis.load_detector`).

**Images.** The test set of the first model's config (``test_dataloader.dataset``; ``--data-root`` /
``--ann-file`` replace its data root and annotation file), the same images for every model, each through its own
config's test pipeline with :class:`mmkd.datasets.CorruptImage` right after image loading. ``--num-images N``
evaluates N images spread evenly over the set (a quick run).

**Order of work.** The clean set first (every model), then cell after cell (corruption, severity): every model on
the same corrupted images. A corrupted image is seeded from (corruption, severity, the image's file name, ``--seed``)
and written once to ``WORK_DIR/corrupted_images`` (lossless PNG): the first model of a cell computes it in the
dataloader workers, the others (and a rerun of an interrupted cell) read it back. Once every model has the cell,
its images are deleted (``--keep-images`` keeps them, for models added later: the full benchmark is 75 corrupted
copies of the test set). Each finished cell's COCO numbers are saved at once
(atomically) in ``WORK_DIR/cells/NAME.json``, so an interrupted run resumes from the finished cells. A model's saved
cells are dropped and recomputed when its config file's content, its checkpoint file (path, size, modification
time), the image set (data root, annotation file with its size and modification time, the chosen images) or the
seed changed.

**Outputs** in ``--work-dir``: ``robustness.json`` (every number, COCO metrics as fractions), ``robustness.md``
(clean AP, mPC, rPC and the mean AP of every corruption per model, x 100) and ``robustness.png`` (AP against
severity, 0 = clean, averaged over the corruptions, one line per model; one small panel per corruption). Usage::

    python tools/analysis/robustness.py \\
        --model baseline work_dirs/quickstart/baseline_seed0/retinanet_tiny-w16_toy.py \\
                         work_dirs/quickstart/baseline_seed0/epoch_12.pth \\
        --model ssim work_dirs/quickstart/ssim_seed0/ssim_retinanet_tiny-w32-w16_toy.py \\
                     work_dirs/quickstart/ssim_seed0/epoch_12.pth \\
        --work-dir work_dirs/robustness --corruptions noise glass_blur --severities 1 3 5 --num-images 50
"""
import argparse
import contextlib
import hashlib
import io
import json
import os
import os.path as osp
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

import numpy as np

import mmkd  # noqa: F401  (registers mmkd's components, installs the checkpoint allow-list)
from mmkd.analysis.detections import (COCO_STATS, annotation_file, build_test_set, coco_evaluate, dataset_key,
                                      load_coco, load_detector, model_specs, predict_detections)
from mmkd.analysis.robustness import (plot_robustness, resolve_corruptions, resolve_severities, robustness_markdown,
                                      summarize_robustness, write_robustness_json)
from mmkd.datasets.transforms.corruption import CORRUPTIONS
from mmkd.utils.safe_save import atomic_write

CLEAN = 'clean'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='mPC / rPC of detectors under the corruptions of the Robust Detection Benchmark')
    parser.add_argument(
        '--model',
        nargs=3,
        action='append',
        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
        help='a detector to evaluate (repeat for each model)')
    parser.add_argument('--work-dir', required=True, help='outputs, saved cells and the corrupted-image cache')
    parser.add_argument(
        '--corruptions',
        nargs='+',
        default=['all'],
        help=f'corruption names, groups (noise blur weather digital) or all (default); names: {" ".join(CORRUPTIONS)}')
    parser.add_argument('--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5], help='1..5 (default all)')
    parser.add_argument('--num-images', type=int, help='evaluate this many images, spread evenly over the test set')
    parser.add_argument('--data-root', help="the test set's data root instead of the first config's")
    parser.add_argument('--ann-file', help="the test set's annotation file instead of the first config's")
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    parser.add_argument('--workers', type=int, default=2, help='dataloader workers, which corrupt the images')
    parser.add_argument('--seed', type=int, default=0, help='mixed into the seed of every corrupted image')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    parser.add_argument(
        '--no-cache', action='store_true', help='corrupt the images anew for every model (no corrupted-image cache)')
    parser.add_argument(
        '--keep-images',
        action='store_true',
        help="keep a cell's corrupted images once every model has it (for models added later; 75 x the test set)")
    return parser.parse_args(argv)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds} s'
    if seconds < 3600:
        return f'{seconds // 60} min {seconds % 60:02d} s'
    return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


def model_key(spec, image_set: dict, data_key: dict, seed: int) -> dict:
    """What a model's saved cells were computed from; a change drops them."""
    with open(spec.config, 'rb') as f:
        config_sha = hashlib.sha256(f.read()).hexdigest()
    checkpoint = [osp.abspath(spec.checkpoint), osp.getsize(spec.checkpoint), osp.getmtime(spec.checkpoint)]
    return dict(
        config=osp.abspath(spec.config),
        config_sha256=config_sha,
        checkpoint=checkpoint,
        images=image_set,
        data=data_key,
        seed=seed)


def load_cells(path: str, key: dict, name: str, say) -> dict:
    """The cells saved at ``path`` if they were computed for ``key``, else none (saying why)."""
    if not osp.isfile(path):
        return {}
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored.get('key') == json.loads(json.dumps(key)):
            cells = stored['cells']
            # the tables read every COCO number of every cell: a cell without them is recomputed, not half-read
            if isinstance(cells, dict) and all(
                    isinstance(c, dict) and all(isinstance(c.get(k), (int, float)) for k in COCO_STATS)
                    for c in cells.values()):
                return cells
            say(f'  [{name}] {path} holds cells without their COCO numbers: they are recomputed')
            return {}
        say(f'  [{name}] the cells in {path} were computed for another config, checkpoint, image set or seed: '
            'they are recomputed')
    except (OSError, ValueError, KeyError, AttributeError):
        say(f'  [{name}] {path} is unreadable: its cells are recomputed')
    return {}


def evaluate_cell(model, cfg, transforms: List[dict], args: argparse.Namespace, indices, coco_gt,
                  image_ids) -> Dict[str, float]:
    """COCO numbers of one model on the test set with ``transforms`` after image loading."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' loading messages, once per model and cell
        dataset = build_test_set(cfg, transforms, ann_file=args.ann_file, data_root=args.data_root, indices=indices)
    detections = predict_detections(model, dataset, batch_size=args.batch_size, num_workers=args.workers)
    return coco_evaluate(coco_gt, detections, image_ids)


def _image_set(args: argparse.Namespace, cfg):
    """Resolve the data root and annotation file (from the first config unless given), choose the images.

    Returns:
        tuple: (indices or None, image ids, the COCO ground truth, a description of the image set, the test set's
        :func:`~mmkd.analysis.detections.dataset_key`).
    """
    dataset_cfg = cfg.test_dataloader.dataset
    args.data_root = args.data_root if args.data_root is not None else dataset_cfg.get('data_root')
    args.ann_file = args.ann_file if args.ann_file is not None else dataset_cfg.get('ann_file')
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = build_test_set(cfg, (), ann_file=args.ann_file, data_root=args.data_root)
    total = len(dataset)
    if args.num_images is not None and not 1 <= args.num_images:
        raise ValueError(f'--num-images {args.num_images}: expected at least 1')
    indices = None
    if args.num_images is not None and args.num_images < total:
        indices = np.linspace(0, total - 1, args.num_images).round().astype(int).tolist()
    chosen = indices if indices is not None else range(total)
    image_ids = [dataset.get_data_info(i)['img_id'] for i in chosen]
    ann = annotation_file(dataset)
    description = dict(
        data_root=osp.abspath(args.data_root) if args.data_root else None,
        ann_file=osp.abspath(ann),
        num_images=len(image_ids),
        of=total,
        indices=indices)
    return indices, image_ids, load_coco(ann), description, dataset_key(dataset)


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> dict:
    """Evaluate the models cell by cell and write the outputs; returns what ``robustness.json`` holds."""
    args = parse_args(argv)
    stream = stream or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    corruptions = resolve_corruptions(args.corruptions)
    severities = resolve_severities(args.severities)
    if args.batch_size < 1 or args.workers < 0:
        raise ValueError(f'--batch-size {args.batch_size} / --workers {args.workers}: expected >= 1 / >= 0')
    specs = model_specs(args.model)
    work_dir = args.work_dir
    cache_dir = None if args.no_cache else osp.join(work_dir, 'corrupted_images')

    models, configs = {}, {}
    for spec in specs:
        models[spec.name], configs[spec.name] = load_detector(spec, args.device)
    indices, image_ids, coco_gt, image_set, data_key = _image_set(args, configs[specs[0].name])
    say(f'robustness: {len(specs)} model(s) on {image_set["num_images"]} of {image_set["of"]} images of '
        f'{image_set["ann_file"]}; {len(corruptions)} corruption(s) x severities {severities} on {args.device}'
        f'{"" if cache_dir else " (no image cache)"}')

    stores, paths = {}, {}
    for spec in specs:
        key = model_key(spec, image_set, data_key, args.seed)
        paths[spec.name] = osp.join(work_dir, 'cells', f'{spec.name}.json')
        stores[spec.name] = dict(key=key, cells=load_cells(paths[spec.name], key, spec.name, say))

    cells = [(CLEAN, 0)] + [(c, s) for c in corruptions for s in severities]
    started, durations = time.time(), []
    for step, (corruption, severity) in enumerate(cells, 1):
        label = CLEAN if corruption == CLEAN else f'{corruption} severity {severity}'
        cell_id = CLEAN if corruption == CLEAN else f'{corruption}/{severity}'
        transforms = [] if corruption == CLEAN else [
            dict(type='CorruptImage', corruption=corruption, severity=severity, seed=args.seed, cache_dir=cache_dir)
        ]
        cell_started, computed, aps = time.time(), False, []
        for spec in specs:
            store = stores[spec.name]
            if cell_id not in store['cells']:
                store['cells'][cell_id] = evaluate_cell(models[spec.name], configs[spec.name], transforms, args,
                                                        indices, coco_gt, image_ids)
                atomic_write(json.dumps(store, indent=1) + '\n', paths[spec.name])
                computed = True
            aps.append(f'{spec.name} AP {100 * store["cells"][cell_id]["AP"]:.1f}')
        if cache_dir and not args.keep_images and corruption != CLEAN:
            # every model has this cell saved: its images would only serve a model added later
            shutil.rmtree(osp.join(cache_dir, corruption, str(severity)), ignore_errors=True)
        took = time.time() - cell_started
        if computed and corruption != CLEAN:
            durations.append(took)
        left = [
            c for c in cells[step:]
            if any((CLEAN if c[0] == CLEAN else f'{c[0]}/{c[1]}') not in stores[s.name]['cells'] for s in specs)
        ]
        estimate = f'~{_duration(np.mean(durations) * len(left))} left' if durations else 'time left unknown yet'
        say(f'[{step}/{len(cells)}] {label}: {", ".join(aps)} '
            f'({f"{took:.1f} s" if computed else "resumed"}; elapsed {_duration(time.time() - started)}, '
            f'{estimate if left else "done"})')

    results = {}
    for spec in specs:
        saved = stores[spec.name]['cells']
        by_corruption = {c: {s: saved[f'{c}/{s}'] for s in severities} for c in corruptions}
        results[spec.name] = dict(clean=saved[CLEAN], cells=by_corruption)
    summary = summarize_robustness(results, 'AP')
    record = dict(
        summary,
        models={
            name: dict(model, config=spec.config, checkpoint=spec.checkpoint, coco=results[name])
            for (name, model), spec in zip(summary['models'].items(), specs)
        },
        images=image_set,
        seed=args.seed)
    os.makedirs(work_dir, exist_ok=True)
    write_robustness_json(record, osp.join(work_dir, 'robustness.json'))
    markdown = robustness_markdown(summary)
    atomic_write(markdown, osp.join(work_dir, 'robustness.md'))
    plot_robustness(summary, osp.join(work_dir, 'robustness.png'))
    say(f'\n{markdown}\nSaved robustness.json, robustness.md and robustness.png in {work_dir}')
    with open(osp.join(work_dir, 'robustness.json')) as f:
        return json.load(f)


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f'robustness: error: {error.args[0] if isinstance(error, KeyError) else error}')
