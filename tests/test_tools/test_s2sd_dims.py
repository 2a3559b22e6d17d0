"""tools/analysis/s2sd_dims.py: the S2SD embedding-dimension study on tiny toy data (1 epoch, 4-wide ResNet-18,
dims 4 and 8): the PNG, the numbers against the runs' records and against the checkpoints evaluated here, the reuse
of finished runs, the retrieval timing, and the error messages."""
import importlib.util
import io
import json
import os
import os.path as osp
import statistics

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from PIL import Image

from mmkd.datasets import generate_toy_retrieval
from mmkd.evaluation import retrieval_metrics
from mmkd.quickstart import stages
from mmkd.registry import DATASETS, MODELS
from ..conftest import CONFIGS, TOOLS

SCRIPT = osp.join(TOOLS, 'analysis', 's2sd_dims.py')
_spec = importlib.util.spec_from_file_location('s2sd_dims', SCRIPT)
s2sd_dims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s2sd_dims)

# one P x K batch of the 4 train species x 4 images per epoch
OPTIONS = [
    '--cfg-options', 'train_dataloader.batch_size=16', 'train_dataloader.sampler.batch_size=16',
    'train_dataloader.sampler.instances_per_class=4', 'train_dataloader.num_workers=0', 'test_dataloader.num_workers=0'
]


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    """The study run once on tiny data: 2 models x dims 4, 8 x seed 0, and the retrieval timing on 200 x (8, 16)."""
    work = tmp_path_factory.mktemp('s2sd_dims')
    root = generate_toy_retrieval(str(work / 'toy'), num_classes=8, images_per_class=4, image_size=32)
    baseline, s2sd = str(work / 'baseline.py'), str(work / 's2sd.py')
    with open(baseline, 'w') as f:
        f.write(f"_base_ = ['{osp.join(CONFIGS, 's2sd', 'embedder_r18-w16-d8_ms_toy.py')}']\n"
                'model = dict(backbone=dict(base_channels=4))\n')
    with open(s2sd, 'w') as f:
        f.write(f"_base_ = ['{osp.join(CONFIGS, 's2sd', 's2sd-dsd_r18-w16-d8_ms_toy.py')}']\n"
                'model = dict(embedder=dict(backbone=dict(base_channels=4)))\n')
    argv = [
        '--baseline', baseline, '--s2sd', s2sd, '--dims', '4', '8', '--seeds', '0', '--epochs', '1', '--work-dir',
        str(work / 'runs'), '--data-root', root, '--retrieval-n', '200', '--retrieval-dims', '8', '16'
    ] + OPTIONS
    out = io.StringIO()
    results = s2sd_dims.main(argv, stream=out)
    return dict(work=work, root=root, argv=argv, results=results, output=out.getvalue())


def _png_size(path) -> tuple:
    with Image.open(path) as image:
        image.verify()  # a truncated or corrupt file raises
    with Image.open(path) as image:
        return image.format, image.size


def test_outputs_and_numbers(study):
    work, results = study['work'], study['results']
    png = work / 'runs' / 's2sd_dims.png'
    fmt, (width, height) = _png_size(png)
    assert fmt == 'PNG' and width > 1.5 * height  # two panels side by side
    saved = json.load(open(work / 'runs' / 's2sd_dims.json'))
    assert saved == json.loads(json.dumps(results))
    assert [(r['model'], r['dim'], r['seed']) for r in saved['runs']] == [('baseline', 4, 0), ('s2sd', 4, 0),
                                                                          ('baseline', 8, 0), ('s2sd', 8, 0)]
    for run in saved['runs']:
        record = json.load(open(run['record']))
        assert run['metrics'] == record['metrics'] and set(run['metrics']) == {'R@1', 'mAP@R', 'NMI'}
        assert run['train_seconds'] == record['train_seconds']
        assert osp.isfile(record['checkpoint'])
        assert f'[{run["model"]} d{run["dim"]} s0] trained in ' in study['output']
    by_key = {(row['model'], row['dim']): row for row in saved['summary']}
    for run in saved['runs']:
        row = by_key[(run['model'], run['dim'])]
        assert row['seeds'] == [0]
        for name, value in run['metrics'].items():
            assert row[name] == dict(mean=value, std=None)
    table = open(work / 'runs' / 's2sd_dims.md').read()
    for run in saved['runs']:
        name = 'S2SD' if run['model'] == 's2sd' else 'baseline'
        assert f'| {name} | {run["dim"]} | 0 | {run["metrics"]["R@1"]:.2f} | ' in table
    assert [row['dim'] for row in saved['retrieval']['rows']] == [8, 16]


