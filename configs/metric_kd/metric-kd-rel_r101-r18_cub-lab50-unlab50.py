# Table 3 of Yu et al. (CVPR 2019), CUB-200-2011, 50% labelled + 50% unlabelled: (ML + KD (rel)) / KD (rel): one mixed
# loader, each batch of 32 holds 3 classes x 8 labelled images (metric loss + distillation) and 8 unlabelled images
# (distillation only: gt_label -1).
_base_ = ['./metric-kd-rel_r101-r18_cub-lab50.py']
train_dataloader = dict(
    sampler=dict(instances_per_class=8, unlabeled_per_batch=8),
    dataset=dict(unlabeled_fraction=0.5, drop_unlabeled=False))
