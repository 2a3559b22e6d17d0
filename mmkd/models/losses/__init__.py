from .soft_label_loss import SoftLabelKLLoss, SoftLabelL1Loss, SoftLabelL2Loss, focal_kl_with_logits
from .ssim import COMPONENTS, MS_SSIM_WEIGHTS, ms_ssim, ssim
from .ssim_loss import L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize

__all__ = [
    'ssim', 'ms_ssim', 'minmax_normalize', 'SSIMLoss', 'MSSSIMLoss', 'L1MSSSIMLoss', 'COMPONENTS', 'MS_SSIM_WEIGHTS',
    'focal_kl_with_logits', 'SoftLabelKLLoss', 'SoftLabelL1Loss', 'SoftLabelL2Loss'
]
