"""Export the student of a distillation checkpoint as a plain mmdet / mmseg model."""
import os
import os.path as osp
from typing import Any, Optional, Tuple

import torch
from mmengine.config import Config

from .checkpoint import safe_torch_load

MMKD_ONLY_DATASET_KEYS = ('generate', )


def _plain(value: Any) -> Any:
    """Numbers, strings, lists, tuples and dicts only, so ``torch.load(weights_only=True)`` reads it anywhere."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, 'item') and hasattr(value, 'dtype'):  # numpy / torch scalars
        return value.item() if getattr(value, 'ndim', 0) == 0 else _plain(value.tolist())
    return value


def _stock_dataset(dataset: dict) -> dict:
    """Replace an mmkd dataset type by the stock class it extends (e.g. ToyShapesDataset -> CocoDataset)."""
    from mmdet.registry import DATASETS as DET_DATASETS
    from mmseg.registry import DATASETS as SEG_DATASETS
    dataset = dict(dataset)
    if 'dataset' in dataset and isinstance(dataset['dataset'], dict):  # wrappers such as RepeatDataset
        dataset['dataset'] = _stock_dataset(dataset['dataset'])
    kind = dataset.get('type')
    for registry in (DET_DATASETS, SEG_DATASETS):
        cls = registry.get(kind) if isinstance(kind, str) else None
        if cls is not None and cls.__module__.startswith('mmkd'):
            stock = next(c for c in cls.__mro__[1:] if not c.__module__.startswith('mmkd'))
            dataset['type'] = stock.__name__
            dataset.setdefault('metainfo', _plain(dict(getattr(cls, 'METAINFO', {}))))
            for key in MMKD_ONLY_DATASET_KEYS:
                dataset.pop(key, None)
            break
    return dataset


def export_student(checkpoint: str, out_dir: str, config: Optional[str] = None) -> Tuple[str, str]:
    """Write ``student.pth`` and ``student_config.py`` for the student of an mmkd distiller checkpoint.

    The checkpoint holds only the student's weights and plain metadata, and the config names only
    stock mmdet / mmseg types, so stock ``DetInferencer`` / ``MMSegInferencer`` load both without mmkd.

    Args:
        checkpoint: a checkpoint saved by the runner while training an mmkd distiller.
        out_dir: folder to write to (created if needed).
        config: the training config; by default the one stored in the checkpoint's meta.

    Returns:
        tuple: paths of the written checkpoint and config.
    """
    ckpt = safe_torch_load(checkpoint, map_location='cpu')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    if config is not None:
        cfg = Config.fromfile(config)
    elif 'cfg' in meta:
        cfg = Config.fromstring(meta['cfg'], file_format='.py')
    else:
        raise KeyError(f"checkpoint '{checkpoint}' stores no config in meta['cfg']: pass the training config")
    if 'student' not in cfg.get('model', {}):
        raise KeyError(f"the config of '{checkpoint}' has no model.student: it is not an mmkd distiller "
                       'checkpoint (a plain checkpoint needs no export)')
    state_dict = ckpt.get('state_dict', ckpt)
    student = {k[len('student.'):]: v for k, v in state_dict.items() if k.startswith('student.')}
    if not student:
        raise KeyError(f"checkpoint '{checkpoint}' has no 'student.' weights")

    cfg.model = cfg.model.student
    imports = [m for m in cfg.get('custom_imports', {}).get('imports', []) if not m.startswith('mmkd')]
    if 'custom_imports' in cfg:
        if imports:
            cfg.custom_imports.imports = imports
        else:
            cfg.pop('custom_imports')
    if 'custom_hooks' in cfg:
        from mmengine.registry import HOOKS
        cfg.custom_hooks = [
            h for h in cfg.custom_hooks
            if not (HOOKS.get(h['type']) or object).__module__.startswith('mmkd')
        ]
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) and 'dataset' in cfg[name]:
            cfg[name].dataset = _stock_dataset(cfg[name].dataset)
    cfg.load_from = None
    cfg.resume = False

    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student_config.py')
    out_meta = {k: _plain(meta[k]) for k in ('dataset_meta', 'epoch', 'iter', 'seed') if k in meta}
    out_meta['exported_from'] = osp.abspath(checkpoint)
    torch.save(dict(state_dict=student, meta=out_meta), ckpt_path)
    cfg.dump(cfg_path)
    return ckpt_path, cfg_path
