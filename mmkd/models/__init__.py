from . import distillers, losses, utils  # noqa: F401  (registers the components)
from .multi_network import MultiNetworkModel, MultiNetworkTrainMixin  # noqa: F401
