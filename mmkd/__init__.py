"""mmkd: knowledge distillation for MMDetection and MMSegmentation (OpenMMLab 2.x)."""
import warnings

# mmdet imports imagecorruptions (a dependency of the robustness tool) at start-up, which imports the deprecated
# pkg_resources only to find its own files: its deprecation notice would open every run's output
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', module='imagecorruptions')

from .utils.version_check import check_dependencies  # noqa: E402
from .version import __version__  # noqa: E402

check_dependencies()

from .utils import checkpoint as _checkpoint  # noqa: E402

_checkpoint.install()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers mmkd's components)

__all__ = ['__version__']
