import json
import os.path as osp

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric

from mmkd.datasets import TOY_SHAPES_CLASSES, ToyShapesDataset, generate_toy_shapes


def test_deterministic_from_seed(tmp_path):
    a = generate_toy_shapes(str(tmp_path / 'a'), seed=3, num_train=4, num_val=2, image_size=96)
    b = generate_toy_shapes(str(tmp_path / 'b'), seed=3, num_train=4, num_val=2, image_size=96)
    c = generate_toy_shapes(str(tmp_path / 'c'), seed=4, num_train=4, num_val=2, image_size=96)
    load = lambda p: json.load(open(p))['annotations']  # noqa: E731
    assert load(a['train']) == load(b['train']) != load(c['train'])
    img_a = open(tmp_path / 'a' / 'train' / '000000.png', 'rb').read()
    assert img_a == open(tmp_path / 'b' / 'train' / '000000.png', 'rb').read()


def test_sizes_cover_small_medium_large(tmp_path):
    paths = generate_toy_shapes(str(tmp_path / 't'), seed=0, num_train=40, num_val=2, image_size=256)
    areas = np.array([a['area'] for a in json.load(open(paths['train']))['annotations']])
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()


def test_stock_coco_dataset_and_metric_read_it(toy_root):
    ds = CocoDataset(
        data_root=toy_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        metainfo=dict(classes=TOY_SHAPES_CLASSES),
        pipeline=[],
        test_mode=True)
    assert len(ds) == 8
    metric = CocoMetric(ann_file=osp.join(toy_root, 'annotations/instances_val.json'), metric='bbox')
    metric.dataset_meta = dict(classes=TOY_SHAPES_CLASSES)
    # the ground truth as predictions scores AP 1
    for info in ds:
        boxes = np.array([inst['bbox'] for inst in info['instances']], np.float32).reshape(-1, 4)
        labels = np.array([inst['bbox_label'] for inst in info['instances']])
        import torch
        metric.process({}, [
            dict(
                img_id=info['img_id'],
                ori_shape=(128, 128),
                pred_instances=dict(
                    bboxes=torch.from_numpy(boxes), scores=torch.ones(len(boxes)), labels=torch.from_numpy(labels)))
        ])
    result = metric.evaluate(len(ds))
    assert abs(result['coco/bbox_mAP'] - 1.0) < 1e-6


def test_dataset_generates_on_first_use(tmp_path):
    root = str(tmp_path / 'fresh')
    ds = ToyShapesDataset(
        data_root=root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        generate=dict(num_train=3, num_val=1, image_size=64),
        pipeline=[])
    assert len(ds) <= 3 and osp.isfile(osp.join(root, 'annotations', 'instances_val.json'))