def _embed(cfg: Config, checkpoint: str):
    """(N, D) embeddings and (N,) labels of the test split by the checkpoint's model, computed here without the
    runner."""
    with DefaultScope.overwrite_default_scope('mmkd'):
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    model.load_state_dict(torch.load(checkpoint, weights_only=False)['state_dict'])
    model.eval()
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(len(dataset))]), False)
    with torch.no_grad():
        embeddings = model(batch['inputs'])
    return embeddings, torch.stack([s.gt_label for s in batch['data_samples']])


@pytest.mark.parametrize('model, dim', [('baseline', 4), ('s2sd', 8)])
def test_runs_have_the_asked_dimension_and_their_recorded_recall(study, model, dim):
    """Each run is keyed by its resolved config; its final checkpoint embeds in ``dim`` dimensions (the S2SD
    targets unchanged) with the R@1 / mAP@R of the table, recomputed here."""
    args = s2sd_dims.parse_args(study['argv'])
    cfg = s2sd_dims.run_config(args.baseline if model == 'baseline' else args.s2sd, model, dim, 0, args)
    run, = [r for r in study['results']['runs'] if (r['model'], r['dim']) == (model, dim)]
    record = json.load(open(run['record']))
    assert record['config_hash'] == stages.config_hash(cfg)
    embeddings, labels = _embed(cfg, record['checkpoint'])
    assert embeddings.shape == (16, dim)  # 4 test species x 4 images
    if model == 's2sd':
        assert cfg.model.target_dims == (512, )
    reference = retrieval_metrics(embeddings, labels, ks=(1, ), metrics=('recall', 'map_at_r'))
    assert run['metrics']['R@1'] == pytest.approx(100 * reference['R@1'], abs=0.006)
    assert run['metrics']['mAP@R'] == pytest.approx(100 * reference['mAP@R'], abs=0.006)


def test_finished_runs_are_reused(study, monkeypatch):
    runs = study['work'] / 'runs'
    records = sorted(str(p) for p in runs.glob('*/quickstart_record.json'))
    assert len(records) == 4
    stamps = {p: os.stat(p).st_mtime_ns for p in records}

    def no_training(cfg):
        raise AssertionError(f'retrained {cfg.work_dir}')

    monkeypatch.setattr(stages.Runner, 'from_cfg', no_training)
    out = io.StringIO()
    again = s2sd_dims.main(study['argv'], stream=out)
    assert out.getvalue().count('reused from') == 4
    assert {p: os.stat(p).st_mtime_ns for p in records} == stamps
    assert again['runs'] == study['results']['runs'] and again['summary'] == study['results']['summary']


