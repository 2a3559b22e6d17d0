# Stanford Online Products in the setup of S2SD (Roth et al., ICML 2021, supplementary A.1-A.2): the provided split
# (11,318 training classes, 11,316 test classes); the preprocessing and batches of cub200_s2sd.py (random resized crop
# 224 + flip; test: shorter side 256, centre crop 224; 112 images, 2 per class: SOP classes have 2-12 images).
# Recall@1/10/100/1000. data_root: the official Stanford_Online_Products folder.
_base_ = ['./cub200_s2sd.py']
dataset_type = 'SOPDataset'
data_root = 'data/Stanford_Online_Products/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='RetrievalMetric', ks=(1, 10, 100, 1000), measures=('recall', 'map_at_r', 'nmi'))
test_evaluator = val_evaluator
