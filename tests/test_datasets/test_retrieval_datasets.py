"""Retrieval readers on tiny fake trees in the official layouts of CUB-200-2011, Cars196 and SOP."""
import os
import os.path as osp
from functools import partial

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import DefaultScope
from scipy.io import savemat

from mmkd.datasets import Cars196Dataset, CUB200Dataset, RetrievalDataset, SOPDataset, ToyRetrievalDataset
from mmkd.datasets.toy_retrieval import generate_toy_retrieval
from mmkd.registry import DATASETS


def _write_image(path: str, seed: int, size=(6, 8)) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img)


def write_cub(root: str, class_sizes: dict, suffix: str = '.png') -> list:
    """A CUB_200_2011 tree: ``class_sizes`` = {class_id: number of images}; classes.txt lists them shuffled.

    Returns the images as (image_id, class_id, relative path, [x, y, w, h]) in images.txt order.
    """
    rows = []
    image_id = 1
    for class_id, n in class_sizes.items():
        folder = f'{class_id:03d}.Class_{class_id}'
        for j in range(n):
            rel = f'{folder}/img_{j}{suffix}'
            _write_image(osp.join(root, 'images', rel), image_id)
            rows.append((image_id, class_id, rel, [j, 1.0, 2.5, 3.0]))
            image_id += 1
    order = list(class_sizes)[::-1]
    with open(osp.join(root, 'classes.txt'), 'w') as f:
        f.writelines(f'{c} {c:03d}.Class_{c}\n' for c in order)
    with open(osp.join(root, 'images.txt'), 'w') as f:
        f.writelines(f'{i} {rel}\n' for i, _, rel, _ in rows)
    with open(osp.join(root, 'image_class_labels.txt'), 'w') as f:
        f.writelines(f'{i} {c}\n' for i, c, _, _ in rows)
    with open(osp.join(root, 'bounding_boxes.txt'), 'w') as f:
        f.writelines(f'{i} {b[0]} {b[1]} {b[2]} {b[3]}\n' for i, _, _, b in rows)
    return rows


# 5 classes with non-contiguous ids: train = the first floor(5 / 2) = 2 by id (2, 5), test = 7, 9, 11
CUB_SIZES = {9: 3, 2: 4, 11: 2, 5: 5, 7: 3}


@pytest.fixture
def cub_root(tmp_path):
    root = str(tmp_path / 'CUB_200_2011')
    rows = write_cub(root, CUB_SIZES)
    return root, rows


@pytest.mark.parametrize('split,class_ids', [('train', [2, 5]), ('test', [7, 9, 11]), ('all', [2, 5, 7, 9, 11])])
def test_cub_split_labels_boxes(cub_root, split, class_ids):
    root, rows = cub_root
    ds = CUB200Dataset(data_root=root, split=split)
    expected = [r for r in rows if r[1] in class_ids]  # file order kept
    assert len(ds) == len(expected)
    assert ds.metainfo['classes'] == tuple(f'{c:03d}.Class_{c}' for c in class_ids)
    for i, (_, class_id, rel, (x, y, w, h)) in enumerate(expected):
        info = ds.get_data_info(i)
        assert info['img_path'] == osp.join(root, 'images', rel)
        assert info['class_id'] == class_id
        assert info['gt_label'] == class_ids.index(class_id)
        assert info['bbox'] == [x, y, x + w, y + h]
        assert info['sample_idx'] == i
    np.testing.assert_array_equal(ds.get_gt_labels(), [class_ids.index(r[1]) for r in expected])


def test_registered_and_built_from_config(cub_root):
    root, _ = cub_root
    for name in ('CUB200Dataset', 'ToyRetrievalDataset'):
        ds = DATASETS.build(dict(type=name, data_root=root, split='test'))
        assert type(ds).__name__ == name and len(ds) == 8
    # through mmengine's root registry, as the Runner builds it, with the configs' default_scope
    with DefaultScope.overwrite_default_scope('mmkd'):
        ds = ROOT_DATASETS.build(dict(type='Cars196Dataset', data_root=root, lazy_init=True))
    assert isinstance(ds, Cars196Dataset) and isinstance(ds, RetrievalDataset)
    assert SOPDataset is DATASETS.get('SOPDataset')


