"""The machinery of ``tools/quickstart.py``: a method is a short list of stages, each trained and tested with
mmengine's Runner in its own folder, reused while its config is unchanged, and summarised in one table.

A stage is one config (a teacher, a baseline, a distilled student...). Stages marked ``per_seed`` run once per
seed of ``--seeds``, the others once with ``--teacher-seed``; a stage that names a ``teacher`` gets that stage's
model config and final checkpoint as ``model.teacher_cfg`` / ``model.teacher_ckpt``. Every stage folder keeps
its checkpoints, its ``console.log`` (the runner's own output) and a record (config hash, checkpoint,
metrics, times): a stage whose record matches its config is not trained again (``--force`` retrains).
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
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple, Union

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop, Runner

from mmkd.registry import HOOKS

RECORD = 'quickstart_record.json'


@dataclass(frozen=True)
class Stage:
    """One training + test run of a method.

    Args:
        key: the stage's folder name (``<key>`` or ``<key>_seed<seed>``) and the name other stages refer to.
        name: the stage's row in the table, e.g. ``'SSIM student'``.
        config: the config file, relative to the repository root.
        per_seed: run once per seed of ``--seeds`` (students); else once, with ``--teacher-seed``.
        teacher: key of the stage whose model config and final checkpoint this stage's model gets as
            ``teacher_cfg`` / ``teacher_ckpt``.
        tag: the stage in progress lines (``[<tag> s<seed>]``); default: ``key``.
        networks: for a model of several trained networks (a CoLAD pair), ``(network, row name)`` pairs: the
            final model is tested once per network (its ``predict_network``), one table row each, whose key (in
            ``compare``) is ``'<key>.<network>'``.
        init_from: key of an earlier stage whose final checkpoint this stage starts from (``load_from``; e.g. the
            paradigm (d) of domain-adaptive distillation starts from the (c) student), of the same seed when both
            run per seed.
    """
    key: str
    name: str
    config: str
    per_seed: bool = True
    teacher: Optional[str] = None
    tag: Optional[str] = None
    networks: Tuple[Tuple[str, str], ...] = ()
    init_from: Optional[str] = None

    def rows(self) -> List[Tuple[str, str, Optional[str]]]:
        """(row key, row name, network or None) of each table row of this stage."""
        if not self.networks:
            return [(self.key, self.name, None)]
        return [(f'{self.key}.{network}', name, network) for network, name in self.networks]


@dataclass(frozen=True)
class Method:
    """A quickstart: stages, the data they read and the metrics of the table.

    Args:
        name: the command-line name (``python tools/quickstart.py <name>``).
        summary: one line for ``--list`` and the first progress line.
        stages: in training order; a stage comes after the stage it takes its teacher from.
        metrics: (column, key in the runner's test metrics) pairs; the first is the headline metric.
        metric_scale: factor from the runner's value to the table's (100: fractions shown in %).
        metric_note: what the numbers are, for the table's caption.
        prepare_data: ``f(args) -> data_root``: makes the data available (``args``: the parsed CLI arguments).
        use_data: ``f(cfg, data_root)``: points a stage's config at ``data_root``.
        compare: (baseline key, method key, ...): the per-seed gain of each method row over the baseline on
            the headline metric is printed and saved (``<metric>_gain_per_seed`` for the first method,
            ``<metric>_gains_per_seed`` for all of them); or several such groups, ((baseline, method, ...), ...),
            each method compared with its group's baseline. Keys are per-seed stages or rows of their networks.
        epochs: the epochs of every stage unless ``--epochs`` says otherwise (default: each config's own).
        missing_metrics_are_zero: a test that returns none of the metrics scores 0 (mmdet's CocoMetric returns
            nothing when the model detects nothing); otherwise missing metrics are an error.
        work_dir: the default ``--work-dir`` (default: ``work_dirs/quickstart_<name>``).
        data_root: the default ``--data-root`` (default: ``data/toy_shapes/``, the toy detection data).
    """
    name: str
    summary: str
    stages: Tuple[Stage, ...]
    metrics: Tuple[Tuple[str, str], ...]
    metric_note: str
    prepare_data: Callable[[argparse.Namespace], str]
    use_data: Callable[[Config, str], None]
    metric_scale: float = 1.0
    compare: Optional[Union[Tuple[str, ...], Tuple[Tuple[str, ...], ...]]] = None
    missing_metrics_are_zero: bool = False
    work_dir: Optional[str] = None
    epochs: Optional[int] = None
    data_root: str = 'data/toy_shapes/'

    def compare_groups(self) -> Tuple[Tuple[str, ...], ...]:
        """``compare`` as groups (baseline, method, ...); none without ``compare``."""
        if not self.compare:
            return ()
        return tuple(self.compare) if isinstance(self.compare[0], (tuple, list)) else (tuple(self.compare), )

    def __post_init__(self):
        earlier = {}
        for stage in self.stages:
            if stage.key in earlier:
                raise ValueError(f'quickstart method {self.name!r}: two stages have the key {stage.key!r}')
            teacher = earlier.get(stage.teacher)
            if stage.teacher is not None and teacher is None:
                raise ValueError(f'quickstart method {self.name!r}: stage {stage.key!r} takes its teacher from '
                                 f'{stage.teacher!r}, which is not an earlier stage (earlier: {list(earlier)})')
            if teacher is not None and teacher.per_seed and not stage.per_seed:
                raise ValueError(f'quickstart method {self.name!r}: stage {stage.key!r} runs once but its teacher '
                                 f'{stage.teacher!r} runs per seed: which seed\'s teacher is meant?')
            start = earlier.get(stage.init_from)
            if stage.init_from is not None and (start is None or (start.per_seed and not stage.per_seed)):
                raise ValueError(f'quickstart method {self.name!r}: stage {stage.key!r} starts from '
                                 f'{stage.init_from!r}, which is not an earlier stage of the same seeds (earlier: '
                                 f'{list(earlier)})')
            earlier[stage.key] = stage
        rows = [key for stage in self.stages if stage.per_seed for key, _, _ in stage.rows()]
        if self.compare is not None:
            for group in self.compare_groups():
                if len(group) < 2:
                    raise ValueError(f'quickstart method {self.name!r}: compare needs a baseline and at least one '
                                     f'method stage, got {self.compare!r}')
                for key in group:
                    if key not in rows:
                        raise ValueError(f'quickstart method {self.name!r}: compare names {key!r}, which is not a '
                                         f'per-seed stage of {list(earlier)} (or a row of its networks: {rows})')


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` available as ``python tools/quickstart.py <method.name>``."""
    if method.name in METHODS:
        raise KeyError(f'quickstart method {method.name!r} is registered twice')
    METHODS[method.name] = method
    return method


def clock(seconds: float) -> str:
    """``'3m05s'`` for 185 seconds."""
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s'


@HOOKS.register_module()
class QuickstartProgressHook(Hook):
    """One progress line per epoch (an iteration-based loop: per tenth of its iterations) and after the first
    iteration: loss, elapsed time, time left in the stage.

    Args:
        label: the stage's name in the line.

    The lines go to ``self.stream``, ``sys.stdout`` unless set: :class:`Quickstart` points it at the console
    after the runner is built (a stream cannot be part of a config, which the runner deep-copies).
    """
    priority = 'VERY_LOW'

    def __init__(self, label: str):
        self.label = label
        self.stream: Optional[TextIO] = None
        self.start = None
        self.losses: Dict[str, List[float]] = {}

    def before_train(self, runner) -> None:
        self.start = time.time()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # the total loss, or each network's ('<network>.loss') for a model of several trained networks
        for key, value in (outputs or {}).items():
            if key == 'loss' or key.endswith('.loss'):
                self.losses.setdefault(key[:-len('loss')].rstrip('.'), []).append(float(value.detach()))
        done, total = runner.iter + 1, runner.max_iters
        if isinstance(getattr(runner, 'train_loop', None), IterBasedTrainLoop):
            if done == 1 or done % max(total // 10, 1) == 0 or done == total:
                elapsed = time.time() - self.start
                print(
                    f'  [{self.label}] iter {done}/{total}  loss {self._loss()}  elapsed {clock(elapsed)}  '
                    f'left ~{clock(elapsed / done * (total - done))}',
                    file=self.stream or sys.stdout,
                    flush=True)
            return
        if done == 1 or batch_idx + 1 == len(runner.train_dataloader):
            elapsed = time.time() - self.start
            loss = self._loss()
            print(
                f'  [{self.label}] epoch {runner.epoch + 1}/{runner.max_epochs}  iter {done}/{total}  '
                f'loss {loss}  elapsed {clock(elapsed)}  left ~{clock(elapsed / done * (total - done))}',
                file=self.stream or sys.stdout,
                flush=True)

    def _loss(self) -> str:
        return ' / '.join(f'{name} {statistics.fmean(values[-50:]):.3f}'.lstrip()
                          for name, values in self.losses.items()) or 'nan'


def config_hash(cfg: Config, upstream: Sequence[str] = ()) -> str:
    """A digest of the whole config and of the digests of the stages it depends on (its teacher): a stage is
    reused only while neither changed. Without upstream stages it is the config's digest alone, as in the
    records of earlier mmkd versions."""
    content = [cfg.to_dict(), list(upstream)] if upstream else cfg.to_dict()
    text = json.dumps(content, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_config(path: str, work_dir: str, seed: int, epochs: Optional[int] = None) -> Config:
    """Read ``path`` and set it up as a quickstart stage: its folder and seed, a checkpoint of the final model
    only, no validation during training (the final model is tested once), and ``epochs`` epochs if given (the
    epoch-based schedulers end there and their milestones keep their fraction of the config's own epochs)."""
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    iter_based = cfg.train_cfg.get('type') in ('IterBasedTrainLoop', 'mmengine.IterBasedTrainLoop')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=True, by_epoch=not iter_based)
    for loader in ('train_dataloader', 'test_dataloader'):
        # several runners live in this process one after the other: workers must not outlive their stage
        cfg[loader].persistent_workers = False
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    if epochs is not None and iter_based:
        raise ValueError(f'{path} trains for a number of iterations (IterBasedTrainLoop): --epochs does not apply')
    if epochs is not None:
        config_epochs = cfg.train_cfg.max_epochs
        cfg.train_cfg.max_epochs = epochs
        schedules = cfg.param_scheduler
        if isinstance(schedules, dict) and 'type' not in schedules:  # one schedule per network
            # a config may give several networks the same schedule object: rescale each scheduler once
            schedules = list({id(s): s for schedule in schedules.values() for s in schedule}.values())
        for scheduler in schedules:
            if scheduler.get('by_epoch', True):
                scheduler.end = epochs
                if 'milestones' in scheduler:
                    scheduler.milestones = [max(1, round(m * epochs / config_epochs)) for m in scheduler.milestones]
    return cfg


def final_checkpoint(cfg: Config) -> str:
    """The checkpoint a stage's training ends with (``iter_<max_iters>.pth`` or ``epoch_<max_epochs>.pth``)."""
    if 'max_iters' in cfg.train_cfg:
        return osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    return osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')


class Quickstart:
    """Runs the stages of a method and writes its table.

    Args:
        method: what to run.
        root: the repository root (the stages' configs are relative to it).
        args: the parsed command line (see :func:`parse_args`).
        stream: where progress lines go.
    """

    def __init__(self, method: Method, root: str, args: argparse.Namespace, stream: Optional[TextIO] = None):
        self.method = method
        self.root = root
        self.args = args
        self.stream = stream or sys.stdout
        self.work_dir = osp.abspath(args.work_dir)

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_stage(self, label: str, cfg: Config, upstream: Sequence[str] = (), networks: Sequence[str] = ()) -> dict:
        """Train ``cfg`` and test the final model (each of ``networks`` in turn, if given: the record's metrics are
        then per network); a finished stage whose config and ``upstream`` (the config digests of the stages it
        depends on) are unchanged is reused."""
        record_path = osp.join(cfg.work_dir, RECORD)
        digest = config_hash(cfg, list(upstream) + [f'networks={list(networks)}'] if networks else upstream)
        if not self.args.force and osp.isfile(record_path):
            with open(record_path) as f:
                record = json.load(f)
            if record.get('config_hash') == digest and osp.isfile(record.get('checkpoint', '')):
                self.say(f'  [{label}] reused from {cfg.work_dir} (same config; --force retrains)')
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
                for hook in runner.hooks:
                    if isinstance(hook, QuickstartProgressHook):
                        hook.stream = self.stream
                runner.train()
                train_seconds = time.time() - start
                if networks:
                    metrics = {}
                    for network in networks:  # the model's predict_network chooses who is tested
                        runner.model.predict_network = network
                        metrics[network] = self._table_metrics(f'{label} {network}', runner.test() or {})
                else:
                    metrics = self._table_metrics(label, runner.test() or {})
            except BaseException:
                traceback.print_exc()
                self.say(f'  [{label}] failed: the full output is in {log_path}')
                raise
        record = dict(
            label=label,
            config_hash=digest,
            checkpoint=final_checkpoint(cfg),
            train_seconds=round(train_seconds, 1),
            test_seconds=round(time.time() - start - train_seconds, 1),
            metrics=metrics)
        with open(record_path, 'w') as f:
            json.dump(record, f, indent=1)
        tested = metrics.items() if networks else [('', metrics)]
        values = '; '.join(f'{network} ' * bool(network) + '  '.join(f'{k} {v:.1f}' for k, v in per.items())
                           for network, per in tested)
        self.say(f'  [{label}] trained in {clock(train_seconds)}, tested in {clock(record["test_seconds"])}: {values}')
        return record

    def _table_metrics(self, label: str, metrics: dict) -> dict:
        missing = [key for _, key in self.method.metrics if key not in metrics]
        if missing and self.method.missing_metrics_are_zero and len(missing) == len(self.method.metrics):
            self.say(f'  [{label}] the test returned no metrics (nothing detected): every metric is 0')
            metrics = {key: 0.0 for _, key in self.method.metrics}
        elif missing:
            raise KeyError(f'quickstart method {self.method.name!r}, stage {label!r}: the test returned no '
                           f'{missing} (it returned {sorted(metrics)})')
        return {name: round(self.method.metric_scale * float(metrics[key]), 1) for name, key in self.method.metrics}

    def run(self) -> dict:
        """Prepare the data, run every stage, print and save the table. Returns the content of results.json."""
        args, method = self.args, self.method
        start = time.time()
        once = [s for s in method.stages if not s.per_seed]
        per_seed = [s for s in method.stages if s.per_seed]
        total = len(once) + len(per_seed) * len(args.seeds)
        students = ', '.join(s.name for s in per_seed)
        self.say(f'mmkd quickstart {method.name}: {method.summary}; '
                 f'{" + ".join(s.name for s in once) + " + " if once else ""}{len(args.seeds)} x ({students}); '
                 f'results in {self.work_dir}')
        self.say('[data] preparing')
        t0 = time.time()
        data_root = method.prepare_data(args)
        self.say(f'  [data] ready in {clock(time.time() - t0)}: {data_root}')

        stages = {s.key: s for s in method.stages}
        records, done = [], {}  # done: (stage key, seed) -> (record, config)
        runs = [(s, args.teacher_seed) for s in once] + [(s, seed) for seed in args.seeds for s in per_seed]
        for step, (stage, seed) in enumerate(runs, 1):
            folder = f'{stage.key}_seed{seed}' if stage.per_seed else stage.key
            tag = stage.tag or stage.key
            label = f'{tag} s{seed}' if stage.per_seed else tag
            seed_note = f', seed {seed}' if stage.per_seed else ''
            self.say(f'[{step}/{total}] {stage.name}{seed_note}: {stage.config}')
            cfg = stage_config(
                osp.join(self.root, stage.config), osp.join(self.work_dir, folder), seed, args.epochs or method.epochs)
            method.use_data(cfg, data_root)
            upstream = []
            if stage.teacher is not None:
                teacher_seed = seed if stages[stage.teacher].per_seed else args.teacher_seed
                teacher, teacher_cfg = done[(stage.teacher, teacher_seed)]
                cfg.model.update(teacher_cfg=teacher_cfg.model.to_dict(), teacher_ckpt=teacher['checkpoint'])
                # a retrained teacher (other seed, epochs, data) retrains its students too
                upstream.append(teacher['config_hash'])
            if stage.init_from is not None:
                start_record, _ = done[(stage.init_from,
                                        seed if stages[stage.init_from].per_seed else args.teacher_seed)]
                cfg.load_from = start_record['checkpoint']
                upstream.append(start_record['config_hash'])
            record = self.run_stage(label, cfg, upstream, [network for network, _ in stage.networks])
            done[(stage.key, seed)] = (record, cfg)
            for key, name, network in stage.rows():
                metrics = record['metrics'][network] if network else record['metrics']
                records.append(dict(record, model=name, seed=seed, stage=key, metrics=metrics))
        return self.report(records, time.time() - start)

    def report(self, records: List[dict], seconds: float) -> dict:
        """Print the table (and the per-seed gain), save results.md and results.json."""
        method, seeds = self.method, self.args.seeds
        table, summary = summarise(records, method, seeds)
        self.say(f'\nResults ({method.metric_note}, {seconds / 60:.1f} min in all):\n\n{table}\n')
        results = dict(method=method.name, runs=records, summary=summary, seconds=round(seconds, 1))
        if method.compare:
            headline = method.metrics[0][0]
            by_seed = {(r['stage'], r['seed']): r['metrics'][headline] for r in records}
            names = {key: name for s in method.stages for key, name, _ in s.rows()}
            all_gains = {}
            for base, *betters in method.compare_groups():
                for better in betters:
                    gains = [round(by_seed[(better, s)] - by_seed[(base, s)], 1) for s in seeds]
                    self.say(f'{names[better]} - {names[base]}, {headline} per seed: ' + ', '.join(f'{g:+.1f}'
                                                                                                   for g in gains))
                    all_gains[better] = gains
            results[f'{headline.lower()}_gain_per_seed'] = all_gains[method.compare_groups()[0][1]]
            results[f'{headline.lower()}_gains_per_seed'] = all_gains
        with open(osp.join(self.work_dir, 'results.md'), 'w') as f:
            f.write(f'{method.metric_note}; {seconds / 60:.1f} min in all.\n\n{table}\n')
        with open(osp.join(self.work_dir, 'results.json'), 'w') as f:
            json.dump(results, f, indent=1)
        self.say(f'Saved {osp.join(self.work_dir, "results.md")} and results.json')
        return results


def summarise(records: List[dict], method: Method, seeds: Sequence[int]) -> Tuple[str, dict]:
    """The Markdown table (one row per run, then mean ± std per per-seed stage when there are several seeds),
    and those means and standard deviations."""
    names = [name for name, _ in method.metrics]
    lines = ['| model | seed | ' + ' | '.join(names) + ' |', '|' + '---|' * (len(names) + 2)]
    for record in records:
        values = ' | '.join(f'{record["metrics"][name]:.1f}' for name in names)
        lines.append(f'| {record["model"]} | {record["seed"]} | {values} |')
    summary = {}
    if len(seeds) > 1:
        for key, row_name in ((key, name) for s in method.stages if s.per_seed for key, name, _ in s.rows()):
            runs = [r['metrics'] for r in records if r['stage'] == key]
            summary[row_name] = {
                name:
                dict(
                    mean=round(statistics.fmean(r[name] for r in runs), 2),
                    std=round(statistics.stdev(r[name] for r in runs), 2))
                for name in names
            }
            values = ' | '.join(f'{summary[row_name][n]["mean"]:.1f} ± {summary[row_name][n]["std"]:.1f}'
                                for n in names)
            lines.append(f'| {row_name} | mean ± std ({len(runs)}) | {values} |')
    return '\n'.join(lines), summary


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The quickstart command line; an unknown method name is an argument error that lists the known ones."""
    parser = argparse.ArgumentParser(
        prog='tools/quickstart.py',
        description='Train and compare the stages of a distillation method (teacher, baseline, distilled student) '
        'on toy data, on a CPU in minutes.')
    parser.add_argument('method', nargs='?', default='ssim', help='the method to run (default: ssim; see --list)')
    parser.add_argument('--list', action='store_true', help='name the methods and exit')
    parser.add_argument(
        '--work-dir',
        help='where stages, logs and tables go (default: the method\'s, '
        'work_dirs/quickstart for ssim)')
    parser.add_argument(
        '--data-root', help="toy data folder, generated if absent (default: the method's, data/toy_shapes/ for ssim)")
    parser.add_argument('--seeds', nargs='+', type=int, default=[0], help='seeds of the per-seed stages (students)')
    parser.add_argument('--teacher-seed', type=int, default=0, help='seed of the stages trained once (teachers)')
    parser.add_argument('--epochs', type=int, default=None, help='override the epochs of every stage')
    parser.add_argument('--force', action='store_true', help='retrain stages even if a matching record exists')
    parser.add_argument('--num-train', type=int, default=400, help='toy shapes train images (when generated here)')
    parser.add_argument('--num-val', type=int, default=100, help='toy shapes val images (when generated here)')
    parser.add_argument('--image-size', type=int, default=256, help='toy shapes image side (when generated here)')
    args = parser.parse_args(argv)
    if not args.list and args.method not in METHODS:
        parser.error(f'unknown method {args.method!r}; the methods are: {", ".join(sorted(METHODS))}')
    if args.work_dir is None and not args.list:
        args.work_dir = METHODS[args.method].work_dir or f'work_dirs/quickstart_{args.method}'
    if args.data_root is None and not args.list:
        args.data_root = METHODS[args.method].data_root
    return args


def main(root: str, argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> Optional[dict]:
    """``tools/quickstart.py``: ``--list`` names the methods, else the chosen method runs.

    Returns:
        dict | None: the content of results.json, None for ``--list``.
    """
    args = parse_args(argv)
    stream = stream or sys.stdout
    if args.list:
        width = max(map(len, METHODS))
        for name in sorted(METHODS):
            print(f'{name:<{width}}  {METHODS[name].summary}', file=stream)
        return None
    return Quickstart(METHODS[args.method], root, args, stream).run()
