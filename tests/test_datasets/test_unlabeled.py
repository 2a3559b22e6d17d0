import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmdet.registry import DATASETS

from mmkd.datasets import TOY_SHAPES_CLASSES
from mmkd.utils.build import build_in_scope


def UnlabeledDetDataset(**kwargs):  # noqa: N802  (built as a config would be, in mmdet's scope)
    return build_in_scope(dict(type='UnlabeledDetDataset', **kwargs), DATASETS)


PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs')
]


def _folder(root):
    os.makedirs(osp.join(root, 'sub'))
    cv2.imwrite(osp.join(root, 'b.png'), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(osp.join(root, 'a.JPG'), np.zeros((20, 10, 3), np.uint8))
    cv2.imwrite(osp.join(root, 'sub', 'c.png'), np.zeros((8, 8, 3), np.uint8))
    with open(osp.join(root, 'notes.txt'), 'w') as f:
        f.write('not an image')
    return root


def test_folder_scan_sizes_and_order(tmp_path):
    root = _folder(str(tmp_path / 'imgs'))
    ds = UnlabeledDetDataset(
        data_prefix=dict(img=root), ann_file='', metainfo=dict(classes=('a', 'b')), pipeline=PIPELINE)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [osp.relpath(d['img_path'], root) for d in infos] == ['a.JPG', 'b.png', osp.join('sub', 'c.png')]
    assert [(d['width'], d['height']) for d in infos] == [(10, 20), (40, 30), (8, 8)]
    assert all(d['instances'] == [] for d in infos)
    flat = UnlabeledDetDataset(
        data_prefix=dict(img=root), ann_file='', metainfo=dict(classes=('a', )), recursive=False, pipeline=PIPELINE)
    assert len(flat) == 2
    sample = ds[1]['data_samples']
    assert len(sample.gt_instances) == 0 and sample.img_shape[1] == 64


def test_coco_json_annotations_are_ignored(toy_root):
    ds = UnlabeledDetDataset(
        data_root=toy_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo_of='ToyShapesDataset',
        pipeline=PIPELINE)
    with open(osp.join(toy_root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    assert len(coco['annotations']) > 0
    assert len(ds) == len(coco['images'])
    assert ds.metainfo['classes'] == TOY_SHAPES_CLASSES
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert all(d['instances'] == [] for d in infos)
    assert all(osp.isfile(d['img_path']) for d in infos)
    assert len(ds[0]['data_samples'].gt_instances) == 0


def test_clear_errors(tmp_path):
    with pytest.raises(KeyError, match='metainfo'):
        UnlabeledDetDataset(data_prefix=dict(img=str(tmp_path)), ann_file='', pipeline=PIPELINE)
    with pytest.raises(KeyError, match="'NoSuchDataset' is not a registered"):
        UnlabeledDetDataset(data_prefix=dict(img=str(tmp_path)), ann_file='', metainfo_of='NoSuchDataset')
    with pytest.raises(FileNotFoundError, match='missing'):
        UnlabeledDetDataset(
            data_prefix=dict(img=str(tmp_path / 'missing')), ann_file='', metainfo=dict(classes=('a', )))
    with pytest.raises(ValueError, match='no images found'):
        UnlabeledDetDataset(data_prefix=dict(img=str(tmp_path)), ann_file='', metainfo=dict(classes=('a', )))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [{"id": 1}]}')
    with pytest.raises(KeyError, match=r'images\[0\] needs'):
        UnlabeledDetDataset(ann_file=str(bad), metainfo=dict(classes=('a', )))
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match='cannot read the COCO json'):
        UnlabeledDetDataset(ann_file=str(broken), metainfo=dict(classes=('a', )))
    (tmp_path / 'x.png').write_text('not a png')
    with pytest.raises(ValueError, match='not a readable image'):
        UnlabeledDetDataset(data_prefix=dict(img=str(tmp_path)), ann_file='', metainfo=dict(classes=('a', )))