def test_time_retrieval_runs_the_retrieval(monkeypatch):
    calls = []
    real = s2sd_dims.retrieval_metrics

    def spy(x, labels, **kwargs):
        calls.append((tuple(x.shape), kwargs['ks'], kwargs['metrics']))
        return real(x, labels, **kwargs)

    monkeypatch.setattr(s2sd_dims, 'retrieval_metrics', spy)
    lines = []
    rows = s2sd_dims.time_retrieval([4, 32], 1200, repeat=2, say=lines.append)
    # one unrecorded call at the first dimension and the full N (not 1000 of them, which left the first dimension
    # slower), then `repeat` timed calls per dimension, each the whole leave-one-out retrieval
    assert calls == [((1200, 4), (1, ), ('recall', ))] * 3 + [((1200, 32), (1, ), ('recall', ))] * 2
    assert [row['dim'] for row in rows] == [4, 32] and len(lines) == 2
    for row in rows:
        assert set(row) == {'dim', 'num_samples', 'seconds', 'median_s', 'R@1', 'paper_faiss_250k_s'}
        assert row['num_samples'] == 1200 and len(row['seconds']) == 2 and min(row['seconds']) > 0
        assert row['median_s'] == statistics.median(row['seconds'])
        # R@1 of the timed call against a brute-force nearest neighbour
        x, labels = s2sd_dims.synthetic_embeddings(1200, row['dim'])
        assert x.shape == (1200, row['dim']) and torch.allclose(x.norm(dim=1), torch.ones(1200))
        distances = torch.cdist(x.double(), x.double()).fill_diagonal_(float('inf'))
        nearest = distances.argmin(1)
        assert row['R@1'] == pytest.approx((labels[nearest] == labels).double().mean().item(), abs=1e-12)
    assert rows[0]['paper_faiss_250k_s'] is None and rows[1]['paper_faiss_250k_s'] == 1.54


def test_skip_train_draws_the_timing_panel_only(tmp_path):
    out = tmp_path / 'timing.png'
    results = s2sd_dims.main(['--skip-train', '--retrieval-n', '100', '--retrieval-dims', '4', '8', '--out',
                              str(out)],
                             stream=io.StringIO())
    fmt, (width, height) = _png_size(out)
    assert fmt == 'PNG' and width < 1.5 * height  # one panel
    assert results['runs'] == [] and results['summary'] == [] and results['configs'] == {}
    assert [row['dim'] for row in results['retrieval']['rows']] == [4, 8]
    assert json.load(open(tmp_path / 'timing.json'))['retrieval']['num_samples'] == 100
    assert '| 8 | 100 | ' in open(tmp_path / 'timing.md').read()


def test_bad_configs_fail_before_training(tmp_path):
    baseline = osp.join(CONFIGS, 's2sd', 'embedder_r18-w16-d8_ms_toy.py')
    s2sd = osp.join(CONFIGS, 's2sd', 's2sd-dsd_r18-w16-d8_ms_toy.py')
    work = ['--work-dir', str(tmp_path / 'w'), '--retrieval-dims']
    with pytest.raises(
            ValueError,
            match=r'the S2SD config .*embedder_r18-w16-d8_ms_toy.py must have model.type '
            r"S2SDEmbedder .* got 'ImageEmbedder'"):
        s2sd_dims.main(['--s2sd', baseline] + work, stream=io.StringIO())
    with pytest.raises(
            ValueError, match=r"baseline config .* must have model.type ImageEmbedder .* got 'S2SDEmbedder'"):
        s2sd_dims.main(['--baseline', s2sd] + work, stream=io.StringIO())
    with pytest.raises(FileNotFoundError, match=r'the baseline config .*missing.py does not exist'):
        s2sd_dims.main(['--baseline', str(tmp_path / 'missing.py')] + work, stream=io.StringIO())
    assert not osp.exists(tmp_path / 'w')


