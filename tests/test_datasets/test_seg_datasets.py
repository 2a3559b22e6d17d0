"""The readers of the segmentation domain-adaptation sets on tiny fake trees in the official layouts: GTA5 (mmkd's
reader), Cityscapes and BDD100K (mmseg's), with the pipelines of configs/_base_/datasets/*_to_cityscapes_uda.py, and
the pairing of a source and a target domain (TwoDomainDataset)."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from PIL import Image
from torch.utils.data import Dataset

from mmkd.datasets import GTA5Dataset, TwoDomainDataset
from mmkd.registry import SEG_DATASETS
from ..conftest import CONFIGS

# The official Cityscapes label table (cityscapesScripts, helpers/labels.py): name, label id, train id and, for the
# 19 evaluated classes, the colour. Written out here, independently of mmkd and mmseg.
# yapf: disable
CITYSCAPES_LABELS = (
    ('unlabeled', 0, 255, None), ('ego vehicle', 1, 255, None), ('rectification border', 2, 255, None),
    ('out of roi', 3, 255, None), ('static', 4, 255, None), ('dynamic', 5, 255, None), ('ground', 6, 255, None),
    ('road', 7, 0, (128, 64, 128)), ('sidewalk', 8, 1, (244, 35, 232)), ('parking', 9, 255, None),
    ('rail track', 10, 255, None), ('building', 11, 2, (70, 70, 70)), ('wall', 12, 3, (102, 102, 156)),
    ('fence', 13, 4, (190, 153, 153)), ('guard rail', 14, 255, None), ('bridge', 15, 255, None),
    ('tunnel', 16, 255, None), ('pole', 17, 5, (153, 153, 153)), ('polegroup', 18, 255, None),
    ('traffic light', 19, 6, (250, 170, 30)), ('traffic sign', 20, 7, (220, 220, 0)),
    ('vegetation', 21, 8, (107, 142, 35)), ('terrain', 22, 9, (152, 251, 152)), ('sky', 23, 10, (70, 130, 180)),
    ('person', 24, 11, (220, 20, 60)), ('rider', 25, 12, (255, 0, 0)), ('car', 26, 13, (0, 0, 142)),
    ('truck', 27, 14, (0, 0, 70)), ('bus', 28, 15, (0, 60, 100)), ('caravan', 29, 255, None),
    ('trailer', 30, 255, None), ('train', 31, 16, (0, 80, 100)), ('motorcycle', 32, 17, (0, 0, 230)),
    ('bicycle', 33, 18, (119, 11, 32)))
# yapf: enable
EVALUATED = sorted((row for row in CITYSCAPES_LABELS if row[2] != 255), key=lambda row: row[2])
CLASSES = tuple(row[0] for row in EVALUATED)
PALETTE = [list(row[3]) for row in EVALUATED]
LOADING = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]


def _uda_config(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', f'{name}_to_cityscapes_uda.py'))


def _write_image(path: str, h: int, w: int, seed: int) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _write_labels(path: str, labels: np.ndarray, palette: bool = False) -> None:
    """A single-channel label PNG; ``palette``: a 'P' image as GTA5's, whose colours are not its indices."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode='P' if palette else 'L')
    if palette:
        image.putpalette([c for i in range(256) for c in (255 - i, (7 * i) % 256, 100)])
    image.save(path)


def _label_ids(h: int = 17, w: int = 34, shift: int = 0) -> np.ndarray:
    """(h, w) Cityscapes label ids: every id 0..33 on each row."""
    return ((np.arange(h)[:, None] + np.arange(w)[None] + shift) % 34).astype(np.uint8)


def _train_ids(h: int = 16, w: int = 40, shift: int = 0) -> np.ndarray:
    """(h, w) train ids 0..18 and the ignore index 255."""
    values = np.array(list(range(19)) + [255], np.uint8)
    return values[(np.arange(h)[:, None] + np.arange(w)[None] + shift) % 20]


