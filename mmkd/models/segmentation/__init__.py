from .adaptation import OutputSpaceAdaptationMixin, SegOutputSpaceAdaptation, segmentor_heads, valid_pixels
from .dakd import DomainAdaptiveDistiller
from .discriminator import OutputSpaceDiscriminator

__all__ = [
    'OutputSpaceAdaptationMixin', 'SegOutputSpaceAdaptation', 'DomainAdaptiveDistiller', 'OutputSpaceDiscriminator',
    'segmentor_heads', 'valid_pixels'
]
