# LAD with the dynamic switch (Nguyen et al., WACV 2022, Sec. 3.4, last paragraph; no COCO number in the paper):
# configs/lad/lad_paa-r101_paa-r50_fpn_1x_coco.py (fixed teacher PAA-R101, mmdet 1x, 42.6 AP; student PAA-R50,
# Table 2's LAD 41.6 AP), except that wherever the student's candidates' costs have the higher std/mean (per GT box
# and FPN level) the student assigns its own labels. Same schedule.
_base_ = ['../lad/lad_paa-r101_paa-r50_fpn_1x_coco.py']

model = dict(switch=dict(type='StdMeanCriterion', granularity='gt_level'))
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
