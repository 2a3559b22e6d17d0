"""tools/analysis/seg_compare.py on a tiny generated toy scene tree with tiny segmentors: a plain EncoderDecoder
checkpoint and a SegOutputSpaceAdaptation training checkpoint (its student deployed); the table's numbers against
per-class IoU computed here with numpy (a confusion matrix) from predictions made here with mmseg's own inference
API, the PNG's size, and the error messages."""
import importlib.util
import json
import os.path as osp
import struct
import subprocess

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from mmkd.datasets import generate_toy_scenes
from mmkd.registry import SEG_MODELS
from ..conftest import PYTHON, ROOT, TOOLS, tool_env

SCRIPT = osp.join(TOOLS, 'analysis', 'seg_compare.py')
_spec = importlib.util.spec_from_file_location('seg_compare', SCRIPT)
seg_compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seg_compare)

CLASSES = ('road', 'sidewalk', 'building', 'vegetation', 'sky', 'person', 'car')
IMAGE_SIZE = (32, 64)


def _segmentor(num_classes: int = len(CLASSES)) -> dict:
    """A tiny EncoderDecoder: 4-wide ResNetV1c-18 of output stride 8, FCN decode and auxiliary heads."""
    norm_cfg = dict(type='BN', requires_grad=True)
    head = dict(
        type='FCNHead',
        num_convs=1,
        concat_input=False,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=4,
            base_channels=4,
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm_cfg,
            contract_dilation=True),
        decode_head=dict(head, in_channels=32, in_index=3, channels=8),
        auxiliary_head=dict(head, in_channels=16, in_index=2, channels=4),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def _write_config(path: str, model: dict, data_root: str) -> str:
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    Config(
        dict(
            default_scope='mmseg',
            model=model,
            test_pipeline=test_pipeline,
            test_dataloader=dict(
                batch_size=2,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(
                    type='ToyScenesDataset',
                    data_root=data_root,
                    generate=dict(num_train=4, num_val=4, image_size=IMAGE_SIZE),
                    data_prefix=dict(img_path='target/images/val', seg_map_path='target/labels/val'),
                    pipeline=test_pipeline)),
            test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']))).dump(path)
    return path


def _build(model_cfg: dict, seed: int):
    """The model with seed-dependent weights; the classifiers scaled up so that random predictions vary by pixel."""
    init_default_scope('mmseg')
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights' per-parameter report
    torch.manual_seed(seed)
    model = SEG_MODELS.build(model_cfg)
    model.init_weights()
    segmentor = getattr(model, 'student', model)
    with torch.no_grad():
        for head in (segmentor.decode_head, segmentor.auxiliary_head):
            head.conv_seg.weight.normal_(0, 1.0)
            head.conv_seg.bias.normal_(0, 0.5)
    return model


def _save(model, path: str) -> str:
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=0)), path)
    return path


def _png_size(path: str) -> tuple:
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR', f'{path} is not a PNG'
    return struct.unpack('>II', head[16:24])


def _reference_metrics(preds: list, labels: list, num_classes: int) -> dict:
    """Per-class IoU / accuracy, their means over the defined classes and aAcc (in %) from a confusion matrix."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for pred, label in zip(preds, labels):
        valid = label != 255
        cm += np.bincount(num_classes * label[valid] + pred[valid], minlength=num_classes**2).reshape(cm.shape)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
        acc = tp / cm.sum(1)
    return dict(
        IoU=100 * iou,
        Acc=100 * acc,
        mIoU=100 * np.nanmean(iou),
        mAcc=100 * np.nanmean(acc),
        aAcc=100 * tp.sum() / cm.sum())


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The toy tree, the configs and three checkpoints: two plain EncoderDecoders and one SegOutputSpaceAdaptation
    run (its student, discriminator weights and all)."""
    tmp = tmp_path_factory.mktemp('seg_compare')
    data_root = generate_toy_scenes(str(tmp / 'toy_scenes'), num_train=4, num_val=4, image_size=IMAGE_SIZE)
    plain = _write_config(str(tmp / 'plain.py'), _segmentor(), data_root)
    adapt_cfg = dict(
        type='SegOutputSpaceAdaptation',
        student=_segmentor(),
        discriminator=dict(type='OutputSpaceDiscriminator', base_channels=4, num_convs=2),
        adv_weights=dict(decode_head=1e-3))
    adapt = _write_config(str(tmp / 'adapt.py'), adapt_cfg, data_root)
    teacher = _build(_segmentor(), 0)
    student = _build(_segmentor(), 1)
    adapted = _build(adapt_cfg, 2)
    ckpts = dict(
        teacher=_save(teacher, str(tmp / 'teacher.pth')),
        student=_save(student, str(tmp / 'student.pth')),
        adapted=_save(adapted, str(tmp / 'adapted.pth')),
        # the adapted run's student as a plain checkpoint, for mmseg's own inference API
        adapted_student=_save(adapted.student, str(tmp / 'adapted_student.pth')))
    assert any(k.startswith('discriminator.') for k in torch.load(ckpts['adapted'])['state_dict'])
    return dict(tmp=tmp, data_root=data_root, plain=plain, adapt=adapt, ckpts=ckpts)


