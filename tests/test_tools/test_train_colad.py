"""tools/train.py, --resume and export_student.py --network on the toy CoLAD pair; the toy LAD-with-switch config."""
import json
import os.path as osp

import pytest
import torch

from ..conftest import CONFIGS, PYTHON, TOOLS
from .test_train_tools import _options, _run, predict_without_mmkd

CONFIG = osp.join(CONFIGS, 'colad', 'colad_paa-tiny-w32_paa-tiny-w16_toy.py')


def colad_options(toy_root, epochs):
    options = [o for o in _options(toy_root, epochs) if o != 'model.teacher_ckpt=None']
    return options + ['default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def trained(toy_root, tmp_path_factory):
    """CoLAD: two epochs straight, and one epoch then a resume to two."""
    work = tmp_path_factory.mktemp('train_colad')
    train = [PYTHON, osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir']
    _run(train + [str(work / 'full')] + colad_options(toy_root, 2), work)
    _run(train + [str(work / 'part')] + colad_options(toy_root, 1), work)
    _run(train + [str(work / 'part'), '--resume'] + colad_options(toy_root, 2), work)
    return work


def test_resume_continues_both_networks_exactly(trained):
    full = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)
    resumed = torch.load(trained / 'part' / 'epoch_2.pth', weights_only=False)
    assert full['meta']['iter'] == resumed['meta']['iter'] == 8
    state = full['state_dict']
    assert any(k.startswith('w32.') for k in state) and any(k.startswith('w16.') for k in state)
    assert int(state['switch_units'].sum()) > 0  # the switch state is saved
    for k, v in state.items():
        torch.testing.assert_close(resumed['state_dict'][k], v, rtol=0, atol=0, msg=k)
    # both optimizers and both schedulers
    assert set(full['optimizer']) == {'w32', 'w16'}
    for name in ('w32', 'w16'):
        for a, b in zip(full['optimizer'][name]['state'].values(), resumed['optimizer'][name]['state'].values()):
            for key in a:
                torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f'{name} {key}')
    assert full['param_schedulers'] == resumed['param_schedulers']
    scalars = [json.loads(line) for line in open(next((trained / 'full').glob('*/vis_data/scalars.json')))]
    logged = set().union(*scalars)
    assert {'switch.rho.w32', 'switch.rho.w16', 'switch.share.w32', 'switch.share.w16', 'w32.loss',
            'w16.loss'} <= logged
    shares = [s['switch.share.w32'] + s['switch.share.w16'] for s in scalars if 'switch.share.w32' in s]
    assert len(shares) == 8 and all(abs(s - 1) < 1e-6 for s in shares)


@pytest.mark.parametrize('network', [None, 'w32'])
def test_export_either_network_as_stock_paa(trained, toy_root, network):
    out = trained / f'export_{network}'
    args = [PYTHON, osp.join(TOOLS, 'export_student.py'), str(trained / 'full' / 'epoch_2.pth'), str(out)]
    _run(args + (['--network', network] if network else []), trained)
    exported = torch.load(out / 'student.pth', weights_only=False)
    expected = network or 'w16'  # the config's predict_network
    assert exported['meta']['exported_network'] == expected
    full = torch.load(trained / 'full' / 'epoch_2.pth', weights_only=False)['state_dict']
    assert set(exported['state_dict']) == {k[len(expected) + 1:] for k in full if k.startswith(expected + '.')}
    config_text = open(out / 'student_config.py').read()
    assert "type='PAAHead'" in config_text and 'Batched' not in config_text and 'mmkd' not in config_text
    width = 32 if expected == 'w32' else 16
    assert f'base_channels={width}' in config_text
    predict_without_mmkd(out, toy_root + '/val/000000.png', trained)


