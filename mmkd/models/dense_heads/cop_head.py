"""PAA head with Conditional Objectness Prediction (COP): appendix A, Eq. (4) of CoLAD.

Nguyen et al., "Improving Object Detection by Label Assignment Distillation", WACV 2022.
"""
import contextlib
import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmdet.models.layers import multiclass_nms
from mmdet.utils import ConfigType, InstanceList, MultiConfig, OptConfigType
from mmengine.structures import InstanceData
from torch import Tensor

from mmkd.registry import DET_MODELS
from .paa_head import BatchedPAAHead

IOU_BRANCHES = ('train_test', 'train', 'none')
WINDOW = 9  # the 3x3 neighbours of an anchor, k = 3 * (dy + 1) + (dx + 1) for offsets dy, dx in {-1, 0, 1}


def _windows(x: Tensor, pad_value: float) -> Tensor:
    """The 3x3 neighbourhood of every location: [B, C, H, W] -> [B, 9, C, H, W], entry k of location (y, x) being
    ``x`` at (y + dy, x + dx) with k = 3 * (dy + 1) + (dx + 1), and ``pad_value`` outside the map."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=pad_value)
    return torch.stack([padded[..., dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], 1)


def cop_logits(cls_logits: Tensor, obj_logits: Tensor, num_anchors: int = 1) -> Tensor:
    """Eq. (4) of CoLAD as a logit: ``log p - log(1 - p)`` with p(a_i) = 1/9 sum_k sigmoid(o_i^k) sigmoid(s_i^k).

    o_i^k is the objectness that anchor i predicts for its neighbour k of the 3x3 window; s_i^k is the
    classification logit of the same class and the same anchor slot at that neighbour. A neighbour outside the
    feature map contributes no probability, and the sum is still divided by 9 (so a border anchor's probability is
    at most 6/9, a corner's 4/9): the window is the zero-padded one of a 3x3 convolution.

    Both ``log p`` and ``log(1 - p)`` are log-sum-exps of log-sigmoids, the latter through
    ``1 - o s = (1 - o) + o (1 - s)``: a sum of positive terms, so no cancellation when p is near 1 and no
    underflow when it is near 0. The logit is finite and has finite gradients for any finite logits
    (e.g. +-1e4), in float32 whatever the autocast state (float64 inputs stay float64). The windows are
    materialised: autograd keeps about 34 times the class map (344 MiB for a [2, 80, 100, 168] map, COCO's P3 at
    batch 2).

    Args:
        cls_logits: [N, A * C, H, W] classification logits, channel a * C + c (mmdet's layout).
        obj_logits: [N, A * 9, H, W] objectness logits, channel a * 9 + k.
        num_anchors: A, the anchors per location; each anchor slot has its own window.

    Returns:
        Tensor: [N, A * C, H, W] logits of p, float32 (float64 for float64 inputs).
    """
    num_imgs, channels, height, width = cls_logits.shape
    if num_anchors < 1 or channels % num_anchors:
        raise ValueError(f'cop_logits: cls_logits has {channels} channels, not a multiple of num_anchors='
                         f'{num_anchors}')
    if obj_logits.shape != (num_imgs, num_anchors * WINDOW, height, width):
        raise ValueError(f'cop_logits: obj_logits must have shape {(num_imgs, num_anchors * WINDOW, height, width)} '
                         f'(9 objectness logits per anchor), got {tuple(obj_logits.shape)}')
    dtype = torch.float64 if torch.float64 in (cls_logits.dtype, obj_logits.dtype) else torch.float32
    device_type = cls_logits.device.type
    no_autocast = (
        torch.autocast(device_type, enabled=False)
        if torch.amp.is_autocast_available(device_type) else contextlib.nullcontext())
    with no_autocast:
        s = cls_logits.to(dtype).reshape(num_imgs * num_anchors, channels // num_anchors, height, width)
        o = obj_logits.to(dtype).reshape(num_imgs * num_anchors, WINDOW, 1, height, width)
        log_o, log_not_o = F.logsigmoid(o), F.logsigmoid(-o)
        # outside the map: probability 0 (log -inf), complement 1 (log 0)
        log_s = _windows(F.logsigmoid(s), -math.inf)
        log_not_s = _windows(F.logsigmoid(-s), 0.)
        log_p = torch.logsumexp(log_o + log_s, 1)
        log_not_p = torch.logsumexp(torch.logaddexp(log_not_o, log_o + log_not_s), 1)
        # the 1/9 cancels in the logit
        return (log_p - log_not_p).reshape(num_imgs, channels, height, width)


@DET_MODELS.register_module()
class COPHead(BatchedPAAHead):
    """PAA head amended with Conditional Objectness Prediction (appendix A of CoLAD, Fig. 4, Eq. (4)).

    A 3x3 convolution (``pred_kernel_size``, as the other prediction convs) on the regression branch's features
    (after ``reg_convs``) predicts, for every anchor, 9
    objectness logits o_i^k, one per neighbour k of its 3x3 window: per-location kernels (a conditional
    convolution) applied to the class-probability map. The class probability of anchor i is
    p(a_i) = 1/9 sum_k sigmoid(o_i^k) sigmoid(s_i^k), s_i^k being the classification logit of the same class and
    anchor slot at neighbour k (:func:`cop_logits`; neighbours outside the map contribute 0). The head outputs
    the logit of p as its ``cls_scores`` (float32), so that everything that reads a PAA head's outputs (focal loss,
    PAA's assignment costs, LAD's soft labels, the post-processing's sigmoid) sees p unchanged; the objectness is
    supervised only through that product, so the regression branch gets gradients from every anchor's
    classification loss.

    Initialisation: as mmdet's AutoAssign for its implicit objectness, the objectness conv is Normal(0, 0.01)
    with bias 0 (sigmoid 0.5: no preference, and the steepest point of the sigmoid) and the class prior is 0.02,
    so the initial probability of an interior anchor is 0.5 x 0.02 = 0.01, the prior of PAA's focal loss.

    Args:
        iou_branch: ``'train_test'`` (PAA's IoU branch trained and its prediction combined with the class
            probability at inference as sqrt(p x IoU)), ``'train'`` (trained, not used at inference: scores are
            p alone) or ``'none'`` (no IoU branch: no IoU convolution and no ``loss_iou`` in the losses; scores
            are p alone; ``iou_preds`` is an empty [N, 0, H, W] tensor per level, so that code that handles the
            outputs as tensors, e.g. detaches them, keeps working and code that reads IoU values fails on the
            shape). Table 10 of the paper: rows 3, 5 and 7.
        init_cfg: as ATSS's, with the class prior 0.02 (see above).
        *args, **kwargs: :class:`~mmkd.models.dense_heads.BatchedPAAHead`'s (and mmdet ``PAAHead``'s) arguments.

    mmdet has no COP head: a model with this head needs mmkd to load (it cannot be exported as a stock PAA).
    """

    def __init__(self,
                 *args,
                 iou_branch: str = 'train_test',
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='atss_cls', std=0.01, bias_prob=0.02)),
                 **kwargs) -> None:
        if iou_branch not in IOU_BRANCHES:
            raise ValueError(f'{type(self).__name__}: iou_branch must be one of {IOU_BRANCHES}, got {iou_branch!r}')
        # read by _init_layers, which the base constructor calls
        self.iou_branch = iou_branch
        super().__init__(*args, init_cfg=init_cfg, **kwargs)

    def _init_layers(self) -> None:
        """ATSS's layers, the objectness conv, and no IoU conv for ``iou_branch='none'``: a parameter that no
        loss uses would make DistributedDataParallel fail (without ``find_unused_parameters``)."""
        super()._init_layers()
        self.cop_obj = nn.Conv2d(
            self.feat_channels,
            self.num_base_priors * WINDOW,
            self.pred_kernel_size,
            padding=self.pred_kernel_size // 2)
        if self.iou_branch == 'none':
            del self.atss_centerness

    def forward_single(self, x: Tensor, scale: Scale) -> Tuple[Tensor, Tensor, Tensor]:
        """One level: ``cls_scores`` [N, A * C, H, W] (float32 logits of Eq. (4)'s p), ``bbox_preds``
        [N, A * 4, H, W] and ``iou_preds`` [N, A, H, W] ([N, 0, H, W] for ``iou_branch='none'``)."""
        cls_feat = x
        reg_feat = x
        for cls_conv in self.cls_convs:
            cls_feat = cls_conv(cls_feat)
        for reg_conv in self.reg_convs:
            reg_feat = reg_conv(reg_feat)
        cls_score = cop_logits(self.atss_cls(cls_feat), self.cop_obj(reg_feat), self.num_base_priors)
        bbox_pred = scale(self.atss_reg(reg_feat)).float()
        if self.iou_branch == 'none':
            iou_pred = bbox_pred.new_zeros(bbox_pred.size(0), 0, *bbox_pred.shape[-2:])
        else:
            iou_pred = self.atss_centerness(reg_feat)
        return cls_score, bbox_pred, iou_pred

    def losses_from_assignment(self, cls_scores: List[Tensor], bbox_preds: List[Tensor], iou_preds: List[Tensor],
                               assignment: tuple, num_imgs: int, iou_weighted_bbox: bool) -> dict:
        """:meth:`BatchedPAAHead.losses_from_assignment`; without an IoU branch, ``loss_cls`` and ``loss_bbox``
        only (an absent loss rather than a zero one: there is nothing that a zero would describe)."""
        if self.iou_branch != 'none':
            return super().losses_from_assignment(cls_scores, bbox_preds, iou_preds, assignment, num_imgs,
                                                  iou_weighted_bbox)
        # PAA's losses computed on constant IoU logits, whose (gradient-free) IoU loss is then dropped
        placeholders = [pred.new_zeros(pred.size(0), self.num_base_priors, *pred.shape[-2:]) for pred in bbox_preds]
        losses = super().losses_from_assignment(cls_scores, bbox_preds, placeholders, assignment, num_imgs,
                                                iou_weighted_bbox)
        del losses['loss_iou']
        return losses

    # ------------------------------------------------------------------------------------------------ inference
    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """mmdet ``PAAHead.predict_by_feat``; the IoU predictions (``score_factors``) are used only with
        ``iou_branch='train_test'``, otherwise the scores are the class probabilities p alone."""
        return super().predict_by_feat(
            cls_scores,
            bbox_preds,
            score_factors=score_factors if self.iou_branch == 'train_test' else None,
            batch_img_metas=batch_img_metas,
            cfg=cfg,
            rescale=rescale,
            with_nms=with_nms)

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: OptConfigType = None,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """PAA's post-processing of one image; without IoU predictions (None per level) the same steps (top
        ``nms_pre`` per level, NMS, score voting) on the class probabilities in place of sqrt(p x IoU)."""
        if score_factor_list[0] is not None:
            return super()._predict_by_feat_single(cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors,
                                                   img_meta, cfg, rescale, with_nms)
        cfg = self.test_cfg if cfg is None else cfg
        nms_pre = cfg.get('nms_pre', -1)
        mlvl_bboxes, mlvl_scores = [], []
        for cls_score, bbox_pred, priors in zip(cls_score_list, bbox_pred_list, mlvl_priors):
            scores = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels).sigmoid()
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4)
            if 0 < nms_pre < scores.size(0):
                top = scores.max(dim=1).values.topk(nms_pre).indices
                scores, bbox_pred, priors = scores[top], bbox_pred[top], priors[top]
            mlvl_bboxes.append(self.bbox_coder.decode(priors, bbox_pred, max_shape=img_meta['img_shape']))
            mlvl_scores.append(scores)
        results = InstanceData(bboxes=torch.cat(mlvl_bboxes), scores=torch.cat(mlvl_scores))
        return self._bbox_post_process(results, cfg, rescale, with_nms, img_meta)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """mmdet ``PAAHead._bbox_post_process``; without ``score_factors`` the NMS scores are ``scores``."""
        if 'score_factors' in results:
            return super()._bbox_post_process(results, cfg, rescale, with_nms, img_meta)
        if rescale:
            results.bboxes /= results.bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
        # multiclass_nms reads the last column as mmdet's background class
        nms_scores = torch.cat([results.scores, results.scores.new_zeros(results.scores.size(0), 1)], 1)
        det_bboxes, det_labels = multiclass_nms(results.bboxes, nms_scores, cfg.score_thr, cfg.nms, cfg.max_per_img)
        if self.with_score_voting and len(det_bboxes) > 0:
            det_bboxes, det_labels = self.score_voting(det_bboxes, det_labels, results.bboxes, nms_scores,
                                                       cfg.score_thr)
        return InstanceData(bboxes=det_bboxes[:, :-1], scores=det_bboxes[:, -1], labels=det_labels)