@pytest.fixture(scope='module')
def gta5_root(tmp_path_factory):
    """data/gta5/{images,labels}/0000{1,2}.png: palette PNG labels of Cityscapes label ids."""
    root = str(tmp_path_factory.mktemp('gta5'))
    for i in (1, 2):
        _write_image(osp.join(root, 'images', f'{i:05d}.png'), 17, 34, seed=i)
        _write_labels(osp.join(root, 'labels', f'{i:05d}.png'), _label_ids(shift=i), palette=True)
    return root


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    """data/cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/: three train frames in two cities, one val frame."""
    root = str(tmp_path_factory.mktemp('cityscapes'))
    frames = [('train', 'aachen', 'aachen_000000_000019'), ('train', 'aachen', 'aachen_000001_000019'),
              ('train', 'bochum', 'bochum_000000_000313'), ('val', 'frankfurt', 'frankfurt_000000_000294')]
    for i, (split, city, name) in enumerate(frames):
        _write_image(osp.join(root, 'leftImg8bit', split, city, f'{name}_leftImg8bit.png'), 16, 32, seed=10 + i)
        _write_labels(osp.join(root, 'gtFine', split, city, f'{name}_gtFine_labelTrainIds.png'), _train_ids(16, 32, i))
    return root


@pytest.fixture(scope='module')
def bdd100k_root(tmp_path_factory):
    """data/bdd100k/images/10k/train/<name>.jpg and labels/sem_seg/masks/train/<name>.png (train ids)."""
    root = str(tmp_path_factory.mktemp('bdd100k'))
    for i, name in enumerate(('0004a4c0-d4dff0ad', '00054602-3bf57337')):
        _write_image(osp.join(root, 'images', '10k', 'train', f'{name}.jpg'), 18, 32, seed=20 + i)
        _write_labels(osp.join(root, 'labels', 'sem_seg', 'masks', 'train', f'{name}.png'), _train_ids(18, 32, i))
    return root


def test_gta5_label_ids_become_the_19_cityscapes_train_ids(gta5_root):
    init_default_scope('mmseg')
    pipeline = _uda_config('gta5').source_pipeline[:2]
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations']  # mmseg's stock loading
    dataset = GTA5Dataset(data_root=gta5_root, pipeline=pipeline)
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == CLASSES and [list(c) for c in dataset.metainfo['palette']] == PALETTE
    for index, i in enumerate((1, 2)):
        item = dataset[index]
        assert item['img_path'] == osp.join(gta5_root, 'images', f'{i:05d}.png')
        assert item['img'].shape == (17, 34, 3)
        ids, gt = _label_ids(shift=i), item['gt_seg_map']
        for name, label_id, train_id, _ in CITYSCAPES_LABELS:
            assert (ids == label_id).any()
            assert (gt[ids == label_id] == train_id).all(), (name, label_id, np.unique(gt[ids == label_id]))


def test_gta5_class_subset_maps_to_the_subset_indices_and_colours(gta5_root):
    init_default_scope('mmseg')
    subset = ('car', 'road', 'sky')
    dataset = GTA5Dataset(data_root=gta5_root, pipeline=LOADING, metainfo=dict(classes=subset))
    assert dataset.metainfo['classes'] == subset
    assert [tuple(c) for c in dataset.metainfo['palette']] == [(0, 0, 142), (128, 64, 128), (70, 130, 180)]
    ids, gt = _label_ids(shift=1), dataset[0]['gt_seg_map']
    expected = np.full_like(ids, 255)
    for index, label_id in enumerate((26, 7, 23)):  # car, road, sky in the official table
        expected[ids == label_id] = index
    np.testing.assert_array_equal(gt, expected)


def test_gta5_ann_file_lists_the_split(gta5_root, tmp_path):
    init_default_scope('mmseg')
    split = tmp_path / 'split.txt'
    split.write_text('00002\n')
    dataset = GTA5Dataset(data_root=gta5_root, ann_file=str(split), pipeline=LOADING)
    assert len(dataset) == 1
    item = dataset[0]
    assert item['img_path'] == osp.join(gta5_root, 'images', '00002.png')
    assert item['seg_map_path'] == osp.join(gta5_root, 'labels', '00002.png')


