"""Both networks of a pair validated in one run: ``also_predict`` + :class:`NetworkMetric`."""
import copy
import warnings

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.registry import METRICS

from mmkd.evaluation import NetworkMetric
from mmkd.models.distillers import CoLAD
from ..test_models.test_distillers.test_lad import batch, paa


@METRICS.register_module(force=True)
class BoxCountMetric(BaseMetric):
    """Test metric: the number of predicted boxes and the sum of their scores."""
    default_prefix = 'count'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            self.results.append(
                (len(sample['pred_instances']['scores']), float(sample['pred_instances']['scores'].sum())))

    def compute_metrics(self, results):
        return dict(boxes=sum(r[0] for r in results), score=sum(r[1] for r in results))


def predicted(model, also_predict, samples, inputs):
    model.also_predict = also_predict
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return model.predict(inputs, copy.deepcopy(samples))


def test_both_networks_are_validated_in_one_pass():
    torch.manual_seed(0)
    model = CoLAD(networks=dict(big=paa(16), small=paa(8)), predict_network='small', also_predict=['big'])
    for network in (model.big, model.small):  # confident heads, so that both networks predict boxes
        torch.nn.init.constant_(network.bbox_head.atss_cls.bias, 2.0)
    model.eval()
    inputs, samples = batch(seed=0)
    for sample in samples:
        sample.set_metainfo(dict(ori_shape=sample.img_shape, scale_factor=(1.0, 1.0)))
    both = predicted(model, ('big', ), samples, inputs)
    alone_small = predicted(model, (), samples, inputs)
    model.predict_network = 'big'
    alone_big = predicted(model, (), samples, inputs)
    model.predict_network = 'small'
    for got, small, big in zip(both, alone_small, alone_big):
        assert len(big.pred_instances) > 0 and len(small.pred_instances) > 0
        torch.testing.assert_close(got.pred_instances.bboxes, small.pred_instances.bboxes, rtol=0, atol=0)
        torch.testing.assert_close(got.big_pred_instances.bboxes, big.pred_instances.bboxes, rtol=0, atol=0)
        torch.testing.assert_close(got.big_pred_instances.scores, big.pred_instances.scores, rtol=0, atol=0)

    evaluator = Evaluator(
        [dict(type='BoxCountMetric'),
         dict(type='NetworkMetric', network='big', metric=dict(type='BoxCountMetric'))])
    evaluator.dataset_meta = dict(classes=('a', ))
    evaluator.process(both)
    metrics = evaluator.evaluate(len(both))
    assert metrics['count/boxes'] == sum(len(s.pred_instances) for s in alone_small)
    assert metrics['big/count/boxes'] == sum(len(s.pred_instances) for s in alone_big)
    assert metrics['big/count/score'] == pytest.approx(sum(float(s.pred_instances.scores.sum()) for s in alone_big))
    assert evaluator.metrics[1].dataset_meta == dict(classes=('a', ))


def test_errors_name_the_missing_network():
    with pytest.raises(KeyError, match=r"also_predict names \['huge'\]"):
        CoLAD(networks=dict(big=paa(16), small=paa(8)), also_predict=['huge'])
    metric = NetworkMetric(dict(type='BoxCountMetric'), network='big')
    with pytest.raises(KeyError, match=r"model.also_predict=\['big'\]"):
        metric.process({}, [dict(pred_instances=dict(scores=torch.ones(1)))])
