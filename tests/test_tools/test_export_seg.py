"""tools/train.py then tools/export_student.py on the toy domain-adaptation configs: the exported student predicts
in stock mmseg (``MMSegInferencer``, mmkd never imported) exactly as the trained model does."""
import os.path as osp
import subprocess
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.apis import inference_model

from mmkd.datasets import ToyScenesDataset, generate_toy_scenes
from mmkd.registry import SEG_MODELS
from mmkd.utils.build import build_in_scope
from mmkd.utils.export import _mmkd_types, _plain, _registries, _stock_dataset, export_student
from ..conftest import CONFIGS, PYTHON, TOOLS, tool_env

RUNS = dict(
    adaptseg='adaptseg_deeplabv3plus-w8_toy-scenes.py',  # SegOutputSpaceAdaptation
    dakd='dakd-a_deeplabv3plus-w32-w8_toy-scenes.py')  # DomainAdaptiveDistiller (a random teacher is enough here)
ITERS = 2


def _run(args, cwd):
    proc = subprocess.run(args, cwd=str(cwd), env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def toy_scenes(tmp_path_factory):
    """4 train and 2 val 64x128 scenes per domain (the size of the toy configs' data preprocessor)."""
    return generate_toy_scenes(str(tmp_path_factory.mktemp('data') / 'toy_scenes'), num_train=4, num_val=2)


def _tiny_config(path, base: str, data_root: str) -> str:
    """The toy config ``base`` on the tiny tree: ITERS iterations, batch 2, no workers, a checkpoint at the end."""
    text = textwrap.dedent(f'''
        _base_ = [{osp.join(CONFIGS, 'seg_dakd', base)!r}]
        data_root = {data_root + '/'!r}
        tiny = dict(num_train=4, num_val=2)
        train_cfg = dict(max_iters={ITERS}, val_interval=100)
        train_dataloader = dict(
            batch_size=2,
            num_workers=0,
            persistent_workers=False,
            dataset=dict(
                source=dict(data_root=data_root, generate=tiny), target=dict(data_root=data_root, generate=tiny)))
        val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, generate=tiny))
        test_dataloader = val_dataloader
        default_hooks = dict(checkpoint=dict(interval={ITERS}), logger=dict(interval=1))
        randomness = dict(seed=0)
    ''')
    path.write_text(text)
    return str(path)


@pytest.fixture(scope='module', params=sorted(RUNS))
def exported(request, toy_scenes, tmp_path_factory):
    """(work dir, training config, training checkpoint, export dir, the export's printout) of a few iterations of
    ``tools/train.py`` and ``tools/export_student.py``."""
    work = tmp_path_factory.mktemp(request.param)
    config = _tiny_config(work / 'config.py', RUNS[request.param], toy_scenes)
    _run([PYTHON, osp.join(TOOLS, 'train.py'), config, '--work-dir', str(work / 'train')], work)
    checkpoint = str(work / 'train' / f'iter_{ITERS}.pth')
    proc = _run([PYTHON, osp.join(TOOLS, 'export_student.py'), checkpoint, str(work / 'export')], work)
    return work, config, checkpoint, work / 'export', proc.stdout


def test_exported_config_is_stock_mmseg_with_the_source_as_training_set(exported, toy_scenes):
    _, config, _, export_dir, printed = exported
    assert 'needs no mmkd' in printed, printed
    out = Config.fromfile(str(export_dir / 'student_config.py'))
    assert out.model.type == 'EncoderDecoder' and 'custom_imports' not in out
    assert 'model_wrapper_cfg' not in out  # the per-network DDP was for the student and the discriminator
    assert out.optim_wrapper.optimizer.type == 'SGD' and isinstance(out.param_scheduler, list)
    # the two-domain training set becomes its labelled source, read by the stock dataset ToyScenesDataset extends
    source = Config.fromfile(config).train_dataloader.dataset.source
    train = out.train_dataloader.dataset
    assert train.type == 'BaseSegDataset' and 'generate' not in train
    assert train.data_root == source.data_root and train.data_prefix == source.data_prefix
    assert train.pipeline == source.pipeline
    assert out.val_dataloader.dataset.type == out.test_dataloader.dataset.type == 'BaseSegDataset'


def test_exported_student_predicts_in_stock_mmseg_as_the_trained_model(exported, toy_scenes):
    work, config, checkpoint, export_dir, _ = exported
    image = osp.join(toy_scenes, 'target', 'images', 'val', '000001.png')
    label = osp.join(toy_scenes, 'source', 'labels', 'train', '000000.png')
    # stock mmseg alone: the config reads without mmkd, its training set builds, the inferencer predicts
    script = textwrap.dedent(f'''
        import sys, torch
        from mmengine.config import Config
        from mmseg.apis import MMSegInferencer
        from mmseg.registry import DATASETS
        from mmseg.utils import register_all_modules
        register_all_modules()
        cfg = Config.fromfile({str(export_dir / 'student_config.py')!r})
        train = DATASETS.build(cfg.train_dataloader.dataset)
        item = train[0]
        assert item['data_samples'].seg_map_path == {label!r}, item['data_samples'].seg_map_path
        inferencer = MMSegInferencer(model={str(export_dir / 'student_config.py')!r},
                                     weights={str(export_dir / 'student.pth')!r}, device='cpu')
        result = inferencer({image!r}, return_datasamples=True)
        assert 'mmkd' not in sys.modules, 'mmkd was imported'
        torch.save(dict(logits=result.seg_logits.data, pred=result.pred_sem_seg.data, train_len=len(train),
                        classes=inferencer.model.dataset_meta['classes']), {str(work / 'stock.pth')!r})
    ''')
    proc = subprocess.run([PYTHON, '-c', script],
                          cwd=str(work),
                          capture_output=True,
                          text=True,
                          env=dict(tool_env(), PYTHONPATH=''),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stock = torch.load(work / 'stock.pth')
    assert stock['train_len'] == 4
    # the trained model (the adaptation model or the distiller, with mmkd) predicts through its student
    # (mmseg's init_model builds stock segmentors only: it sets their 'pretrained' and 'train_cfg')
    cfg = Config.fromfile(config)
    model = build_in_scope(cfg.model, SEG_MODELS)
    model.dataset_meta = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)['meta']['dataset_meta']
    model.cfg = cfg
    model.eval()
    init_default_scope('mmseg')  # inference_model builds the test pipeline in the current scope
    assert type(model).__name__ in ('SegOutputSpaceAdaptation', 'DomainAdaptiveDistiller')
    expected = inference_model(model, image)
    assert stock['pred'].shape == (1, 64, 128)
    # after a few iterations the argmax can be one class everywhere: the logits, which vary, are the strict check
    assert (stock['logits'].flatten(1).std(1) > 1e-4).all()
    torch.testing.assert_close(stock['logits'], expected.seg_logits.data, rtol=0, atol=1e-7)
    assert torch.equal(stock['pred'], expected.pred_sem_seg.data)
    assert tuple(stock['classes']) == tuple(model.dataset_meta['classes'])


def test_export_of_a_two_domain_training_set_keeps_the_source(tmp_path, toy_scenes):
    """The unit behind the end-to-end test: the exported train_dataloader is the source dataset, stock-typed."""
    cfg = Config.fromfile(_tiny_config(tmp_path / 'config.py', RUNS['adaptseg'], toy_scenes))
    model = build_in_scope(cfg.model, SEG_MODELS)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text)), ckpt)
    out = export_student(str(ckpt), str(tmp_path / 'out'))
    assert out.mmkd_types == []
    train = Config.fromfile(out.config).train_dataloader.dataset
    assert train.type == 'BaseSegDataset'
    assert train.data_prefix == dict(img_path='source/images/train', seg_map_path='source/labels/train')
    assert train.metainfo.classes == ('road', 'sidewalk', 'building', 'vegetation', 'sky', 'person', 'car')


