# Table 6 of Yu et al. (CVPR 2019), CUB-200-2011, low resolution: ML + KD (rel); the teacher (ResNet-18, high-quality
# images) embeds the high-quality crop, the student (ResNet-18) the same crop at low resolution, in the same iteration
# (TeacherView in the pipeline); lambda = 0.3.
_base_ = ['./metric-kd-abs_r18-r18_cub-lowres.py']
model = dict(distill_loss=dict(type='RelativeDistanceLoss', loss_weight=0.3))
