"""Checkpoint safety under torch >= 2.6: allow-listed loading and atomic saving.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. MMEngine 0.10.7 calls it without the
argument, so it refuses the checkpoints it writes itself: their message hub holds
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays, numpy scalars and, for the buffer's
statistics methods, ``builtins.getattr``). :func:`install` keeps ``weights_only=True`` and allow-lists
exactly those types; ``getattr`` is replaced by :func:`_history_buffer_getattr`, which only resolves
the statistics methods of ``HistoryBuffer`` so that a checkpoint cannot reach arbitrary attributes.

Any other global in a checkpoint (a function, an arbitrary class) is refused before anything in the
file runs, with :class:`UntrustedCheckpointError`. A file the user trusts can be opted in with the
environment variable ``MMKD_TRUSTED_CHECKPOINTS`` (paths separated by ``os.pathsep``) or
:func:`trust_checkpoint`; it is then loaded with ``weights_only=False``.

Saving: mmengine writes checkpoints and the ``last_checkpoint`` marker through
:class:`~mmengine.fileio.LocalBackend`; :func:`install` makes its ``put``/``put_text`` write to a
temporary file in the same folder and rename it over the target, so a crash during a save leaves the
previous file intact.
"""
import functools
import os
import os.path as osp
import pickle
import tempfile
from typing import Any, Callable, List, Set, Union

import numpy as np
import torch

ENV_TRUSTED = 'MMKD_TRUSTED_CHECKPOINTS'

_trusted_paths: Set[str] = set()
_installed = False


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles objects outside mmkd's allow-list."""


def _norm(path: str) -> str:
    return osp.realpath(osp.expanduser(str(path)))


def trust_checkpoint(path: Union[str, os.PathLike]) -> None:
    """Mark one checkpoint file as trusted: it will be loaded with ``weights_only=False``.

    Only do this for files from a source you trust: unpickling them can run arbitrary code.
    """
    _trusted_paths.add(_norm(path))


def is_trusted(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` was opted in by :func:`trust_checkpoint` or ``MMKD_TRUSTED_CHECKPOINTS``."""
    env = {_norm(p) for p in os.environ.get(ENV_TRUSTED, '').split(os.pathsep) if p}
    return _norm(path) in _trusted_paths | env


def _history_buffer_statistics() -> Set[str]:
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer()  # registers the default statistics methods
    return set(HistoryBuffer._statistics_methods)


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling a checkpoint.

    Python pickles the functions ``HistoryBuffer.min`` / ``.max`` / ``.mean`` / ``.current`` (and any
    registered statistics method) as ``getattr(HistoryBuffer, name)``. Only that lookup is allowed.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _history_buffer_statistics():
        return getattr(HistoryBuffer, name)
    raise UntrustedCheckpointError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); mmkd only allows the statistics methods '
        f'of mmengine HistoryBuffer ({sorted(_history_buffer_statistics())})')


def allowed_globals() -> List[Any]:
    """The globals mmkd allow-lists for ``torch.load(weights_only=True)``.

    Entries are objects or ``(object, 'qualified.name')`` pairs, as accepted by
    :func:`torch.serialization.add_safe_globals`. Both numpy 1 (``numpy.core``) and numpy 2
    (``numpy._core``) spellings are listed so that checkpoints written with either load.
    """
    import codecs

    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    entries: List[Any] = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        (codecs.encode, '_codecs.encode'),
        (_history_buffer_getattr, 'builtins.getattr'),
    ]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append((multiarray.scalar, f'{module}.scalar'))
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes by their classes too
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return entries


def _refusal(filename: str, error: Exception) -> Exception:
    """The error to raise when ``torch.load(weights_only=True)`` failed on ``filename``: a refusal
    (:class:`UntrustedCheckpointError`) if the file pickles globals outside the allow-list, else a
    ``RuntimeError`` saying the file is not a readable checkpoint."""
    found = set()
    try:
        found = set(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    except Exception:  # not a zip checkpoint: fall back on torch's message
        pass
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not found and 'global' not in str(error).lower() and 'mmkd only allows' not in str(error):
        return RuntimeError(f"checkpoint '{filename}' could not be read: it is corrupt or not a torch "
                            f'checkpoint ({first_line})')
    unsafe = f' It pickles {", ".join(sorted(found))}, which mmkd does not allow-list.' if found else ''
    return UntrustedCheckpointError(
        f"mmkd refused to load checkpoint '{filename}' with torch.load(weights_only=True).{unsafe} "
        f'Unpickling it fully could run code stored in the file, so nothing in it was executed. '
        f'If you trust this file, opt in with the environment variable {ENV_TRUSTED}={filename} '
        f"or mmkd.utils.trust_checkpoint('{filename}'). (torch said: {first_line})")


def safe_torch_load(filename: str, map_location=None) -> Any:
    """``torch.load`` of a local file with mmkd's allow-list, or fully if the file is trusted.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UntrustedCheckpointError: the file pickles something outside the allow-list.
        RuntimeError: the file is corrupt or not a torch checkpoint.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    if is_trusted(filename):
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(filename, e) from None


def _guard_loader(loader: Callable) -> Callable:
    """Wrap an mmengine remote-scheme loader so that an allow-list refusal reads clearly."""

    @functools.wraps(loader)
    def guarded(filename, map_location=None):
        try:
            return loader(filename, map_location)
        except UntrustedCheckpointError:
            raise
        except pickle.UnpicklingError as e:
            raise _refusal(filename, e) from None

    guarded.__mmkd_guarded__ = True
    return guarded


def atomic_write(data: Union[bytes, str], filepath: Union[str, os.PathLike], encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` so that readers see either the old or the new file, never half.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over the
    target; on any error the temporary file is removed and the target is untouched.
    """
    filepath = str(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(filepath) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


def install() -> None:
    """Install the allow-list, the guarded loaders and atomic local writes (idempotent)."""
    global _installed
    if _installed:
        return
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(allowed_globals())

    CheckpointLoader.register_scheme(prefixes='', loader=safe_torch_load, force=True)
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix and not getattr(loader, '__mmkd_guarded__', False):
            CheckpointLoader.register_scheme(prefixes=prefix, loader=_guard_loader(loader), force=True)

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, encoding=encoding)

    put.__doc__ = 'Write bytes to ``filepath`` atomically (mmkd: temporary file + rename).'
    put_text.__doc__ = 'Write text to ``filepath`` atomically (mmkd: temporary file + rename).'
    LocalBackend.put = put
    LocalBackend.put_text = put_text
    _installed = True
