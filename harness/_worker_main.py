"""The isolated worker: loads the library under test and runs cases sent by the parent.

Usage (by harness.worker only): `python -m harness._worker_main --fds IN,OUT --target JSON`.
The protocol (harness.protocol) runs over the two inherited pipe descriptors IN and OUT,
which are made non-inheritable at once, so a debugger or any other child the library forks
cannot hold or write to them; this process's fd 1 and 2 are the log.

Requests: {"case": PATH, "run": i} runs option set i of the case file (cached while the path
is the same) and answers {"ok": true, "defects": [...]} with the output array "out" (defects:
what the binding saw the call do besides its output, e.g. write past its work buffer), or
{"ok": false, "code",
"message"} for an error status; {"case": PATH, "extras": true} answers with the target's own
intermediate arrays (e.g. ggml's Q8_K bytes). A harness bug answers {"error": traceback}.
Anything the library does to this process (a signal, an exit, a hang) is the parent's to
observe.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback


def serve(fd_in: int, fd_out: int, spec: dict) -> int:
    from .cases import load_case
    from .protocol import Reader, write_message
    from .targets import open_binding

    binding, hello = open_binding(spec)
    write_message(fd_out, dict(hello, ready=True))
    reader = Reader(fd_in)
    cached_path, case = None, None
    while True:
        try:
            request, _ = reader.read()
        except EOFError:
            return 0
        try:
            if request["case"] != cached_path:
                case, cached_path = load_case(request["case"]), request["case"]
            if request.get("extras"):
                write_message(fd_out, {"ok": True}, binding.extras(case))
                continue
            options = case.runs[request["run"]]
            binding.begin_call()
            try:
                out = case.spec.call(binding, case.arrays, case.act, options)
            except binding.Error as exc:
                write_message(fd_out, {"ok": False, "code": exc.code, "message": exc.message})
                continue
            write_message(fd_out, {"ok": True, "defects": list(binding.defects)}, {"out": out})
        except Exception:  # a harness bug, not a kernel failure: report it, keep serving
            cached_path = None
            write_message(fd_out, {"error": traceback.format_exc()})


def die_with_parent() -> None:
    """SIGKILL this process when the one that started it dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG): a worker spinning in a hung kernel never outlives its parent. (A
    parent gone before this line closed the request pipe: the worker then exits on EOF.)"""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def main() -> int:
    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m harness._worker_main")
    p.add_argument("--fds", required=True, help="IN,OUT: the protocol's pipe descriptors")
    p.add_argument("--target", required=True, help="JSON spec of the target (harness.targets)")
    args = p.parse_args()
    fd_in, fd_out = (int(v) for v in args.fds.split(","))
    for fd in (fd_in, fd_out):
        os.set_inheritable(fd, False)
    sys.stdout = sys.stderr  # a stray print is log text, like the library's own output
    return serve(fd_in, fd_out, json.loads(args.target))


if __name__ == "__main__":
    sys.exit(main())
