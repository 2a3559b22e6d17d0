import os
import pickle
import subprocess
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import Dataset

from mmkd.utils import UntrustedCheckpointError, safe_torch_load, trust_checkpoint
from mmkd.utils.checkpoint import ENV_TRUSTED
from ..conftest import PYTHON, tool_env


class _Linear(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - torch.stack(labels))**2).mean())
        return out


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(2, generator=g), labels=torch.tensor(float(i % 3)))


def _globals_in(path):
    import io
    import zipfile

    from torch._weights_only_unpickler import get_globals_in_pkl
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith('data.pkl'))
        return get_globals_in_pkl(io.BytesIO(z.read(name)))


def _runner(work_dir, max_epochs, **kwargs):
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=_Linear(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Points(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


def test_mmengine_checkpoints_load_and_resume_exactly(tmp_path):
    # the checkpoint really holds what torch>=2.6 refuses by default
    full = tmp_path / 'full'
    _runner(full, 4).train()
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr'} <= _globals_in(full / 'epoch_2.pth')
    final = safe_torch_load(full / 'epoch_4.pth')['state_dict']  # weights_only=True with the allow-list
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):  # a plain torch.load stays stock torch's
        torch.load(full / 'epoch_4.pth')

    part = tmp_path / 'part'
    _runner(part, 2).train()
    runner = _runner(part, 4, resume=True)
    runner.train()
    assert runner.iter == 16
    resumed = safe_torch_load(part / 'epoch_4.pth')['state_dict']
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], atol=0, rtol=0)

    model = _Linear()
    load_checkpoint(model, str(full / 'epoch_4.pth'))
    torch.testing.assert_close(model.fc.weight, final['fc.weight'])
    from mmengine.logging import HistoryBuffer
    methods = dict(HistoryBuffer._statistics_methods)
    hub = safe_torch_load(str(full / 'epoch_4.pth'))['message_hub']
    loss = hub['log_scalars']['train/loss']
    assert type(loss) is HistoryBuffer and loss._log_history.dtype == np.float64 and len(loss._log_history) == 16
    assert loss.mean() == pytest.approx(loss._log_history.mean()) and loss.statistics('current') > 0
    assert HistoryBuffer._statistics_methods == methods  # loading left the class alone


@pytest.mark.parametrize('zip_format', [True, False])
def test_numpy_payloads_load_as_numpy(tmp_path, zip_format):
    # every numeric / bool kind, byte orders, Fortran order, empty and 0-d arrays, scalars, a dtype
    arrays = dict(
        f8=np.arange(6.0).reshape(2, 3),
        big=np.arange(4, dtype='>i4'),
        fortran=np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        flags=np.array([True, False]),
        empty=np.array([]),
        zero_d=np.array(3, np.uint8),
        c=np.array([1 + 2j], np.complex64),
        half=np.array([0.5], np.float16))
    scalars = dict(a=np.float64(1.5), b=np.int64(-2), c=np.bool_(True), d=np.uint16(7))
    path = tmp_path / 'np.pth'
    torch.save(
        dict(meta=dict(arrays=arrays, scalars=scalars, pair=(arrays['f8'], [arrays['f8']]), dtype=np.dtype('>f4'))),
        path,
        _use_new_zipfile_serialization=zip_format)
    meta = safe_torch_load(str(path))['meta']
    for name, expected in arrays.items():
        loaded = meta['arrays'][name]
        assert type(loaded) is np.ndarray and loaded.dtype == expected.dtype, name
        assert loaded.flags.f_contiguous == expected.flags.f_contiguous and loaded.flags.writeable, name
        np.testing.assert_array_equal(loaded, expected)
    for name, expected in scalars.items():
        assert type(meta['scalars'][name]) is type(expected) and meta['scalars'][name] == expected, name
    assert meta['pair'][0] is meta['pair'][1][0] is meta['arrays']['f8']  # shared references stay shared
    assert meta['dtype'] == np.dtype('>f4')


class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_Payload(marker)), path)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(_Linear(), str(path))
    message = str(info.value)
    assert str(path) in message and ENV_TRUSTED in message and 'trust_checkpoint' in message
    assert 'system' in message  # names what it refused
    assert not marker.exists()
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(str(path))
    assert not marker.exists()


