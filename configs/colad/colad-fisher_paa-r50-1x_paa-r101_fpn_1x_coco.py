# CoLAD (Nguyen et al., WACV 2022), Table 4 row "CoLAD - Fisher" (PAA-R101 train 1x): as
# colad-stdmean_paa-r50-1x_paa-r101_fpn_1x_coco.py, but the switch compares the Fisher score of each network's
# two-Gaussian fit of its candidates' costs (Eq. 3), one decision per GT box (the fit is per GT box).
# Paper, COCO val: PAA-R101 42.6 -> 43.4 AP.
_base_ = ['./colad-stdmean_paa-r50-1x_paa-r101_fpn_1x_coco.py']

model = dict(switch=dict(_delete_=True, type='FisherCriterion', granularity='gt'))
