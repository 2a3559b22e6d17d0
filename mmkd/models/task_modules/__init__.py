from .paa_gmm import TwoGaussians, fit_two_gaussians, paa_positive_mask

__all__ = ['TwoGaussians', 'fit_two_gaussians', 'paa_positive_mask']
