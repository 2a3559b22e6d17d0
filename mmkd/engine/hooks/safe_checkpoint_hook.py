"""mmengine's CheckpointHook, with an atomic ``last_checkpoint`` marker and removals after the save."""
import os.path as osp
from contextlib import contextmanager
from typing import Iterator, List

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from mmkd.registry import HOOKS
from mmkd.utils.safe_save import atomic_write, remove_stale_temporaries


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` that a crash at any moment of a save cannot leave without a
    checkpoint to resume from. Arguments and behaviour are otherwise those of ``CheckpointHook``.

    mmengine 0.10.7 removes the checkpoint that falls out of ``max_keep_ckpts`` (and the previous best
    checkpoint) *before* writing the new one, and writes the ``last_checkpoint`` marker with a plain
    ``open(..., 'w')``. Here the marker is written atomically, and old checkpoints are removed only once
    the new checkpoint and the marker are in place. The new checkpoint still lists the old ones among
    its kept checkpoints (``keep_ckpt_ids``): a run killed before removing them removes them when it
    resumes from it (``CheckpointHook.before_train``). Temporary files of saves killed half-way are
    removed before training starts. ``tools/train.py`` uses this hook in place of ``CheckpointHook``.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for folder in {runner.work_dir, self.out_dir}:
                if osp.isdir(folder):
                    remove_stale_temporaries(folder)

    @contextmanager
    def _removals_deferred(self) -> Iterator[List[str]]:
        """Within the block, ``self.file_backend.remove`` / ``rmtree`` only record the path."""
        pending: List[str] = []
        backend = self.file_backend
        backend.remove = backend.rmtree = pending.append
        try:
            yield pending
        finally:
            del backend.remove, backend.rmtree

    def _remove(self, paths: List[str]) -> None:
        for path in paths:
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # the previous best checkpoint goes only once the new one (and the marker) are written
        with self._removals_deferred() as pending:
            super()._save_best_checkpoint(runner, metrics)
        best = [getattr(self, 'best_ckpt_path', None), *getattr(self, 'best_ckpt_path_dict', {}).values()]
        self._remove([path for path in pending if path != self.last_ckpt and path not in best])

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Save the checkpoint of ``step``, then the marker, then remove what ``max_keep_ckpts`` drops."""
        stale: List[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            kept = list(self.keep_ckpt_ids) + [step]
            stale = kept[:-self.max_keep_ckpts]
            runner.message_hub.update_info('keep_ckpt_ids', kept)
            self.keep_ckpt_ids.append(step)  # a deque of maxlen max_keep_ckpts: drops the stale ones

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if stale:
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        # model-parallel saves gather from every rank; the marker and removals are the main process's
        if not is_main_process():
            return
        atomic_write(self.last_ckpt, osp.join(runner.work_dir, 'last_checkpoint'))
        self._remove([self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(s)) for s in stale])
