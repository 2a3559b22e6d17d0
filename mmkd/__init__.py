"""mmkd: knowledge distillation for MMDetection and MMSegmentation (OpenMMLab 2.x)."""
from .utils.version_check import check_dependencies
from .version import __version__

check_dependencies()

from .utils import checkpoint as _checkpoint  # noqa: E402

_checkpoint.install()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers mmkd's components)

__all__ = ['__version__']
