"""The last step of a metric-learning pipeline: images to tensors, labels into a data sample."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from mmkd.registry import TRANSFORMS


def _image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) array -> contiguous (C, H, W) tensor of the same dtype (uint8 stays uint8)."""
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


@TRANSFORMS.register_module()
class PackEmbeddingInputs(BaseTransform):
    """Pack the results into ``dict(inputs, data_samples)`` for an embedding model.

    ``inputs`` is the image as a contiguous (3, H, W) tensor of its dtype (uint8 from ``LoadImageFromFile``) in
    the channel order it was loaded in (BGR by default; the model's data_preprocessor converts and normalises).
    The :class:`~mmengine.structures.BaseDataElement` data sample holds the data fields ``gt_label`` (long,
    shape (); -1 = unlabelled) and, when the results have one, ``teacher_img`` (a (3, H, W) tensor like
    ``inputs``), and the ``meta_keys`` found in the results as metainfo.

    Required keys: ``img``. Optional keys: ``gt_label``, ``teacher_img``, the ``meta_keys``.

    Args:
        meta_keys: keys copied into the data sample's metainfo when present.
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'sample_idx', 'ori_shape', 'img_shape', 'bbox')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        data_sample = BaseDataElement()
        if 'gt_label' in results:
            data_sample.gt_label = torch.tensor(int(results['gt_label']), dtype=torch.long)
        if 'teacher_img' in results:
            data_sample.teacher_img = _image_to_tensor(results['teacher_img'])
        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=_image_to_tensor(results['img']), data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
