"""Check that the installed OpenMMLab packages are versions mmkd is built for."""
import importlib.metadata as metadata
from typing import Dict, Optional, Tuple

from packaging.version import Version

# package -> (minimum inclusive, maximum exclusive)
REQUIRED: Dict[str, Tuple[str, str]] = {
    'torch': ('2.6.0', '3.0.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmcv': ('2.0.0', '2.2.0'),
    'mmdet': ('3.3.0', '3.4.0'),
    'mmsegmentation': ('1.2.2', '1.3.0'),
}


def _installed(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_dependencies() -> None:
    """Raise ``ImportError`` naming every found/required version pair that does not fit.

    The message lists the versions found next to the ranges required and the set-up command,
    so that one error explains a broken environment.
    """
    problems = []
    for package, (low, high) in REQUIRED.items():
        found = _installed(package)
        if found is None:
            problems.append(f'{package}: not installed (required >={low},<{high})')
            continue
        release = Version(Version(found).base_version)  # '2.13.0+cpu' -> 2.13.0, '2.1.0rc1' -> 2.1.0
        if not Version(low) <= release < Version(high):
            problems.append(f'{package}: found {found}, required >={low},<{high}')
    if problems:
        raise ImportError('mmkd cannot run with the installed packages:\n  ' + '\n  '.join(problems) +
                          '\nRun `bash tools/install.sh` in this environment to install the supported versions.')
