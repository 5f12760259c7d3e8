"""Django settings for the bench: the example project's own settings, unchanged.

The example app imports a few names from `otel_canonical_logs` at module level (`on_error` in
shop/helpers.py, `Context` in shop/api_views.py, ...). The comparison venvs (the original project,
plain OTel) do not have our package, so there a stand-in with the same names and no effect is
registered first; none of it runs on the benchmarked URLs (/ok/, /db/, /tpl/). In the dev venv
(bare, ours) the real package is imported, and it only acts when run under opentelemetry-instrument.
"""

import contextlib
import importlib.util
import sys
import types


def _stand_in() -> types.ModuleType:
    module = types.ModuleType("otel_canonical_logs", "bench stand-in: same names, no effect")

    def on_error(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda func: func

    def register_instrumenter(obj=None, **kwargs):
        return obj if obj is not None else (lambda o: o)

    class Context:
        @staticmethod
        def set(key, value):
            pass

        @staticmethod
        @contextlib.contextmanager
        def time(key):
            yield

    module.on_error = on_error
    module.register_instrumenter = register_instrumenter
    module.Context = Context
    return module


if importlib.util.find_spec("otel_canonical_logs") is None:
    sys.modules["otel_canonical_logs"] = _stand_in()

from mysite.settings import *  # noqa: E402, F403 - the example's settings, as they are
