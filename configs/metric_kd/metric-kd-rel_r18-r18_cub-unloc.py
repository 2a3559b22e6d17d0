# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, unlocalized: ML + KD (rel); the teacher (ResNet-18 trained on
# bounding-box crops) embeds the crop, the student (ResNet-18) the uncropped image of the same sample in the same
# iteration (TeacherView in the pipeline; each view has its own random crop and flip); lambda = 0.3.
_base_ = ['./metric-kd-abs_r18-r18_cub-unloc.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3))
