# Toy PAA teacher on the toy shapes: the 16-wide student with twice as wide backbone stages (32).
_base_ = ['./paa_tiny-w16_toy.py']
model = dict(backbone=dict(base_channels=32), neck=dict(in_channels=[32, 64, 128, 256]))
