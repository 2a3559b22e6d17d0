"""Detections of several detectors on a COCO-style test set, the common ground of the analysis tools.

A model is named by a config and a checkpoint, as for ``tools/test.py``: a plain mmdet detector, an mmkd model
that deploys one (a distiller's student, the chosen network of a CoLAD pair) with its training checkpoint, or an
exported student (``tools/export_student.py``). Predictions are COCO result dicts (``image_id``, ``category_id``,
``bbox`` as x, y, w, h in original image pixels, ``score``), which pycocotools, tidecv and the drawing tools read.
"""
import argparse
import contextlib
import io
import json
import os.path as osp
import pickle
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmkd.utils.safe_save import atomic_write
from mmkd.utils.teacher import build_teacher

COCO_STATS = ('AP', 'AP50', 'AP75', 'AP_S', 'AP_M', 'AP_L')


class ModelSpec(NamedTuple):
    """A detector to analyse: the name shown in tables and figures, its config file and checkpoint."""
    name: str
    config: str
    checkpoint: str


class Source(NamedTuple):
    """Detections to analyse, from the command line: a model to run (``kind`` 'model', ``paths`` its config and
    checkpoint) or a COCO result file (``kind`` 'results', ``paths`` the file)."""
    kind: str
    name: str
    paths: tuple


