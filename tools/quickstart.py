"""mmkd quickstart: SSIM feature distillation end to end on generated toy shapes, on a CPU in minutes.

    python tools/quickstart.py                      # one seed per student
    python tools/quickstart.py --seeds 0 1 2        # seed-to-seed noise of both students

Steps: generate the toy shapes data; train the teacher (RetinaNet, 32-wide ResNet-18 layout); train
the baseline student (16-wide) and the SSIM-distilled student with the same schedule and seed; test
the three with mmdet's CocoMetric; print a table (AP, AP50, AP75, AP_S, AP_M, AP_L) and save it as
Markdown and JSON in the work dir. Each stage keeps its checkpoints and a record in its own folder;
a stage whose record matches its config is reused on the next run (``--force`` retrains).
"""
import argparse
import contextlib
import hashlib
import json
import os
import os.path as osp
import statistics
import sys
import time
import traceback
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs', 'ssim_kd')
TEACHER_CONFIG = osp.join(CONFIG_DIR, 'retinanet_tiny-w32_toy.py')
BASELINE_CONFIG = osp.join(CONFIG_DIR, 'retinanet_tiny-w16_toy.py')
SSIM_CONFIG = osp.join(CONFIG_DIR, 'ssim_retinanet_tiny-w32-w16_toy.py')
METRICS = (('AP', 'coco/bbox_mAP'), ('AP50', 'coco/bbox_mAP_50'), ('AP75', 'coco/bbox_mAP_75'),
           ('AP_S', 'coco/bbox_mAP_s'), ('AP_M', 'coco/bbox_mAP_m'), ('AP_L', 'coco/bbox_mAP_l'))
RECORD = 'quickstart_record.json'
CONSOLE = sys.stdout  # progress goes here; the runners' own output goes to each stage's console.log


def say(text: str) -> None:
    print(text, file=CONSOLE, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description='Train and compare a teacher, a baseline student and an '
                                     'SSIM-distilled student on the toy shapes data')
    parser.add_argument('--work-dir', default='work_dirs/quickstart', help='where stages, logs and tables go')
    parser.add_argument('--data-root', default='data/toy_shapes/', help='toy data folder (generated if absent)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0], help='seeds of the student runs')
    parser.add_argument('--teacher-seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None, help='override the epochs of every stage')
    parser.add_argument('--force', action='store_true', help='retrain stages even if a matching record exists')
    parser.add_argument('--num-train', type=int, default=400, help='toy train images (when generated here)')
    parser.add_argument('--num-val', type=int, default=100, help='toy val images (when generated here)')
    parser.add_argument('--image-size', type=int, default=256, help='toy image side (when generated here)')
    return parser.parse_args()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s'


def _register_progress_hook():
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class QuickstartProgressHook(Hook):
        """One line per epoch (and the first iterations): loss, elapsed time, time left in the stage."""
        priority = 'VERY_LOW'

        def __init__(self, label: str):
            self.label = label
            self.start = None
            self.losses = []

        def before_train(self, runner):
            self.start = time.time()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if outputs and 'loss' in outputs:
                self.losses.append(float(outputs['loss'].detach()))
            done, total = runner.iter + 1, runner.max_iters
            if done == 1 or batch_idx + 1 == len(runner.train_dataloader):
                elapsed = time.time() - self.start
                left = elapsed / done * (total - done)
                loss = statistics.fmean(self.losses[-50:]) if self.losses else float('nan')
                say(f'  [{self.label}] epoch {runner.epoch + 1}/{runner.max_epochs}  iter {done}/{total}  '
                    f'loss {loss:.3f}  elapsed {_clock(elapsed)}  left ~{_clock(left)}')


def _stage_cfg(config: str, work_dir: str, seed: int, data_root: str, epochs, extra_model=None):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=True)
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        # several runners live in this process one after the other: workers must not outlive their stage
        cfg[loader].persistent_workers = False
    cfg.test_evaluator.ann_file = osp.join(data_root, 'annotations', 'instances_val.json')
    # no validation during training: the final model is evaluated once, by test()
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for scheduler in cfg.param_scheduler:
            if scheduler.get('by_epoch', True):
                scheduler.end = epochs
                if 'milestones' in scheduler:
                    scheduler.milestones = [max(1, round(m * epochs / 12)) for m in scheduler.milestones]
    if extra_model:
        cfg.model.update(extra_model)
    return cfg


def _config_hash(cfg) -> str:
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_stage(label: str, cfg, force: bool) -> dict:
    """Train ``cfg`` and test the final model; reuses a finished stage whose config is unchanged."""
    from mmengine.runner import Runner
    record_path = osp.join(cfg.work_dir, RECORD)
    digest = _config_hash(cfg)
    if not force and osp.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
        if record.get('config_hash') == digest and osp.isfile(record.get('checkpoint', '')):
            say(f'  [{label}] reused from {cfg.work_dir} (same config; --force retrains)')
            return record
    os.makedirs(cfg.work_dir, exist_ok=True)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='QuickstartProgressHook', label=label)]
    cfg.visualizer.name = f'visualizer_{label}'  # one per runner in this process
    log_path = osp.join(cfg.work_dir, 'console.log')
    start = time.time()
    # mmengine's logger, pycocotools and library warnings write to the stage's console.log
    with open(log_path, 'w') as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            runner = Runner.from_cfg(cfg)
            runner.train()
            train_seconds = time.time() - start
            metrics = runner.test()
        except BaseException:
            traceback.print_exc()
            say(f'  [{label}] failed: the full output is in {log_path}')
            raise
    if not all(key in metrics for _, key in METRICS):
        # CocoMetric returns nothing when the model detects nothing at all: that is an AP of 0
        say(f'  [{label}] no detections on the val images: every AP is 0')
        metrics = {key: 0.0 for _, key in METRICS}
    checkpoint = osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    record = dict(
        label=label,
        config_hash=digest,
        checkpoint=checkpoint,
        train_seconds=round(train_seconds, 1),
        test_seconds=round(time.time() - start - train_seconds, 1),
        metrics={name: round(100 * float(metrics[key]), 1) for name, key in METRICS})
    with open(record_path, 'w') as f:
        json.dump(record, f, indent=1)
    names = '  '.join(f'{k} {v:.1f}' for k, v in record['metrics'].items())
    say(f'  [{label}] trained in {_clock(train_seconds)}, tested in {_clock(record["test_seconds"])}: {names}')
    return record