def _assert_cropped(shape, crop=(512, 1024)):
    """A random resize of a frame whose aspect differs from the crop's, then the crop: one side fills the crop, the
    other at most does."""
    height, width = shape[-2:]
    assert height <= crop[0] and width <= crop[1] and (height == crop[0] or width == crop[1]), shape


def test_cityscapes_reads_train_ids_as_written_with_the_configs(cityscapes_root):
    init_default_scope('mmseg')
    cfg = _uda_config('gta5')
    # the target domain: the train frames of every city, images only
    target = SEG_DATASETS.build(dict(cfg.train_dataloader.dataset.target, data_root=cityscapes_root))
    assert [osp.basename(osp.dirname(d['img_path'])) for d in target.load_data_list()] == ['aachen', 'aachen', 'bochum']
    for i in range(3):
        sample = target[i]['data_samples']
        assert tuple(target[i]['inputs'].shape) == (3, 512, 1024)  # resized to the Cityscapes scale, then cropped
        assert 'gt_sem_seg' not in sample
    # the labelled train split (as a source domain) with the loading steps of the source pipeline: labels as written
    train = SEG_DATASETS.build(
        dict(
            cfg.train_dataloader.dataset.target,
            data_root=cityscapes_root,
            data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
            pipeline=cfg.source_pipeline[:2]))
    for i in range(3):
        assert train[i]['seg_map_path'].endswith('_gtFine_labelTrainIds.png')
        np.testing.assert_array_equal(train[i]['gt_seg_map'], _train_ids(16, 32, i))
    # validation: the val frame with mmseg's Cityscapes test pipeline (resized to 2048 x 1024, labels as they are)
    val = SEG_DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=cityscapes_root))
    assert type(val).__name__ == 'CityscapesDataset' and len(val) == 1
    item = val[0]
    assert tuple(item['inputs'].shape) == (3, 1024, 2048)
    np.testing.assert_array_equal(item['data_samples'].gt_sem_seg.data[0].numpy(), _train_ids(16, 32, 3))


def test_bdd100k_reads_train_ids_as_written_with_the_config(bdd100k_root):
    init_default_scope('mmseg')
    cfg = _uda_config('bdd100k')
    source = dict(cfg.train_dataloader.dataset.source, data_root=bdd100k_root)
    loaded = SEG_DATASETS.build(dict(source, pipeline=cfg.source_pipeline[:2]))
    assert type(loaded).__name__ == 'BDD100KDataset' and len(loaded) == 2 and loaded.metainfo['classes'] == CLASSES
    for i, name in enumerate(('0004a4c0-d4dff0ad', '00054602-3bf57337')):
        item = loaded[i]
        assert item['img_path'] == osp.join(bdd100k_root, 'images', '10k', 'train', f'{name}.jpg')
        assert item['img'].shape == (18, 32, 3)
        np.testing.assert_array_equal(item['gt_seg_map'], _train_ids(18, 32, i))
    trained = SEG_DATASETS.build(source)  # the config's full training pipeline
    for i in range(2):
        gt = trained[i]['data_samples'].gt_sem_seg.data
        _assert_cropped(gt.shape)  # 16:9 frames: a random scale of 0.5 leaves 512 x 910 (narrower than the crop)
        assert set(gt.unique().tolist()) <= set(range(19)) | {255}


