# Table 6 of Yu et al. (CVPR 2019), Cars-196, low resolution: the ResNet-18 student trained and tested on low-quality
# images (downsampled to 50 x 50 and upsampled back to 224 x 224). Its teacher is the ResNet-18 trained on the
# high-quality images (embedder_r18_triplet_cars.py).
_base_ = ['./embedder_r18_triplet_cub-lowres.py']
dataset_type = 'Cars196Dataset'
data_root = 'data/cars196/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
