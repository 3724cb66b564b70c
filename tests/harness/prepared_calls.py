"""Run in a subprocess by test_bench.py: each op's prepared call against the binding's own
method on the same small arrays, called twice (the second run reuses everything the first
prepared). argv: `kernels LIBRARY` or `ggml LIB_DIR`. Prints one JSON object
{"op[/method]": {"equal": bool, "max_abs_diff": float}, ...}."""
import json
import sys

import numpy as np

from harness.options import KernelOptions
from harness.tools.bench.workloads import random_iq1m

kind, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
counts = [40, 32, 0, 33]  # no expert with 1..31 tokens: ik_llama.cpp's pre-fix fused op aborts there
ids = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int32), counts))[:, None]
moe = {"w_up": random_iq1m(rng, (len(counts), 16), 512), "w_gate": random_iq1m(rng, (len(counts), 16), 512),
       "x": rng.standard_normal((len(ids), 512), dtype=np.float32), "ids": ids}
cases = {"mul_mat": {"w": moe["w_up"][0], "x": moe["x"]},
         "mul_mat_id": {"w": moe["w_up"], "x": moe["x"], "ids": moe["ids"]},
         "moe_up_gate": moe}
if kind == "kernels":
    from harness.targets.libiq1m import Library

    lib = Library(path)
    variants = {"": lib.default_options(n_threads=2), "/prepacked": lib.default_options(prepacked=True)}
    prepare = {name: (lambda op, a, opt=opt: lib.prepared(op, a, opt)) for name, opt in variants.items()}
    opts = {name: opt for name, opt in variants.items()}
else:
    from harness.targets.libggml import GgmlLibrary

    lib = GgmlLibrary(path)
    opt = KernelOptions(n_threads=2)
    prepare = {f"/{m}": (lambda op, a, m=m: lib.prepared_graph(op, a, opt, work=m))
               for m in lib.WORK_METHODS if m != "reset" or lib.work_method == "reset"}
    opts = {name: opt for name in prepare}
found = {}
for op, a in cases.items():
    for name, make in prepare.items():
        want = getattr(lib, op)(*a.values(), *(["silu"] if op == "moe_up_gate" else []), opts[name])
        with make(op, a) as run:
            run()
            run()
            got = run.fetch()
        found[op + name] = {"equal": bool(np.array_equal(got, want)),
                            "max_abs_diff": float(np.max(np.abs(got - want))) if got.shape == want.shape else None}
print(json.dumps(found))
