"""Readers of the image-retrieval benchmarks of metric learning (Yu et al., CVPR 2019, section 5).

Each reader turns a dataset's official annotation files into samples; :class:`RetrievalDataset` does the rest
the same way for all of them: the paper's split by class (the first half of the classes by original class id
trains, the second half tests), labels re-indexed to ``0..C-1`` within the split, and the semi-supervised
options of the paper's Table 3. A data info holds ``img_path``, ``gt_label`` (-1 = unlabelled), ``class_id``
(the dataset's own id) and, for CUB, Cars and the toy data, ``bbox`` = ``[x1, y1, x2, y2]`` in pixels of the
image as stored. Images are not opened when loading: a missing image fails when the pipeline reads it.
"""
import math
import os.path as osp
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmkd.registry import DATASETS

SPLITS = ('train', 'test', 'all')


def _require_file(path: str, owner: str) -> str:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{owner}: annotation file {path!r} does not exist')
    return path


def _read_table(path: str, fields: Sequence[str], owner: str, header: bool = False) -> Iterator[Tuple[int, list]]:
    """Rows of a whitespace-separated text file as ``(line number, values)``.

    The last field takes the rest of the line (file names may hold spaces); blank lines are skipped. Fields
    named ``*_id`` are parsed as int, ``x``/``y``/``width``/``height`` as float, others kept as str.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line with a wrong number of fields or a value that does not parse, naming file and line.
    """
    _require_file(path, owner)
    # utf-8-sig: a byte-order mark (files saved by some Windows editors) is not part of the first field
    with open(path, encoding='utf-8-sig') as f:
        try:
            lines = f.readlines()
        except UnicodeDecodeError as e:
            line = e.object[:e.start].count(b'\n') + 1
            raise ValueError(f'{owner}: {path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})') from None
        for lineno, line in enumerate(lines, start=1):
            if header and lineno == 1:
                continue
            if not line.strip():
                continue
            parts = line.split(maxsplit=len(fields) - 1)
            if len(parts) != len(fields):
                raise ValueError(f'{owner}: {path}:{lineno}: expected {len(fields)} fields '
                                 f'({" ".join(fields)}), got {line.rstrip()!r}')
            values = []
            for name, text in zip(fields, parts):
                text = text.strip()
                try:
                    if name.endswith('_id'):
                        values.append(int(text))
                    elif name in ('x', 'y', 'width', 'height'):
                        values.append(float(text))
                        if not math.isfinite(values[-1]):
                            raise ValueError(text)
                    else:
                        values.append(text)
                except ValueError:
                    kind = 'an integer' if name.endswith('_id') else 'a finite number'
                    raise ValueError(f'{owner}: {path}:{lineno}: field {name!r} = {text!r} is not {kind}') from None
            yield lineno, values


