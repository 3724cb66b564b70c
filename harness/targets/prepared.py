"""A prepared call: one operation on fixed arrays, with everything but the library's compute
done once (outputs allocated, options converted, tensors uploaded, graphs built), so that
calling it runs the compute only. Both bindings return one (`Library.prepared`,
`GgmlLibrary.prepared_graph`); `iq1m-harness bench` times the calls.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


class Prepared:
    """`p()` runs the op once (raising the binding's Error on a failure status); `p.fetch()`
    returns the output of the last run (a buffer the next run overwrites); `p.close()` frees
    what the library allocated for it (also on leaving a `with` block)."""

    def __init__(self, run: Callable[[], None], fetch: Callable[[], np.ndarray],
                 close: Callable[[], None] | None = None, keep: tuple = ()):
        self._run = run
        self._fetch = fetch
        self._close = close
        self._keep = keep  # the arrays and C objects the library reads through raw pointers

    def __call__(self) -> None:
        self._run()

    def fetch(self) -> np.ndarray:
        return self._fetch()

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __enter__(self) -> "Prepared":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
