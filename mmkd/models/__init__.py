from . import distillers, losses, utils  # noqa: F401  (registers the components)