class _AppendSource(argparse.Action):
    """Keeps ``--model`` and ``--results`` in one list, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        sources = list(getattr(namespace, self.dest, None) or [])
        sources.append(Source(self.const, values[0], tuple(values[1:])))
        setattr(namespace, self.dest, sources)


def add_source_arguments(parser: argparse.ArgumentParser, dest: str, model_help: str, results_help: str) -> None:
    """``--model NAME CONFIG CHECKPOINT`` and ``--results NAME FILE`` (each repeatable), collected as
    :class:`Source` in ``args.<dest>`` in the order given (``None`` when neither is given)."""
    parser.add_argument(
        '--model',
        dest=dest,
        nargs=3,
        action=_AppendSource,
        const='model',
        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
        help=model_help)
    parser.add_argument(
        '--results',
        dest=dest,
        nargs=2,
        action=_AppendSource,
        const='results',
        metavar=('NAME', 'FILE'),
        help=results_help)


def model_specs(triples: Sequence[Sequence[str]]) -> List[ModelSpec]:
    """``--model NAME CONFIG CHECKPOINT`` arguments (repeated) as :class:`ModelSpec`, checked.

    Raises:
        ValueError: no model, a repeated name, or a name with characters that do not suit a file name.
        FileNotFoundError: a config or checkpoint file does not exist.
    """
    specs = [ModelSpec(*t) for t in triples or ()]
    if not specs:
        raise ValueError('no model: pass --model NAME CONFIG CHECKPOINT (once per model)')
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f'model names must differ (they name files and legend entries): {repeated} repeated')
    for spec in specs:
        # a name of dots only ('..') would lead the detections cache out of its folder
        if not spec.name or not all(c.isalnum() or c in '-_.+' for c in spec.name) or not spec.name.strip('.'):
            raise ValueError(f'model name {spec.name!r}: use letters, digits and - _ . + only (it names files)')
        for what, path in (('config', spec.config), ('checkpoint', spec.checkpoint)):
            if not osp.isfile(path):
                raise FileNotFoundError(f'model {spec.name!r}: {what} {path!r} does not exist')
    return specs


def load_detector(spec: ModelSpec, device: str = 'cpu') -> Tuple[nn.Module, Config]:
    """The detector of ``spec`` in eval mode on ``device``, and its full config.

    The weights load strictly (every key and shape): from a plain checkpoint, from the training checkpoint of an mmkd
    model (under its deployable network's prefix) or from an exported student.
    """
    from mmdet.registry import MODELS
    cfg = Config.fromfile(spec.config)
    if 'model' not in cfg:
        raise KeyError(f"model {spec.name!r}: config {spec.config!r} has no 'model'")
    try:
        model, _ = build_teacher(cfg, spec.checkpoint, MODELS, frozen=True)
    # an unreadable checkpoint, weights that do not fit the config, or pickled objects off mmkd's allow-list
    except (RuntimeError, pickle.UnpicklingError) as error:
        raise ValueError(f'model {spec.name!r} (--model {spec.name} {spec.config} {spec.checkpoint}): '
                         f'{str(error).replace("teacher checkpoint", "checkpoint")}') from None
    return model.to(device).eval(), cfg


def insert_after_loading(pipeline: Sequence[dict], transforms: Sequence[dict], where: str) -> List[dict]:
    """``pipeline`` with ``transforms`` right after its ``LoadImageFromFile`` step (so that they see the original
    image, before any resize); ``where`` names the pipeline in the error.

    Raises:
        KeyError: the pipeline has no ``LoadImageFromFile`` step.
    """
    steps = [dict(t) for t in pipeline]
    kinds = [str(getattr(t.get('type'), '__name__', t.get('type'))).split('.')[-1] for t in steps]
    if 'LoadImageFromFile' not in kinds:
        raise KeyError(f'{where} has no LoadImageFromFile step to insert {[t["type"] for t in transforms]} after '
                       f'(its steps: {kinds})')
    at = kinds.index('LoadImageFromFile') + 1
    return steps[:at] + [dict(t) for t in transforms] + steps[at:]


def build_test_set(cfg: Config,
                   transforms: Sequence[dict] = (),
                   ann_file: Optional[str] = None,
                   data_root: Optional[str] = None,
                   indices: Optional[Sequence[int]] = None):
    """The test dataset of ``cfg`` (its ``test_dataloader``), with ``transforms`` inserted after image loading.

    Args:
        cfg: a detector config.
        transforms: pipeline steps inserted after ``LoadImageFromFile`` (e.g. a corruption).
        ann_file: the annotation file instead of the config's (absolute, or relative to the data root).
        data_root: the data root instead of the config's.
        indices: the images to keep (dataset indices), default all.
    """
    from mmdet.registry import DATASETS
    if 'test_dataloader' not in cfg or 'dataset' not in cfg.test_dataloader:
        raise KeyError("the config has no 'test_dataloader.dataset': the test set to analyse is read from it")
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    if data_root is not None:
        dataset_cfg.data_root = data_root
    if ann_file is not None:
        dataset_cfg.ann_file = ann_file
    dataset_cfg.pipeline = insert_after_loading(dataset_cfg.pipeline, transforms, 'test_dataloader.dataset.pipeline')
    dataset_cfg.test_mode = True
    if indices is not None:
        dataset_cfg.indices = list(indices)
    where = f"the test set (data_root {dataset_cfg.get('data_root')!r}, ann_file {dataset_cfg.get('ann_file')!r})"
    with DefaultScope.overwrite_default_scope('mmdet'):
        try:
            dataset = DATASETS.build(dataset_cfg)
        except ValueError as error:
            # mmengine serialises the image list with np.concatenate, which fails on an empty one
            if 'need at least one array' in str(error):
                raise ValueError(f'{where} has no images') from None
            raise
    if len(dataset) == 0:
        raise ValueError(f'{where} has no images')
    classes = dataset.metainfo.get('classes') or ()
    cat_ids = getattr(dataset, 'cat_ids', None)
    if cat_ids is not None and len(cat_ids) != len(classes):
        # predictions map label i to cat_ids[i]: with classes missing, they would be counted as other classes
        raise ValueError(f'{where}: its annotation file has categories for {len(cat_ids)} of the {len(classes)} '
                         f'classes of the config {tuple(classes)}; expected all of them')
    return dataset


def annotation_file(dataset) -> str:
    """The COCO annotation file that a built dataset reads."""
    path = getattr(dataset, 'ann_file', None)
    if not path or not osp.isfile(path):
        raise FileNotFoundError(f'the test set reads no COCO annotation file (ann_file={path!r})')
    return path


def predict_detections(model: nn.Module,
                       dataset,
                       batch_size: int = 1,
                       num_workers: int = 0,
                       progress: Optional[Callable[[int, int], None]] = None) -> List[dict]:
    """COCO result dicts of ``model`` on every image of ``dataset`` (a built mmdet COCO-style dataset).

    Args:
        model: an mmdet detector in eval mode.
        dataset: the dataset; labels map to category ids through its ``cat_ids``.
        batch_size: images per forward pass.
        num_workers: dataloader worker processes (corruptions run in them).
        progress: called with (images done, images in all) after each batch.

    Returns:
        list of dict: ``image_id``, ``category_id``, ``bbox`` (x, y, w, h), ``score`` per detection.
    """
    cat_ids = list(getattr(dataset, 'cat_ids', None) or range(len(dataset.metainfo['classes'])))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=pseudo_collate, shuffle=False)
    results, done = [], 0
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                pred = sample.pred_instances
                boxes = pred.bboxes.detach().cpu().double().numpy().reshape(-1, 4)
                scores = pred.scores.detach().cpu().double().numpy().reshape(-1)
                labels = pred.labels.detach().cpu().numpy().reshape(-1)
                image_id = sample.metainfo['img_id']
                for box, score, label in zip(boxes, scores, labels):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    results.append(
                        dict(
                            image_id=image_id,
                            category_id=int(cat_ids[int(label)]),
                            bbox=[x1, y1, x2 - x1, y2 - y1],
                            score=float(score)))
            done += len(batch['inputs'])
            if progress is not None:
                progress(done, len(dataset))
    return results


def load_coco(ann_file: str):
    """pycocotools' COCO of ``ann_file``, without its printout."""
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(ann_file)


def coco_evaluate(coco_gt, detections: List[dict], image_ids: Optional[Sequence[int]] = None) -> Dict[str, float]:
    """COCO bbox AP, AP50, AP75 and AP by size (fractions in [0, 1]) of ``detections`` against ``coco_gt``.

    No detection at all scores 0 everywhere (pycocotools cannot load an empty result list). ``image_ids`` restricts
    the evaluation to those images (default: every image of the annotations).
    """
    from pycocotools.cocoeval import COCOeval
    if not detections:
        return {k: 0.0 for k in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(coco_gt, coco_dt, 'bbox')
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools marks a size without ground truth as -1: no objects of that size, reported as 0 here
    return {k: max(float(v), 0.0) for k, v in zip(COCO_STATS, evaluator.stats[:6])}


def detections_file(work_dir: str, name: str, tag: str = 'clean') -> str:
    """Where the detections of model ``name`` under condition ``tag`` are cached in ``work_dir``."""
    return osp.join(work_dir, 'detections', name, f'{tag}.json')


def dataset_key(dataset) -> dict:
    """What identifies the images and labels of a built test set: its annotation file (path, size, modification
    time), image folder and the ids of the images it keeps, in order."""
    ann_file = getattr(dataset, 'ann_file', None)
    return dict(
        ann_file=_file_key(ann_file) if ann_file and osp.isfile(ann_file) else ann_file,
        data_prefix=dict(getattr(dataset, 'data_prefix', {}) or {}),
        images=[dataset.get_data_info(i).get('img_id') for i in range(len(dataset))])


def cached_detections(spec: ModelSpec,
                      path: str,
                      compute: Callable[[], List[dict]],
                      log: Callable[[str], None] = print,
                      data: Optional[dict] = None) -> List[dict]:
    """The detections stored in ``path`` for ``spec`` (same config and checkpoint, by size and modification time,
    and the same ``data``), else ``compute()`` written there atomically, so that an interrupted run keeps what it
    finished.

    Args:
        data: what identifies the test set the detections are of (e.g. :func:`dataset_key`, plus the corruption):
            detections of another test set are recomputed, not reused.
    """
    key = dict(
        model=spec.name,
        config=osp.abspath(spec.config),
        checkpoint=_file_key(spec.checkpoint),
        config_key=_file_key(spec.config),
        data=data)
    if osp.isfile(path):
        try:
            with open(path) as f:
                stored = json.load(f)
            if stored.get('key') != key:
                log(f'  [{spec.name}] {path} was computed for another config or checkpoint: recomputing')
            elif isinstance(stored['detections'], list):
                return stored['detections']
            else:
                log(f'  [{spec.name}] {path} holds no list of detections: recomputing')
        except (OSError, ValueError, KeyError, AttributeError):
            log(f'  [{spec.name}] {path} is unreadable: recomputing')
    started = time.time()
    detections = compute()
    atomic_write(json.dumps(dict(key=key, detections=detections)), path)
    log(f'  [{spec.name}] {len(detections)} detections in {time.time() - started:.1f} s -> {path}')
    return detections


def _file_key(path: str) -> List:
    return [osp.abspath(path), osp.getsize(path), osp.getmtime(path)]
