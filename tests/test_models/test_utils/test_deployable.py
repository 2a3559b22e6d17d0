"""The deployable-network protocol, and a tiny test-only mmkd-scope model that implements it."""
import pytest
import torch
import torch.nn as nn
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel

from mmkd.models.distillers import DetFeatureDistiller
from mmkd.models.utils import Deployable, deployable_of, find_model_class
from mmkd.registry import DATASETS, MODELS


@MODELS.register_module(force=True)
class TinyEmbedderTestNet(BaseModel):
    """Test-only embedding network: a 3x3 conv and global pooling to ``dim`` features."""

    def __init__(self, dim: int = 8, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.conv = nn.Conv2d(3, dim, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.conv(inputs).mean((2, 3))


@MODELS.register_module(force=True)
class TinySelfDistilledTestModel(Deployable, BaseModel):
    """Test-only mmkd-scope model of two networks; the embedder ships, the auxiliary head does not."""

    def __init__(self, embedder: dict, aux_dim: int = 4, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.embedder = MODELS.build(embedder)
        self.aux = nn.Linear(embedder.get('dim', 8), aux_dim)

    @classmethod
    def deployable(cls, model_cfg: dict):
        return 'embedder', model_cfg['embedder']

    @property
    def deployable_network(self) -> nn.Module:
        return self.embedder

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.aux(self.embedder(inputs))


@DATASETS.register_module(force=True)
class TinyVectorsTestDataset(BaseDataset):
    """Test-only mmkd-scope dataset with no stock ancestor registered anywhere."""


MMKD_MODEL = dict(type='TinySelfDistilledTestModel', embedder=dict(type='TinyEmbedderTestNet', dim=8))


def test_every_kind_declares_its_deployable_network():
    student = dict(type='RetinaNet')
    assert deployable_of(dict(type='DetFeatureDistiller', student=student)) == ('student', student)
    assert deployable_of(MMKD_MODEL, 'mmkd') == ('embedder', MMKD_MODEL['embedder'])
    assert deployable_of(dict(MMKD_MODEL, type=TinySelfDistilledTestModel)) == ('embedder', MMKD_MODEL['embedder'])
    assert find_model_class(dict(type='DetFeatureDistiller')) is DetFeatureDistiller
    model = MODELS.build(MMKD_MODEL)
    assert model.deployable_network is model.embedder
    assert all(k.startswith(('embedder.', 'aux.')) for k in model.state_dict())
    with pytest.raises(TypeError, match='RetinaNet is not an mmkd model'):
        deployable_of(dict(type='RetinaNet'), 'mmdet')
    with pytest.raises(KeyError, match="'NoSuchModel' is in none of the model registries"):
        deployable_of(dict(type='NoSuchModel'))


def test_default_scope_is_asked_first():
    # 'ResNet' is mmdet's and mmseg's (two classes): the config's scope decides which
    assert find_model_class(dict(type='ResNet'), 'mmseg').__module__.startswith('mmseg')
    assert find_model_class(dict(type='ResNet'), 'mmdet').__module__.startswith('mmdet')


def test_a_declaration_must_have_both_sides():

    class Incomplete(Deployable, BaseModel):

        @classmethod
        def deployable(cls, model_cfg):
            return 'net', model_cfg['net']

        def forward(self, *args, **kwargs):
            return torch.zeros(())

    with pytest.raises(TypeError, match='deployable_network'):
        Incomplete()