def test_stock_dataset_keeps_where_the_mmkd_dataset_reads_and_what_its_labels_mean():
    # ToyScenesDataset reads '.png' images, mmseg's BaseSegDataset '.jpg' by default: without the suffix the
    # exported dataset is empty
    toy = _stock_dataset(dict(type='ToyScenesDataset', data_root='toy', generate=dict(num_train=4)))
    assert toy == dict(
        type='BaseSegDataset', data_root='toy', img_suffix='.png', metainfo=_plain(ToyScenesDataset.METAINFO))
    # GTA5's labels are Cityscapes label ids, which only GTA5Dataset's label map turns into the 19 train ids: a stock
    # BaseSegDataset would train on label ids as classes
    gta5 = dict(type='GTA5Dataset', data_root='data/gta5', pipeline=[dict(type='LoadAnnotations')])
    assert _stock_dataset(gta5) == gta5
    assert _stock_dataset(dict(type='TwoDomainDataset', source=gta5, target=dict(type='CityscapesDataset'))) == gta5


@pytest.mark.parametrize('source,needs_mmkd', [('bdd100k', []), ('gta5', ['GTA5Dataset'])])
def test_exported_training_set_of_the_paper_configs(source, needs_mmkd):
    """The mmseg-scope pipelines of the BDD100K / GTA5 -> Cityscapes configs name mmseg's RandomCrop, which shares its
    name with mmkd's embedding transform: only GTA5's own label mapping needs mmkd."""
    cfg = Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', f'{source}_to_cityscapes_uda.py'))
    train = _stock_dataset(cfg.train_dataloader.dataset)
    assert train == cfg.train_dataloader.dataset.source
    assert 'RandomCrop' in [t['type'] for t in train['pipeline']]
    assert _mmkd_types(train, _registries()) == needs_mmkd
    assert _mmkd_types(_stock_dataset(cfg.val_dataloader.dataset), _registries()) == []