class RetrievalDataset(BaseDataset):
    """Base of the retrieval readers: split by class, label re-indexing, semi-supervised labels.

    Subclasses implement :meth:`load_samples` (the official files -> samples with ``img_path``, ``class_id``
    and optionally ``bbox``, plus the names of all classes by id). The split is the paper's: the classes
    sorted by original id, the first ``floor(C / 2)`` train, the rest test (an odd number of classes gives
    the extra one to 'test', as ``generate_toy_retrieval``'s ``train_test_split.txt`` does); 'all' keeps every
    class. Labels are ``0..C_split-1`` in the order of the class ids of the split; ``metainfo['classes']`` is
    the tuple of their names in that order (set when the data is loaded, so under ``lazy_init=True`` only
    after ``full_init``).

    Semi-supervised (Table 3 of the paper): ``unlabeled_fraction`` of the images of each class, rounded down
    (so every class with an image keeps at least one labelled image), chosen at random from ``split_seed`` and
    the class id (the choice of a class does not depend on the other classes), get ``gt_label = -1``; they
    keep ``class_id`` for analysis. ``drop_unlabeled=True`` then removes them (the "50% labeled" setting, e.g.
    the teacher's training set), ``drop_labeled=True`` keeps only them (the "only KD" rows: the exact complement
    under the same ``split_seed``). The test split refuses these options: its images are never trained on.

    Args:
        data_root: the dataset's folder (see each subclass for its layout).
        split: 'train', 'test' or 'all'.
        unlabeled_fraction: per-class fraction in [0, 1) of the images whose label is hidden.
        drop_unlabeled: keep only the labelled images.
        drop_labeled: keep only the unlabelled images (needs ``unlabeled_fraction > 0``).
        split_seed: seed of the choice of unlabelled images.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments (``pipeline``, ``lazy_init``,
            ``serialize_data``, ``indices``, ``test_mode``, ...).
    """

    METAINFO: dict = dict(classes=())

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 unlabeled_fraction: float = 0.,
                 drop_unlabeled: bool = False,
                 drop_labeled: bool = False,
                 split_seed: int = 0,
                 **kwargs):
        name = type(self).__name__
        if split not in SPLITS:
            raise ValueError(f'{name}: split={split!r}, expected one of {SPLITS}')
        if not 0 <= unlabeled_fraction < 1:
            raise ValueError(f'{name}: unlabeled_fraction={unlabeled_fraction!r}, expected a fraction in [0, 1)')
        if split == 'test' and (unlabeled_fraction > 0 or drop_unlabeled or drop_labeled):
            raise ValueError(f'{name}: unlabeled_fraction / drop_unlabeled / drop_labeled are training options '
                             f'(semi-supervised labels); split=\'test\' must keep every test image labelled')
        if drop_labeled and (drop_unlabeled or unlabeled_fraction == 0):
            raise ValueError(f'{name}: drop_labeled=True keeps only the unlabelled images: it needs '
                             f'unlabeled_fraction > 0 (got {unlabeled_fraction}) and drop_unlabeled=False '
                             f'(got {drop_unlabeled})')
        if not data_root or not osp.isdir(data_root):
            raise FileNotFoundError(f'{name}: data_root {data_root!r} is not a folder')
        self.split = split
        self.unlabeled_fraction = float(unlabeled_fraction)
        self.drop_unlabeled = drop_unlabeled
        self.drop_labeled = drop_labeled
        self.split_seed = split_seed
        self._gt_labels = None
        super().__init__(data_root=data_root, **kwargs)

    def load_samples(self) -> Tuple[List[dict], Dict[int, str]]:
        """Read the official files.

        Returns:
            tuple: the samples (dicts with ``img_path``, ``class_id``, optionally ``bbox``) in file order,
            and ``{class_id: class name}`` of every class of the dataset.
        """
        raise NotImplementedError

    def split_class_ids(self, class_ids: List[int]) -> List[int]:
        """The class ids of ``self.split`` from all the dataset's sorted ``class_ids`` (the paper's halves)."""
        num_train = len(class_ids) // 2
        if self.split == 'train':
            return class_ids[:num_train]
        if self.split == 'test':
            return class_ids[num_train:]
        return class_ids

    def load_data_list(self) -> List[dict]:
        samples, class_names = self.load_samples()
        split_ids = self.split_class_ids(sorted(class_names))
        label_of = {class_id: label for label, class_id in enumerate(split_ids)}
        self._metainfo['classes'] = tuple(class_names[class_id] for class_id in split_ids)
        data_list = []
        for sample in samples:
            label = label_of.get(sample['class_id'])
            if label is not None:
                data_list.append(dict(sample, gt_label=label))
        if not data_list:
            raise ValueError(f'{type(self).__name__}: split {self.split!r} of {self.data_root} has no image (its '
                             f'{len(split_ids)} classes of {len(class_names)} have no listed image)')
        if self.unlabeled_fraction > 0:
            self._hide_labels(data_list)
            if self.drop_unlabeled:
                data_list = [info for info in data_list if info['gt_label'] >= 0]
            elif self.drop_labeled:
                data_list = [info for info in data_list if info['gt_label'] < 0]
        self._gt_labels = None
        return data_list

    def _hide_labels(self, data_list: List[dict]) -> None:
        by_class: Dict[int, List[dict]] = {}
        for info in data_list:
            by_class.setdefault(info['class_id'], []).append(info)
        for class_id, infos in by_class.items():
            num_hidden = int(np.floor(self.unlabeled_fraction * len(infos)))
            rng = np.random.default_rng([self.split_seed, class_id])
            for i in rng.choice(len(infos), num_hidden, replace=False):
                infos[i]['gt_label'] = -1

    def get_gt_labels(self) -> np.ndarray:
        """``gt_label`` of every sample, shape (N,), int64 (read once, then cached; -1 = unlabelled)."""
        if self._gt_labels is None:
            self._gt_labels = np.array([self.get_data_info(i)['gt_label'] for i in range(len(self))], dtype=np.int64)
        return self._gt_labels


