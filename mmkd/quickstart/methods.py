"""The methods of ``tools/quickstart.py``, and the toy data they train on.

A method is a few stages (configs under configs/, relative to the repository root) registered by name: a new
one is a :class:`~mmkd.quickstart.stages.Method` passed to :func:`~mmkd.quickstart.stages.register_method`.
"""
import argparse
import os.path as osp

from mmengine.config import Config

from mmkd.datasets import generate_toy_retrieval, generate_toy_scenes, generate_toy_shapes
from .stages import Method, Stage, register_method

TOY_TEACHER = 'configs/toy/retinanet_tiny-w32_toy.py'
TOY_STUDENT = 'configs/toy/retinanet_tiny-w16_toy.py'
SSIM_STUDENT = 'configs/ssim_kd/ssim_retinanet_tiny-w32-w16_toy.py'
PAA_TEACHER = 'configs/toy/paa_tiny-w32_toy.py'
PAA_STUDENT = 'configs/toy/paa_tiny-w16_toy.py'
LAD_STUDENT = 'configs/lad/lad_paa-tiny-w32_paa-tiny-w16_toy.py'
SOLAD_STUDENT = 'configs/lad/solad_paa-tiny-w32_paa-tiny-w16_toy.py'
COLAD_PAIR = 'configs/colad/colad_paa-tiny-w32_paa-tiny-w16_toy.py'
EMBED_TEACHER = 'configs/metric_kd/embedder_r18-w16_ms_toy.py'
EMBED_STUDENT = 'configs/metric_kd/embedder_r18-w4_ms_toy.py'
EMBED_ABS = 'configs/metric_kd/metric-kd-abs_r18-w16-r18-w4_toy.py'
EMBED_REL = 'configs/metric_kd/metric-kd-rel_r18-w16-r18-w4_toy.py'
S2SD_BASELINE = 'configs/s2sd/embedder_r18-w16-d8_ms_toy.py'
S2SD_DSD = 'configs/s2sd/s2sd-dsd_r18-w16-d8_ms_toy.py'
S2SD_MSDF = 'configs/s2sd/s2sd-msdf_r18-w16-d8_ms_toy.py'
COCO_BBOX_METRICS = (('AP', 'coco/bbox_mAP'), ('AP50', 'coco/bbox_mAP_50'), ('AP75', 'coco/bbox_mAP_75'),
                     ('AP_S', 'coco/bbox_mAP_s'), ('AP_M', 'coco/bbox_mAP_m'), ('AP_L', 'coco/bbox_mAP_l'))


def toy_shapes_data(args: argparse.Namespace) -> str:
    """Generates the toy shapes under ``args.data_root`` unless complete there; returns the folder."""
    data_root = osp.join(osp.abspath(args.data_root), '')
    generate_toy_shapes(data_root, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size)
    return data_root


def use_toy_shapes(cfg: Config, data_root: str) -> None:
    """Points the train / test data and the COCO evaluator of a toy detection config at ``data_root``."""
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    cfg.test_evaluator.ann_file = osp.join(data_root, 'annotations', 'instances_val.json')


TOY_DETECTION = dict(
    metrics=COCO_BBOX_METRICS,
    metric_scale=100,
    metric_note='COCO bbox AP in %, toy shapes val',
    prepare_data=toy_shapes_data,
    use_data=use_toy_shapes,
    missing_metrics_are_zero=True)

register_method(
    Method(
        name='ssim',
        summary='SSIM feature distillation (SSIM-KD), RetinaNet w32 -> w16 on the toy shapes',
        stages=(
            Stage('teacher', 'teacher', TOY_TEACHER, per_seed=False),
            Stage('baseline', 'baseline student', TOY_STUDENT),
            Stage('ssim', 'SSIM student', SSIM_STUDENT, teacher='teacher', tag='SSIM'),
        ),
        compare=('baseline', 'ssim'),
        work_dir='work_dirs/quickstart',
        **TOY_DETECTION))

register_method(
    Method(
        name='lad',
        summary='Label assignment distillation (LAD, SoLAD), PAA w32 -> w16 on the toy shapes',
        stages=(
            Stage('teacher', 'teacher', PAA_TEACHER, per_seed=False),
            Stage('baseline', 'baseline student', PAA_STUDENT),
            Stage('lad', 'LAD student', LAD_STUDENT, teacher='teacher', tag='LAD'),
            Stage('solad', 'SoLAD student', SOLAD_STUDENT, teacher='teacher', tag='SoLAD'),
        ),
        compare=('baseline', 'lad', 'solad'),
        **TOY_DETECTION))

register_method(
    Method(
        name='colad',
        summary='Co-learning label assignment distillation (CoLAD): PAA w32 + w16 trained together from scratch '
        'vs each trained alone, on the toy shapes',
        stages=(
            Stage('alone_w32', 'w32 alone', PAA_TEACHER, tag='w32'),
            Stage('alone_w16', 'w16 alone', PAA_STUDENT, tag='w16'),
            Stage(
                'colad', 'CoLAD pair', COLAD_PAIR, tag='CoLAD', networks=(('w32', 'CoLAD w32'), ('w16', 'CoLAD w16'))),
        ),
        compare=(('alone_w16', 'colad.w16'), ('alone_w32', 'colad.w32')),
        # 8 epochs, not the toy configs' 10: the pair costs both networks' training, and the three trainings must
        # fit in 15 minutes on 2 CPU cores (the lr steps keep their place)
        epochs=8,
        **TOY_DETECTION))


