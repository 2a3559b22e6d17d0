# Toy student of `tools/quickstart.py metric`: a 4-wide ResNet-18 (1/16 of a ResNet-18's channels, 1/16 of the toy
# teacher's weights) trained alone, on the teacher's schedule.
_base_ = ['./embedder_r18-w16_ms_toy.py']
model = dict(backbone=dict(base_channels=4))
