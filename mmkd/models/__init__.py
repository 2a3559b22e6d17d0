from . import dense_heads, distillers, embedding, losses, segmentation, task_modules, utils  # noqa: F401  (registers the components)
from .multi_network import MultiNetworkModel, MultiNetworkTrainMixin  # noqa: F401
