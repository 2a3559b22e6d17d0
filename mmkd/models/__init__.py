# noqa: F401 below: importing the subpackages registers the components
from . import dense_heads, distillers, embedding, losses, segmentation, task_modules, utils  # noqa: F401
from .multi_network import MultiNetworkModel, MultiNetworkTrainMixin  # noqa: F401
