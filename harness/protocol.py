"""The framing of the parent <-> worker channel: messages on a pair of private pipes.

A message is the 4-byte magic MAGIC, a 4-byte little-endian length, that many bytes of JSON
(the header), then the raw bytes of every array the header lists under "arrays" ({name,
dtype, shape}), in order. Anything else on the pipe (a library that went looking for open
descriptors and wrote to ours) is a ProtocolError, never a misread message.
The pipes are descriptors of their own, passed to the worker by number: the library under
test writes (and forks children that write) to fd 1 and 2, which go to the worker's log,
never into the protocol.

Arrays are written from their own memory and read straight into freshly allocated arrays
(no intermediate copies: a big case's weights cross the pipe once). A writer with a
deadline (the parent, whose reader may be a hung worker) uses a non-blocking descriptor.
"""
from __future__ import annotations

import errno
import json
import os
import select
import struct
import time

import numpy as np

MAGIC = b"IQ1M"
_LEN = struct.Struct("<4sI")
MAX_HEADER = 1 << 24


class ProtocolError(Exception):
    """The other side sent something that is not a message of this protocol."""


def _header(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    header = dict(header, arrays=[{"name": n, "dtype": a.dtype.str, "shape": list(a.shape)}
                                  for n, a in arrays.items()])
    head = json.dumps(header).encode()
    return _LEN.pack(MAGIC, len(head)) + head


def encode(header: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    arrays = {n: np.ascontiguousarray(a) for n, a in (arrays or {}).items()}
    return b"".join([_header(header, arrays)] + [a.tobytes() for a in arrays.values()])


def write_message(fd: int, header: dict, arrays: dict[str, np.ndarray] | None = None,
                  timeout: float | None = None) -> None:
    """Write one message. With `timeout`, `fd` must be non-blocking: TimeoutError when the
    reader has not taken it all in time."""
    arrays = {n: np.ascontiguousarray(a) for n, a in (arrays or {}).items()}
    parts = [memoryview(_header(header, arrays))]
    parts += [memoryview(a).cast("B") for a in arrays.values() if a.nbytes]
    deadline = None if timeout is None else time.monotonic() + timeout
    for data in parts:
        while data:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                remaining = deadline - time.monotonic() if deadline is not None else None
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the reader took no data in time") from None
                select.select([], [fd], [], remaining)
                continue
            except InterruptedError:
                continue
            data = data[n:]


class Reader:
    """Reads whole messages from a descriptor, with a deadline (the parent side must never
    block on a worker that hangs)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self._pending: tuple | None = None  # a header whose arrays are still arriving

    def _wait(self, deadline: float | None) -> bool:
        if deadline is None:
            return True
        remaining = deadline - time.monotonic()
        return remaining > 0 and bool(select.select([self.fd], [], [], remaining)[0])

    def _fill(self, need: int, deadline: float | None) -> bool:
        while len(self.buffer) < need:
            if not self._wait(deadline):
                return False
            chunk = os.read(self.fd, max(need - len(self.buffer), 1 << 16))
            if not chunk:
                raise EOFError
            self.buffer += chunk
        return True

    def read(self, timeout: float | None = None) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(header, arrays), or None when nothing complete arrived in time (a later call
        continues where this one stopped); EOFError when the other side closed its end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._pending is None:
            if not self._fill(_LEN.size, deadline):
                return None
            magic, n = _LEN.unpack_from(self.buffer)
            if magic != MAGIC or n > MAX_HEADER:
                raise ProtocolError(f"not a message: {bytes(self.buffer[:32])!r}")
            if not self._fill(_LEN.size + n, deadline):
                return None
            try:
                header = json.loads(bytes(self.buffer[_LEN.size:_LEN.size + n]))
                specs = header.pop("arrays", [])
                arrays = {s["name"]: np.empty(s["shape"], dtype=np.dtype(s["dtype"])) for s in specs}
            except (ValueError, TypeError, KeyError) as exc:
                raise ProtocolError(f"bad header: {exc}") from exc
            del self.buffer[:_LEN.size + n]
            self._pending = (header, arrays, [memoryview(a).cast("B") for a in arrays.values() if a.nbytes])
        header, arrays, views = self._pending
        while views:
            view = views[0]
            if self.buffer:  # bytes read past the header
                take = min(len(self.buffer), len(view))
                view[:take] = self.buffer[:take]
                del self.buffer[:take]
            else:
                if not self._wait(deadline):
                    return None
                try:
                    take = os.readv(self.fd, [view])
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise
                if not take:
                    raise EOFError
            views[0] = view[take:]
            if not len(views[0]):
                views.pop(0)
        self._pending = None
        return header, arrays
