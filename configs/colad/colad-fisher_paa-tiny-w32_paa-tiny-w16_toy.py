# CoLAD on the toy shapes with the Fisher criterion (one decision per GT box, from PAA's own two-Gaussian fits).
_base_ = ['./colad_paa-tiny-w32_paa-tiny-w16_toy.py']

model = dict(switch=dict(_delete_=True, type='FisherCriterion', granularity='gt'))
