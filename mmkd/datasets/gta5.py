"""GTA5 (Richter et al., "Playing for Data: Ground Truth from Computer Games", ECCV 2016) for mmseg, mapped to the
19 Cityscapes classes: the synthetic source domain of GTA5 -> Cityscapes adaptation. mmseg 1.x has no reader."""
from typing import Dict, Optional, Sequence

from mmseg.datasets import BaseSegDataset, CityscapesDataset

from mmkd.registry import SEG_DATASETS

# GTA5 labels use the Cityscapes label ids (0..33); the 19 evaluated classes are these ids, in train-id order
CITYSCAPES_EVAL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
NUM_LABEL_IDS = 34


def label_id_to_train_id() -> Dict[int, int]:
    """Cityscapes label id -> train id (0..18) for ids 0..33; ids of unevaluated classes -> 255."""
    train_ids = {label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_EVAL_IDS)}
    return {label_id: train_ids.get(label_id, 255) for label_id in range(NUM_LABEL_IDS)}


@SEG_DATASETS.register_module()
class GTA5Dataset(BaseSegDataset):
    """The 24,966 GTA5 frames with their labels, read as the 19 Cityscapes classes.

    Official layout (the download's ``images/`` and ``labels/`` folders)::

        data/gta5/
            images/00001.png ... 24966.png
            labels/00001.png ... 24966.png     # palette PNGs whose indices are Cityscapes label ids

    The labels' Cityscapes label ids (0..33) become train ids through mmseg's ``label_map`` (the ids of the 15
    unevaluated classes and of "unlabeled" become 255, the ignore index), so a stock ``LoadAnnotations`` reads them:
    no conversion of the files is needed. Label values above 33 are not Cityscapes ids and are left as they are.
    ``ann_file`` may list the basenames of a split (one per line, e.g. from the dataset's ``split.mat``); by
    default every image is read. A few GTA5 label files do not have their image's size: resize them in the
    pipeline or leave them out with ``ann_file``.

    Args:
        metainfo: ``dict(classes=...)`` with a subset of the Cityscapes classes keeps those (the others -> 255).
        Everything else as mmseg's ``BaseSegDataset``.
    """

    METAINFO = CityscapesDataset.METAINFO

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 data_prefix: dict = dict(img_path='images', seg_map_path='labels'),
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, data_prefix=data_prefix, **kwargs)

    def _update_palette(self) -> list:
        """The Cityscapes colour of each class (mmseg's default picks colours by label id, not by class)."""
        classes, palette = self._metainfo.get('classes', ()), self._metainfo.get('palette', ())
        if len(palette) == len(classes):
            return list(palette)
        colours = dict(zip(CityscapesDataset.METAINFO['classes'], CityscapesDataset.METAINFO['palette']))
        return [colours[name] for name in classes]

    @classmethod
    def get_label_map(cls, new_classes: Optional[Sequence] = None) -> Dict[int, int]:
        """Cityscapes label id -> index in the dataset's classes (the 19 train ids by default), 255 elsewhere."""
        to_class = super().get_label_map(new_classes)  # train id -> new class index, or None for the 19 classes
        mapping = label_id_to_train_id()
        if to_class is not None:
            mapping = {label_id: to_class.get(train_id, 255) for label_id, train_id in mapping.items()}
        return mapping
