# S2SD (Roth et al., ICML 2021, supplementary A.2): Adam, lr 1e-5, weight decay 3e-4, no learning-rate schedule,
# 150 epochs on CUB200-2011 and CARS196 (the SOP configs set 100). The test split is validated every 5 epochs
# (the runtime keeps the best checkpoint by R@1 and the last two of every 10th epoch).
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-5, weight_decay=3e-4))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=150, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = []
