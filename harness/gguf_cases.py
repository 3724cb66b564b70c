"""Case files from real IQ1_M tensors of a GGUF model (`iq1m-harness case-from-gguf`).

The tensor is read with the `gguf` package's GGUFReader (memory-mapped: only the selected
rows are copied). Its data bytes are the IQ1_M blocks, row-major: a 2-D tensor is
[rows, K/256*56] (ggml shape [K, rows]) and an expert tensor (`*_exps`) is
[n_expert, rows, K/256*56] (ggml shape [K, rows, n_expert]). Activations are random
(normal, from --seed) and so is the routing table unless --routing gives the per-expert
token counts. The case runs the usual star of option sets and is ready for `repro` (on
either target) and `promote`.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from .cases import Case
from .errors import UsageError
from .ops import BLOCK_BYTES, OPS, QK_K
from .options import run_star
from .strategies import activation_values


def parse_range(text: str | None, n: int, what: str) -> tuple[int, int]:
    """'R0:R1' (either side may be empty) -> (r0, r1) with 0 <= r0 < r1 <= n."""
    if text is None:
        return 0, n
    lo, sep, hi = text.partition(":")
    try:
        r0 = int(lo) if lo.strip() else 0
        r1 = int(hi) if sep and hi.strip() else (n if sep else r0 + 1)
    except ValueError:
        raise UsageError(f"--{what} {text!r}: expected R0:R1 (integers)")
    if not 0 <= r0 < r1 <= n:
        raise UsageError(f"--{what} {text}: not a valid range for a tensor with {n} {what} "
                         f"(need 0 <= R0 < R1 <= {n})")
    return r0, r1


def open_gguf(path: Path):
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path), "r")
    except Exception as exc:  # the reader raises ValueError for a bad magic, others for truncation
        raise UsageError(f"{path}: not a readable GGUF file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


def find_tensor(reader, name: str, path: Path):
    names = [t.name for t in reader.tensors]
    for t in reader.tensors:
        if t.name == name:
            return t
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else f"; it has {len(names)} tensors"
    raise UsageError(f"{path}: no tensor named {name!r}{hint}")


def iq1m_tensor_bytes(tensor, path: Path) -> np.ndarray:
    """The tensor's IQ1_M blocks as uint8 [..., rows, K/256*56] (memory-mapped)."""
    from gguf import GGMLQuantizationType

    ttype = GGMLQuantizationType(int(tensor.tensor_type))
    if ttype != GGMLQuantizationType.IQ1_M:
        raise UsageError(f"{path}: tensor {tensor.name!r} is {ttype.name}, not IQ1_M")
    ne = [int(v) for v in tensor.shape]  # ggml order: K first
    k = ne[0]
    if k % QK_K:
        raise UsageError(f"{path}: tensor {tensor.name!r} has K={k}, not a multiple of {QK_K}")
    data = np.asarray(tensor.data).view(np.uint8)
    shape = tuple(reversed(ne[1:])) + (k // QK_K * BLOCK_BYTES,)
    if data.size != int(np.prod(shape)):
        raise UsageError(f"{path}: tensor {tensor.name!r} holds {data.size} bytes, expected {int(np.prod(shape))}")
    return data.reshape(shape)


def routing_from_counts(counts: list[int], top_k: int, rng: np.random.Generator) -> np.ndarray:
    """ids [n_tokens, top_k] realising per-expert token counts (slots shuffled, padded -1;
    an expert is never placed twice in one token when it can be avoided)."""
    slots = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int32), counts))
    n_tokens = max(-(-len(slots) // top_k), max(counts, default=0))
    table = np.full((n_tokens, top_k), -1, dtype=np.int32)
    fill = np.zeros(n_tokens, dtype=np.int64)
    order = np.argsort(-np.asarray(counts), kind="stable")  # big experts first: one slot per token
    t = 0
    for e in order:
        for _ in range(counts[e]):
            for _try in range(n_tokens):
                if fill[t] < top_k and e not in table[t, :fill[t]]:
                    break
                t = (t + 1) % n_tokens
            table[t, fill[t]] = e
            fill[t] += 1
            t = (t + 1) % n_tokens
    rng.shuffle(table)
    return table


def random_routing(n_tokens: int, n_experts: int, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """Each token picks top_k distinct experts uniformly (top_k capped at n_experts)."""
    top_k = min(top_k, n_experts)
    return np.stack([rng.choice(n_experts, top_k, replace=False) for _ in range(n_tokens)]).astype(np.int32) \
        if n_tokens else np.zeros((0, top_k), np.int32)


def check_options(*, threads: list[int] | None, seed: int, tokens: int | None, routing: str | None) -> None:
    """What can be checked before the model is read: a one-line UsageError each."""
    from .targets import TARGETS

    limit = min(t.max_threads for t in TARGETS.values())  # the case replays on any target
    if threads is not None and (not threads or any(not 1 <= t <= limit for t in threads)):
        raise UsageError(f"--threads {','.join(map(str, threads)) or '(empty)'}: thread counts must be 1..{limit}")
    if seed < 0:
        raise UsageError(f"--seed {seed}: must be >= 0")
    if tokens is not None and tokens < 0:
        raise UsageError("--tokens must be >= 0")
    if tokens is not None and routing is not None:
        raise UsageError("--tokens and --routing: give one (--routing sets the tokens per expert)")


def case_from_gguf(path: Path, tensor: str, *, expert: int | None = None, experts: str | None = None,
                   rows: str | None = None, tokens: int | None = None, routing: str | None = None,
                   top_k: int | None = None, op: str | None = None, gate_tensor: str | None = None,
                   act: str | None = None, seed: int = 0, threads: list[int] | None = None) -> Case:
    """`tokens` (default 8), `top_k` (default 2, at most the experts taken) and `act`
    (default silu) given where they do not apply are UsageErrors, not ignored."""
    check_options(threads=threads, seed=seed, tokens=tokens, routing=routing)
    path = Path(path)
    reader = open_gguf(path)
    t = find_tensor(reader, tensor, path)
    data = iq1m_tensor_bytes(t, path)
    is_moe_tensor = data.ndim == 3
    if op is None:  # the plain product of this tensor: routed over experts, or dense
        routed = is_moe_tensor and expert is None
        op = next(o.name for o in OPS.values() if o.routed == routed and len(o.weights) == 1)
    if op not in OPS:
        raise UsageError(f"--op {op!r}: choose from {', '.join(OPS)}")
    spec = OPS[op]
    if act is not None and not spec.has_activation:
        raise UsageError(f"--act: {op} has no activation")
    if top_k is not None and not spec.routed:
        raise UsageError(f"--top-k: {op} routes no tokens to experts")
    tokens = 8 if tokens is None else tokens
    act = act or "silu"
    n_rows = data.shape[-2]
    r0, r1 = parse_range(rows, n_rows, "rows")
    rng = np.random.default_rng(seed)
    origin = {"gguf": str(path), "tensor": tensor, "rows": [r0, r1], "seed": seed,
              "tensor_shape_ggml": [int(v) for v in t.shape]}

    if is_moe_tensor:
        n_exp = data.shape[0]
        if expert is not None:
            if not 0 <= expert < n_exp:
                raise UsageError(f"--expert {expert}: tensor {tensor!r} has {n_exp} experts (0..{n_exp - 1})")
            e0, e1 = expert, expert + 1
        else:
            e0, e1 = parse_range(experts, n_exp, "experts")
        origin["experts"] = [e0, e1]
    elif expert is not None or experts is not None:
        raise UsageError(f"--expert/--experts: tensor {tensor!r} is 2-D (no experts)")

    def select(d: np.ndarray) -> np.ndarray:
        if d.ndim == 3:
            return np.ascontiguousarray(d[e0:e1, r0:r1])
        return np.ascontiguousarray(d[None, r0:r1])

    w = select(data)                                         # [experts, rows, bytes]
    k = w.shape[-1] // BLOCK_BYTES * QK_K
    runs = run_star(["auto"], threads or [1, 2, 4], unfused=OPS[op].unfused_variant)

    if not spec.routed:
        if w.shape[0] != 1:
            raise UsageError(f"--op {op} on an expert tensor needs --expert E (it has {w.shape[0]} experts)")
        x = activation_values("normal", rng, tokens, k)
        return Case(op, {spec.weights[0]: w[0], "x": x}, runs, info={"origin": origin})

    n_experts = w.shape[0]
    if top_k is None:
        top_k = min(2, n_experts)
    elif not 1 <= top_k <= n_experts:
        raise UsageError(f"--top-k {top_k}: must be 1..{n_experts} (the experts taken from {tensor!r})")
    if routing is not None:
        try:
            counts = [int(c) for c in routing.split(",") if c.strip()]
        except ValueError:
            raise UsageError(f"--routing {routing!r}: expected comma-separated token counts per expert")
        if len(counts) != n_experts or min(counts, default=0) < 0:
            raise UsageError(f"--routing {routing!r}: need {n_experts} non-negative counts (one per selected expert)")
        ids = routing_from_counts(counts, top_k, rng)
    else:
        ids = random_routing(tokens, n_experts, top_k, rng)
    x = activation_values("normal", rng, ids.shape[0], k)
    arrays = {spec.weights[0]: w, "x": x, "ids": ids}
    for companion in spec.weights[1:]:  # the gate of an up+gate op
        gate_name = gate_tensor or (tensor.replace("ffn_up", "ffn_gate") if "ffn_up" in tensor else None)
        if gate_name is None or gate_name == tensor:
            raise UsageError(f"--op {op} needs --gate-tensor NAME (or an ffn_up tensor whose ffn_gate twin exists)")
        g = find_tensor(reader, gate_name, path)
        gdata = iq1m_tensor_bytes(g, path)
        if gdata.shape != data.shape:
            raise UsageError(f"{path}: gate tensor {gate_name!r} has shape {list(g.shape)}, up has {list(t.shape)}")
        origin["gate_tensor"] = gate_name
        arrays[companion] = select(gdata)
    return Case(op, arrays, runs, act=act, info={"origin": origin})
