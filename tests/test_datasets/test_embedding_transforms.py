"""Metric-learning transforms: crops, low resolution, the teacher's view and packing."""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement

from mmkd.datasets import CropToBBox, LowResolution, PackEmbeddingInputs, RandomCrop, TeacherView
from mmkd.registry import DATASETS, TRANSFORMS


def _coded_image(h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3) whose pixel (y, x) holds (y, x, 7): a crop tells where it came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(h)[:, None]
    img[..., 1] = np.arange(w)[None, :]
    img[..., 2] = 7
    return img


def _results(img: np.ndarray, **extra) -> dict:
    return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_path='a.png', **extra)


def test_random_crop_is_a_uniform_window():
    np.random.seed(0)
    crop = RandomCrop(crop_size=(5, 3))  # (w, h)
    img = _coded_image(6, 9)
    seen = set()
    for _ in range(400):
        out = crop(_results(img.copy()))
        assert out['img'].shape == (3, 5, 3) and out['img_shape'] == (3, 5)
        y, x = int(out['img'][0, 0, 0]), int(out['img'][0, 0, 1])
        np.testing.assert_array_equal(out['img'], img[y:y + 3, x:x + 5])
        seen.add((y, x))
    assert seen == {(y, x) for y in range(4) for x in range(5)}  # every one of the 4 x 5 positions


def test_random_crop_pads_a_small_image():
    img = _coded_image(4, 3)
    out = RandomCrop(crop_size=6, pad_val=255)(_results(img.copy()))
    assert out['img'].shape == (6, 6, 3) and out['img_shape'] == (6, 6)
    np.testing.assert_array_equal(out['img'][:4, :3], img)  # padded on the bottom / right
    assert (out['img'][4:] == 255).all() and (out['img'][:, 3:] == 255).all()
    out = RandomCrop(crop_size=(2, 6))(_results(_coded_image(4, 5)))  # only the height is short
    assert out['img'].shape == (6, 2, 3) and (out['img'][4:] == 0).all()


@pytest.mark.parametrize('size', [0, (3, ), (2, -1), 2.5])
def test_random_crop_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match='crop_size'):
        RandomCrop(crop_size=size)


def test_crop_to_bbox():
    img = _coded_image(8, 10)
    out = CropToBBox()(_results(img.copy(), bbox=[1.5, 2.0, 4.2, 5.0]))
    np.testing.assert_array_equal(out['img'], img[2:5, 1:5])
    assert out['img_shape'] == (3, 4)
    out = CropToBBox()(_results(img.copy(), bbox=[-3.0, 6.0, 20.0, 30.0]))  # clipped to the image
    np.testing.assert_array_equal(out['img'], img[6:, :])


def test_crop_to_bbox_errors():
    img = _coded_image(8, 10)
    with pytest.raises(KeyError, match="no 'bbox'"):
        CropToBBox()(_results(img))
    with pytest.raises(ValueError, match='no pixel inside the 8x10 image'):
        CropToBBox()(_results(img, bbox=[12.0, 1.0, 15.0, 4.0]))
    resized = _results(img[:4], bbox=[1.0, 1.0, 3.0, 3.0])
    resized['ori_shape'] = (8, 10)
    with pytest.raises(ValueError, match='put CropToBBox before any resize or crop'):
        CropToBBox()(resized)


def test_low_resolution_matches_cv2_area_down_bilinear_up():
    img = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    out = LowResolution(size=20)(_results(img.copy()))
    expected = cv2.resize(
        cv2.resize(img, (20, 20), interpolation=cv2.INTER_AREA), (80, 64), interpolation=cv2.INTER_LINEAR)
    assert out['img'].shape == img.shape and out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'], expected)
    # the detail is gone: an area-down / bilinear-up of noise is much smoother than the noise
    assert np.abs(np.diff(out['img'].astype(float),
                          axis=1)).mean() < 0.5 * np.abs(np.diff(img.astype(float), axis=1)).mean()
    out = LowResolution(size=(8, 4), interpolation_down='nearest', interpolation_up='nearest')(_results(img.copy()))
    expected = cv2.resize(
        cv2.resize(img, (8, 4), interpolation=cv2.INTER_NEAREST), (80, 64), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out['img'], expected)


def test_teacher_view_empty_pipeline_keeps_a_copy_for_low_resolution():
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    results = TeacherView(pipeline=[])(_results(img.copy()))
    np.testing.assert_array_equal(results['teacher_img'], img)
    results['img'] += 1  # a later in-place transform of the student's image
    np.testing.assert_array_equal(results['teacher_img'], img)  # a copy, not the student's array
    results = LowResolution(size=8)(TeacherView(pipeline=[])(_results(img.copy())))
    np.testing.assert_array_equal(results['teacher_img'], img)  # the teacher keeps the sharp image
    assert results['img'].shape == img.shape and not np.array_equal(results['img'], img)


def test_teacher_view_unlocalized_with_mmcv_and_mmkd_transforms():
    np.random.seed(0)
    img = _coded_image(40, 60)
    view = TRANSFORMS.build(
        dict(
            type='TeacherView',
            pipeline=[
                dict(type='CropToBBox'),
                dict(type='Resize', scale=(16, 12)),  # mmcv's, (w, h)
                dict(type='RandomCrop', crop_size=8),
            ]))
    results = _results(img.copy(), bbox=[10.0, 5.0, 30.0, 20.0], gt_label=3)
    before = copy.deepcopy(results)
    out = view(results)
    assert out['teacher_img'].shape == (8, 8, 3)
    # the teacher's pixels come from the box only (resize of the 15 x 20 box crop)
    assert out['teacher_img'][..., 0].min() >= 5 and out['teacher_img'][..., 0].max() < 20
    assert out['teacher_img'][..., 1].min() >= 10 and out['teacher_img'][..., 1].max() < 30
    # the student's results are untouched
    assert set(out) == set(before) | {'teacher_img'}
    for key, value in before.items():
        np.testing.assert_array_equal(out[key], value)
    assert 'TeacherView' in repr(view) and 'CropToBBox' in repr(view)