def test_options_of_one_config(tmp_path):
    """An S2SD-only key goes to --s2sd-cfg-options: the baseline's runs do not get it, and both configs build."""
    work = ['--work-dir', str(tmp_path / 'w'), '--dims', '8', '--retrieval-dims']
    args = s2sd_dims.parse_args(work + [
        '--s2sd-cfg-options', 'model.target_dims=[16,32]', '--baseline-cfg-options', 'model.pooling=avg_max',
        'train_cfg.max_epochs=5', '--cfg-options', 'train_cfg.max_epochs=3'
    ])
    s2sd = s2sd_dims.run_config(args.s2sd, 's2sd', 8, 0, args)
    baseline = s2sd_dims.run_config(args.baseline, 'baseline', 8, 0, args)
    assert list(s2sd.model.target_dims) == [16, 32] and s2sd.model.embedder.embed_dim == 8
    assert 'target_dims' not in baseline.model and baseline.model.embed_dim == 8
    assert baseline.model.pooling == 'avg_max' and s2sd.model.embedder.get('pooling', 'avg') == 'avg'
    # --cfg-options first, then the config's own options
    assert baseline.train_cfg.max_epochs == 5 and s2sd.train_cfg.max_epochs == 3
    for kind, path in (('baseline', args.baseline), ('s2sd', args.s2sd)):
        s2sd_dims.check_builds(path, kind, args)


def test_an_option_a_config_does_not_take_fails_before_training(tmp_path):
    """An S2SD-only key given to both configs (--cfg-options) fails before training with a message naming the
    baseline config and the option, not with the ImageEmbedder's raw TypeError in the first run."""
    work = ['--work-dir', str(tmp_path / 'w'), '--dims', '8', '--retrieval-dims']
    baseline_path = osp.join(CONFIGS, 's2sd', 'embedder_r18-w16-d8_ms_toy.py')
    with pytest.raises(ValueError) as error:
        s2sd_dims.main(work + ['--cfg-options', 'model.target_dims=[16,32]'], stream=io.StringIO())
    assert str(error.value).startswith(
        f's2sd_dims: the baseline config {baseline_path} does not build at d=8 with --cfg-options '
        "model.target_dims=[16, 32]: TypeError: ImageEmbedder.__init__() got an unexpected keyword argument "
        "'target_dims' (an option of one of the two configs only goes to --baseline-cfg-options or "
        '--s2sd-cfg-options)'), str(error.value)
    assert not osp.exists(tmp_path / 'w')


@pytest.mark.parametrize('argv, dims', [(['--retrieval-dims'], []), (['--retrieval-dims', 'none'], []),
                                        (['--retrieval-dims', 'None'], []), (['--retrieval-dims', '8', '16'], [8, 16]),
                                        ([], [32, 64, 128, 256, 512, 1024, 2048])])
def test_retrieval_dims(argv, dims):
    """No timing: the flag with no values or 'none', as the help says."""
    assert s2sd_dims.parse_args(argv).retrieval_dims == dims


def test_default_dims_include_the_toy_base():
    args = s2sd_dims.parse_args([])
    base = Config.fromfile(args.baseline).model.embed_dim
    assert base == 8 and args.dims == [4, 8, 16, 32, 64]
    assert Config.fromfile(args.s2sd).model.embedder.embed_dim == base
    assert args.retrieval_repeat == 3  # a median of several calls: a single one varies by tens of % on a busy CPU


@pytest.mark.parametrize('argv, message', [
    (['--dims', '0', '8'], '--dims must be positive embedding dimensions, got [0]'),
    (['--dims', '8', '8'], '--dims has duplicates: [8, 8]'),
    (['--retrieval-dims', '32', '-4'], '--retrieval-dims must be positive embedding dimensions, got [-4]'),
    (['--skip-train', '--retrieval-dims'], '--skip-train with no --retrieval-dims leaves nothing to do'),
    (['--skip-train', '--retrieval-dims', 'none'], '--skip-train with no --retrieval-dims leaves nothing to do'),
    (['--retrieval-dims', 'none', '32'], "--retrieval-dims 'none' means no timing: it takes no dimensions beside it"),
    (['--retrieval-dims', 'all'], "expected embedding dimensions (ints) or 'none', got 'all'"),
    (['--epochs', '0'], '--epochs must be >= 1, got 0'),
    (['--device', 'tpu'], "--device must be cpu or cuda, got 'tpu'"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        s2sd_dims.parse_args(argv)
    assert message in capsys.readouterr().err