def test_arbitrary_class_refused(tmp_path):
    path = tmp_path / 'cls.pth'
    torch.save(dict(state_dict={}, meta=dict(obj=pytest.approx(1.0))), path)
    with pytest.raises(UntrustedCheckpointError, match='ApproxScalar'):
        safe_torch_load(str(path))


def test_getattr_payload_refused(tmp_path):

    class Sneaky:

        def __reduce__(self):
            from mmengine.logging.history_buffer import HistoryBuffer
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=Sneaky()), path)
    with pytest.raises(UntrustedCheckpointError, match=r"getattr\(HistoryBuffer, '__init__'\)") as info:
        safe_torch_load(str(path))
    assert str(path) in str(info.value) and ENV_TRUSTED in str(info.value)


def test_opt_in_for_trusted_files(tmp_path, monkeypatch):
    path = tmp_path / 'trusted.pth'
    torch.save(dict(meta=dict(obj=pytest.approx(1.0))), path)
    monkeypatch.setenv(ENV_TRUSTED, str(path))
    assert safe_torch_load(str(path))['meta']['obj'] == 1.0
    monkeypatch.delenv(ENV_TRUSTED)
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(str(path))
    trust_checkpoint(str(path))
    assert safe_torch_load(str(path))['meta']['obj'] == 1.0


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        safe_torch_load(str(tmp_path / 'nothing.pth'))


