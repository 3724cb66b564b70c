"""Run in a subprocess by test_path_selection.py: one op per case of the JSON list in argv[2]
(op, per-expert token counts, options, rows, k), then `iq1m_last_path_rows`; prints a JSON
list of [direct_rows, repacked_rows], or of the error, per case."""
import json
import sys

import numpy as np

from harness.targets.libiq1m import KernelOptions, Library, LibraryError
from harness.tools.bench.workloads import random_iq1m

lib = Library(sys.argv[1])
rng = np.random.default_rng(20261127)
results = []
for case in json.loads(open(sys.argv[2]).read()):
    counts, rows, k = case["counts"], case["rows"], case["k"]
    opt = KernelOptions(**case["options"])
    ids = np.repeat(np.arange(len(counts), dtype=np.int32), counts)[:, None]
    x = rng.standard_normal((len(ids), k)).astype(np.float32)
    if case.get("nan"):
        x[0, 0] = np.nan
    w = [random_iq1m(rng, (len(counts), rows), k) for _ in range(2)]
    try:
        if case["op"] == "mul_mat":
            lib.mul_mat(w[0][0], x, opt)
        elif case["op"] == "mul_mat_id":
            lib.mul_mat_id(w[0], x, ids, opt)
        else:
            lib.moe_up_gate(w[0], w[1], x, ids, "silu", opt)
        results.append(list(lib.last_path_rows()))
    except LibraryError as e:
        results.append({"error": e.code, "paths": list(lib.last_path_rows())})
print(json.dumps(results))
