# Table 6 of Yu et al. (CVPR 2019), Cars-196, unlocalized: ML + KD (abs); the teacher (ResNet-18 trained on bounding-box
# crops) embeds the crop, the student (ResNet-18) the uncropped image of the same sample in the same iteration
# (TeacherView in the pipeline; each view has its own random crop and flip); lambda = 1.5.
_base_ = ['./metric-kd-abs_r18-r18_cub-unloc.py']
dataset_type = 'Cars196Dataset'
data_root = 'data/cars196/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
model = dict(
    teacher_cfg='{{fileDirname}}/embedder_r18_triplet_cars-bbox.py',
    teacher_ckpt='work_dirs/embedder_r18_triplet_cars-bbox/epoch_100.pth',
    distill_loss=dict(loss_weight=1.5))
