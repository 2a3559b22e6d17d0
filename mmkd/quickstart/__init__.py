"""One quickstart for every method: ``python tools/quickstart.py [METHOD]`` (see :mod:`.stages`)."""
from .methods import TOY_DETECTION, TOY_STUDENT, TOY_TEACHER
from .stages import METHODS, Method, Quickstart, QuickstartProgressHook, Stage, main, parse_args, register_method

__all__ = [
    'METHODS', 'Method', 'Quickstart', 'QuickstartProgressHook', 'Stage', 'main', 'parse_args', 'register_method',
    'TOY_DETECTION', 'TOY_STUDENT', 'TOY_TEACHER'
]