def test_pipeline_lazy_init_and_unserialized(cub_root):
    root, rows = cub_root
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomCrop', crop_size=(4, 3)),
        dict(type='PackEmbeddingInputs')
    ]
    with DefaultScope.overwrite_default_scope('mmkd'):
        ds = DATASETS.build(dict(type='CUB200Dataset', data_root=root, pipeline=pipeline, lazy_init=True))
    assert ds.metainfo['classes'] == ()  # set by loading
    packed = ds[1]  # full_init on first access
    assert ds.metainfo['classes'] == ('002.Class_2', '005.Class_5')
    # images.txt lists class 9 (test) first: train sample 1 is the second image of class 2, row 4
    img = cv2.imread(osp.join(root, 'images', rows[4][2]))
    assert packed['inputs'].shape == (3, 3, 4) and packed['inputs'].dtype == torch.uint8
    crop = packed['inputs'].permute(1, 2, 0).numpy()
    assert any((img[y:y + 3, x:x + 4] == crop).all() for y in range(4) for x in range(5))
    assert packed['data_samples'].gt_label.item() == 0
    ds2 = CUB200Dataset(data_root=root, serialize_data=False, indices=[0, 5])
    assert [ds2.get_data_info(i)['class_id'] for i in range(2)] == [2, 5]
    np.testing.assert_array_equal(ds2.get_gt_labels(), [0, 1])


def test_semi_supervised_fraction_seed_and_drop(cub_root):
    root, _ = cub_root
    # unserialized: mmengine's serialization runs gc.collect() per dataset, slow with torch imported
    build = partial(CUB200Dataset, data_root=root, serialize_data=False)
    full = build(split='all')
    semi = build(split='all', unlabeled_fraction=0.5, split_seed=3)
    labels = semi.get_gt_labels()
    class_ids = np.array([semi.get_data_info(i)['class_id'] for i in range(len(semi))])
    np.testing.assert_array_equal(class_ids, [full.get_data_info(i)['class_id'] for i in range(len(full))])
    for class_id, n in CUB_SIZES.items():
        in_class = class_ids == class_id
        assert (labels[in_class] == -1).sum() == n // 2  # floor(0.5 * n): 3 -> 1, 4 -> 2, 5 -> 2, 2 -> 1
        kept = labels[in_class & (labels >= 0)]
        assert (kept == full.get_gt_labels()[in_class][0]).all()
    again = build(split='all', unlabeled_fraction=0.5, split_seed=3)
    np.testing.assert_array_equal(again.get_gt_labels(), labels)
    others = [build(split='all', unlabeled_fraction=0.5, split_seed=s) for s in range(4, 8)]
    assert any((o.get_gt_labels() != labels).any() for o in others)
    # a class's choice depends on the seed and the class only: the train split hides the same images
    train = build(split='train', unlabeled_fraction=0.5, split_seed=3)
    hidden_all = {semi.get_data_info(i)['img_path'] for i in range(len(semi)) if labels[i] == -1}
    hidden_train = {train.get_data_info(i)['img_path'] for i in range(len(train)) if train.get_gt_labels()[i] == -1}
    assert hidden_train == {p for p in hidden_all if '/002.' in p or '/005.' in p}
    dropped = build(split='all', unlabeled_fraction=0.5, split_seed=3, drop_unlabeled=True)
    assert len(dropped) == (labels >= 0).sum() and (dropped.get_gt_labels() >= 0).all()
    # drop_labeled keeps the exact complement: the "only KD" student's images are those the teacher never saw
    only_unlabeled = build(split='all', unlabeled_fraction=0.5, split_seed=3, drop_labeled=True)
    assert (only_unlabeled.get_gt_labels() == -1).all()
    assert {only_unlabeled.get_data_info(i)['img_path'] for i in range(len(only_unlabeled))} == hidden_all
    kept = {dropped.get_data_info(i)['img_path'] for i in range(len(dropped))}
    assert not kept & hidden_all and len(kept) + len(hidden_all) == len(full)


def test_semi_supervised_choice_differs_between_classes(tmp_path):
    root = str(tmp_path / 'cub')
    write_cub(root, {c: 4 for c in range(1, 21)})
    ds = CUB200Dataset(data_root=root, split='all', unlabeled_fraction=0.5, serialize_data=False)
    patterns = {tuple(ds.get_gt_labels()[i:i + 4] == -1) for i in range(0, 80, 4)}
    assert all(sum(p) == 2 for p in patterns)
    assert len(patterns) > 2  # not the same positions hidden in every class (6 possible patterns)


