"""`iq1m-harness bench`: the project's kernels and a ggml build side by side.

- `workloads`: the shapes timed and their data (weights, activations, routing), with the
  operation and byte counts a figure is derived from;
- `contenders`: the libraries, loaded from private copies, and their prepared calls (the
  bindings' public `Library.prepared` / `GgmlLibrary.prepared_graph`); a ggml shape is first
  run once in a child process (`probe`), so a build that aborts on it is reported, not fatal;
- `measure`: alternating timed repetitions and their statistics (medians, spreads, ratios
  from the same run);
- `roofline`: the int8 dot-product peak and the read bandwidth (libiq1m_peak.so);
- `report`: bench.md, bench.png, the console lines and the speed targets;
- `run`: the command (options, the loop over shapes, bench.json): `run.run_bench`.

Nothing is imported here: the probe's child process (`python -m
harness.tools.bench.probe`) needs none of the rest.
"""