def test_two_domain_dataset_of_the_gta5_config_collates_into_source_and_target_batches(gta5_root, cityscapes_root):
    init_default_scope('mmseg')
    cfg = _uda_config('gta5').train_dataloader.dataset
    cfg.source.data_root, cfg.target.data_root = gta5_root, cityscapes_root
    dataset = SEG_DATASETS.build(cfg)
    assert isinstance(dataset, TwoDomainDataset) and len(dataset) == 3  # the larger domain: 3 Cityscapes frames
    assert dataset.metainfo == dataset.source.metainfo and dataset.metainfo['classes'] == CLASSES
    batch = pseudo_collate([dataset[0], dataset[1]])
    assert sorted(batch) == ['source', 'target']
    for domain in ('source', 'target'):
        assert len(batch[domain]['inputs']) == len(batch[domain]['data_samples']) == 2
        for x in batch[domain]['inputs']:
            _assert_cropped(x.shape)
    assert all('gt_sem_seg' in s for s in batch['source']['data_samples'])
    assert not any('gt_sem_seg' in s for s in batch['target']['data_samples'])
    paths = [s.img_path for s in batch['source']['data_samples']]
    assert paths == [osp.join(gta5_root, 'images', f'0000{i}.png') for i in (1, 2)]
    # the source's metainfo, not the target's: only GTA5 maps label ids
    assert dataset.metainfo['label_map'] is not None and dataset.target.metainfo['label_map'] is None


class _Listed(Dataset):
    """Items ``(name, index)``: which image of which domain an item reads."""

    def __init__(self, name: str, length: int, classes=('road', 'car')):
        self.name, self.length, self.metainfo = name, length, dict(classes=classes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.name, index


def _pairs(dataset: TwoDomainDataset) -> list:
    return [(item['source'][1], item['target'][1]) for item in (dataset[i] for i in range(len(dataset)))]


@pytest.mark.parametrize('num_source,num_target', [(3, 5), (5, 3), (4, 4)])
def test_two_domain_pass_reads_every_image_of_both_domains(num_source, num_target):
    dataset = TwoDomainDataset(_Listed('s', num_source), _Listed('t', num_target), seed=0)
    assert len(dataset) == max(num_source, num_target)
    sources, targets = zip(*_pairs(dataset))
    assert set(sources) == set(range(num_source)) and set(targets) == set(range(num_target))
    # the smaller domain is read round-robin: no image twice before every image once
    for reads, n in ((sources, num_source), (targets, num_target)):
        assert all(len(set(reads[k:k + n])) == len(reads[k:k + n]) for k in range(0, len(reads), n))
    assert dataset[-1] == dataset[len(dataset) - 1]
    with pytest.raises(IndexError, match='out of range'):
        dataset[len(dataset)]


def test_two_domain_pairing_is_deterministic_per_seed():
    pairs = [_pairs(TwoDomainDataset(_Listed('s', 6), _Listed('t', 6), seed=seed)) for seed in (0, 0, 1)]
    assert pairs[0] == pairs[1]
    assert pairs[0] != pairs[2]
    assert [s for s, _ in pairs[0]] == list(range(6))  # the sampler shuffles the items, not the pairing


def test_two_domain_classes_must_agree(gta5_root, cityscapes_root):
    with pytest.raises(ValueError, match='source classes .* differ from target classes'):
        TwoDomainDataset(_Listed('s', 2, ('road', 'car')), _Listed('t', 2, ('road', 'sky')))
    init_default_scope('mmseg')
    cfg = _uda_config('gta5').train_dataloader.dataset
    cfg.source.data_root, cfg.target.data_root = gta5_root, cityscapes_root
    cfg.source.metainfo = dict(classes=('road', 'car'))  # a subset on one side only
    with pytest.raises(ValueError, match='differ from target classes'):
        SEG_DATASETS.build(cfg)


def test_two_domain_empty_domain_is_an_error(gta5_root, tmp_path):
    init_default_scope('mmseg')
    cfg = _uda_config('gta5').train_dataloader.dataset
    cfg.source.data_root, cfg.target.data_root = gta5_root, str(tmp_path)  # no leftImg8bit/train there
    (tmp_path / 'leftImg8bit' / 'train').mkdir(parents=True)
    with pytest.raises(ValueError, match='the target dataset \\(CityscapesDataset\\) is empty'):
        SEG_DATASETS.build(cfg)
    with pytest.raises(ValueError, match='the source dataset .* is empty'):
        TwoDomainDataset(_Listed('s', 0), _Listed('t', 2))