def test_teacher_view_refuses_a_dropped_sample():
    view = TeacherView(pipeline=[lambda results: None])
    with pytest.raises(RuntimeError, match="dropped the sample 'a.png'"):
        view(_results(_coded_image(4, 4)))


def test_pack_embedding_inputs():
    img = _coded_image(5, 7)
    teacher = _coded_image(3, 4)
    results = _results(
        img, gt_label=np.int64(4), teacher_img=teacher, sample_idx=2, bbox=[1.0, 2.0, 3.0, 4.0], class_id=17)
    packed = PackEmbeddingInputs()(results)
    assert set(packed) == {'inputs', 'data_samples'}
    inputs = packed['inputs']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 5, 7) and inputs.is_contiguous()
    np.testing.assert_array_equal(inputs.numpy(), img.transpose(2, 0, 1))
    sample = packed['data_samples']
    assert isinstance(sample, BaseDataElement)
    assert sample.gt_label.dtype == torch.long and sample.gt_label.shape == () and sample.gt_label.item() == 4
    assert sample.teacher_img.dtype == torch.uint8 and sample.teacher_img.is_contiguous()
    np.testing.assert_array_equal(sample.teacher_img.numpy(), teacher.transpose(2, 0, 1))
    assert sample.metainfo == dict(
        img_path='a.png', sample_idx=2, ori_shape=(5, 7), img_shape=(5, 7), bbox=[1.0, 2.0, 3.0, 4.0])
    assert set(sample.keys()) == {'gt_label', 'teacher_img'}


def test_pack_embedding_inputs_unlabelled_grey_and_custom_keys():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    packed = PackEmbeddingInputs(meta_keys=('img_path', 'class_id'))(dict(img=grey, img_path='g.png', gt_label=-1))
    assert packed['inputs'].shape == (1, 3, 4)
    np.testing.assert_array_equal(packed['inputs'][0].numpy(), grey)
    assert packed['data_samples'].gt_label.item() == -1 and 'teacher_img' not in packed['data_samples']
    assert packed['data_samples'].metainfo == dict(img_path='g.png')
    packed = PackEmbeddingInputs()(dict(img=np.zeros((2, 2, 3), np.uint8)))
    assert 'gt_label' not in packed['data_samples']


@pytest.mark.parametrize('setting', ['low_resolution', 'unlocalized'])
def test_cross_quality_pipelines_from_a_dataset_config(tmp_path, setting):
    """The contract's two cross-quality pipelines, built from config dicts by a dataset (default_scope mmkd)."""
    root = str(tmp_path / 'CUB_200_2011')
    os.makedirs(osp.join(root, 'images', '001.a'))
    img = _coded_image(40, 60)
    cv2.imwrite(osp.join(root, 'images', '001.a', 'x.png'), img)
    for name, line in (('classes.txt', '1 001.a'), ('images.txt', '1 001.a/x.png'), ('image_class_labels.txt', '1 1'),
                       ('bounding_boxes.txt', '1 10 5 20 15')):
        with open(osp.join(root, name), 'w') as f:
            f.write(line + '\n')
    if setting == 'low_resolution':
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(30, 20)),
            dict(type='RandomCrop', crop_size=16),
            dict(type='RandomFlip', prob=0.5),
            dict(type='TeacherView', pipeline=[]),
            dict(type='LowResolution', size=4),
            dict(type='PackEmbeddingInputs')
        ]
    else:
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(
                type='TeacherView',
                pipeline=[
                    dict(type='CropToBBox'),
                    dict(type='Resize', scale=(20, 15)),
                    dict(type='RandomCrop', crop_size=12),
                    dict(type='RandomFlip', prob=0.5)
                ]),
            dict(type='Resize', scale=(30, 20)),
            dict(type='RandomCrop', crop_size=12),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackEmbeddingInputs')
        ]
    with DefaultScope.overwrite_default_scope('mmkd'):
        ds = DATASETS.build(dict(type='CUB200Dataset', data_root=root, split='all', pipeline=pipeline))
    packed = ds[0]
    student, teacher = packed['inputs'], packed['data_samples'].teacher_img
    assert teacher.dtype == student.dtype == torch.uint8 and teacher.shape == student.shape
    assert packed['data_samples'].metainfo['bbox'] == [10.0, 5.0, 30.0, 20.0]
    if setting == 'low_resolution':
        # same geometry: the student's image is the low-resolution version of the teacher's
        expected = cv2.resize(
            cv2.resize(teacher.permute(1, 2, 0).numpy(), (4, 4), interpolation=cv2.INTER_AREA), (16, 16),
            interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(student.permute(1, 2, 0).numpy(), expected)
    else:
        # channel 0 codes the row: the teacher's 12 rows come from the box's 15 (rows 5-19, about 1 row per
        # pixel), the student's 12 from the whole image at half size (about 2 rows per pixel)
        teacher_rows, student_rows = teacher[0].float(), student[0].float()
        assert teacher_rows.min() >= 5 and teacher_rows.max() <= 20
        assert teacher_rows.max() - teacher_rows.min() <= 14 and student_rows.max() - student_rows.min() >= 20
