# Toy PAA with Conditional Objectness Prediction (CoLAD appendix A, Eq. (4)): the 16-wide toy PAA
# (paa_tiny-w16_toy.py) with its head swapped for COPHead. iou_branch: 'train_test' (the IoU branch trained and used
# at inference, PAA's default), 'train' (trained, scores p alone at inference) or 'none' (no IoU branch).
_base_ = ['./paa_tiny-w16_toy.py']
model = dict(bbox_head=dict(type='COPHead', iou_branch='train_test'))
