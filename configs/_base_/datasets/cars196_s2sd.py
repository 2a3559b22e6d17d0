# CARS196 in the setup of S2SD (Roth et al., ICML 2021, supplementary A.1-A.2): classes 1-98 train, 99-196 test; the
# preprocessing and batches of cub200_s2sd.py (random resized crop 224 + flip; test: shorter side 256, centre crop 224;
# 112 images, 2 per class). data_root: the folder of cars_annos.mat and car_ims/.
_base_ = ['./cub200_s2sd.py']
dataset_type = 'Cars196Dataset'
data_root = 'data/cars196/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
