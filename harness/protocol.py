"""The framing of the parent <-> worker channel: messages on a pair of private pipes.

A message is the 4-byte magic MAGIC, a 4-byte little-endian length, that many bytes of JSON
(the header), then the raw bytes of every array the header lists under "arrays" ({name,
dtype, shape}), in order. Anything else on the pipe (a library that went looking for open
descriptors and wrote to ours) is a ProtocolError, never a misread message.
The pipes are descriptors of their own, passed to the worker by number: the library under
test writes (and forks children that write) to fd 1 and 2, which go to the worker's log,
never into the protocol.
"""
from __future__ import annotations

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


def encode(header: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    arrays = {n: np.ascontiguousarray(a) for n, a in (arrays or {}).items()}
    header = dict(header, arrays=[{"name": n, "dtype": a.dtype.str, "shape": list(a.shape)}
                                  for n, a in arrays.items()])
    head = json.dumps(header).encode()
    return b"".join([_LEN.pack(MAGIC, len(head)), head] + [a.tobytes() for a in arrays.values()])


def write_message(fd: int, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    data = memoryview(encode(header, arrays))
    while data:
        n = os.write(fd, data)
        data = data[n:]


class Reader:
    """Reads whole messages from a descriptor, with a deadline (the parent side must never
    block on a worker that hangs)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self, need: int, deadline: float | None) -> bool:
        while len(self.buffer) < need:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                    return False
            chunk = os.read(self.fd, max(need - len(self.buffer), 1 << 16))
            if not chunk:
                raise EOFError
            self.buffer += chunk
        return True

    def read(self, timeout: float | None = None) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(header, arrays), or None when nothing complete arrived in time; EOFError when the
        other side closed its end."""
        deadline = None if timeout is None else time.monotonic() + timeout
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
            sizes = [int(np.prod(s["shape"], dtype=np.int64)) * np.dtype(s["dtype"]).itemsize for s in specs]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"bad header: {exc}") from exc
        end = _LEN.size + n + sum(sizes)
        if not self._fill(end, deadline):
            return None
        arrays, pos = {}, _LEN.size + n
        for spec, size in zip(specs, sizes):
            arrays[spec["name"]] = np.frombuffer(bytes(self.buffer[pos:pos + size]),
                                                 dtype=spec["dtype"]).reshape(spec["shape"])
            pos += size
        del self.buffer[:end]
        return header, arrays
