import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmkd.datasets import toy_retrieval
from mmkd.datasets.toy_retrieval import MARKER, generate_toy_retrieval


def _read(root, name):
    with open(osp.join(root, name)) as f:
        return [line.split() for line in f.read().splitlines()]


def _all_bytes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _recall_at_1(x, labels):
    """Recall@1 with Euclidean distance, self excluded, over all pairs of the rows of ``x`` (N, D)."""
    sq = (x**2).sum(1)
    d = sq[:, None] + sq[None] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


@pytest.fixture(scope='module')
def default_root(tmp_path_factory):
    """The dataset with its default parameters: the one the metric quickstart trains on."""
    return generate_toy_retrieval(str(tmp_path_factory.mktemp('toy_retrieval') / 'CUB_200_2011'))


@pytest.fixture(scope='module')
def default_data(default_root):
    """Test-split (second half of the classes) images, labels and boxes of the default dataset."""
    paths = {int(i): p for i, p in _read(default_root, 'images.txt')}
    labels = {int(i): int(c) for i, c in _read(default_root, 'image_class_labels.txt')}
    boxes = {int(i): [float(v) for v in b] for i, *b in _read(default_root, 'bounding_boxes.txt')}
    num_classes = len(_read(default_root, 'classes.txt'))
    ids = [i for i in sorted(paths) if labels[i] > num_classes // 2]
    imgs = np.stack([cv2.imread(osp.join(default_root, 'images', paths[i])) for i in ids])
    return imgs, np.array([labels[i] for i in ids]), np.array([boxes[i] for i in ids])


def test_cub_layout(default_root):
    images = _read(default_root, 'images.txt')
    labels = _read(default_root, 'image_class_labels.txt')
    classes = _read(default_root, 'classes.txt')
    boxes = _read(default_root, 'bounding_boxes.txt')
    split = _read(default_root, 'train_test_split.txt')
    assert len(classes) == 100 and len(images) == 100 * 32
    assert [int(i) for i, _ in images] == list(range(1, len(images) + 1))
    for table in (labels, boxes, split):
        assert [int(row[0]) for row in table] == list(range(1, len(images) + 1))
    assert all(len(row) == 5 for row in boxes)
    assert [int(c) for c, _ in classes] == list(range(1, 101))
    # class folders are 'NNN.name', numbered by the class id, names unique, one folder per class
    folders = {int(c): name for c, name in classes}
    assert all(name.startswith(f'{c:03d}.') for c, name in folders.items())
    assert sorted(os.listdir(osp.join(default_root, 'images'))) == sorted(folders.values())
    counts = np.bincount([int(c) for _, c in labels], minlength=101)[1:]
    assert (counts == 32).all()
    for (_, path), (_, c), (_, train) in zip(images, labels, split):
        assert path.split('/')[0] == folders[int(c)]
        assert int(train) == int(int(c) <= 50)
    # readable by others, unlike the private temporary folder it was written in
    assert os.stat(default_root).st_mode & 0o777 == 0o755
    img = cv2.imread(osp.join(default_root, 'images', images[-1][1]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    with open(osp.join(default_root, MARKER)) as f:
        assert json.load(f) == dict(
            format_version=toy_retrieval.FORMAT_VERSION, num_classes=100, images_per_class=32, image_size=64, seed=0)


def test_boxes_inside_and_object_takes_part_of_the_image(default_root):
    boxes = np.array([[float(v) for v in row[1:]] for row in _read(default_root, 'bounding_boxes.txt')])
    x, y, w, h = boxes.T
    assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
    assert (x + w <= 64).all() and (y + h <= 64).all()
    side = np.maximum(w, h) / 64
    assert side.min() > 0.2 and side.max() <= 0.85 and 0.4 < side.mean() < 0.7


def test_boxes_locate_the_object(default_data):
    """8x8 thumbnails of the box crops retrieve far better than those of the whole images."""
    imgs, labels, boxes = default_data
    full = np.stack([cv2.resize(im, (8, 8), interpolation=cv2.INTER_AREA) for im in imgs])
    crops = np.stack([
        cv2.resize(im[int(y):int(y + h), int(x):int(x + w)], (8, 8), interpolation=cv2.INTER_AREA)
        for im, (x, y, w, h) in zip(imgs, boxes)
    ])
    full_r1 = _recall_at_1(full.reshape(len(imgs), -1).astype(np.float64), labels)
    crop_r1 = _recall_at_1(crops.reshape(len(imgs), -1).astype(np.float64), labels)
    assert crop_r1 > 2 * full_r1


def test_raw_pixel_retrieval_neither_trivial_nor_impossible(default_data):
    imgs, labels, _ = default_data
    thumbs = np.stack([cv2.resize(im, (8, 8), interpolation=cv2.INTER_AREA) for im in imgs])
    r1 = _recall_at_1(thumbs.reshape(len(imgs), -1).astype(np.float64), labels)
    # chance: the nearest neighbour is one of the 31 others of the class among the 1599 others
    chance = 31 / 1599
    # 0.060 measured; without the background colours, distractors and occluders it is 0.19
    assert 1.5 * chance < r1 < 0.15


def test_classes_distinct(default_data):
    imgs, labels, boxes = default_data
    # species differ in their defining parameters
    species = toy_retrieval._species(100, 0)
    keys = {(s['shape'], s['colours'], s['pattern'], s['mark'], s['aspect']) for s in species}
    assert len(keys) == 100 and len({s['name'] for s in species}) == 100
    # and in their images: the mean object crop of half of a class's images identifies the other half
    crops = np.stack([
        cv2.resize(im[int(y):int(y + h), int(x):int(x + w)], (8, 8), interpolation=cv2.INTER_AREA)
        for im, (x, y, w, h) in zip(imgs, boxes)
    ]).reshape(len(imgs), -1).astype(np.float64)
    classes = np.unique(labels)
    first = np.concatenate([np.nonzero(labels == c)[0][:16] for c in classes])
    second = np.concatenate([np.nonzero(labels == c)[0][16:] for c in classes])
    means = np.stack([crops[first][labels[first] == c].mean(0) for c in classes])
    nearest = classes[((crops[second][:, None] - means[None])**2).sum(-1).argmin(1)]
    assert (nearest == labels[second]).mean() > 5 / len(classes)


def test_deterministic_from_seed(tmp_path):
    kwargs = dict(num_classes=4, images_per_class=3, image_size=32)
    a = _all_bytes(generate_toy_retrieval(str(tmp_path / 'a'), seed=5, **kwargs))
    b = _all_bytes(generate_toy_retrieval(str(tmp_path / 'b'), seed=5, **kwargs))
    c = _all_bytes(generate_toy_retrieval(str(tmp_path / 'c'), seed=6, **kwargs))
    assert len(a) == 4 * 3 + 6 and a == b
    pngs = [k for k in a if k.endswith('.png')]
    assert all(a[k] != c.get(k) for k in pngs)


def test_idempotent_and_refuses_other_parameters(tmp_path):
    root = str(tmp_path / 'toy')
    generate_toy_retrieval(root, num_classes=2, images_per_class=2, image_size=32)
    before = {p: os.stat(osp.join(root, p)).st_mtime_ns for p in _all_bytes(root)}
    generate_toy_retrieval(root, num_classes=2, images_per_class=2, image_size=32)
    assert {p: os.stat(osp.join(root, p)).st_mtime_ns for p in _all_bytes(root)} == before
    with pytest.raises(ValueError, match='images_per_class'):
        generate_toy_retrieval(root, num_classes=2, images_per_class=3, image_size=32)
    # a symlink to a missing or empty folder: the data goes to its target and the link stays
    for target in (tmp_path / 'missing', tmp_path / 'empty'):
        if target.name == 'empty':
            target.mkdir()
        link = tmp_path / f'link_{target.name}'
        link.symlink_to(target)
        generate_toy_retrieval(str(link), num_classes=2, images_per_class=2, image_size=32)
        assert link.is_symlink() and (target / MARKER).is_file()
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'images.txt').write_text('1 a/b.png\n')
    with pytest.raises(FileExistsError, match=MARKER):
        generate_toy_retrieval(str(foreign), num_classes=2, images_per_class=2, image_size=32)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls, imwrite = [], cv2.imwrite

    def failing_imwrite(path, img):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return imwrite(path, img)

    monkeypatch.setattr(toy_retrieval.cv2, 'imwrite', failing_imwrite)
    with pytest.raises(KeyboardInterrupt):
        generate_toy_retrieval(str(tmp_path / 'toy'), num_classes=2, images_per_class=2, image_size=32)
    assert os.listdir(tmp_path) == []
