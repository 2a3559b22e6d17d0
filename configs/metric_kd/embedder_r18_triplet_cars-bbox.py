# Table 6 of Yu et al. (CVPR 2019), Cars-196, unlocalized: the ResNet-18 teacher trained and tested on images cropped to
# their bounding boxes. Its student sees the uncropped images (embedder_r18_triplet_cars.py alone).
_base_ = ['./embedder_r18_triplet_cub-bbox.py']
dataset_type = 'Cars196Dataset'
data_root = 'data/cars196/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