def summarise(records: list, seeds: list) -> tuple:
    """Markdown table, and the rows (mean and spread over seeds where there are several)."""
    header = '| model | seed | ' + ' | '.join(name for name, _ in METRICS) + ' |'
    lines = [header, '|' + '---|' * (len(METRICS) + 2)]
    for record in records:
        values = ' | '.join(f'{record["metrics"][name]:.1f}' for name, _ in METRICS)
        lines.append(f'| {record["model"]} | {record["seed"]} | {values} |')
    summary = {}
    if len(seeds) > 1:
        for model in ('baseline student', 'SSIM student'):
            runs = [r['metrics'] for r in records if r['model'] == model]
            summary[model] = {
                name: dict(mean=round(statistics.fmean(r[name] for r in runs), 2),
                           std=round(statistics.stdev(r[name] for r in runs), 2))
                for name, _ in METRICS
            }
            values = ' | '.join(f'{summary[model][name]["mean"]:.1f} ± {summary[model][name]["std"]:.1f}'
                                for name, _ in METRICS)
            lines.append(f'| {model} | mean ± std ({len(runs)}) | {values} |')
    return '\n'.join(lines), summary


def main():
    args = parse_args()
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    sys.path.insert(0, ROOT)
    start = time.time()
    import mmkd  # noqa: F401  (registers mmkd's modules)
    from mmkd.datasets import generate_toy_shapes
    _register_progress_hook()

    work_dir = osp.abspath(args.work_dir)
    data_root = osp.join(osp.abspath(args.data_root), '')
    total = 1 + 2 * len(args.seeds)
    say(f'mmkd quickstart: teacher + {len(args.seeds)} x (baseline, SSIM) students on the toy shapes; '
          f'results in {work_dir}')

    say(f'[data] toy shapes in {data_root}')
    t0 = time.time()
    generate_toy_shapes(data_root, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size)
    say(f'  [data] ready in {_clock(time.time() - t0)}')

    say(f'[1/{total}] teacher: {osp.relpath(TEACHER_CONFIG, ROOT)}')
    teacher_cfg = _stage_cfg(TEACHER_CONFIG, osp.join(work_dir, 'teacher'), args.teacher_seed, data_root,
                             args.epochs)
    teacher = run_stage('teacher', teacher_cfg, args.force)
    records = [dict(teacher, model='teacher', seed=args.teacher_seed)]

    step = 1
    for seed in args.seeds:
        step += 1
        say(f'[{step}/{total}] baseline student, seed {seed}: {osp.relpath(BASELINE_CONFIG, ROOT)}')
        cfg = _stage_cfg(BASELINE_CONFIG, osp.join(work_dir, f'baseline_seed{seed}'), seed, data_root, args.epochs)
        records.append(dict(run_stage(f'baseline s{seed}', cfg, args.force), model='baseline student', seed=seed))
        step += 1
        say(f'[{step}/{total}] SSIM student, seed {seed}: {osp.relpath(SSIM_CONFIG, ROOT)}')
        # the teacher's own config is passed on, so that a changed teacher changes this stage's record
        cfg = _stage_cfg(SSIM_CONFIG, osp.join(work_dir, f'ssim_seed{seed}'), seed, data_root, args.epochs,
                         extra_model=dict(teacher_cfg=teacher_cfg.model.to_dict(),
                                          teacher_ckpt=teacher['checkpoint']))
        records.append(dict(run_stage(f'SSIM s{seed}', cfg, args.force), model='SSIM student', seed=seed))

    table, summary = summarise(records, args.seeds)
    elapsed = time.time() - start
    say(f'\nResults (COCO bbox AP in %, toy shapes val, {elapsed / 60:.1f} min in all):\n\n{table}\n')
    gains = [s['metrics']['AP'] - b['metrics']['AP']
             for b, s in zip(records[1::2], records[2::2])]
    say('SSIM student - baseline student, AP per seed: ' + ', '.join(f'{g:+.1f}' for g in gains))
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(f'COCO bbox AP (%) on the toy shapes val split; {elapsed / 60:.1f} min in all.\n\n{table}\n')
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(dict(runs=records, summary=summary, ap_gain_per_seed=gains, seconds=round(elapsed, 1)), f,
                  indent=1)
    say(f'Saved {osp.join(work_dir, "results.md")} and results.json')


if __name__ == '__main__':
    main()