@pytest.mark.parametrize('kwargs,match', [
    (dict(split='test', unlabeled_fraction=0.5), "split='test'"),
    (dict(split='test', drop_unlabeled=True), "split='test'"),
    (dict(split='test', drop_labeled=True), "split='test'"),
    (dict(drop_labeled=True), r'needs unlabeled_fraction > 0 \(got 0.0\)'),
    (dict(unlabeled_fraction=0.5, drop_labeled=True, drop_unlabeled=True), 'and drop_unlabeled=False'),
    (dict(split='val'), "split='val'"),
    (dict(unlabeled_fraction=1.0), r'\[0, 1\)'),
    (dict(unlabeled_fraction=-0.1), r'\[0, 1\)'),
])
def test_bad_options(cub_root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CUB200Dataset(data_root=cub_root[0], **kwargs)


def test_missing_root_and_files(cub_root, tmp_path):
    root, _ = cub_root
    with pytest.raises(FileNotFoundError, match='nowhere'):
        CUB200Dataset(data_root=str(tmp_path / 'nowhere'))
    os.remove(osp.join(root, 'bounding_boxes.txt'))
    with pytest.raises(FileNotFoundError, match='bounding_boxes.txt'):
        CUB200Dataset(data_root=root)
    ds = CUB200Dataset(data_root=root, with_bbox=False)
    assert 'bbox' not in ds.get_data_info(0)
    os.remove(osp.join(root, 'classes.txt'))
    with pytest.raises(FileNotFoundError, match='classes.txt'):
        CUB200Dataset(data_root=root, with_bbox=False)


def _rewrite_line(path: str, lineno: int, text: str) -> None:
    with open(path) as f:
        lines = f.readlines()
    lines[lineno - 1] = text
    with open(path, 'w') as f:
        f.writelines(lines)


@pytest.mark.parametrize(
    'file,lineno,text,match',
    [
        ('images.txt', 3, '3\n', r'images.txt:3: expected 2 fields'),
        ('images.txt', 2, 'two 002.x/y.png\n', r"images.txt:2: field 'image_id' = 'two' is not an integer"),
        ('images.txt', 4, '3 005.Class_5/img_0.png\n', r'images.txt:4: image id 3 listed twice'),
        ('image_class_labels.txt', 5, '5 42\n', r'image_class_labels.txt:5: image 5 has class 42, which .*classes.txt'),
        ('image_class_labels.txt', 2, '99 2\n', r'images.txt:2: image 2 \(.*\) has no class in .*image_class_labels'),
        ('bounding_boxes.txt', 6, '6 1 1 0 3\n', r'bounding_boxes.txt:6: box of image 6 has width 0'),
        ('bounding_boxes.txt', 1, '99 1 1 2 3\n', r'images.txt:1: image 1 \(.*\) has no box'),
        ('classes.txt', 2, '9 again\n', r'classes.txt:5: class id 9 listed twice'),  # listed 7, 5, 11, 2, 9
        ('bounding_boxes.txt', 2, '2 nan 1 5 5\n', r"bounding_boxes.txt:2: field 'x' = 'nan' is not a finite number"),
        ('bounding_boxes.txt', 3, '3 1 1 inf 5\n',
         r"bounding_boxes.txt:3: field 'width' = 'inf' is not a finite number"),
    ])
def test_malformed_files_name_file_and_line(cub_root, file, lineno, text, match):
    root, _ = cub_root
    _rewrite_line(osp.join(root, file), lineno, text)
    with pytest.raises(ValueError, match=match):
        CUB200Dataset(data_root=root)


def test_image_names_with_spaces_and_blank_lines(tmp_path):
    root = str(tmp_path / 'cub')
    write_cub(root, {1: 1, 2: 1})
    os.rename(osp.join(root, 'images', '001.Class_1', 'img_0.png'), osp.join(root, 'images', '001.Class_1', 'a b.png'))
    with open(osp.join(root, 'images.txt'), 'w') as f:
        f.write('1 001.Class_1/a b.png\n\n2 002.Class_2/img_0.png\n')
    ds = CUB200Dataset(data_root=root, split='all')
    assert ds.get_data_info(0)['img_path'].endswith('001.Class_1/a b.png') and len(ds) == 2


def write_cars(root: str, classes, test_flags, names=True) -> None:
    os.makedirs(root, exist_ok=True)
    fields = ['relative_im_path', 'bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'test']
    ann = np.zeros((1, len(classes)), dtype=[(f, 'O') for f in fields])
    for i, (c, t) in enumerate(zip(classes, test_flags)):
        rel = f'car_ims/{i + 1:06d}.jpg'
        _write_image(osp.join(root, rel), i)
        ann[0, i] = (rel, np.uint8(i), np.uint8(1), np.uint16(5 + i), np.uint8(4), np.uint8(c), np.uint8(t))
    mat = dict(annotations=ann)
    if names:
        mat['class_names'] = np.array([f'Car {k}' for k in range(1, 6)], dtype=object).reshape(1, -1)
    savemat(osp.join(root, 'cars_annos.mat'), mat)


def test_cars196(tmp_path):
    root = str(tmp_path / 'cars')
    classes = [3, 1, 2, 5, 1, 4, 3]
    write_cars(root, classes, test_flags=[0, 1, 0, 1, 0, 1, 1])
    train = Cars196Dataset(data_root=root)  # classes 1-2 of 5; the official test flag is ignored
    assert train.metainfo['classes'] == ('Car 1', 'Car 2')
    assert [train.get_data_info(i)['class_id'] for i in range(len(train))] == [1, 2, 1]
    np.testing.assert_array_equal(train.get_gt_labels(), [0, 1, 0])
    info = train.get_data_info(0)
    assert info['img_path'] == osp.join(root, 'car_ims', '000002.jpg')
    assert info['bbox'] == [1.0, 1.0, 6.0, 4.0]
    test = Cars196Dataset(data_root=root, split='test')
    assert test.metainfo['classes'] == ('Car 3', 'Car 4', 'Car 5')
    np.testing.assert_array_equal(test.get_gt_labels(), [0, 2, 1, 0])
    semi = Cars196Dataset(data_root=root, split='all', unlabeled_fraction=0.5, drop_unlabeled=True)
    assert len(semi) == 5  # classes 1 and 3 (2 images each) lose one image


def test_cars196_without_names_and_errors(tmp_path):
    root = str(tmp_path / 'cars')
    write_cars(root, [2, 1, 4, 3], [0, 0, 0, 0], names=False)
    assert Cars196Dataset(data_root=root, split='test').metainfo['classes'] == ('3', '4')
    with pytest.raises(FileNotFoundError, match='cars_annos.mat'):
        Cars196Dataset(data_root=str(tmp_path))
    savemat(osp.join(root, 'cars_annos.mat'), dict(other=np.zeros(2)))
    with pytest.raises(ValueError, match="cars_annos.mat has no 'annotations'"):
        Cars196Dataset(data_root=root)
    ann = np.zeros((1, 2), dtype=[('relative_im_path', 'O'), ('class', 'O')])
    ann[0, 0] = ('car_ims/000001.jpg', 1)
    ann[0, 1] = ('car_ims/000002.jpg', 2)
    savemat(osp.join(root, 'cars_annos.mat'), dict(annotations=ann))
    with pytest.raises(ValueError, match=r"cars_annos.mat: annotations\[0\] has no field 'bbox_x1'"):
        Cars196Dataset(data_root=root)
    write_cars(root, [2, 7], [0, 0])
    with pytest.raises(ValueError, match='annotations use class 7, but class_names has 5 entries'):
        Cars196Dataset(data_root=root)
    with open(osp.join(root, 'cars_annos.mat'), 'wb') as f:
        f.write(b'not a mat file')
    with pytest.raises(ValueError, match='cars_annos.mat is not a readable .mat file'):
        Cars196Dataset(data_root=root)


def write_sop(root: str) -> None:
    os.makedirs(root, exist_ok=True)
    header = 'image_id class_id super_class_id path\n'
    train = [(1, 1, 1, 'bicycle_final/a_0.JPG'), (2, 1, 1, 'bicycle_final/a_1.JPG'), (3, 2, 2, 'chair_final/b_0.JPG'),
             (4, 2, 2, 'chair_final/b_1.JPG')]
    test = [(5, 4, 1, 'bicycle_final/d_0.JPG'), (6, 3, 2, 'chair_final/c_0.JPG'), (7, 4, 1, 'bicycle_final/d_1.JPG')]
    for name, rows in (('Ebay_train.txt', train), ('Ebay_test.txt', test)):
        with open(osp.join(root, name), 'w') as f:
            f.write(header + ''.join(' '.join(map(str, r)) + '\n' for r in rows))


def test_sop_provided_split(tmp_path):
    root = str(tmp_path / 'Stanford_Online_Products')
    write_sop(root)
    train = SOPDataset(data_root=root)
    np.testing.assert_array_equal(train.get_gt_labels(), [0, 0, 1, 1])
    assert train.metainfo['classes'] == ('1', '2') and 'bbox' not in train.get_data_info(0)
    assert train.get_data_info(2)['img_path'] == osp.join(root, 'chair_final/b_0.JPG')
    test = SOPDataset(data_root=root, split='test')
    np.testing.assert_array_equal(test.get_gt_labels(), [1, 0, 1])
    assert [test.get_data_info(i)['class_id'] for i in range(3)] == [4, 3, 4]
    both = SOPDataset(data_root=root, split='all')
    np.testing.assert_array_equal(both.get_gt_labels(), [0, 0, 1, 1, 3, 2, 3])
    semi = SOPDataset(data_root=root, unlabeled_fraction=0.5)
    assert (semi.get_gt_labels() == -1).sum() == 2


def test_sop_errors(tmp_path):
    root = str(tmp_path / 'sop')
    write_sop(root)
    os.remove(osp.join(root, 'Ebay_test.txt'))
    SOPDataset(data_root=root)
    with pytest.raises(FileNotFoundError, match='Ebay_test.txt'):
        SOPDataset(data_root=root, split='all')
    _rewrite_line(osp.join(root, 'Ebay_train.txt'), 1, 'id class path\n')
    with pytest.raises(ValueError, match=r'Ebay_train.txt:1: expected the header'):
        SOPDataset(data_root=root)
    write_sop(root)
    _rewrite_line(osp.join(root, 'Ebay_train.txt'), 3, '2 1 x\n')
    with pytest.raises(ValueError, match=r'Ebay_train.txt:3: expected 4 fields'):
        SOPDataset(data_root=root)


def test_toy_retrieval_reads_generated_data(tmp_path):
    root = str(tmp_path / 'toy')
    generate_toy_retrieval(root, num_classes=4, images_per_class=2, image_size=32, seed=0)
    train = ToyRetrievalDataset(data_root=root)
    test = ToyRetrievalDataset(data_root=root, split='test')
    assert len(train) == 4 and len(test) == 4
    assert sorted(train.get_gt_labels()) == [0, 0, 1, 1] and sorted(test.get_gt_labels()) == [0, 0, 1, 1]
    assert sorted(train.get_data_info(i)['class_id'] for i in range(4)) == [1, 1, 2, 2]
    with open(osp.join(root, 'train_test_split.txt')) as f:
        is_train = {int(a): b == '1' for a, b in (line.split() for line in f if line.strip())}
    train_paths = {train.get_data_info(i)['img_path'] for i in range(4)}
    with open(osp.join(root, 'images.txt')) as f:
        listed = {int(a): osp.join(root, 'images', b) for a, b in (line.split() for line in f if line.strip())}
    assert train_paths == {p for i, p in listed.items() if is_train[i]}
    for i in range(4):
        info = test.get_data_info(i)
        x1, y1, x2, y2 = info['bbox']
        assert osp.isfile(info['img_path']) and 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32


def test_encoding_errors_name_file_and_line_and_bom_is_read(cub_root):
    root, _ = cub_root
    path = osp.join(root, 'classes.txt')
    with open(path, 'ab') as f:
        f.write(b'99 caf\xe9\n')  # latin-1, not UTF-8: on line 6
    with pytest.raises(ValueError, match=r'classes.txt:6: not UTF-8 text'):
        CUB200Dataset(data_root=root)
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')[:5]
    with open(path, 'wb') as f:  # the same file saved by an editor that writes a byte-order mark
        f.write(b'\xef\xbb\xbf' + b'\n'.join(lines) + b'\n')
    assert len(CUB200Dataset(data_root=root, split='all', serialize_data=False)) == sum(CUB_SIZES.values())


def test_split_without_images_is_named(tmp_path):
    root = str(tmp_path / 'CUB_200_2011')
    write_cub(root, {1: 2, 2: 2})
    for name in ('images.txt', 'image_class_labels.txt', 'bounding_boxes.txt'):
        open(osp.join(root, name), 'w').close()
    with pytest.raises(ValueError, match=r"CUB200Dataset: split 'train' of .* has no image"):
        CUB200Dataset(data_root=root)
