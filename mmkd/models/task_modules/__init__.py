from .paa_gmm import TwoGaussians, fit_two_gaussians, paa_positive_mask
from .switch_criteria import (GRANULARITIES, FisherCriterion, StdMeanCriterion, SwitchCriterion, SwitchDecision,
                              build_switch, fisher_score, std_mean_ratio)

__all__ = [
    'TwoGaussians', 'fit_two_gaussians', 'paa_positive_mask', 'GRANULARITIES', 'SwitchCriterion', 'StdMeanCriterion',
    'FisherCriterion', 'SwitchDecision', 'build_switch', 'fisher_score', 'std_mean_ratio'
]
