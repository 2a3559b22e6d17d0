# Toy PAA with COP (see paa-cop_tiny-w16_toy.py) with twice as wide backbone stages (32), as paa_tiny-w32_toy.py.
_base_ = ['./paa-cop_tiny-w16_toy.py']
model = dict(backbone=dict(base_channels=32), neck=dict(in_channels=[32, 64, 128, 256]))
