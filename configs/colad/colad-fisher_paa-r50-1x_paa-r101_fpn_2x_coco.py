# CoLAD (Nguyen et al., WACV 2022), Table 4 row "CoLAD - Fisher" (PAA-R101 train 2x): the 2x run of
# colad-stdmean_paa-r50-1x_paa-r101_fpn_2x_coco.py with the Fisher switch, one decision per GT box.
# Paper, COCO val: PAA-R101 43.5 (PAA 2x) -> 43.9 AP.
_base_ = ['./colad-stdmean_paa-r50-1x_paa-r101_fpn_2x_coco.py']

model = dict(switch=dict(_delete_=True, type='FisherCriterion', granularity='gt'))
