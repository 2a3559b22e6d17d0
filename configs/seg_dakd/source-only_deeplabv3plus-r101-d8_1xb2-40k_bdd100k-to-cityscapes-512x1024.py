# Source-only teacher of BDD100K -> Cityscapes: DeepLabV3+ R101-D8 trained on the labelled BDD100K images alone
# (mmseg's model and training pipeline, the paper's optimiser: configs/_base_/schedules/seg_dakd_40k.py) and validated
# on Cityscapes val: the domain gap without adaptation. Its model is the segmentor of
# adaptseg_deeplabv3plus-r101-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py, the distillation teacher.
#
# Models: the paper's teacher DRN-D-38 and student DRN-D-22 are not in mmseg; DeepLabV3+ R101-D8 -> R18-D8 (mmseg's
# Cityscapes models, ImageNet-pretrained ResNetV1c backbones) is the closest pair it ships: dilated ResNets of output
# stride 8 like DRN, the same family for teacher and student, and an auxiliary FCN head on stage 3 beside the decode
# head, the two output levels of the paper's main and auxiliary discriminators.
_base_ = [
    'mmseg::_base_/models/deeplabv3plus_r50-d8.py', '../_base_/datasets/bdd100k_to_cityscapes_uda.py',
    '../_base_/schedules/seg_dakd_40k.py'
]
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size), pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
# the source domain alone, with the pipeline of the adaptation configs' source
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='BDD100KDataset',
        data_root='data/bdd100k/',
        data_prefix=dict(img_path='images/10k/train', seg_map_path='labels/sem_seg/masks/train'),
        pipeline={{_base_.source_pipeline}}))
