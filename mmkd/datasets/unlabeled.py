"""Images without annotations, for training a student on its teacher's detections (SSIM-KD appendix A.2)."""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

from mmdet.datasets import BaseDetDataset
from PIL import Image

from mmkd.registry import DET_DATASETS


def _image_size(path: str) -> tuple:
    """(width, height) from the image header (the pixels are not decoded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as err:
        raise ValueError(f'UnlabeledDetDataset: {path!r} is not a readable image: {err}') from err


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@DET_DATASETS.register_module()
class UnlabeledDetDataset(BaseDetDataset):
    """Every image of a folder, or every image listed in a COCO json, with no ground truth.

    The samples carry an empty ``instances`` list; a distiller with ``pseudo_label=dict(score_thr=...)``
    fills in the teacher's detections as labels. Any annotations in the json are ignored on purpose
    (the appendix A.2 setting: COCO train images used as if they were unlabeled).

    Args:
        ann_file: a COCO-style json whose ``images`` are read (its ``annotations`` are not); empty
            to take every image under ``data_prefix['img']`` instead.
        data_prefix: ``dict(img=folder)``: where the images are (json ``file_name`` is relative to it).
        metainfo: ``dict(classes=...)``: the label space of the teacher and student.
        metainfo_of: instead of ``metainfo``, the registered dataset type whose class list is meant
            (e.g. ``'CocoDataset'``). One of the two is required: unlabeled images cannot tell.
        suffixes: image file endings accepted when scanning a folder.
        recursive: also scan subfolders.
    """

    def __init__(self,
                 *args,
                 metainfo: Optional[dict] = None,
                 metainfo_of: Optional[str] = None,
                 suffixes: Sequence[str] = IMAGE_SUFFIXES,
                 recursive: bool = True,
                 **kwargs):
        if metainfo_of is not None:
            if metainfo:
                raise ValueError('UnlabeledDetDataset: give metainfo or metainfo_of, not both')
            source = DET_DATASETS.get(metainfo_of)
            if source is None or not getattr(source, 'METAINFO', {}).get('classes'):
                raise KeyError(f'UnlabeledDetDataset: metainfo_of={metainfo_of!r} is not a registered dataset '
                               'type with METAINFO classes')
            metainfo = dict(source.METAINFO)
        if not metainfo or not metainfo.get('classes'):
            raise KeyError('UnlabeledDetDataset needs metainfo=dict(classes=(...)) or metainfo_of=<dataset type>: '
                           'the classes of the teacher and student, which unlabeled images cannot tell')
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.recursive = recursive
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> List[dict]:
        image_root = self.data_prefix.get('img', '') or self.data_root or ''
        if self.ann_file:
            images = self._images_from_json(self.ann_file)
            data = [
                dict(
                    img_path=osp.join(image_root, im['file_name']),
                    img_id=im['id'],
                    height=im['height'],
                    width=im['width'],
                    instances=[]) for im in images
            ]
        else:
            if not osp.isdir(image_root):
                raise FileNotFoundError(f"UnlabeledDetDataset: image folder {image_root!r} (data_prefix['img']) "
                                        'does not exist')
            data = []
            for i, path in enumerate(self._scan(image_root)):
                width, height = _image_size(path)
                data.append(dict(img_path=path, img_id=i, height=height, width=width, instances=[]))
        if not data:
            where = self.ann_file or image_root
            raise ValueError(f'UnlabeledDetDataset: no images found in {where!r} (accepted endings: '
                             f'{", ".join(self.suffixes)})')
        return data

    def _images_from_json(self, path: str) -> List[dict]:
        try:
            with open(path) as f:
                coco = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f'UnlabeledDetDataset: cannot read the COCO json {path!r}: {err}') from err
        images = coco.get('images') if isinstance(coco, dict) else None
        if not isinstance(images, list):
            raise KeyError(f'UnlabeledDetDataset: {path!r} has no "images" list')
        for index, image in enumerate(images):
            if not isinstance(image, dict) or not {'id', 'file_name', 'height', 'width'} <= set(image):
                raise KeyError(f'UnlabeledDetDataset: {path!r} images[{index}] needs "id", "file_name", "height" '
                               f'and "width", got {image!r}')
        return images

    def _scan(self, root: str) -> List[str]:
        found = []
        if self.recursive:
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                found.extend(osp.join(folder, f) for f in sorted(files) if f.lower().endswith(self.suffixes))
        else:
            found = [osp.join(root, f) for f in sorted(os.listdir(root)) if f.lower().endswith(self.suffixes)]
        return found
