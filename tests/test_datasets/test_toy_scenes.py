"""The two-domain toy scenes: deterministic, atomic generation; the same label statistics in both domains but a
different appearance; read by ToyScenesDataset."""
import glob
import os
import os.path as osp
import subprocess
import textwrap

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope

from mmkd.datasets import ToyScenesDataset, generate_toy_scenes
from ..conftest import PYTHON, tool_env
from .test_seg_datasets import CITYSCAPES_LABELS

TINY = dict(num_train=3, num_val=1, image_size=(24, 40))


def _files(root: str) -> list:
    return sorted(osp.relpath(f, root) for f in glob.glob(osp.join(root, '*', '*', '*', '*.png')))


def _read(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def _split(root: str, domain: str, split: str):
    """(N, H, W, 3) RGB images and (N, H, W) labels of one domain and split."""
    names = sorted(os.listdir(osp.join(root, domain, 'labels', split)))
    images = np.stack([_read(osp.join(root, domain, 'images', split, n))[..., ::-1] for n in names])
    labels = np.stack([_read(osp.join(root, domain, 'labels', split, n)) for n in names])
    return images.astype(np.float64), labels


def test_generation_is_deterministic_per_seed_and_of_the_asked_size(tmp_path):
    roots = [
        generate_toy_scenes(str(tmp_path / name), seed=seed, **TINY) for name, seed in (('a', 0), ('b', 0), ('c', 1))
    ]
    files = _files(roots[0])
    expected = [
        osp.join(domain, kind, split, f'{i:06d}.png') for domain in ('source', 'target')
        for kind in ('images', 'labels') for split, count in (('train', 3), ('val', 1)) for i in range(count)
    ]
    assert files == sorted(expected) and _files(roots[1]) == _files(roots[2]) == files
    for name in files:
        a, b, c = (_read(osp.join(root, name)) for root in roots)
        assert a.shape == ((24, 40, 3) if name.split(os.sep)[1] == 'images' else (24, 40)), name
        assert a.dtype == np.uint8
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert any(not np.array_equal(_read(osp.join(roots[0], n)), _read(osp.join(roots[2], n))) for n in files)
    # the domains are independent draws: no target label map is a source one
    for split in ('train', 'val'):
        assert not np.array_equal(_split(roots[0], 'source', split)[1], _split(roots[0], 'target', split)[1])


def test_a_complete_tree_is_reused(tmp_path):
    root = generate_toy_scenes(str(tmp_path / 'toy'), **TINY)
    stamps = {name: os.stat(osp.join(root, name)).st_mtime_ns for name in _files(root)}
    assert generate_toy_scenes(root, **TINY) == root
    assert {name: os.stat(osp.join(root, name)).st_mtime_ns for name in _files(root)} == stamps
    assert sorted(os.listdir(tmp_path)) == ['toy']  # no temporary folder left beside it


def test_a_partial_or_other_tree_is_a_clear_error(tmp_path):
    root = generate_toy_scenes(str(tmp_path / 'toy'), **TINY)
    with pytest.raises(FileExistsError, match='not a complete toy scene tree of 5 train / 1 val'):
        generate_toy_scenes(root, **dict(TINY, num_train=5))
    os.remove(osp.join(root, 'target', 'labels', 'val', '000000.png'))
    with pytest.raises(FileExistsError, match=f'{root} exists and is not a complete toy scene tree'):
        generate_toy_scenes(root, **TINY)
    with pytest.raises(FileExistsError, match='not a complete toy scene tree'):
        ToyScenesDataset(data_root=root, data_prefix=dict(img_path='source/images/train'), generate=TINY)


def test_a_crash_mid_generation_leaves_no_tree(tmp_path):
    root = str(tmp_path / 'toy')
    # the process dies after writing 5 files (no exception handler, no finally block runs)
    script = textwrap.dedent(f'''
        import os
        import mmkd.datasets.toy_scenes as toy
        written, imwrite = [], toy.cv2.imwrite
        def dying_imwrite(path, image):
            if len(written) == 5:
                os._exit(3)
            written.append(path)
            return imwrite(path, image)
        toy.cv2.imwrite = dying_imwrite
        toy.generate_toy_scenes({root!r}, num_train=3, num_val=1, image_size=(24, 40))
    ''')
    proc = subprocess.run([PYTHON, '-c', script], env=tool_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert not osp.exists(root)
    # the next call writes the whole tree, the same as an uninterrupted generation
    generate_toy_scenes(root, **TINY)
    reference = generate_toy_scenes(str(tmp_path / 'reference'), **TINY)
    assert _files(root) == _files(reference)
    for name in _files(root):
        np.testing.assert_array_equal(_read(osp.join(root, name)), _read(osp.join(reference, name)), err_msg=name)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    """24 train and 12 val 32x64 scenes per domain, seed 0."""
    return generate_toy_scenes(
        str(tmp_path_factory.mktemp('toy') / 'scenes'), seed=0, num_train=24, num_val=12, image_size=(32, 64))


def test_labels_are_the_seven_classes_and_the_ignore_index(scenes):
    for domain in ('source', 'target'):
        for split in ('train', 'val'):
            _, labels = _split(scenes, domain, split)
            assert set(np.unique(labels).tolist()) <= set(range(7)) | {255}
        _, labels = _split(scenes, domain, 'train')
        assert set(np.unique(labels).tolist()) == set(range(7)) | {255}  # every class, and the poles


def test_domains_share_label_statistics_but_not_appearance(scenes):
    """Class frequencies: as close across the domains as across two splits of one domain; per-class mean colours:
    far apart across the domains, close across the splits of one domain."""
    data = {(d, s): _split(scenes, d, s) for d in ('source', 'target') for s in ('train', 'val')}
    values = list(range(7)) + [255]
    freq = {key: np.array([(labels == v).mean() for v in values]) for key, (_, labels) in data.items()}
    colour = {key: np.array([images[labels == c].mean(0) for c in range(7)]) for key, (images, labels) in data.items()}
    across = np.abs(freq['source', 'train'] - freq['target', 'train']).sum()
    assert across < 0.15, (freq['source', 'train'], freq['target', 'train'])
    assert freq['source', 'train'][:7].min() > 0.003 and freq['target', 'train'][:7].min() > 0.003
    gap = np.linalg.norm(colour['source', 'train'] - colour['target', 'train'], axis=1)  # (7,) RGB distance
    within = np.concatenate(
        [np.linalg.norm(colour[d, 'train'] - colour[d, 'val'], axis=1) for d in ('source', 'target')])
    assert gap.min() > 40, gap
    assert within.max() < 30 and np.median(within) < 12, within
    assert gap.min() > 1.5 * within.max()


def test_dataset_reads_the_tree_with_the_cityscapes_names_and_colours(scenes):
    init_default_scope('mmseg')
    dataset = ToyScenesDataset(
        data_root=scenes,
        data_prefix=dict(img_path='target/images/val', seg_map_path='target/labels/val'),
        generate=dict(num_train=24, num_val=12, image_size=(32, 64)),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    assert len(dataset) == 12
    colours = {name: colour for name, _, _, colour in CITYSCAPES_LABELS}
    assert [tuple(c) for c in dataset.metainfo['palette']] == [colours[name] for name in dataset.metainfo['classes']]
    images, labels = _split(scenes, 'target', 'val')
    for i in (0, 11):
        item = dataset[i]
        np.testing.assert_array_equal(item['img'][..., ::-1], images[i])
        np.testing.assert_array_equal(item['gt_seg_map'], labels[i])
