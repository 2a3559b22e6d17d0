"""mmkd/registry.py: mmkd's scope has a registry beside every mmengine root, and mmkd's modules register only
through the registries mmkd/registry.py names."""
import ast
import glob
import importlib
import os.path as osp

import mmengine.registry as mmengine_registry
import pytest
from mmengine.registry import Registry

import mmkd.registry as mmkd_registry
from .conftest import ROOT

HOST_REGISTRY_MODULES = ('mmengine.registry', 'mmdet.registry', 'mmseg.registry')
ROOTS = {name: r for name, r in vars(mmengine_registry).items() if isinstance(r, Registry) and r.parent is None}


@pytest.mark.parametrize('name', sorted(ROOTS))
def test_every_root_has_an_mmkd_child(name):
    # without it a default_scope='mmkd' Runner logs a fallback warning for every component of that registry
    child = ROOTS[name]._search_child('mmkd')
    assert child is not None and child.scope == 'mmkd' and child.parent is ROOTS[name]


@pytest.mark.parametrize('name', ['MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'METRICS'])
def test_own_registries_import_their_locations(name):
    registry = getattr(mmkd_registry, name)
    assert registry.scope == 'mmkd' and registry.parent is getattr(mmengine_registry, name)
    assert registry._locations, f'{name}: mmengine imports nothing before a build in the mmkd scope'
    for location in registry._locations:
        importlib.import_module(location)


def _host_registrations(path: str) -> list:
    """``name.register_module`` uses in ``path`` where ``name`` was imported from a host library's registry."""
    tree = ast.parse(open(path).read(), path)
    host_names = {
        alias.asname or alias.name
        for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module in HOST_REGISTRY_MODULES
        for alias in node.names
    }
    return [
        f'{osp.relpath(path, ROOT)}:{node.lineno} {node.value.id}.register_module' for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == 'register_module' and isinstance(node.value, ast.Name)
        and node.value.id in host_names
    ]


def test_modules_register_through_mmkd_registry():
    files = glob.glob(osp.join(ROOT, 'mmkd', '**', '*.py'), recursive=True)
    files = [p for p in files if p != osp.join(ROOT, 'mmkd', 'registry.py')]
    offenders = [use for path in files for use in _host_registrations(path)]
    assert not offenders, 'register through mmkd/registry.py, not a host registry imported directly: ' + str(offenders)


def test_toy_datasets_are_detection_datasets():
    from mmdet.registry import DATASETS

    from mmkd.datasets import ToyShapesDataset, UnlabeledDetDataset
    assert mmkd_registry.DET_DATASETS is DATASETS
    assert DATASETS.get('ToyShapesDataset') is ToyShapesDataset
    assert DATASETS.get('UnlabeledDetDataset') is UnlabeledDetDataset
