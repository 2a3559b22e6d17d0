"""Export the deployable network of an mmkd checkpoint (a distiller's student, ...) as a plain model."""
import inspect
import os
import os.path as osp
from typing import Any, List, NamedTuple, Optional

import torch
from mmengine.config import Config

from .build import build_in_scope, checkpoint_config
from .checkpoint import safe_torch_load
from .teacher import checkpoint_state_dict, deployable_network_config, state_dict_mismatch

MMKD_ONLY_DATASET_KEYS = ('generate', )


class Exported(NamedTuple):
    """What :func:`export_student` wrote.

    Attributes:
        checkpoint: path of the weights (``student.pth``).
        config: path of the config (``student_config.py``).
        network: the ``state_dict`` prefix of the exported network in the training checkpoint.
        mmkd_types: the mmkd types that the config still names (no stock equivalent); empty when stock
            mmdet / mmseg load it without mmkd.
        predicts_without_mmkd: stock mmdet / mmseg load the config and predict with it without mmkd (every mmkd type
            is in the training dataloader, or there is none).
    """
    checkpoint: str
    config: str
    network: str
    mmkd_types: List[str]
    predicts_without_mmkd: bool = True


def _plain(value: Any) -> Any:
    """Numbers, strings, lists, tuples and dicts only, so ``torch.load(weights_only=True)`` reads it anywhere."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, 'item') and hasattr(value, 'dtype'):  # numpy / torch scalars
        return value.item() if getattr(value, 'ndim', 0) == 0 else _plain(value.tolist())
    return value


def _is_mmkd(obj: Any) -> bool:
    return getattr(obj, '__module__', '').split('.')[0] == 'mmkd'


def _is_mmkd_type(kind: Any, registries: list) -> bool:
    """Whether a ``type`` value needs mmkd: an mmkd class, or a name that only mmkd's own registries know.

    A name that a stock registry knows too (mmkd's embedding ``RandomCrop`` and mmseg's / mmdet's) is the stock
    class in an mmdet or mmseg scope, the scope of a config that can load without mmkd (one of
    ``default_scope='mmkd'`` keeps mmkd anyway)."""
    if isinstance(kind, str):
        stock = next((c for c in (r.get(kind) for r in registries if r.scope != 'mmkd') if c is not None), None)
        if stock is not None:
            return _is_mmkd(stock)
        return any(r.scope == 'mmkd' and kind in r.module_dict for r in registries)
    return _is_mmkd(_lookup(kind, registries))


def _registries() -> list:
    """Every registry a config's ``type`` can name: mmkd's, mmdet's and mmseg's (with mmengine's as parents)."""
    import mmdet.registry
    import mmseg.registry
    from mmengine.registry import Registry

    import mmkd.registry
    return [
        value for module in (mmkd.registry, mmdet.registry, mmseg.registry) for value in vars(module).values()
        if isinstance(value, Registry)
    ]


def _lookup(kind: Any, registries: list) -> Any:
    """The class a ``type`` value names (the first registry that knows it), or ``None``."""
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        return None
    return next((cls for cls in (r.get(kind) for r in registries) if cls is not None), None)


def _stock_ancestor(cls: type, stock_registries: tuple) -> Optional[type]:
    """The nearest non-mmkd base class of ``cls`` that a stock registry knows by its name."""
    return next(
        (c for c in cls.__mro__[1:] if not _is_mmkd(c) and any(r.get(c.__name__) is c for r in stock_registries)), None)


def _init_defaults(cls: type) -> dict:
    """The keyword defaults of ``cls.__init__``."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _stock_dataset(dataset: dict) -> dict:
    """Replace an mmkd dataset type by the registered stock class it extends (e.g. ToyShapesDataset ->
    CocoDataset), with the mmkd class's constructor defaults that differ from the stock one's; a dataset class with
    an ``exported_training_set`` (:class:`~mmkd.datasets.TwoDomainDataset`) becomes the dataset it names; a dataset
    with no registered stock ancestor, or with its own label mapping (``get_label_map``), keeps its mmkd type."""
    from mmdet.registry import DATASETS as DET_DATASETS
    from mmengine.registry import DATASETS as MMENGINE_DATASETS
    from mmseg.registry import DATASETS as SEG_DATASETS

    from mmkd.registry import DATASETS
    dataset = dict(dataset)
    if 'dataset' in dataset and isinstance(dataset['dataset'], dict):  # wrappers such as RepeatDataset
        dataset['dataset'] = _stock_dataset(dataset['dataset'])
    registries = [DET_DATASETS, SEG_DATASETS, DATASETS]
    cls = _lookup(dataset.get('type'), registries)
    exported = getattr(cls, 'exported_training_set', None)
    if exported is not None:  # a training set that only an mmkd model reads (TwoDomainDataset) names its stand-in
        return _stock_dataset(exported(dataset))
    if cls is None or not _is_mmkd_type(dataset.get('type'), registries):
        return dataset
    stock = _stock_ancestor(cls, (DET_DATASETS, SEG_DATASETS, MMENGINE_DATASETS))
    label_maps = [inspect.getattr_static(c, 'get_label_map', None) for c in (cls, stock)]
    if stock is not None and label_maps[0] is not label_maps[1]:
        stock = None  # its own label mapping (GTA5's label ids -> train ids): the stock class reads other labels
    if stock is not None:
        dataset['type'] = stock.__name__
        dataset.setdefault('metainfo', _plain(dict(getattr(cls, 'METAINFO', {}))))
        # the mmkd class's own defaults (e.g. '.png' files where mmseg's default is '.jpg') say where its data is
        stock_defaults = _init_defaults(stock)
        for key, value in _init_defaults(cls).items():
            if key not in dataset and key in stock_defaults and stock_defaults[key] != value:
                dataset[key] = _plain(value)
        for key in MMKD_ONLY_DATASET_KEYS:
            dataset.pop(key, None)
    return dataset


def _stock_hooks(cfg: Config) -> None:
    """Drop mmkd's custom hooks (training-time behaviour); a default hook of an mmkd type (e.g.
    SafeCheckpointHook) becomes the stock hook it extends."""
    from mmengine.registry import HOOKS
    if 'custom_hooks' in cfg:
        cfg.custom_hooks = [h for h in cfg.custom_hooks if not _is_mmkd_type(h['type'], [HOOKS])]
    for name, hook in (cfg.get('default_hooks') or {}).items():
        cls = _lookup(hook.get('type'), [HOOKS]) if isinstance(hook, dict) else None
        if cls is not None and _is_mmkd_type(hook['type'], [HOOKS]):
            stock = _stock_ancestor(cls, (HOOKS, ))
            if stock is not None:
                cfg.default_hooks[name] = dict(hook, type=stock.__name__)


def _stock_optim(cfg: Config, prefix: str) -> None:
    """The deployed network's own optimizer settings, with stock types: from a per-network optimizer config
    (``MultiNetworkOptimWrapperConstructor``) the network's entry and its schedule; an mmkd wrapper type
    (e.g. ``CPUAmpOptimWrapper`` of ``--amp`` on a CPU) becomes the stock wrapper it extends."""
    from mmengine.registry import OPTIM_WRAPPERS
    optim = cfg.get('optim_wrapper')
    if isinstance(optim, dict) and optim.get('constructor') == 'MultiNetworkOptimWrapperConstructor':
        entry = optim.get(prefix)
        if isinstance(entry, dict):
            if 'paramwise_cfg' in optim and 'paramwise_cfg' not in entry:
                entry = dict(entry, paramwise_cfg=optim['paramwise_cfg'])
            cfg.optim_wrapper = entry
        else:
            cfg.pop('optim_wrapper')
        schedules = cfg.get('param_scheduler')
        if isinstance(schedules, dict) and 'type' not in schedules:
            if prefix in schedules:
                cfg.param_scheduler = schedules[prefix]
            else:
                cfg.pop('param_scheduler')
    optim = cfg.get('optim_wrapper')
    if isinstance(optim, dict) and _is_mmkd_type(optim.get('type'), [OPTIM_WRAPPERS]):
        stock = _stock_ancestor(_lookup(optim['type'], [OPTIM_WRAPPERS]), (OPTIM_WRAPPERS, ))
        if stock is not None:
            cfg.optim_wrapper = dict(optim, type=stock.__name__)
            if stock.__name__ == 'AmpOptimWrapper':
                cfg.optim_wrapper.pop('dtype', None)


def _mmkd_types(value: Any, registries: list) -> List[str]:
    """Names of the ``type`` entries anywhere in a config value that resolve to mmkd classes."""
    found = []
    if isinstance(value, dict):
        if _is_mmkd_type(value.get('type'), registries):
            found.append(_lookup(value['type'], registries).__name__)
        for item in value.values():
            found += _mmkd_types(item, registries)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _mmkd_types(item, registries)
    return found


def _only_for_training(cfg: Config) -> bool:
    """Whether every mmkd type of an exported config is in its training dataloader (which inference never builds)."""
    rest = {k: v for k, v in cfg.to_dict().items() if k != 'train_dataloader'}
    return cfg.get('default_scope') != 'mmkd' and not _mmkd_types(rest, _registries())


def _model_name(model_cfg: dict) -> str:
    kind = model_cfg.get('type')
    return getattr(kind, '__name__', str(kind))


def _check_weights_fit(network_cfg: dict, default_scope: Optional[str], weights: dict, prefix: str,
                       origin: str) -> None:
    """Raise unless ``weights`` fit the network that ``network_cfg`` builds, key for key and shape for shape.

    The network is built (in the registry that knows its type, as ``tools/test.py`` would) but not initialised,
    so no pretrained weights are fetched; its ``state_dict()`` is what a strict load expects (parameters and
    persistent buffers such as BN ``num_batches_tracked``). Without this check a wrong ``--config`` or a tampered
    stored config exports, and mmengine's non-strict load then tests random layers with only a warning.

    Raises:
        RuntimeError: the network cannot be built, or the weights do not fit it (the first missing, unexpected
            and resized keys).
    """
    from mmkd.models.utils import model_registry_of
    from mmkd.registry import MODELS
    try:
        # a class as type builds with any registry; a name with the one that knows it (mmdet's, mmseg's, mmkd's)
        registry = MODELS if isinstance(network_cfg['type'], type) else model_registry_of(network_cfg, default_scope)
        network = build_in_scope(network_cfg, registry)
    except Exception as e:  # any registry or constructor error: the config of the network is unusable
        raise RuntimeError(f"{origin}: the deployable network '{prefix}' ({_model_name(network_cfg)}) cannot be "
                           f'built: {type(e).__name__}: {e}') from e
    problems = state_dict_mismatch(network, weights)
    if problems:
        raise RuntimeError(f"{origin}: the '{prefix}.' weights do not fit the network "
                           f'{type(network).__name__} that the config declares (a wrong config, or a config that '
                           'is not the one the checkpoint was trained with?): ' + '; '.join(problems))


def export_student(checkpoint: str,
                   out_dir: str,
                   config: Optional[str] = None,
                   network: Optional[str] = None) -> Exported:
    """Write ``student.pth`` and ``student_config.py`` for the deployable network of an mmkd checkpoint.

    The network is the one the model declares (see :class:`mmkd.models.utils.Deployable`): a
    distiller's student, the chosen network of a pair, ... The checkpoint holds only that network's
    weights and plain metadata. Dataset, default-hook and optimizer-wrapper types are rewritten to the stock
    classes they extend, a per-network optimizer config keeps the network's entry, and mmkd's custom hooks
    are dropped, so that a detection or segmentation network loads in stock
    ``DetInferencer`` / ``MMSegInferencer`` without mmkd. A config that still names mmkd types (an mmkd-scope model, a
    dataset with no stock ancestor) keeps ``custom_imports=['mmkd']``; ``Exported.mmkd_types`` lists them. When they are
    all in the training dataloader (GTA5's label mapping), the import may fail: the config then loads and predicts in
    stock mmseg, and only building the training set needs mmkd.

    Args:
        checkpoint: a checkpoint saved by the runner while training an mmkd model.
        out_dir: folder to write to (created if needed).
        config: the training config; by default the one stored in the checkpoint's meta (run as Python
            only if the checkpoint is trusted, else read as plain data, see
            :func:`~mmkd.utils.build.checkpoint_config`).
        network: for a model of several trained networks (``CoLAD``, ``MultiNetworkModel``), the one to export
            instead of its ``predict_network``.

    Returns:
        Exported: the written paths, the network's prefix and the mmkd types the config still needs.

    Raises:
        TypeError: the model is not an mmkd model (a plain checkpoint needs no export).
        KeyError: no config, no model, an unknown model type or network, or no weights of the network.
        ValueError: the model config does not give its deployable network (e.g. an ``S2SDEmbedder`` without an
            ``embedder`` dict).
        RuntimeError: the network of the config cannot be built, or the weights do not fit it key for key and
            shape for shape (a wrong ``config``, or a tampered stored one); nothing is written then.
    """
    ckpt = safe_torch_load(checkpoint, map_location='cpu')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    if config is not None:
        cfg = Config.fromfile(config)
    elif 'cfg' in meta:
        cfg = checkpoint_config(meta['cfg'], checkpoint)
    else:
        raise KeyError(f"checkpoint '{checkpoint}' stores no config in meta['cfg']: pass the training config")
    if not isinstance(cfg.get('model'), dict):
        raise KeyError(f"the config of '{checkpoint}' has no model")
    if network is not None:
        networks = cfg.model.get('networks')
        if not isinstance(networks, dict):
            raise ValueError(f"network={network!r}: the model of '{checkpoint}' ({cfg.model.get('type')}) deploys a "
                             'single network; choosing one needs a model of several (CoLAD, MultiNetworkModel)')
        if network not in networks:
            raise KeyError(f"network={network!r} is not one of the networks of '{checkpoint}': {list(networks)}")
        cfg.model.predict_network = network
    origin = (f"checkpoint '{checkpoint}' with config '{config}'"
              if config is not None else f"checkpoint '{checkpoint}' with the config stored in its meta['cfg']")
    network_of = deployable_network_config(cfg.model, cfg.get('default_scope'), origin)
    if network_of is None:
        raise TypeError(f"{_model_name(cfg.model)} is not an mmkd model: the model of '{checkpoint}' declares no "
                        'deployable network, and a plain checkpoint needs no export')
    prefix, network_cfg = network_of
    weights = {k[len(prefix) + 1:]: v for k, v in checkpoint_state_dict(ckpt).items() if k.startswith(prefix + '.')}
    if not weights:
        raise KeyError(f"checkpoint '{checkpoint}' has no '{prefix}.' weights (the deployable network of "
                       f'{cfg.model.type})')
    _check_weights_fit(network_cfg, cfg.get('default_scope'), weights, prefix, origin)

    cfg.model = network_cfg
    _stock_hooks(cfg)
    _stock_optim(cfg, prefix)
    wrapper_type = (cfg.get('model_wrapper_cfg') or {}).get('type')
    if str(getattr(wrapper_type, '__name__', wrapper_type)).split('.')[-1] == 'MMSeparateDistributedDataParallel':
        # one DDP per network was for the networks of the pair: under it a detector's own train_step fails (its
        # head, wrapped, hides loss()); the exported network trains under mmengine's default DDP
        cfg.pop('model_wrapper_cfg')
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) and 'dataset' in cfg[name]:
            cfg[name].dataset = _stock_dataset(cfg[name].dataset)
    cfg.load_from = None
    cfg.resume = False
    mmkd_types = sorted(set(_mmkd_types(cfg.to_dict(), _registries())))
    if cfg.get('default_scope') == 'mmkd':
        mmkd_types = mmkd_types or ["default_scope='mmkd'"]
    predicts_without_mmkd = _only_for_training(cfg)
    imports = [m for m in cfg.get('custom_imports', {}).get('imports', []) if m.split('.')[0] != 'mmkd']
    if mmkd_types:
        imports = ['mmkd'] + imports
    if imports:
        cfg.custom_imports = dict(cfg.get('custom_imports', {}), imports=imports)
        if mmkd_types and predicts_without_mmkd:
            # e.g. GTA5's label mapping: inference never builds the training set, so without mmkd the config
            # loads with a warning and only training (building that dataset) names the missing type
            cfg.custom_imports.allow_failed_imports = True
    else:
        cfg.pop('custom_imports', None)

    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student_config.py')
    out_meta = {k: _plain(meta[k]) for k in ('dataset_meta', 'epoch', 'iter', 'seed') if k in meta}
    out_meta['exported_from'] = osp.abspath(checkpoint)
    out_meta['exported_network'] = prefix
    torch.save(dict(state_dict=weights, meta=out_meta), ckpt_path)
    cfg.dump(cfg_path)
    return Exported(ckpt_path, cfg_path, prefix, mmkd_types, predicts_without_mmkd)
