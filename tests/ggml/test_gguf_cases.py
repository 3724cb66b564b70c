"""`iq1m-harness case-from-gguf`: cases from real IQ1_M tensors (small GGUF files written here
with gguf's GGUFWriter), and a one-line error with exit 2 for every bad input."""
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

import reference
from harness.cases import load_case
from harness.gguf_cases import case_from_gguf, routing_from_counts

E, R, K = 3, 6, 512


def iq1m_bytes(rng, n_blocks):
    fields = reference.IQ1MFields(
        grid_index=rng.integers(0, 2048, (n_blocks, 32), dtype=np.uint16),
        delta_negative=rng.random((n_blocks, 32)) < 0.5,
        scale=rng.integers(0, 8, (n_blocks, 16), dtype=np.uint8),
        d_bits=np.float16(np.exp2(rng.uniform(-10, -4, n_blocks))).view(np.uint16))
    return reference.encode_fields(fields)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("gguf") / "tiny-iq1m.gguf"
    up = iq1m_bytes(rng, E * R * K // 256).reshape(E, R, -1)
    gate = iq1m_bytes(rng, E * R * K // 256).reshape(E, R, -1)
    dense = iq1m_bytes(rng, R * K // 256).reshape(R, -1)
    w = GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_up_exps.weight", up, raw_dtype=GGMLQuantizationType.IQ1_M)
    w.add_tensor("blk.0.ffn_gate_exps.weight", gate, raw_dtype=GGMLQuantizationType.IQ1_M)
    w.add_tensor("blk.0.attn_q.weight", dense, raw_dtype=GGMLQuantizationType.IQ1_M)
    w.add_tensor("token_embd.weight", rng.standard_normal((4, 8)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, up, gate, dense


def test_expert_tensor_gives_mul_mat_id(model):
    path, up, _, _ = model
    case = case_from_gguf(path, "blk.0.ffn_up_exps.weight", rows="1:5", tokens=7, seed=3)
    assert case.op == "mul_mat_id" and case.k == K and case.rows == 4 and case.n_tokens == 7
    assert np.array_equal(case.arrays["w"], up[:, 1:5])
    assert case.info["origin"]["tensor"] == "blk.0.ffn_up_exps.weight"
    again = case_from_gguf(path, "blk.0.ffn_up_exps.weight", rows="1:5", tokens=7, seed=3)
    assert again.digest() == case.digest()  # the seed decides everything


def test_one_expert_and_dense_give_mul_mat(model):
    path, up, _, dense = model
    case = case_from_gguf(path, "blk.0.ffn_up_exps.weight", expert=2, tokens=3)
    assert case.op == "mul_mat" and np.array_equal(case.arrays["w"], up[2])
    case = case_from_gguf(path, "blk.0.attn_q.weight", tokens=2)
    assert case.op == "mul_mat" and np.array_equal(case.arrays["w"], dense)


def test_routing_counts_and_fused_op(model):
    path, up, gate, _ = model
    case = case_from_gguf(path, "blk.0.ffn_up_exps.weight", routing="1,9,33", op="moe_up_gate", act="gelu")
    assert case.op == "moe_up_gate" and case.act == "gelu"
    assert case.expert_token_counts().tolist() == [1, 9, 33]
    assert np.array_equal(case.arrays["w_gate"], gate) and np.array_equal(case.arrays["w_up"], up)


def test_routing_never_repeats_an_expert_in_a_token():
    ids = routing_from_counts([5, 5, 2], 2, np.random.default_rng(0))
    for row in ids:
        used = row[row >= 0]
        assert len(set(used.tolist())) == len(used)
    assert np.bincount(ids[ids >= 0]).tolist() == [5, 5, 2]


def test_cli_case_replays_on_kernels(model, tmp_path):
    path = model[0]
    out = tmp_path / "c.npz"
    made = _cli("case-from-gguf", str(path), "--tensor", "blk.0.ffn_up_exps.weight", "--routing", "2,33,0",
                "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert load_case(out).expert_token_counts().tolist() == [2, 33, 0]
    replay = _cli("repro", str(out))
    assert replay.returncode == 0 and "PASS" in replay.stdout, replay.stdout + replay.stderr


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=600)


BAD = [
    (["/nonexistent/model.gguf", "--tensor", "x"], "no such file"),
    (["{readme}", "--tensor", "x"], "not a readable GGUF file"),
    (["{model}", "--tensor", "blk.0.ffn_up_exp.weight"], "close names: blk.0.ffn_up_exps.weight"),
    (["{model}", "--tensor", "token_embd.weight"], "is F32, not IQ1_M"),
    (["{model}", "--tensor", "blk.0.ffn_up_exps.weight", "--rows", "4:9"], "not a valid range"),
    (["{model}", "--tensor", "blk.0.ffn_up_exps.weight", "--rows", "a:b"], "expected R0:R1"),
    (["{model}", "--tensor", "blk.0.ffn_up_exps.weight", "--expert", "3"], "has 3 experts"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_exit_2(model, args, message):
    from harness.build import PROJECT_ROOT

    args = [a.format(model=model[0], readme=PROJECT_ROOT / "README.md") for a in args]
    proc = _cli("case-from-gguf", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