def test_a_student_trained_on_gta5_predicts_in_stock_mmseg_and_only_training_needs_mmkd(tmp_path, toy_scenes):
    """GTA5Dataset has no stock equivalent, but only the training set names it: the exported config may fail to import
    mmkd (it loads with a warning and predicts), and building its training set says which type is missing."""
    cfg = Config.fromfile(_tiny_config(tmp_path / 'config.py', RUNS['adaptseg'], toy_scenes))
    cfg.train_dataloader.dataset.source = dict(
        type='GTA5Dataset', data_root='data/gta5', pipeline=cfg.train_dataloader.dataset.source.pipeline)
    model = build_in_scope(cfg.model, SEG_MODELS)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text)), ckpt)
    out = export_student(str(ckpt), str(tmp_path / 'out'))
    assert out.mmkd_types == ['GTA5Dataset'] and out.predicts_without_mmkd
    exported = Config.fromfile(out.config)
    assert exported.custom_imports == dict(imports=['mmkd'], allow_failed_imports=True)
    image = osp.join(toy_scenes, 'target', 'images', 'val', '000001.png')
    script = textwrap.dedent(f'''
        import sys, warnings
        sys.modules['mmkd'] = None  # mmkd not installed: importing it raises ImportError
        from mmengine.config import Config
        from mmseg.apis import MMSegInferencer
        from mmseg.registry import DATASETS
        from mmseg.utils import register_all_modules
        register_all_modules()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            cfg = Config.fromfile({out.config!r})
        assert any('mmkd' in str(w.message) for w in caught), [str(w.message) for w in caught]
        result = MMSegInferencer(model={out.config!r}, weights={out.checkpoint!r}, device='cpu')({image!r})
        assert result['predictions'].shape == (64, 128)
        try:
            DATASETS.build(cfg.train_dataloader.dataset)
        except KeyError as error:
            assert 'GTA5Dataset' in str(error), error
        else:
            raise AssertionError('the GTA5 training set built without mmkd')
    ''')
    proc = subprocess.run([PYTHON, '-c', script],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          env=dict(tool_env(), PYTHONPATH=''),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_an_exported_model_of_mmkd_type_keeps_a_required_import(tmp_path):
    """The relaxed import is for training sets only: an mmkd type elsewhere keeps the import required."""
    from mmkd.utils.export import _only_for_training
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='GTA5Dataset')), model=dict(type='EncoderDecoder')))
    assert _only_for_training(cfg)
    cfg.test_dataloader = dict(dataset=dict(type='GTA5Dataset'))
    assert not _only_for_training(cfg)
    assert not _only_for_training(Config(dict(default_scope='mmkd', model=dict(type='EncoderDecoder'))))
