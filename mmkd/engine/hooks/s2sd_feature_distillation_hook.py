"""Switch on S2SD's feature distillation (the F variant) after a number of training iterations."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmkd.registry import HOOKS


@HOOKS.register_module()
class S2SDFeatureDistillationHook(Hook):
    """Before each training iteration, set ``model.feature_distillation`` of an
    :class:`~mmkd.models.embedding.S2SDEmbedder` to ``runner.iter >= start_iter``.

    Roth et al. (ICML 2021, supplementary Sec. F) add the distillation of the pooled backbone features into the base
    embedding only after 1000 iterations, once the base embedding has learnt something. The switch is recomputed from
    the runner's iteration every time, so a resumed run switches at the same iteration as an uninterrupted one.

    A runner may hold one such hook (two would each set the switch, the last one winning every iteration);
    ``start_iter`` at or past the run's ``max_iters`` is warned about, since F would then never switch on.

    Args:
        start_iter: the first (0-based) training iteration with feature distillation (1000).
    """

    priority = 'NORMAL'

    def __init__(self, start_iter: int = 1000):
        if not isinstance(start_iter, int) or isinstance(start_iter, bool) or start_iter < 0:
            raise ValueError(f'S2SDFeatureDistillationHook: start_iter must be an int >= 0, got {start_iter!r}')
        self.start_iter = start_iter

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'feat_distill_weight') or not hasattr(model, 'feature_distillation'):
            raise TypeError(f'S2SDFeatureDistillationHook needs an S2SDEmbedder model, got {type(model).__name__}')
        if not model.feat_distill_weight > 0:
            raise ValueError('S2SDFeatureDistillationHook: the model has feat_distill_weight=0, so there is no '
                             'feature distillation to switch on: set model.feat_distill_weight (50 in the paper) '
                             'or remove the hook')
        return model

    def before_train(self, runner) -> None:
        self._model(runner)
        count = sum(isinstance(hook, S2SDFeatureDistillationHook) for hook in runner.hooks)
        if count > 1:
            raise ValueError(f'S2SDFeatureDistillationHook: the runner has {count} of these hooks (custom_hooks); '
                             'keep one: each sets the switch before every iteration, so all but the last are ignored')
        if self.start_iter >= runner.max_iters:
            print_log(
                f'S2SDFeatureDistillationHook: start_iter={self.start_iter} >= max_iters={runner.max_iters} of '
                'this run: feature distillation (the F term) never switches on',
                logger='current',
                level=logging.WARNING)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._model(runner).feature_distillation = runner.iter >= self.start_iter
