"""Run each gallery example with one thread for torch and the BLAS / OpenMP pools.

The examples are tiny; on a busy machine, thread pools fighting over cores make them tens of
times slower than one thread. The limits are lifted after each example.
"""

from __future__ import annotations

_saved: dict = {}


def limit_threads(gallery_conf, fname, when):
    """sphinx-gallery ``reset_modules`` hook: one thread before an example, restore after."""
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in the docs extra
        torch = None
    if when == "before":
        if "limiter" not in _saved:
            _saved["limiter"] = threadpool_limits(limits=1)
            if torch is not None:
                _saved["torch"] = torch.get_num_threads()
                torch.set_num_threads(1)
    elif "limiter" in _saved:
        _saved.pop("limiter").restore_original_limits()
        if torch is not None and "torch" in _saved:
            torch.set_num_threads(_saved.pop("torch"))
