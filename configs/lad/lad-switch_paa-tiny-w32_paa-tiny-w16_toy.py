# LAD with the dynamic switch on the toy shapes: the trained 32-wide toy PAA teacher assigns the labels, except for
# the GT boxes and FPN levels where the student's costs have the higher std/mean: there the student assigns its own.
_base_ = ['./lad_paa-tiny-w32_paa-tiny-w16_toy.py']

model = dict(switch=dict(type='StdMeanCriterion', granularity='gt_level'))
# the switch scalars (switch.rho.*, switch.share.*) averaged over the logger's window like the losses (mmengine
# logs other scalars as their value at the logging iteration)
log_processor = dict(mean_pattern=r'.*(loss|time|data_time|grad_norm|switch).*')
