"""The isolated worker: loads the kernel library and runs cases sent by the parent.

Usage: `python -m harness._worker_main LIB` (the project's kernels) or
`python -m harness._worker_main --ggml LIB_DIR` (a ggml build, harness.ggml_binding).

Protocol (one JSON object per line): the worker announces itself with
{"ready": true, ...}; each request {"case": PATH, "result": PATH} is answered, after the
result file has been written atomically, with {"done": true}. Anything the library does
to this process (a signal, an exit, a hang) is the parent's to observe.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np

from .binding import Library, LibraryError
from .cases import load_case, save_arrays


def run_case(lib: Library, case_path: str, result_path: str) -> None:
    case = load_case(case_path)
    a = case.arrays
    outputs, statuses = {}, []
    if getattr(lib, "is_ggml", False):
        # the target's own quantized activations, for the parent's bound check
        outputs["q8k"] = lib.quantize_q8k(a["x"])
    for i, opt in enumerate(case.runs):
        try:
            if case.op == "mul_mat":
                out = lib.mul_mat(a["w"], a["x"], opt)
            elif case.op == "mul_mat_id":
                out = lib.mul_mat_id(a["w"], a["x"], a["ids"], opt)
            else:
                out = lib.moe_up_gate(a["w_up"], a["w_gate"], a["x"], a["ids"], case.act, opt)
            outputs[f"out{i}"] = out
            statuses.append({"ok": True})
        except LibraryError as exc:
            statuses.append({"ok": False, "code": exc.code, "message": exc.message})
    save_arrays(result_path, outputs, {"statuses": statuses})


def main() -> int:
    # The protocol owns the real stdout; anything else printed goes to stderr.
    proto = sys.stdout
    sys.stdout = sys.stderr
    if sys.argv[1] == "--ggml":
        from .ggml_binding import GgmlLibrary

        lib = GgmlLibrary(sys.argv[2])
        lib.is_ggml = True
        info = lib.describe()
        hello = {"ready": True, "target": "ggml", "version": info["version"],
                 "build_info": f"{info['api']} API, {', '.join(info['libraries'])}; Q8_K by {info['quantizer']}; "
                               f"fused moe_up_gate: {'yes' if info['fused_moe_up_gate'] else 'no'}",
                 "ggml": info, "isas": ["auto"], "best_isa": "auto", "numpy": np.__version__}
    else:
        lib = Library(sys.argv[1])
        hello = {"ready": True, "target": "kernels", "version": lib.version(), "build_info": lib.build_info(),
                 "isas": lib.available_isas(), "best_isa": lib.best_isa(), "numpy": np.__version__}
    proto.write(json.dumps(hello) + "\n")
    proto.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            run_case(lib, request["case"], request["result"])
            reply = {"done": True}
        except Exception:  # a harness bug, not a kernel failure: report it, keep serving
            reply = {"done": False, "error": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
