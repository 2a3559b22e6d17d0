"""Checkpoint loading under torch >= 2.6: an allow-list that admits mmengine's checkpoints and nothing else.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. MMEngine 0.10.7 calls it without the
argument, so it refuses the checkpoints it writes itself: their message hub holds
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays, numpy scalars and, for the buffer's
statistics methods, ``builtins.getattr``). mmkd's loads keep ``weights_only=True`` and allow-list those
names, each bound to a checking stand-in rather than to the real callable, within those loads only (a
plain ``torch.load`` elsewhere is stock torch's, whatever a user passed to ``add_safe_globals``):

* ``numpy.dtype`` builds a :class:`_PickledDType`: only numeric and bool dtypes, with the exact state
  numpy pickles for them (no fields, no subarray, no flags); object, structured, string and void
  dtypes are refused. numpy's own ``dtype.__setstate__`` never runs on data from the file.
* ``numpy.core.multiarray._reconstruct`` builds a :class:`_PickledArray`, whose state must hold such a
  dtype, a shape and exactly the bytes that shape needs; ``...multiarray.scalar`` likewise.
* ``mmengine.logging.history_buffer.HistoryBuffer`` builds a :class:`_PickledHistoryBuffer`: known keys,
  one-dimensional numeric arrays of equal length; it becomes a plain ``HistoryBuffer`` without running
  ``HistoryBuffer.__setstate__``, which would write the file's "statistics methods" into the class.
* ``builtins.getattr`` only resolves the four default statistics methods of ``HistoryBuffer``, a set
  fixed at import; ``builtins.bytes`` only gives ``b''`` (an empty array's data).

:func:`safe_torch_load` and mmengine's ``load_checkpoint`` (through the loaders :func:`install`
registers) replace the stand-ins by the numpy objects they checked. Anything else pickled in a
checkpoint (a function, an arbitrary class, a numpy object outside the above) is refused before it runs, with
:class:`UntrustedCheckpointError`. A file or URL the user trusts can be opted in with the environment
variable ``MMKD_TRUSTED_CHECKPOINTS`` or :func:`trust_checkpoint`; it is then loaded with
``weights_only=False``. A file that cannot be read (truncated, garbage) raises one ``RuntimeError``
naming it.

Saving is in :mod:`mmkd.utils.safe_save`; :func:`install` routes mmengine's local writes through it.
"""
import math
import os
import os.path as osp
import pickle
import pickletools
import re
import zipfile
from typing import Any, Callable, Dict, List, Optional, Set, Union
from urllib.parse import urlparse

import _compat_pickle
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from .safe_save import atomic_write

ENV_TRUSTED = 'MMKD_TRUSTED_CHECKPOINTS'

# mmengine registers these four in every HistoryBuffer (``_set_default_statistics``); a checkpoint reaches
# nothing else through getattr, whatever the class-level registry holds at the time of loading
_STATISTICS_METHODS: Dict[str, Callable] = {n: getattr(HistoryBuffer, n) for n in ('current', 'max', 'mean', 'min')}
_HISTORY_BUFFER_KEYS = frozenset({'max_length', '_log_history', '_count_history', 'statistics_methods'})
# numpy pickles a numeric or bool dtype as dtype('<kind><size>', False, True) with this state after the byte order
_SIMPLE_DTYPE = re.compile(r'[biufc][0-9]{1,2}')
_SIMPLE_DTYPE_STATE = (None, None, None, -1, -1, 0)
# the reason the allow-list gives travels inside torch's UnpicklingError text: this prefix finds it again
_REASON = 'mmkd allow-list: '

_trusted_paths: Set[str] = set()
_installed = False


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles objects outside mmkd's allow-list."""


def _refuse(reason: str) -> UntrustedCheckpointError:
    return UntrustedCheckpointError(_REASON + reason)


def _is_url(path: str) -> bool:
    return re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*://', path) is not None


def _norm(path: Union[str, os.PathLike]) -> str:
    path = str(path).strip()
    return path if _is_url(path) else osp.realpath(osp.expanduser(path))


