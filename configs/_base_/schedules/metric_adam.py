# Yu et al. (CVPR 2019), Sec. 5.1: Adam, learning rate 1e-5 (SOP 1e-6), constant. The paper gives neither the
# number of epochs nor a weight decay: 100 epochs and no decay are mmkd's choices.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-5, weight_decay=0.0))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = []
