# Cars-196 for retrieval (Yu et al., CVPR 2019, Sec. 5.1, after Oh Song et al., CVPR 2016): classes 1-98 train, 99-196
# test (the official train and test images pooled); the preprocessing and batches of CUB-200-2011 (resize to 256 x 256,
# random 224 crop and horizontal flip, test centre crop 224; 4 classes x 8 images). data_root: the folder of
# cars_annos.mat and car_ims/.
_base_ = ['./cub200_retrieval.py']
dataset_type = 'Cars196Dataset'
data_root = 'data/cars196/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