def toy_retrieval_data(args: argparse.Namespace) -> str:
    """Generates the toy retrieval species under ``args.data_root`` unless complete there; returns the folder."""
    return generate_toy_retrieval(osp.abspath(args.data_root))


def use_toy_retrieval(cfg: Config, data_root: str) -> None:
    """Points the train / test data of a toy retrieval config at ``data_root``."""
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root


register_method(
    Method(
        name='metric',
        summary='Metric-learning distillation (Yu et al., CVPR 2019): absolute and relative teacher, ResNet-18 '
        'embeddings w16 -> w4 on the toy retrieval species',
        stages=(
            Stage('teacher', 'teacher (w16)', EMBED_TEACHER, per_seed=False),
            Stage('student', 'student alone (w4)', EMBED_STUDENT),
            Stage('abs', 'ML + KD (abs)', EMBED_ABS, teacher='teacher', tag='abs'),
            Stage('rel', 'ML + KD (rel)', EMBED_REL, teacher='teacher', tag='rel'),
        ),
        metrics=(('R@1', 'retrieval/R@1'), ('R@2', 'retrieval/R@2'), ('R@4', 'retrieval/R@4'), ('R@8', 'retrieval/R@8'),
                 ('mAP@R', 'retrieval/mAP@R'), ('NMI', 'retrieval/NMI')),
        metric_scale=100,
        metric_note='retrieval in %, toy test species (unseen in training)',
        prepare_data=toy_retrieval_data,
        use_data=use_toy_retrieval,
        compare=('student', 'abs', 'rel'),
        data_root='data/toy_retrieval/'))

register_method(
    Method(
        name='s2sd',
        summary='S2SD self-distillation (Roth et al., ICML 2021): baseline vs DSD vs MSDF, ResNet-18 w16 with 8-d '
        'embeddings on the toy retrieval species',
        stages=(
            Stage('baseline', 'baseline (8-d)', S2SD_BASELINE),
            Stage('dsd', 'DSD', S2SD_DSD),
            Stage('msdf', 'MSDF', S2SD_MSDF),
        ),
        metrics=(('R@1', 'retrieval/R@1'), ('R@2', 'retrieval/R@2'), ('mAP@R', 'retrieval/mAP@R'),
                 ('NMI', 'retrieval/NMI'), ('pi_ratio x100', 'retrieval/pi_ratio'), ('rho x100', 'retrieval/rho')),
        metric_scale=100,
        metric_note='retrieval in %, toy test species (unseen in training); pi_ratio and rho x 100',
        prepare_data=toy_retrieval_data,
        use_data=use_toy_retrieval,
        compare=('baseline', 'dsd', 'msdf'),
        data_root='data/toy_retrieval/'))

SEG_TEACHER = 'configs/seg_dakd/adaptseg_deeplabv3plus-w32_toy-scenes.py'
SEG_SOURCE_ONLY = 'configs/seg_dakd/deeplabv3plus-w8_toy-scenes-source.py'
SEG_STUDENT = 'configs/seg_dakd/adaptseg_deeplabv3plus-w8_toy-scenes.py'


def toy_scenes_data(args: argparse.Namespace) -> str:
    """Generates the two-domain toy scenes under ``args.data_root`` unless complete there; returns the folder."""
    return osp.join(generate_toy_scenes(osp.abspath(args.data_root)), '')


def use_toy_scenes(cfg: Config, data_root: str) -> None:
    """Points every dataset of a toy scene config (both domains of a two-domain training set) at ``data_root``."""
    datasets = [cfg.test_dataloader.dataset]
    train = cfg.train_dataloader.dataset
    datasets += [train.source, train.target] if train.type == 'TwoDomainDataset' else [train]
    for dataset in datasets:
        dataset.data_root = data_root


register_method(
    Method(
        name='seg',
        summary='Domain-adaptive distillation for segmentation (Kothandaraman et al., WACV-W 2021): DeepLabV3+ w32 -> '
        'w8 on the toy scenes, source -> target, paradigms (a)-(d)',
        stages=(
            Stage('teacher', 'teacher (w32, adapted)', SEG_TEACHER, per_seed=False),
            Stage('source_only', 'student, source only', SEG_SOURCE_ONLY, tag='source only'),
            Stage('student', 'student alone (adapted)', SEG_STUDENT),
            Stage(
                'a',
                '(a) source distillation',
                'configs/seg_dakd/dakd-a_deeplabv3plus-w32-w8_toy-scenes.py',
                teacher='teacher'),
            Stage(
                'b',
                '(b) target distillation',
                'configs/seg_dakd/dakd-b_deeplabv3plus-w32-w8_toy-scenes.py',
                teacher='teacher'),
            Stage(
                'c',
                '(c) source + target',
                'configs/seg_dakd/dakd-c_deeplabv3plus-w32-w8_toy-scenes.py',
                teacher='teacher'),
            Stage(
                'd',
                '(d) target, from (c)',
                'configs/seg_dakd/dakd-d_deeplabv3plus-w32-w8_toy-scenes.py',
                teacher='teacher',
                init_from='c'),
        ),
        metrics=(('mIoU', 'mIoU'), ('mAcc', 'mAcc'), ('aAcc', 'aAcc')),
        metric_note='target-domain val, %',
        prepare_data=toy_scenes_data,
        use_data=use_toy_scenes,
        compare=('student', 'a', 'b', 'c', 'd'),
        data_root='data/toy_scenes/'))
