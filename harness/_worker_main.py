"""The isolated worker: loads the library under test and runs cases sent by the parent.

Usage (by harness.worker only): `python -m harness._worker_main --fds IN,OUT --target JSON`,
or `--fork-server SOCKET --target JSON` for the server workers are forked from (fork_server).
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


def serve(fd_in: int, fd_out: int, spec: dict, opened=None) -> int:
    """`opened`: (binding, hello) already loaded by the fork server this worker was forked
    from; else the library is loaded here."""
    from .cases import Case
    from .options import KernelOptions
    from .protocol import Reader, write_message
    from .targets import open_binding

    binding, hello = opened or open_binding(spec)
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


def fork_server(sock_fd: int, spec: dict) -> int:
    """Load the library once, then fork a worker per request on the socket (harness.worker:
    ForkServer): a worker that a crash killed is replaced in milliseconds instead of an
    interpreter start, numpy's import and the library's load and probes (about 0.35 s, most
    of a campaign's time on a target that crashes often). Each worker's exit status goes
    back on the socket, since only this process can wait for it. Returns in the parent when
    the socket closes; in a forked worker, with the worker's own exit status."""
    import select
    import signal
    import socket

    from .targets import open_binding

    sock = socket.socket(fileno=sock_fd)
    opened = open_binding(spec)  # a library that does not load: the parent starts workers the plain way
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        readable = select.select([sock, wake_r], [], [])[0]
        if wake_r in readable:
            while True:
                try:
                    if not os.read(wake_r, 256):
                        break
                except BlockingIOError:
                    break
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
        if sock not in readable:
            continue
        if not sock.recv(64):
            return 0  # the parent is gone; its workers see EOF on their request pipes
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        for fd in (req_w, rep_w):
            set_pipe_size(fd)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the library may fork and wait (ggml's gdb)
            for fd in (wake_r, wake_w, req_w, rep_r):
                os.close(fd)
            sock.close()
            os.setsid()  # its own process group: a hung worker is killed with all it forked
            die_with_parent()
            if os.getppid() != server:
                return 1  # the server died before this line: nobody would wait for this worker
            return serve(req_r, rep_w, spec, opened)
        socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [req_w, rep_r])
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)


def launch(mode: list[str], spec: dict, env: dict[str, str], log_path, pass_fds: tuple[int, ...]):
    """Start this module in a new interpreter (a worker, or a fork server: `mode`), in its own
    session, with the log as stdout and stderr: the subprocess.Popen."""
    import subprocess

    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-P", "-m", "harness._worker_main", *mode,
                                 "--target", json.dumps(spec)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, pass_fds=pass_fds,
                                start_new_session=True)


def set_pipe_size(fd: int) -> None:
    """A big case's arrays move in fewer, larger writes."""
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (AttributeError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default works too


PIPE_SIZE = 1 << 20  # bytes buffered per protocol pipe (Linux default 64 KiB; unprivileged maximum 1 MiB)


def main() -> int:
    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m harness._worker_main")
    p.add_argument("--fds", help="IN,OUT: the protocol's pipe descriptors")
    p.add_argument("--fork-server", type=int, metavar="SOCKET",
                   help="serve as the fork server of harness.worker on this socket descriptor")
    p.add_argument("--target", required=True, help="JSON spec of the target (harness.targets)")
    args = p.parse_args()
    sys.stdout = sys.stderr  # a stray print is log text, like the library's own output
    if args.fork_server is not None:
        os.set_inheritable(args.fork_server, False)
        return fork_server(args.fork_server, json.loads(args.target))
    fd_in, fd_out = (int(v) for v in args.fds.split(","))
    for fd in (fd_in, fd_out):
        os.set_inheritable(fd, False)
    return serve(fd_in, fd_out, json.loads(args.target))


if __name__ == "__main__":
    sys.exit(main())
