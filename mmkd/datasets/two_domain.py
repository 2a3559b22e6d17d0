"""A labelled source domain and an unlabelled target domain read side by side (domain adaptation)."""
import numpy as np
from mmengine.dataset import BaseDataset
from torch.utils.data import Dataset

from mmkd.registry import SEG_DATASETS


def _build(cfg, role: str):
    if isinstance(cfg, Dataset):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'TwoDomainDataset.{role} must be a dataset config dict with a type, got {cfg!r}')
    try:
        return SEG_DATASETS.build(cfg)
    except ValueError as e:
        # mmengine's BaseDataset serialises its data list with np.concatenate, which fails on an empty list: the
        # check of TwoDomainDataset.__init__ never sees an empty mmseg dataset
        if 'need at least one array to concatenate' in str(e):
            raise ValueError(_empty(role, cfg['type'])) from e
        raise


def _empty(role: str, kind) -> str:
    """The error of an empty ``role`` domain of type ``kind``."""
    return (f'TwoDomainDataset: the {role} dataset ({getattr(kind, "__name__", kind)}) is empty: check its data_root '
            'and data_prefix')


@SEG_DATASETS.register_module()
class TwoDomainDataset(Dataset):
    """Pairs of (source item, target item): each item is ``dict(source=..., target=...)``, which mmengine's
    collate turns into a batch ``dict(source=<batch>, target=<batch>)`` of the same size (the ``batch_size`` of
    the dataloader) for :class:`~mmkd.models.segmentation.DomainAdaptiveDistiller` and
    :class:`~mmkd.models.segmentation.SegOutputSpaceAdaptation`.

    Each domain keeps its own pipeline (the target's need not load labels). The length is that of the larger
    domain; item ``i`` holds source image ``i mod len(source)`` and target image ``order[i mod len(target)]``
    where ``order`` is a fixed permutation drawn from ``seed``: one pass over the items reads every image of both
    domains, each target image with a source image that changes from pass to pass where the lengths differ. The
    sampler shuffles the items; the pairing itself is deterministic, so a resumed run reads the same pairs.

    Args:
        source: the labelled source dataset config (e.g. GTA5, BDD100K).
        target: the unlabelled target dataset config (e.g. Cityscapes train; its labels are never read by the
            models: leave ``LoadAnnotations`` out of its pipeline).
        seed: the seed of the target order.
    """

    def __init__(self, source, target, seed: int = 0):
        self.source, self.target = _build(source, 'source'), _build(target, 'target')
        for role, dataset in (('source', self.source), ('target', self.target)):
            if len(dataset) == 0:
                raise ValueError(_empty(role, type(dataset)))
        s_classes = tuple(self.source.metainfo.get('classes', ()))
        t_classes = tuple(self.target.metainfo.get('classes', ()))
        if s_classes and t_classes and s_classes != t_classes:
            raise ValueError(
                f'TwoDomainDataset: source classes {s_classes} differ from target classes {t_classes}: map '
                'both domains to the same classes (e.g. the 19 Cityscapes classes)')
        self.order = np.random.default_rng(seed).permutation(len(self.target))

    @staticmethod
    def exported_training_set(cfg: dict) -> dict:
        """The training set of an exported student (see :func:`mmkd.utils.export.export_student`): the labelled source
        config. The exported segmentor trains alone with a stock train_step that reads one labelled batch; the
        unlabelled target only served the adaptation."""
        return cfg['source']

    @property
    def metainfo(self) -> dict:
        """The source's metainfo (classes and palette; both domains have the same classes)."""
        return self.source.metainfo

    def full_init(self) -> None:
        for dataset in (self.source, self.target):
            if isinstance(dataset, BaseDataset):
                dataset.full_init()

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f'TwoDomainDataset index {index} out of range for {len(self)} items')
        index %= len(self)
        return dict(
            source=self.source[index % len(self.source)], target=self.target[int(self.order[index % len(self.target)])])
