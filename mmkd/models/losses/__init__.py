from .ssim import COMPONENTS, MS_SSIM_WEIGHTS, L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize, ms_ssim, ssim

__all__ = ['ssim', 'ms_ssim', 'minmax_normalize', 'SSIMLoss', 'MSSSIMLoss', 'L1MSSSIMLoss', 'COMPONENTS',
           'MS_SSIM_WEIGHTS']
