"""The isolated worker: loads the library under test and runs cases sent by the parent.

Usage (by harness.worker only): `python -m harness._worker_main --fds IN,OUT --target JSON`.
The protocol (harness.protocol) runs over the two inherited pipe descriptors IN and OUT,
which are made non-inheritable at once, so a debugger or any other child the library forks
cannot hold or write to them; this process's fd 1 and 2 are the log.

Requests (one per case): {"op", "act", "options": [KernelOptions dicts], "canary": [ints],
"case": PATH (for messages), "extras": bool} with the case's arrays attached. The worker
answers, in order: when "extras", {"ok": true, "extras": true} with the target's own
intermediate arrays (e.g. ggml's Q8_K bytes); then one message per option set i:
{"ok": true, "index": i, "seconds": s, "cpu": s, "scratch": [...]} with the output array "out"
(written into an array filled with canary[i] first: harness.canary) and "defects": what the
binding saw the call do besides its output (e.g. ggml writing past its work buffer), or
{"ok": false,
"index": i, "code", "message"} for an error status. "scratch" lists bytes the library left
unwritten in buffers it fills for the harness (the prepacked weights). With "sub_token": t,
then one more message for option set 0 on the case reduced to token t ("index": "sub"):
the batch-composition check. A harness bug answers
{"error": traceback} and the parent stops reading that request. Anything the library does
to this process (a signal, an exit, a hang) is the parent's to observe: the replies it
already got say which run was in progress.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback


def serve(fd_in: int, fd_out: int, spec: dict) -> int:
    from .cases import Case
    from .options import KernelOptions
    from .protocol import Reader, write_message
    from .targets import open_binding

    binding, hello = open_binding(spec)
    write_message(fd_out, dict(hello, ready=True))
    reader = Reader(fd_in)
    while True:
        try:
            request, arrays = reader.read()
        except EOFError:
            return 0
        try:
            runs = [KernelOptions.from_dict(r) for r in request["options"]]
            case = Case(request["op"], arrays, runs, act=request.get("act", "silu"))
            spec_op, cache = case.spec, {}
            if request.get("extras"):
                write_message(fd_out, {"ok": True, "extras": True}, binding.extras(case))
            for i, options in enumerate(runs):
                mark = request["canary"][i]
                out = spec_op.new_output(case.arrays, mark) if mark >= 0 else None
                binding.begin_call()
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    out = spec_op.call(binding, case.arrays, case.act, options, out=out, cache=cache)
                except binding.Error as exc:
                    write_message(fd_out, {"ok": False, "index": i, "code": exc.code, "message": exc.message})
                    continue
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                scratch = spec_op.scratch_unwritten(cache) if options.prepacked and cache else []
                write_message(fd_out, {"ok": True, "index": i, "seconds": seconds, "cpu": cpu, "scratch": scratch,
                                       "defects": list(binding.defects)}, {"out": out})
            if request.get("sub_token") is not None:  # the batch check: run 0 on one token alone
                sub = spec_op.one_token(case.arrays, request["sub_token"])
                mark = request["sub_canary"]
                binding.begin_call()
                try:
                    out = spec_op.call(binding, sub, case.act, runs[0], out=spec_op.new_output(sub, mark), cache={})
                except binding.Error as exc:
                    write_message(fd_out, {"ok": False, "index": "sub", "code": exc.code, "message": exc.message})
                    continue
                write_message(fd_out, {"ok": True, "index": "sub", "defects": list(binding.defects)}, {"out": out})
        except Exception:  # a harness bug, not a kernel failure: report it, keep serving
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