@DATASETS.register_module()
class CUB200Dataset(RetrievalDataset):
    """Caltech-UCSD Birds-200-2011 in its official layout; 200 classes, train = ids 1-100, test = 101-200.

    ``data_root`` is the ``CUB_200_2011`` folder: ``images.txt`` (``<image_id> <path under images/>``),
    ``image_class_labels.txt`` (``<image_id> <class_id>``), ``classes.txt`` (``<class_id> <name>``),
    ``bounding_boxes.txt`` (``<image_id> <x> <y> <width> <height>``) and ``images/``. The official
    ``train_test_split.txt`` is not used: retrieval splits by class.

    Args:
        data_root: the ``CUB_200_2011`` folder.
        with_bbox: read ``bounding_boxes.txt`` (every image must have a box) into ``bbox``.
        **kwargs: see :class:`RetrievalDataset`.
    """

    def __init__(self, data_root: str, with_bbox: bool = True, **kwargs):
        self.with_bbox = with_bbox
        super().__init__(data_root=data_root, **kwargs)

    def load_samples(self) -> Tuple[List[dict], Dict[int, str]]:
        owner = type(self).__name__
        root = self.data_root
        classes_file = osp.join(root, 'classes.txt')
        class_names: Dict[int, str] = {}
        for lineno, (class_id, name) in _read_table(classes_file, ('class_id', 'name'), owner):
            if class_id in class_names:
                raise ValueError(f'{owner}: {classes_file}:{lineno}: class id {class_id} listed twice')
            class_names[class_id] = name

        labels_file = osp.join(root, 'image_class_labels.txt')
        class_of: Dict[int, int] = {}
        for lineno, (image_id, class_id) in _read_table(labels_file, ('image_id', 'class_id'), owner):
            if class_id not in class_names:
                raise ValueError(f'{owner}: {labels_file}:{lineno}: image {image_id} has class {class_id}, '
                                 f'which {classes_file} does not list')
            if image_id in class_of:
                raise ValueError(f'{owner}: {labels_file}:{lineno}: image id {image_id} listed twice')
            class_of[image_id] = class_id

        boxes: Dict[int, List[float]] = {}
        if self.with_bbox:
            boxes_file = osp.join(root, 'bounding_boxes.txt')
            for lineno, (image_id, x, y, w, h) in _read_table(boxes_file, ('image_id', 'x', 'y', 'width', 'height'),
                                                              owner):
                if w <= 0 or h <= 0:
                    raise ValueError(f'{owner}: {boxes_file}:{lineno}: box of image {image_id} has width {w} and '
                                     f'height {h}, expected both > 0')
                boxes[image_id] = [x, y, x + w, y + h]

        images_file = osp.join(root, 'images.txt')
        samples = []
        seen = set()
        for lineno, (image_id, rel_path) in _read_table(images_file, ('image_id', 'path'), owner):
            if image_id in seen:
                raise ValueError(f'{owner}: {images_file}:{lineno}: image id {image_id} listed twice')
            seen.add(image_id)
            if image_id not in class_of:
                raise ValueError(f'{owner}: {images_file}:{lineno}: image {image_id} ({rel_path}) has no class in '
                                 f'{labels_file}')
            sample = dict(img_path=osp.join(root, 'images', rel_path), class_id=class_of[image_id])
            if self.with_bbox:
                if image_id not in boxes:
                    raise ValueError(f'{owner}: {images_file}:{lineno}: image {image_id} ({rel_path}) has no box in '
                                     f'{osp.join(root, "bounding_boxes.txt")}')
                sample['bbox'] = boxes[image_id]
            samples.append(sample)
        return samples, class_names


@DATASETS.register_module()
class ToyRetrievalDataset(CUB200Dataset):
    """The toy retrieval data of :func:`mmkd.datasets.generate_toy_retrieval`: the CUB-200-2011 layout.

    Train = the first half of the classes (``floor(C / 2)``), test = the rest, as for CUB.

    Args:
        data_root: the folder ``generate_toy_retrieval`` wrote.
        **kwargs: see :class:`CUB200Dataset`.
    """


def _mat_field(record, field: str, owner: str, path: str, index: int):
    try:
        return getattr(record, field)
    except AttributeError:
        raise ValueError(f'{owner}: {path}: annotations[{index}] has no field {field!r}') from None


