# AdaptSeg student alone of BDD100K -> Cityscapes: DeepLabV3+ R18-D8 (from ImageNet weights) adapted by output-space
# adversarial learning as the R101 teacher, without a teacher: the "student" baseline of the distillation configs.
_base_ = ['./adaptseg_deeplabv3plus-r101-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py']
model = dict(student='{{fileDirname}}/source-only_deeplabv3plus-r18-d8_1xb2-40k_bdd100k-to-cityscapes-512x1024.py')
