"""Crash-safe file writes: readers see the old file or the new one, never a part.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes it to disk, renames it
over the target and flushes the folder. The temporary file is created with mode ``0o666`` filtered
by the umask (or the mode of the file it replaces), so a checkpoint gets the permissions a plain
``open(path, 'wb')`` would give. Its name ``.<target>.<pid>@<host>.<random>.tmp`` says which process
wrote it: a process killed in the middle of a write leaves it behind, and
:func:`remove_stale_temporaries` (run by every :func:`atomic_write` in that folder and by
:class:`~mmkd.engine.hooks.SafeCheckpointHook` before training) removes those of processes of this
host that no longer run.
"""
import os
import os.path as osp
import re
import secrets
import socket
import stat
from typing import List, Union

_HOST = re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname()) or 'host'
_TEMPORARY = re.compile(r'^\..+\.(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]{8}\.tmp$')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Union[str, os.PathLike]) -> List[str]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when its process died.

    Only files written on this host by a process that no longer runs are removed: a write in progress
    (this process's or another's) and files of other hosts sharing the folder are left alone.

    Args:
        folder (str | PathLike): the folder to clean.

    Returns:
        list[str]: the paths removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None or match['host'] != _HOST or _process_alive(int(match['pid'])):
            continue
        path = osp.join(folder, name)
        try:
            os.unlink(path)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        removed.append(path)
    return removed


def _fsync_folder(folder: str) -> None:
    # the rename is durable only once the folder's entry is on disk
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(data: Union[bytes, str], filepath: Union[str, os.PathLike], encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` so that readers see either the old or the new file, never half.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over the
    target; on any error the temporary file is removed and the target is untouched. A symbolic link is
    followed, as a plain write would: the file it points to is replaced, the link stays.

    Args:
        data (bytes | str): the content; ``str`` is encoded with ``encoding``.
        filepath (str | PathLike): the target file.
        encoding (str): encoding of a ``str`` ``data``.
    """
    filepath = osp.realpath(str(filepath))
    folder = osp.dirname(filepath)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder)
    try:
        mode = stat.S_IMODE(os.stat(filepath).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = osp.join(folder, f'.{osp.basename(filepath)}.{os.getpid()}@{_HOST}.{secrets.token_hex(4)}.tmp')
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, 'wb') as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
