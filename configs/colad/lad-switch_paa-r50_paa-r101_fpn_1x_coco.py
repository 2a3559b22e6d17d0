# LAD with the dynamic switch (Nguyen et al., WACV 2022, Sec. 3.4, last paragraph; no COCO number in the paper):
# configs/lad/lad_paa-r50_paa-r101_fpn_1x_coco.py (fixed teacher PAA-R50, mmdet 1x, 40.4 AP; student PAA-R101),
# except that wherever the student's candidates' costs have the higher std/mean (per GT box and FPN level) the
# student assigns its own labels (self-distillation for those boxes). The pair where the paper's student overtakes
# its teacher (Table 3: 43.3 AP with plain LAD), i.e. where the switch has something to do. Same schedule.
_base_ = ['../lad/lad_paa-r50_paa-r101_fpn_1x_coco.py']

model = dict(switch=dict(type='StdMeanCriterion', granularity='gt_level'))
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
