from .network_metric import NetworkMetric
from .retrieval import (RetrievalMetric, embedding_density, kmeans, nearest_neighbors, normalized_mutual_info,
                        retrieval_metrics, spectral_decay)

__all__ = [
    'NetworkMetric', 'RetrievalMetric', 'retrieval_metrics', 'nearest_neighbors', 'kmeans', 'normalized_mutual_info',
    'embedding_density', 'spectral_decay'
]