def test_export_refuses_an_unknown_network(trained):
    import subprocess

    from ..conftest import tool_env
    proc = subprocess.run([
        PYTHON,
        osp.join(TOOLS, 'export_student.py'),
        str(trained / 'full' / 'epoch_2.pth'),
        str(trained / 'bad'), '--network', 'w64'
    ],
                          env=tool_env(),
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "network='w64' is not one of the networks" in proc.stderr


def test_lad_with_switch_trains_from_config(toy_root, tmp_path):
    config = osp.join(CONFIGS, 'lad', 'lad-switch_paa-tiny-w32_paa-tiny-w16_toy.py')
    _run([PYTHON, osp.join(TOOLS, 'train.py'), config, '--work-dir',
          str(tmp_path)] + _options(toy_root, 1) + ['default_hooks.logger.interval=1'], tmp_path)
    scalars = [json.loads(line) for line in open(next(tmp_path.glob('*/vis_data/scalars.json')))]
    logged = set().union(*scalars)
    assert {'switch.rho.teacher', 'switch.rho.student', 'switch.share.teacher', 'switch.share.student'} <= logged


def test_both_networks_are_tested_in_one_run(trained, toy_root, tmp_path):
    """``also_predict`` + ``NetworkMetric``: one tools/test.py run gives each network's COCO AP and predictions, the
    same as testing each network alone (the predictions are compared box by box: after two toy epochs the APs are
    near zero)."""
    import pickle
    cfg = tmp_path / 'both.py'
    cfg.write_text(f"_base_ = [{CONFIG!r}]\n"
                   "model = dict(also_predict=['w32'])\n"
                   "test_evaluator = [{{_base_.test_evaluator}},\n"
                   "                  dict(type='NetworkMetric', network='w32', metric={{_base_.test_evaluator}}),\n"
                   f"                  dict(type='DumpDetResults', out_file_path={str(tmp_path / 'w16_both.pkl')!r}),\n"
                   "                  dict(type='NetworkMetric', network='w32', metric=dict(type='DumpDetResults',\n"
                   f"                       out_file_path={str(tmp_path / 'w32_both.pkl')!r}))]\n")
    alone = tmp_path / 'alone.py'
    alone.write_text(
        f"_base_ = [{CONFIG!r}]\n"
        "test_evaluator = [{{_base_.test_evaluator}}, dict(type='DumpDetResults', out_file_path='x.pkl')]\n")
    ckpt = str(trained / 'full' / 'epoch_2.pth')
    options = [o for o in colad_options(toy_root, 2) if not o.startswith('test_evaluator.')]
    ann = f'{toy_root}/annotations/instances_val.json'
    test = [PYTHON, osp.join(TOOLS, 'test.py')]

    def metrics(config, work, *extra):
        _run(test + [str(config), ckpt, '--work-dir', str(tmp_path / work)] + options + list(extra), tmp_path)
        return json.load(open(next((tmp_path / work).glob('*/*.json'))))

    both = metrics(cfg, 'both', 'test_evaluator.0.ann_file=' + ann, 'test_evaluator.1.metric.ann_file=' + ann)
    alone_w16 = metrics(alone, 'w16', 'test_evaluator.0.ann_file=' + ann,
                        f'test_evaluator.1.out_file_path={tmp_path}/w16_alone.pkl')
    alone_w32 = metrics(alone, 'w32', 'test_evaluator.0.ann_file=' + ann, 'model.predict_network=w32',
                        f'test_evaluator.1.out_file_path={tmp_path}/w32_alone.pkl')
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_s'):
        assert both[f'coco/{key}'] == alone_w16[f'coco/{key}']
        assert both[f'w32/coco/{key}'] == alone_w32[f'coco/{key}']
    for network in ('w16', 'w32'):
        with open(tmp_path / f'{network}_both.pkl', 'rb') as f:
            got = pickle.load(f)
        with open(tmp_path / f'{network}_alone.pkl', 'rb') as f:
            expected = pickle.load(f)
        assert len(got) == len(expected) > 0
        assert sum(len(r['pred_instances']['scores']) for r in expected) > 0, network
        for g, e in zip(got, expected):
            for field in ('bboxes', 'scores', 'labels'):
                assert (g['pred_instances'][field] == e['pred_instances'][field]).all(), (network, field)
