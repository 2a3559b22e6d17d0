# Stanford Online Products for retrieval (Yu et al., CVPR 2019, Sec. 5.1, after Oh Song et al., CVPR 2016): the provided
# split (Ebay_train.txt: 11,318 classes, Ebay_test.txt: 11,316); resize to 256 x 256, random 224 crop and horizontal
# flip; test: the 224 centre crop. SOP classes have 2-12 images: batches of 32 = 8 classes x 4 images.
# Recall@1/10/100/1000 as in Table 2. data_root: the official Stanford_Online_Products folder.
_base_ = ['./cub200_retrieval.py']
dataset_type = 'SOPDataset'
data_root = 'data/Stanford_Online_Products/'
instances_per_class = 4
train_dataloader = dict(
    sampler=dict(instances_per_class=instances_per_class), dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='RetrievalMetric', ks=(1, 10, 100, 1000), measures=('recall', 'map_at_r', 'nmi'))
test_evaluator = val_evaluator