def _split_trusted(value: str) -> List[str]:
    """Entries of ``MMKD_TRUSTED_CHECKPOINTS``: separated by ``os.pathsep``, where a ``:`` inside a URL
    (``https://``, ``host:8080/``) does not separate."""
    if os.pathsep != ':':
        return [p for p in value.split(os.pathsep) if p]
    return [p for p in re.split(r':(?!//)(?![0-9]+(?:/|$))', value) if p]


def trust_checkpoint(path: Union[str, os.PathLike]) -> None:
    """Mark one checkpoint file or URL as trusted: it will be loaded with ``weights_only=False``.

    Only do this for files from a source you trust: unpickling them can run arbitrary code.
    """
    _trusted_paths.add(_norm(path))


def is_trusted(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` (a file or URL) was opted in by :func:`trust_checkpoint` or ``MMKD_TRUSTED_CHECKPOINTS``."""
    env = {_norm(p) for p in _split_trusted(os.environ.get(ENV_TRUSTED, ''))}
    return _norm(path) in _trusted_paths | env


class _PickledDType:
    """Stand-in for ``numpy.dtype(obj, align, copy)``: a numeric or bool dtype, set by its checked state.

    Args:
        obj (str): kind and size, e.g. ``'f8'``, ``'b1'``.
        align (bool): numpy's align flag (ignored for these dtypes).
        copy (bool): numpy's copy flag.
    """

    # a stand-in built by NEWOBJ skips __init__: these defaults make it one without its state
    _base: Optional[np.dtype] = None
    dtype: Optional[np.dtype] = None

    def __init__(self, obj: Any = None, align: Any = False, copy: Any = True):
        if not (isinstance(obj, str) and _SIMPLE_DTYPE.fullmatch(obj) and isinstance(align, bool)
                and isinstance(copy, bool)):
            raise _refuse(f'numpy.dtype{(obj, align, copy)!r} is not a numeric or bool dtype')
        try:
            base = np.dtype(obj)
        except Exception:  # e.g. 'i3'
            raise _refuse(f'numpy.dtype({obj!r}) is not a numpy dtype') from None
        if base.str[1:] != obj:
            raise _refuse(f'numpy.dtype({obj!r}) is not a numeric or bool dtype')
        self._base = base

    def __setstate__(self, state: Any) -> None:
        base = getattr(self, '_base', None)
        if not (base is not None and isinstance(state, tuple) and len(state) == 8 and state[0] == 3
                and state[1] in ('<', '>', '|', '=') and state[2:] == _SIMPLE_DTYPE_STATE):
            raise _refuse(f'dtype state {state!r} is not that of a numeric or bool dtype')
        self.dtype = base.newbyteorder(state[1]) if state[1] in '<>' else base

    def __repr__(self) -> str:
        return f'<numpy dtype checked by mmkd (safe_torch_load returns it as such): {self.dtype!r}>'


def _finished_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, _PickledDType) or dtype.dtype is None:
        raise _refuse(f'{_public_name(type(dtype))} where a numeric or bool numpy.dtype was expected')
    return dtype.dtype


class _NdarrayName:
    """What the name ``numpy.ndarray`` stands for: only the type argument of ``_reconstruct``."""

    def __new__(cls, *args, **kwargs):
        raise _refuse('numpy.ndarray may only be named as the type that numpy _reconstruct builds')


class _PickledArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``; its state gives the array."""

    array: Optional[np.ndarray] = None  # also for one built by NEWOBJ, without __init__

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _refuse(f'numpy array state of type {type(state).__name__} is not (1, shape, dtype, fortran, data)')
        _, shape, dtype, fortran, data = state
        dtype = _finished_dtype(dtype)
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise _refuse(f'numpy array shape {shape!r} is not a tuple of sizes')
        if not isinstance(fortran, bool) or not isinstance(data, bytes):
            raise _refuse('numpy array state holds no raw data bytes')
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise _refuse(f'numpy array of shape {shape} and dtype {dtype} holds {len(data)} bytes')
        flat = np.frombuffer(data, dtype) if data else np.empty(0, dtype)
        try:
            self.array = flat.reshape(shape, order='F' if fortran else 'C').copy(order='K')
        except ValueError as e:  # e.g. more dimensions or elements than numpy supports
            raise _refuse(f'numpy array of shape {shape!r:.100} cannot be built: {e}') from None

    def __repr__(self) -> str:
        # what a plain torch.load returns for an array outside a HistoryBuffer
        return f'<numpy array checked by mmkd (safe_torch_load returns it as such): {self.array!r}>'


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PickledArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``: an empty array whose state comes next."""
    if subtype is not _NdarrayName or shape != (0, ) or typecode != b'b':
        raise _refuse(f'numpy _reconstruct{(subtype, shape, typecode)!r} does not build a plain numpy array')
    return _PickledArray()


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    """Stand-in for ``numpy.core.multiarray.scalar``: a numeric or bool numpy scalar from its bytes."""
    dtype = _finished_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _refuse(f'numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes')
    return np.frombuffer(data, dtype)[0]


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``builtins.bytes``: pickle protocol 2 writes ``b''`` (an empty array's data) as ``bytes()``."""
    if args:
        raise _refuse(f'bytes{args!r} is refused: only bytes() is allowed')
    return b''


class _PickledHistoryBuffer:
    """Stand-in for mmengine's ``HistoryBuffer`` while unpickling: checks the state, then becomes a
    ``HistoryBuffer`` without running ``HistoryBuffer.__setstate__`` (which updates the class-level
    registry of statistics methods from the file)."""

    def __new__(cls, *args: Any, **kwargs: Any):
        if args or kwargs:
            raise _refuse('HistoryBuffer is built with arguments; mmengine pickles it without')
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if not (type(state) is dict and set(state) <= _HISTORY_BUFFER_KEYS
                and {'max_length', '_log_history', '_count_history'} <= set(state)):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise _refuse(f'HistoryBuffer state {keys} is not max_length, _log_history, _count_history')
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict or any(_STATISTICS_METHODS.get(k) is not v for k, v in methods.items()):
            raise _refuse(f'HistoryBuffer state registers statistics methods {sorted(map(str, methods))}; only '
                          f'the defaults {sorted(_STATISTICS_METHODS)} are allowed')
        max_length = state['max_length']
        if type(max_length) is not int or max_length <= 0:
            raise _refuse(f'HistoryBuffer max_length {max_length!r} is not a positive int')
        history = {}
        for key in ('_log_history', '_count_history'):
            array = state[key].array if type(state[key]) is _PickledArray else None
            if array is None or array.ndim != 1:
                raise _refuse(f'HistoryBuffer {key} is not a one-dimensional numpy array')
            history[key] = array
        if len(history['_log_history']) != len(history['_count_history']):
            raise _refuse('HistoryBuffer _log_history and _count_history differ in length')
        self.__dict__.update(max_length=max_length, **history)
        self.__class__ = HistoryBuffer


def _restricted_getattr(obj: Any, name: Any, *default: Any) -> Callable:
    """Stand-in for ``builtins.getattr``: Python pickles ``HistoryBuffer.mean`` and the other default
    statistics methods as ``getattr(HistoryBuffer, name)``; only that lookup is allowed."""
    if obj is _PickledHistoryBuffer and not default and name in _STATISTICS_METHODS:
        return _STATISTICS_METHODS[name]
    owner = _public_name(obj if isinstance(obj, type) else type(obj))
    raise _refuse(f'getattr({owner}, {name!r}) is refused: only the statistics methods '
                  f'{sorted(_STATISTICS_METHODS)} of mmengine HistoryBuffer are allowed')


def _public_name(kind: type) -> str:
    """The name a message gives a type: what a stand-in stands for, else the type's own name."""
    return {
        _PickledArray: 'numpy.ndarray',
        _NdarrayName: 'numpy.ndarray',
        _PickledDType: 'numpy.dtype',
        _PickledHistoryBuffer: 'HistoryBuffer'
    }.get(kind, getattr(kind, '__name__', repr(kind)))


def allowed_globals() -> List[Any]:
    """The globals mmkd allow-lists for ``torch.load(weights_only=True)``, each bound to a checking stand-in.

    Entries are ``(object, 'qualified.name')`` pairs, as accepted by :func:`torch.serialization.add_safe_globals`.
    Both numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) spellings are listed so that checkpoints
    written with either load.
    """
    import codecs
    entries: List[Any] = [
        (_PickledHistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_NdarrayName, 'numpy.ndarray'),
        (_PickledDType, 'numpy.dtype'),
        (codecs.encode, '_codecs.encode'),
        (_empty_bytes, 'builtins.bytes'),
        (_restricted_getattr, 'builtins.getattr'),
        # not named by numpy's pickles, but listed so that torch lets their (checked) state be set
        (_PickledArray, f'{__name__}._PickledArray'),
    ]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(_scalar, f'{module}.scalar'), (_reconstruct, f'{module}._reconstruct')]
    return entries


def _finalize(obj: Any, memo: Dict[int, Any]) -> Any:
    """``obj`` with every stand-in replaced by the numpy object it checked (containers in place)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    kind = type(obj)
    if kind is _PickledArray or kind is _PickledDType:
        value = obj.array if kind is _PickledArray else obj.dtype
        if value is None:
            raise _refuse(f'numpy {"array" if kind is _PickledArray else "dtype"} without its state')
        memo[key] = value
        return value
    if kind is _PickledHistoryBuffer:
        raise _refuse('HistoryBuffer without its state')
    if isinstance(obj, dict):
        memo[key] = obj
        items = [(_finalize(k, memo), _finalize(v, memo)) for k, v in obj.items()]
        if any(new[0] is not k or new[1] is not v for new, (k, v) in zip(items, obj.items())):
            if any(isinstance(k, np.ndarray) for k, _ in items):
                raise _refuse('a numpy array as a dict key (numpy arrays are unhashable)')
            obj.clear()
            obj.update(items)
        return obj
    if kind is list:
        memo[key] = obj
        obj[:] = [_finalize(v, memo) for v in obj]
        return obj
    if kind in (tuple, set, frozenset):
        values = [_finalize(v, memo) for v in obj]
        memo[key] = obj if all(a is b for a, b in zip(values, obj)) else kind(values)
        return memo[key]
    return obj


class _AllowList:
    """Context in which ``torch.load(weights_only=True)`` resolves mmkd's names to mmkd's stand-ins.

    Entered around mmkd's own loads only, so that a plain ``torch.load`` elsewhere in the process is not
    changed. torch keeps the allowed globals in one process-wide set, keyed by object: a user's own
    ``add_safe_globals`` entry for a name that mmkd also binds (``numpy.dtype``, ...) would make which of
    the two serves the name vary from process to process, so such entries are set aside while inside.
    """

    def __enter__(self) -> None:
        import torch._weights_only_unpickler as unpickler
        ours = allowed_globals()
        names = {name for _, name in ours}
        self._saved = unpickler._marked_safe_globals_set
        kept = {entry for entry in self._saved if _entry_name(entry) not in names}
        unpickler._marked_safe_globals_set = kept | set(ours)

    def __exit__(self, *exc_info) -> None:
        import torch._weights_only_unpickler as unpickler
        unpickler._marked_safe_globals_set = self._saved


def _entry_name(entry: Any) -> str:
    """The qualified name torch gives an ``add_safe_globals`` entry (an object or an ``(object, name)`` pair)."""
    if isinstance(entry, tuple):
        return entry[1]
    return f'{getattr(entry, "__module__", "")}.{getattr(entry, "__qualname__", "")}'


def _torch_allowed_names() -> Set[str]:
    from torch._weights_only_unpickler import _get_allowed_globals, _get_user_allowed_globals
    return set(_get_allowed_globals()) | set(_get_user_allowed_globals())


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as unpickling resolves it: protocols 0-2 write Python 2 names (``__builtin__.getattr``)
    that pickle maps to Python 3's (``builtins.getattr``), as torch's unpickler does."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f'{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}'


def _globals_in_plain_pickle(path: str) -> Set[str]:
    """The globals named by the pickles at the start of a non-zip file (a plain pickle or torch's legacy
    format), read without unpickling; ``'?'`` stands for a name that is not a plain string push."""
    found: Set[str] = set()
    with open(path, 'rb') as f:
        for _ in range(8):  # torch's legacy format: magic number, version, sys info, objects, storage keys
            strings: List[str] = []  # what the string pushes and memo reads put on the stack, in order
            memo: Dict[Any, str] = {}
            memoized = 0
            try:
                for opcode, arg, _pos in pickletools.genops(f):
                    if opcode.name == 'GLOBAL':
                        found.add(_python3_name(*arg.split(' ', 1)))
                    elif opcode.name == 'STACK_GLOBAL':
                        found.add(_python3_name(*(['?', '?'] + strings)[-2:]))
                    elif 'UNICODE' in opcode.name:
                        strings.append(arg)
                    elif opcode.name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
                        memo[memoized if arg is None else arg] = strings[-1] if strings else '?'
                        memoized += opcode.name == 'MEMOIZE'
                    elif opcode.name in ('GET', 'BINGET', 'LONG_BINGET'):
                        strings.append(memo.get(arg, '?'))
            except Exception:  # raw storage bytes after the pickles, or garbage
                break
    return found


def _unsafe_globals(path: Optional[str]) -> Set[str]:
    if path is None or not osp.isfile(path):
        return set()
    try:
        if zipfile.is_zipfile(path):
            return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        return _globals_in_plain_pickle(path) - _torch_allowed_names()
    except Exception:  # unreadable: the load error says so
        return set()


def _checked(error: Exception) -> Exception:
    error.mmkd_checked = True  # final: a loader that wraps another one passes it on unchanged
    return error


def _is_legacy_format(path: Optional[str]) -> bool:
    """Whether ``path`` is in torch's legacy (not zip) format: it starts with a pickle, not a zip header."""
    if path is None or not osp.isfile(path):
        return False
    with open(path, 'rb') as f:
        return f.read(2) == b'\x80\x02'  # torch's legacy format starts with its magic number, pickled


def _refusal(name: str, error: BaseException, path: Optional[str] = None) -> Exception:
    """The one error to raise when loading checkpoint ``name`` (local copy at ``path``) failed.

    Returns:
        Exception: :class:`UntrustedCheckpointError` if the file pickles something outside the
        allow-list (found by torch, by mmkd's stand-ins or by reading the file's globals), else a
        ``RuntimeError`` saying that the file is truncated, corrupt or not a torch checkpoint.
    """
    text = str(error)
    reasons = [line[line.index(_REASON) + len(_REASON):].strip() for line in text.splitlines() if _REASON in line]
    torch_refusal = re.search(
        r'(Unsupported global: GLOBAL \S+|Trying to call reduce for unrecognized function .*|'
        r'Can only (?:build|create new object) .*|.*whose module \S+ is blocked)', text)
    # torch's unpickler raises UnpicklingError when it refuses the file (for a plain pickle possibly at an
    # opcode before the global): only then can the file's globals be to blame
    found = _unsafe_globals(path) if isinstance(error, pickle.UnpicklingError) else set()
    if not (reasons or torch_refusal or found):
        first = next((line.strip() for line in text.splitlines() if line.strip()), '').split('. ')[0]
        cause = f'{type(error).__name__}{": " + first if first else ""}'
        if _is_legacy_format(path) and not isinstance(error, (pickle.UnpicklingError, EOFError)):
            return _checked(
                RuntimeError(f"checkpoint '{name}' could not be read: torch failed on this legacy-format (not zip) "
                             f'file ({cause}); e.g. tensors of a dtype the legacy format cannot store back, such as '
                             'uint32. Re-save it with the default torch.save format'))
        return _checked(
            RuntimeError(f"checkpoint '{name}' could not be read: it is truncated, corrupt or not a torch "
                         f'checkpoint ({cause})'))
    if found:
        what = f'it pickles {", ".join(sorted(found))}, which mmkd does not allow-list'
    else:
        what = reasons[0] if reasons else torch_refusal.group(1)
    return _checked(
        UntrustedCheckpointError(
            f"mmkd refused to load checkpoint '{name}' with torch.load(weights_only=True): {what}. "
            f'Unpickling it fully could run code stored in the file, so nothing in it was executed. '
            f'If you trust this file, opt in with the environment variable {ENV_TRUSTED}={name} '
            f"or mmkd.utils.trust_checkpoint('{name}')."))


def _load(read: Callable[[bool], Any], name: str, path: Optional[str]) -> Any:
    """Run ``read(weights_only)`` with the allow-list (or fully if ``name`` is trusted) and finalize it."""
    if is_trusted(name) or (path is not None and is_trusted(path)):
        try:
            return read(False)
        except Exception as e:
            if getattr(e, 'mmkd_checked', False):
                raise
            raise _refusal(name, e) from e
    with _AllowList():  # also while reading the file's globals for the error
        try:
            return _finalize(read(True), {})
        except RecursionError:
            raise _refusal(name, _refuse('objects nested too deeply'), path) from None
        except Exception as e:
            if getattr(e, 'mmkd_checked', False):
                raise
            raise _refusal(name, e, path) from None


def safe_torch_load(filename: Union[str, os.PathLike], map_location=None) -> Any:
    """``torch.load`` of a local file with mmkd's allow-list, or fully if the file is trusted.

    Args:
        filename (str | PathLike): the checkpoint file.
        map_location: as for :func:`torch.load`.

    Returns:
        Any: the unpickled object; numpy arrays, scalars and dtypes are real numpy objects.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UntrustedCheckpointError: the file pickles something outside the allow-list.
        RuntimeError: the file is truncated, corrupt or not a torch checkpoint.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    return _load(lambda weights_only: torch.load(filename, map_location=map_location, weights_only=weights_only),
                 filename, filename)


def safe_load_url(url: str,
                  model_dir: Optional[str] = None,
                  map_location=None,
                  progress: bool = False,
                  **kwargs) -> Any:
    """Stand-in for mmengine's ``load_url`` (behind ``http(s)://``, ``torchvision://``, ``open-mmlab://``,
    ``mmcls://``): downloads into torch's hub cache, then loads like :func:`safe_torch_load`; trusted
    through the URL. (``torch.hub.load_state_dict_from_url`` itself defaults to ``weights_only=False``.)

    The file is cached under a folder named by a hash of the full URL, not by its base name alone as
    torch.hub does: trusting one URL must not trust a file that another URL with the same base name left
    in the cache. A download that fails to load (refused or unreadable) is deleted.

    Args:
        url (str): the checkpoint URL.
        model_dir (str, optional): download folder; default ``<torch hub dir>/checkpoints``.
        map_location: as for :func:`torch.load`.
        progress (bool): show a download progress bar.

    Returns:
        Any: the unpickled object.

    Raises:
        FileNotFoundError: the server has no such file (HTTP 404).
        RuntimeError: the download failed, or the file is truncated, corrupt or not a torch checkpoint.
        UntrustedCheckpointError: the file pickles something outside the allow-list.
    """
    import hashlib
    from urllib.error import HTTPError, URLError
    folder = osp.join(
        model_dir or osp.join(torch.hub.get_dir(), 'checkpoints'),
        'mmkd-' + hashlib.sha256(url.encode()).hexdigest()[:32])
    cached = osp.join(folder, kwargs.get('file_name') or osp.basename(urlparse(url).path) or 'checkpoint.pth')
    if not osp.exists(cached):
        os.makedirs(folder, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, cached, progress=progress)
        except HTTPError as e:
            kind = FileNotFoundError if e.code == 404 else RuntimeError
            raise _checked(kind(f"checkpoint '{url}' could not be downloaded: HTTP {e.code} {e.reason}")) from None
        except (URLError, OSError) as e:
            raise _checked(RuntimeError(f"checkpoint '{url}' could not be downloaded: {e}")) from None
    try:
        return _load(lambda weights_only: torch.load(cached, map_location=map_location, weights_only=weights_only), url,
                     cached)
    except Exception:
        os.remove(cached)  # a refused file must not stay where a later, trusted load of this URL would find it
        raise


def _guard_loader(loader: Callable) -> Callable:
    """Wrap an mmengine remote-scheme loader: numpy stand-ins replaced, any failure one error naming the file."""

    def guarded(filename, map_location=None):
        return _load(lambda weights_only: loader(filename, map_location), filename, None)

    guarded.__mmkd_guarded__ = True
    guarded.__doc__ = loader.__doc__
    return guarded


def install() -> None:
    """Install the checking loaders (which apply the allow-list) and atomic local writes (idempotent)."""
    global _installed
    if _installed:
        return
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner import checkpoint as mmengine_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader

    HistoryBuffer()  # registers the default statistics methods, which a loaded buffer relies on
    mmengine_checkpoint.load_url = safe_load_url  # what load_from_http calls: weights_only=False in torch.hub

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
