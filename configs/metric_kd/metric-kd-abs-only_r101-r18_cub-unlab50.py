# Table 3 of Yu et al. (CVPR 2019), CUB-200-2011, "only KD (abs)": no label at all, the student learns from the
# teacher's embeddings of the unlabelled half of the training images (the teacher is the ResNet-101 trained on the
# labelled half). Without labels the sampler is a plain shuffle.
_base_ = ['./metric-kd-abs_r101-r18_cub-lab50.py']
model = dict(student=dict(loss=None))
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    dataset=dict(unlabeled_fraction=0.5, drop_unlabeled=False, drop_labeled=True))
