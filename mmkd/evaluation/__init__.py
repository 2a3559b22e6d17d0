from .network_metric import NetworkMetric

__all__ = ['NetworkMetric']