@DATASETS.register_module()
class Cars196Dataset(RetrievalDataset):
    """Stanford Cars (196 classes) from ``cars_annos.mat``; train = classes 1-98, test = 99-196.

    ``data_root`` holds ``cars_annos.mat`` and ``car_ims/``. The .mat's ``annotations`` struct array has
    ``relative_im_path`` (relative to ``data_root``, e.g. ``car_ims/000001.jpg``), ``bbox_x1``, ``bbox_y1``,
    ``bbox_x2``, ``bbox_y2``, ``class`` (1-based) and ``test``; the official train and test images are pooled
    (the ``test`` flag is ignored) and split by class. Class names come from ``class_names`` when the file has
    it, otherwise they are the class ids as text.

    Args:
        data_root: the folder with ``cars_annos.mat``.
        **kwargs: see :class:`RetrievalDataset`.
    """

    def load_samples(self) -> Tuple[List[dict], Dict[int, str]]:
        from scipy.io import loadmat
        owner = type(self).__name__
        path = _require_file(osp.join(self.data_root, 'cars_annos.mat'), owner)
        try:
            mat = loadmat(path, squeeze_me=True, struct_as_record=False)
        except Exception as err:  # scipy raises several types for a corrupt file
            raise ValueError(f'{owner}: {path} is not a readable .mat file: {err}') from err
        if 'annotations' not in mat:
            raise ValueError(f'{owner}: {path} has no \'annotations\' variable')
        annotations = np.atleast_1d(mat['annotations'])
        samples = []
        class_ids = set()
        for i, record in enumerate(annotations):
            rel_path = _mat_field(record, 'relative_im_path', owner, path, i)
            coords = [_mat_field(record, f'bbox_{k}', owner, path, i) for k in ('x1', 'y1', 'x2', 'y2')]
            class_id = _mat_field(record, 'class', owner, path, i)
            try:
                class_id = int(class_id)
                bbox = [float(c) for c in coords]
            except (TypeError, ValueError):
                raise ValueError(f'{owner}: {path}: annotations[{i}] ({rel_path}) has a non-numeric class or box: '
                                 f'class={class_id!r}, box={coords!r}') from None
            if not isinstance(rel_path, str) or not rel_path:
                raise ValueError(f'{owner}: {path}: annotations[{i}].relative_im_path = {rel_path!r}, '
                                 'expected a file name')
            class_ids.add(class_id)
            samples.append(dict(img_path=osp.join(self.data_root, rel_path), class_id=class_id, bbox=bbox))
        if 'class_names' in mat:
            names = [str(n) for n in np.atleast_1d(mat['class_names'])]
            bad = sorted(c for c in class_ids if not 1 <= c <= len(names))
            if bad:
                raise ValueError(f'{owner}: {path}: annotations use class {bad[0]}, but class_names has '
                                 f'{len(names)} entries (classes are 1-based)')
            class_names = {i + 1: name for i, name in enumerate(names)}
        else:
            class_names = {c: str(c) for c in class_ids}
        return samples, class_names


@DATASETS.register_module()
class SOPDataset(RetrievalDataset):
    """Stanford Online Products with its provided split: ``Ebay_train.txt`` (11318 classes) and
    ``Ebay_test.txt`` (11316 classes); 'all' reads both.

    ``data_root`` is the ``Stanford_Online_Products`` folder; each file has the header
    ``image_id class_id super_class_id path`` and paths relative to ``data_root``. Class names are the class
    ids as text. There are no boxes.

    Args:
        data_root: the ``Stanford_Online_Products`` folder.
        **kwargs: see :class:`RetrievalDataset`.
    """

    FILES = dict(train=('Ebay_train.txt', ), test=('Ebay_test.txt', ), all=('Ebay_train.txt', 'Ebay_test.txt'))
    HEADER = ('image_id', 'class_id', 'super_class_id', 'path')

    def split_class_ids(self, class_ids: List[int]) -> List[int]:
        # the split is already made by the file(s) read
        return class_ids

    def load_samples(self) -> Tuple[List[dict], Dict[int, str]]:
        owner = type(self).__name__
        samples = []
        for file_name in self.FILES[self.split]:
            path = _require_file(osp.join(self.data_root, file_name), owner)
            with open(path, encoding='utf-8') as f:
                header = f.readline().split()
            if tuple(header) != self.HEADER:
                raise ValueError(f'{owner}: {path}:1: expected the header {" ".join(self.HEADER)!r}, '
                                 f'got {" ".join(header)!r}')
            for _, (_, class_id, _, rel_path) in _read_table(path, self.HEADER, owner, header=True):
                samples.append(dict(img_path=osp.join(self.data_root, rel_path), class_id=class_id))
        class_names = {s['class_id']: str(s['class_id']) for s in samples}
        return samples, class_names
