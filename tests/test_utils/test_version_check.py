import importlib.metadata

import pytest

from mmkd.utils import version_check


def test_installed_versions_pass():
    version_check.check_dependencies()


def test_wrong_versions_named(monkeypatch):
    real = importlib.metadata.version
    fake = {'mmcv': '2.2.0', 'mmdet': '3.2.0'}
    monkeypatch.setattr(version_check.metadata, 'version', lambda name: fake.get(name) or real(name))
    with pytest.raises(ImportError) as info:
        version_check.check_dependencies()
    message = str(info.value)
    assert 'mmcv: found 2.2.0, required >=2.0.0,<2.2.0' in message
    assert 'mmdet: found 3.2.0, required >=3.3.0,<3.4.0' in message
    assert 'tools/install.sh' in message


def test_missing_package_named(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        if name == 'mmsegmentation':
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(version_check.metadata, 'version', version)
    with pytest.raises(ImportError, match='mmsegmentation: not installed'):
        version_check.check_dependencies()
