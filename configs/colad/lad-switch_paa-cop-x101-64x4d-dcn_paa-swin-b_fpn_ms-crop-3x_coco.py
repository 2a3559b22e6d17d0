# LAD with the dynamic switch (Nguyen et al., WACV 2022, Sec. 4.4, Table 8): the fixed teacher PAA-COP
# ResNeXt-64x4d-101-DCN of Sec. 4.3 (paa-cop_x101-64x4d-dcn_fpn_ms-2x_coco.py, trained there with CoLAD: 49.2 AP
# test-dev) assigns the labels of a PAA-Swin-B student (paa_swin-b-p4-w7_fpn_ms-crop-3x_coco.py, Swin's 3x training:
# AdamW, multi-scale, 36 epochs), except where the student's candidates' costs have the higher std/mean (per GT box
# and FPN level): there the student assigns its own. "CoLAD training with these two networks is extremely heavy".
# Paper: PAA-Swin-B 52.0 AP on COCO test-dev, 51.4 AP on val.
_base_ = ['./paa_swin-b-p4-w7_fpn_ms-crop-3x_coco.py']

# The paper's teacher weights are not published (nor in mmdet's model zoo): a placeholder. Put here the teacher you
# trained, e.g. the X101-DCN network of a CoLAD-COP run exported with tools/export_student.py --network <name>.
teacher_ckpt = 'checkpoints/paa-cop_x101-64x4d-dcn_colad_ms-2x_coco.pth'
model = dict(
    _delete_=True,
    type='LADDistiller',
    student={{_base_.model}},
    teacher_cfg='{{fileDirname}}/paa-cop_x101-64x4d-dcn_fpn_ms-2x_coco.py',
    teacher_ckpt=teacher_ckpt,
    assign_by='teacher',
    switch=dict(type='StdMeanCriterion', granularity='gt_level'),
    gmm_backend='torch')
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
