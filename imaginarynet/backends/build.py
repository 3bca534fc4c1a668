"""Building the --backend: its class from the registry (base.py), given its own options and the runtime."""
from __future__ import annotations

import inspect
import warnings

from imaginarynet.backends.base import Backend, find_backend, load_backend_class
from imaginarynet.backends.options import DiffusionOptions
from imaginarynet.runtime import Runtime


def create_backend(cfg) -> Backend:
    """The --backend class built from its own options, the --backend-option values and the runtime."""
    cls = load_backend_class(find_backend(cfg.backend))
    if takes_run_config(cls):
        warnings.warn(f"backend {cfg.backend!r}: __init__(cfg) is deprecated and will be removed; take "
                      "(options, backend_options, runtime) instead (docs/backends.md)", FutureWarning, stacklevel=2)
        return cls(cfg)
    own = getattr(cls, "options_class", DiffusionOptions)
    return cls(own.of(cfg), dict(cfg.backend_options), Runtime.of(cfg))


def takes_run_config(cls) -> bool:
    """A plugin written for the first contract: __init__(self, cfg) with the whole RunConfig."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)