def _models(setup) -> list:
    c = setup['ckpts']
    return [
        '--model', 'teacher', setup['plain'], c['teacher'], '--model', 'student alone', setup['plain'], c['student'],
        '--model', 'adapted', setup['adapt'], c['adapted']
    ]


def test_seg_compare_end_to_end(setup, tmp_path):
    from mmseg.apis import inference_model, init_model
    out = str(tmp_path / 'out')
    proc = subprocess.run([PYTHON, SCRIPT, *_models(setup), '--out', out, '--images', '2'],
                          cwd=ROOT,
                          env=tool_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    progress = [line for line in proc.stdout.splitlines() if line.startswith('[')]
    assert [line.split(':')[0] for line in progress] == ['[1/3] teacher', '[2/3] student alone', '[3/3] adapted']
    assert 'the network of a SegOutputSpaceAdaptation' in progress[2]

    record = json.load(open(osp.join(out, 'seg_compare.json')))
    assert record['classes'] == list(CLASSES) and record['split']['num_images'] == 4
    lines = open(osp.join(out, 'seg_compare.md')).read().splitlines()
    assert lines[0] == '| model | mIoU | ' + ' | '.join(CLASSES) + ' | mAcc | aAcc |'
    rows = {line.split(' | ')[0][2:]: line.strip('| ').split(' | ')[1:] for line in lines[2:]}

    images = sorted(osp.join(setup['data_root'], 'target', 'images', 'val', f'{i:06d}.png') for i in range(4))
    labels = [cv2.imread(p.replace('/images/', '/labels/'), cv2.IMREAD_UNCHANGED).astype(np.int64) for p in images]
    reference_weights = {
        'teacher': setup['ckpts']['teacher'],
        'student alone': setup['ckpts']['student'],
        'adapted': setup['ckpts']['adapted_student']
    }
    mious = []
    for entry in record['models']:
        name = entry['name']
        network = init_model(setup['plain'], reference_weights[name], device='cpu')
        preds = [inference_model(network, p).pred_sem_seg.data.squeeze(0).numpy().astype(np.int64) for p in images]
        ref = _reference_metrics(preds, labels, len(CLASSES))
        assert entry['num_images'] == 4
        for key in ('IoU', 'Acc'):
            got = np.array([np.nan if entry[key][c] is None else entry[key][c] for c in CLASSES])
            np.testing.assert_allclose(got, ref[key], rtol=0, atol=1e-4, err_msg=f'{name} {key}')
        for key in ('mIoU', 'mAcc', 'aAcc'):
            assert entry[key] == pytest.approx(ref[key], abs=1e-4), (name, key)
        expected_row = [f'{ref["mIoU"]:.2f}'] + ['-' if np.isnan(v) else f'{v:.2f}' for v in ref['IoU']]
        assert rows[name] == expected_row + [f'{ref["mAcc"]:.2f}', f'{ref["aAcc"]:.2f}'], name
        mious.append(ref['mIoU'])
    assert len(set(mious)) == 3, 'the three models should predict differently'
    assert 0 < min(mious)

    # 2 rows (images 0 and 3, spread over the 4), 5 columns of 3 in at 100 dpi, pictures 1:2, a 0.4 in title row
    assert record['grid']['indices'] == [0, 3]
    assert _png_size(osp.join(out, 'seg_compare.png')) == (5 * 300, 2 * 150 + 40)


def test_missing_checkpoint(setup, tmp_path):
    argv = _models(setup)
    argv[7] = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match=r"the checkpoint of model 'student alone' \(.*nope.pth\) does not "):
        seg_compare.main(argv + ['--out', str(tmp_path / 'out')])
    assert not osp.exists(tmp_path / 'out')


def test_different_classes(setup, tmp_path):
    five = _write_config(str(tmp_path / 'five.py'), _segmentor(num_classes=5), setup['data_root'])
    ckpt = _save(_build(_segmentor(num_classes=5), 3), str(tmp_path / 'five.pth'))
    argv = _models(setup)[:8] + ['--model', 'five', five, ckpt, '--out', str(tmp_path / 'out')]
    with pytest.raises(ValueError, match="model 'five' .* predicts 5 classes, the split of .* has 7"):
        seg_compare.main(argv)


def test_weights_that_do_not_fit(setup, tmp_path):
    argv = _models(setup)
    # a SegOutputSpaceAdaptation checkpoint (keys under 'student.', no config stored) for a plain EncoderDecoder config
    argv[3] = setup['ckpts']['adapted']
    with pytest.raises(
            RuntimeError, match="the checkpoint of model 'teacher' .* does not fit the model EncoderDecoder"):
        seg_compare.main(argv + ['--out', str(tmp_path / 'out')])


def test_argument_errors(setup, capsys):
    argv = _models(setup)
    for bad, message in ((argv[:4], 'seg_compare compares 2 to 6 models'), (argv[:8] + ['--model'] + argv[1:4],
                                                                            "the model names must differ"),
                         (argv + ['--indices', '1', '1'], '--indices must be distinct')):
        with pytest.raises(SystemExit):
            seg_compare.main(bad + ['--out', 'x'])
        assert message in capsys.readouterr().err