class _Reduce:
    """Pickles as ``rv[0](*rv[1])``, then BUILD with ``rv[2]`` if given: a checkpoint an attacker writes by hand."""

    def __init__(self, *rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


def _numpy_attacks():
    """Objects built only from allow-listed numpy names whose items are raw pointers read from the file."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    # a structured dtype with an object field, its flags (63: holds objects) cleared to 0
    struct = _Reduce(np.dtype, ('V8', False, True), (3, '|', None, ('a', ), {'a': (np.dtype('O'), 0)}, 8, 1, 0))
    # float64 whose state claims it holds object references
    flagged = _Reduce(np.dtype, ('f8', False, True), (3, '<', None, None, None, -1, -1, 63))
    pointer = b'\x41' * 8
    return dict(
        struct_scalar=_Reduce(multiarray.scalar, (struct, pointer)),
        struct_array=_Reduce(multiarray._reconstruct, (np.ndarray, (0, ), b'b'), (1, (1, ), struct, False, pointer)),
        flagged_array=_Reduce(multiarray._reconstruct, (np.ndarray, (0, ), b'b'), (1, (1, ), flagged, False, pointer)),
        object_scalar=_Reduce(multiarray.scalar, (np.dtype('O'), pointer)),
        dtype_class=_Reduce(type(np.dtype('f8')), ()))


COLLIDE = """
import pickle
import numpy as np
import torch
multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
if USER_GLOBALS:  # a user's own allow-list for numpy files, under the names mmkd also binds
    torch.serialization.add_safe_globals([multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
                                          type(np.dtype('f8')), type(np.dtype('U1'))])
import mmkd
from mmkd.utils import UntrustedCheckpointError, safe_torch_load
try:
    plain = torch.load(NUMBERS, weights_only=True)['a']
    print('PLAIN', type(plain).__module__, type(plain).__name__, plain.tolist())
except pickle.UnpicklingError as e:
    print('PLAIN REFUSED', str(e).splitlines()[0])
try:
    safe_torch_load(STRINGS)
    print('MMKD LOADED strings')
except UntrustedCheckpointError as e:
    print('MMKD REFUSED strings')
print('MMKD', type(safe_torch_load(NUMBERS)['a']).__name__)
"""


@pytest.mark.parametrize('user_globals', [True, False])
def test_allow_list_applies_to_mmkd_loads_only(tmp_path, user_globals):
    numbers, strings = str(tmp_path / 'numbers.pth'), str(tmp_path / 'strings.pth')
    torch.save(dict(a=np.arange(3.0)), numbers)
    torch.save(dict(a=np.array(['x'])), strings)  # a string dtype: outside mmkd's allow-list
    script = f'USER_GLOBALS = {user_globals}\nNUMBERS = {numbers!r}\nSTRINGS = {strings!r}\n' + COLLIDE
    proc = subprocess.run([PYTHON, '-c', script], capture_output=True, text=True, env=tool_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith(('PLAIN', 'MMKD'))]
    # a plain torch.load is stock torch's: the user's numpy globals, or a refusal without them
    plain = 'PLAIN numpy ndarray [0.0, 1.0, 2.0]' if user_globals else 'PLAIN REFUSED'
    assert lines[0].startswith(plain), lines
    # mmkd's loads check with mmkd's stand-ins whatever the user allow-listed
    assert lines[1:] == ['MMKD REFUSED strings', 'MMKD ndarray'], lines


class _NewObj:
    """Pickles as ``NEWOBJ`` of ``cls`` with no arguments: an object whose ``__init__`` never runs."""

    def __init__(self, cls):
        self.cls = cls

    @property
    def __class__(self):  # pickle checks that NEWOBJ's class is the object's
        return self.cls

    def __reduce__(self):
        import copyreg
        return copyreg.__newobj__, (self.cls, )


def _malformed_allow_listed_objects():
    """Allow-listed names used in ways mmengine never writes; each must be refused, not reported as corrupt."""
    from mmengine.logging import HistoryBuffer

    from mmkd.utils import checkpoint
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray

    def array(shape, data):
        return _Reduce(multiarray._reconstruct, (np.ndarray, (0, ), b'b'), (1, shape, np.dtype('f8'), False, data))

    return dict(
        array_without_init=(_NewObj(checkpoint._PickledArray), 'numpy array without its state'),
        dtype_without_init=(_NewObj(np.dtype), 'numpy dtype without its state'),
        buffer_with_arguments=(_Reduce(HistoryBuffer, (1, 2)), 'HistoryBuffer is built with arguments'),
        too_many_dimensions=(array((1, ) * 70, bytes(8)), 'cannot be built'),
        too_large=(array((0, 2**62, 2**62), b''), 'cannot be built'),
        array_as_key=({
            array((1, ), bytes(8)): 1
        }, 'numpy array as a dict key'),
        getattr_of_array=(_Reduce(getattr, (np.ndarray, 'tofile')), r"getattr\(numpy.ndarray, 'tofile'\)"))


@pytest.mark.parametrize('name', sorted(_malformed_allow_listed_objects()))
def test_malformed_allow_listed_objects_are_refused_in_numpy_terms(tmp_path, name):
    attack, reason = _malformed_allow_listed_objects()[name]
    path = tmp_path / f'{name}.pth'
    torch.save(dict(state_dict={}, meta=dict(x=attack)), path)
    with pytest.raises(UntrustedCheckpointError, match=reason) as info:
        safe_torch_load(str(path))
    assert '_Pickled' not in str(info.value) and '_NdarrayName' not in str(info.value)


def test_memory_unsafe_numpy_objects_refused(tmp_path):
    paths = []
    for name, attack in sorted(_numpy_attacks().items()):
        paths.append(str(tmp_path / f'{name}.pth'))
        torch.save(dict(state_dict={}, meta=dict(x=attack)), paths[-1])
    # touching what the old allow-list let through kills the process: load and touch in a subprocess
    script = textwrap.dedent(f'''
        import gc
        import torch.nn as nn
        from mmengine.runner import load_checkpoint
        from mmkd.utils import UntrustedCheckpointError
        for path in {paths!r}:
            try:
                checkpoint = load_checkpoint(nn.Linear(1, 1), path, strict=False)
            except UntrustedCheckpointError as e:
                print('REFUSED', e)
            else:
                print('LOADED', repr(checkpoint['meta']['x']), flush=True)
                del checkpoint
                gc.collect()
    ''')
    proc = subprocess.run([PYTHON, '-c', 'import mmkd\n' + script],
                          capture_output=True,
                          text=True,
                          env=tool_env(),
                          timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    results = [line for line in proc.stdout.splitlines() if line.startswith(('REFUSED', 'LOADED'))]
    assert len(results) == len(paths)
    for path, result in zip(paths, results):
        assert result.startswith('REFUSED') and f"'{path}'" in result and ENV_TRUSTED in result, result


def test_resume_from_checkpoint_with_unsafe_numpy_in_meta_refused(tmp_path):
    """A checkpoint written by tools/train.py, with a crafted numpy object planted in its meta: --resume
    stops with the refusal naming the file (the old allow-list let it in)."""
    from ..test_engine.checkpoint_toy import train, write_config
    config = write_config(str(tmp_path))
    work = tmp_path / 'work'
    proc = train(config, str(work), '--cfg-options', 'train_cfg.max_epochs=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = work / 'epoch_1.pth'
    checkpoint = torch.load(path, weights_only=False)
    checkpoint['meta']['planted'] = _numpy_attacks()['struct_array']
    torch.save(checkpoint, path)
    proc = train(config, str(work), '--resume')
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert 'UntrustedCheckpointError' in proc.stderr and f"'{path}'" in proc.stderr, proc.stderr[-3000:]


def test_history_buffer_state_cannot_widen_getattr_or_touch_the_class(tmp_path):
    from mmengine.logging import HistoryBuffer
    state = dict(
        max_length=10,
        _log_history=np.array([1.0]),
        _count_history=np.array([1]),
        statistics_methods=dict(mean=0, __init__=0, __subclasses__=0))
    widen = tmp_path / 'widen.pth'
    torch.save(dict(hub=_Reduce(HistoryBuffer, (), state)), widen)
    later = tmp_path / 'later.pth'
    torch.save(dict(x=_Reduce(getattr, (HistoryBuffer, '__subclasses__'))), later)
    script = textwrap.dedent(f'''
        from mmengine.logging import HistoryBuffer
        from mmkd.utils import UntrustedCheckpointError, safe_torch_load
        for path in ({str(widen)!r}, {str(later)!r}):
            try:
                safe_torch_load(path)
                print('LOADED', path)
            except UntrustedCheckpointError as e:
                print('REFUSED', e)
        print('REGISTRY', sorted(HistoryBuffer._statistics_methods))
        buffer = HistoryBuffer([1.0, 3.0], [1, 1])
        print('MEAN', buffer.statistics('mean'))
    ''')
    proc = subprocess.run([PYTHON, '-c', 'import mmkd\n' + script],
                          capture_output=True,
                          text=True,
                          env=tool_env(),
                          timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 4, (proc.stdout, proc.stderr[-2000:])
    assert lines[0].startswith('REFUSED') and 'statistics methods' in lines[0] and str(widen) in lines[0]
    assert lines[1].startswith('REFUSED') and "getattr(HistoryBuffer, '__subclasses__')" in lines[1]
    assert lines[2] == "REGISTRY ['current', 'max', 'mean', 'min']"
    assert lines[3] == 'MEAN 2.0'


@pytest.mark.parametrize('state', [
    dict(max_length=10, _log_history=[1.0], _count_history=np.array([1])),
    dict(max_length=10, _log_history=np.array([1.0]), _count_history=np.array([1, 1])),
    dict(max_length=10, _log_history=np.array([1.0]), _count_history=np.array([1]), extra=1),
    dict(max_length=-1, _log_history=np.array([1.0]), _count_history=np.array([1])),
])
def test_history_buffer_state_is_checked(tmp_path, state):
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'hb.pth'
    torch.save(dict(hub=_Reduce(HistoryBuffer, (), state)), path)
    with pytest.raises(UntrustedCheckpointError, match='HistoryBuffer'):
        safe_torch_load(str(path))


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_plain_pickle_with_forbidden_global_is_refused_not_corrupt(tmp_path, protocol):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'plain.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(state_dict={}, meta=_Payload(marker)), f, protocol=protocol)
    with pytest.raises(UntrustedCheckpointError, match=r'system') as info:
        load_checkpoint(_Linear(), str(path))
    assert str(path) in str(info.value) and ENV_TRUSTED in str(info.value)
    assert not marker.exists()


def _unreadable(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=_Linear().state_dict(), meta=dict(epoch=1, iter=4)), good)
    data = good.read_bytes()
    files = dict(truncated=data[:len(data) // 2], empty=b'', garbage=b'e' + bytes(range(256)), text=b'hello world')
    for name, content in files.items():
        (tmp_path / f'{name}.pth').write_bytes(content)
    return [tmp_path / f'{name}.pth' for name in files]


def test_legacy_format_checkpoint_with_rng_states_loads_and_restores(tmp_path):
    import random
    from types import SimpleNamespace

    from mmkd.engine.hooks import RNGStateHook
    np.random.seed(3)
    np.random.rand(5)  # a state partway through the key, with a cached position
    checkpoint = dict(state_dict=_Linear().state_dict())
    RNGStateHook().before_save_checkpoint(None, checkpoint)
    expected = (np.random.rand(4), random.random(), torch.rand(2))
    path = tmp_path / 'legacy.pth'
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    np.random.seed(0)
    loaded = safe_torch_load(str(path))
    RNGStateHook._restore(SimpleNamespace(logger=SimpleNamespace(info=lambda msg: None)), loaded[RNGStateHook.KEY])
    np.testing.assert_array_equal(np.random.rand(4), expected[0])
    assert random.random() == expected[1]
    assert torch.equal(torch.rand(2), expected[2])


def test_legacy_format_refusal_names_only_what_is_refused(tmp_path):
    from mmengine.logging import HistoryBuffer
    marker = tmp_path / 'pwned'
    hub = HistoryBuffer()
    hub.update(1.0)
    path = tmp_path / 'legacy.pth'
    torch.save(dict(hub=hub, meta=_Payload(marker)), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError, match='system') as info:
        safe_torch_load(str(path))
    assert 'getattr' not in str(info.value) and not marker.exists()  # written as __builtin__.getattr: allowed
    # what torch's legacy loader cannot read back is no refusal
    torch.save(dict(keys=torch.from_numpy(np.arange(3, dtype=np.uint32))), path, _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match=f"'{path}' could not be read: torch failed on this legacy-format") as info:
        safe_torch_load(str(path))
    assert not isinstance(info.value, UntrustedCheckpointError)


def test_unreadable_checkpoint_gives_one_error_naming_the_file(tmp_path):
    for path in _unreadable(tmp_path):
        with pytest.raises(RuntimeError, match='could not be read: it is truncated, corrupt or not a torch') as info:
            load_checkpoint(_Linear(), str(path))
        assert f"'{path}'" in str(info.value) and not isinstance(info.value, UntrustedCheckpointError), path


def test_resume_from_unreadable_checkpoint_names_the_file(tmp_path):
    path = _unreadable(tmp_path)[0]
    runner = _runner(tmp_path / 'work', 2, resume=True, load_from=str(path))
    with pytest.raises(RuntimeError, match=f"checkpoint '{path}' could not be read"):
        runner.train()


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost; torch's hub cache in tmp_path."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / 'served'
    served.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_remote_checkpoint_refused_unless_its_url_is_trusted(tmp_path, http_folder, monkeypatch):
    served, base = http_folder
    marker = tmp_path / 'pwned'
    torch.save(dict(state_dict=_Linear().state_dict(), meta=dict(x=_Payload(marker))), served / 'evil.pth')
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(_Linear(), f'{base}/evil.pth')
    assert not marker.exists()  # torch.hub's loader defaults to weights_only=False: it ran the payload
    assert f"{ENV_TRUSTED}={base}/evil.pth" in str(info.value)

    torch.save(dict(state_dict=_Linear().state_dict(), meta=dict(obj=pytest.approx(1.0))), served / 'trusted.pth')
    with pytest.raises(UntrustedCheckpointError, match='ApproxScalar'):
        load_checkpoint(_Linear(), f'{base}/trusted.pth')
    # the suggested opt-in, with another entry beside it (':' separates entries, not the URL's own colons)
    monkeypatch.setenv(ENV_TRUSTED, f'{tmp_path}/other.pth:{base}/trusted.pth')
    assert load_checkpoint(_Linear(), f'{base}/trusted.pth')['meta']['obj'] == 1.0


def test_trusting_a_url_trusts_no_file_another_url_left_in_the_cache(tmp_path, http_folder, monkeypatch):
    served, base = http_folder
    marker = tmp_path / 'pwned'
    for name in ('evil', 'good'):
        (served / name).mkdir()
    good = _Linear()
    torch.save(dict(state_dict=_Linear().state_dict(), meta=dict(x=_Payload(marker))), served / 'evil' / 'model.pth')
    torch.save(dict(state_dict=good.state_dict()), served / 'good' / 'model.pth')
    monkeypatch.setenv(ENV_TRUSTED, f'{base}/good/model.pth')
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint(_Linear(), f'{base}/evil/model.pth')
    # the refused download is gone, and the trusted URL with the same base name loads its own file
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    assert [p.name for p in cache.rglob('*') if p.is_file()] == []
    loaded = _Linear()
    load_checkpoint(loaded, f'{base}/good/model.pth')
    assert not marker.exists()
    for k, v in good.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert len([p for p in cache.rglob('model.pth')]) == 1


def test_missing_remote_checkpoint_is_reported_as_missing(http_folder):
    _, base = http_folder
    with pytest.raises(FileNotFoundError, match=f"'{base}/missing.pth' could not be downloaded: HTTP 404"):
        load_checkpoint(_Linear(), f'{base}/missing.pth')
