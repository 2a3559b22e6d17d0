from .embedding_distillation import (AbsoluteEmbeddingLoss, AttentionTransferLoss, HintLoss, RelativeDistanceLoss,
                                     absolute_embedding_loss, attention_map, attention_transfer_loss, hint_loss,
                                     pairwise_distances, relative_distance_loss)
from .metric_learning import (BatchHardTripletLoss, MarginLoss, MultiSimilarityLoss, ProxyAnchorLoss,
                              RegularizedMarginLoss, switch_negatives)
from .seg_distillation import (PixelKLLoss, PixelMSELoss, QuasiTeacherCELoss, pixel_kl, pixel_mse, quasi_teacher_ce,
                               quasi_teacher_labels)
from .soft_label_loss import SoftLabelKLLoss, SoftLabelL1Loss, SoftLabelL2Loss, focal_kl_with_logits
from .ssim import COMPONENTS, MS_SSIM_WEIGHTS, ms_ssim, ssim
from .ssim_loss import L1MSSSIMLoss, MSSSIMLoss, SSIMLoss, minmax_normalize

__all__ = [
    'ssim', 'ms_ssim', 'minmax_normalize', 'SSIMLoss', 'MSSSIMLoss', 'L1MSSSIMLoss', 'COMPONENTS', 'MS_SSIM_WEIGHTS',
    'focal_kl_with_logits', 'SoftLabelKLLoss', 'SoftLabelL1Loss', 'SoftLabelL2Loss', 'absolute_embedding_loss',
    'relative_distance_loss', 'hint_loss', 'attention_map', 'attention_transfer_loss', 'pairwise_distances',
    'AbsoluteEmbeddingLoss', 'RelativeDistanceLoss', 'HintLoss', 'AttentionTransferLoss', 'BatchHardTripletLoss',
    'MarginLoss', 'MultiSimilarityLoss', 'ProxyAnchorLoss', 'RegularizedMarginLoss', 'switch_negatives', 'pixel_kl',
    'pixel_mse', 'quasi_teacher_ce', 'quasi_teacher_labels', 'PixelKLLoss', 'PixelMSELoss', 'QuasiTeacherCELoss'
]
