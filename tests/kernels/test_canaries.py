"""Output canaries: an element the library never writes is an UnwrittenOutput failure with
its indices, whatever value the reference expects there (+0.0 included), and so is a byte
iq1m_prepack leaves unwritten in the weights the harness has it prepack. A shim library
forwards every entry point to the real one and, in the mode named by SHIM_MODE, leaves part
of one output untouched (computing into a buffer of its own first)."""
import shutil
import subprocess

import numpy as np
import pytest

from harness import canary
from harness import strategies as hs
from harness.cases import Case
from harness.errors import UnwrittenOutput
from harness.options import KernelOptions
from harness.runner import Runner

SHIM = r"""
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *real(const char *name) {
    static void *lib;
    if (!lib) lib = dlopen(getenv("IQ1M_REAL_LIB"), RTLD_NOW | RTLD_LOCAL);
    return dlsym(lib, name);
}
static int mode(const char *m) { const char *s = getenv("SHIM_MODE"); return s && !strcmp(s, m); }

#define FWD(ret, name, params, args) \
    ret name params { return ((ret(*) params)real(#name)) args; }
FWD(const char *, iq1m_version, (void), ())
FWD(const char *, iq1m_build_info, (void), ())
FWD(const char *, iq1m_last_error, (void), ())
FWD(uint32_t, iq1m_available_isas, (void), ())
FWD(int32_t, iq1m_best_isa, (void), ())
FWD(const char *, iq1m_isa_name, (int32_t i), (i))
FWD(int, iq1m_dequantize_iq1_m, (const void *b, float *y, int64_t k), (b, y, k))
FWD(int, iq1m_activation, (int32_t a, const float *x, float *y, int64_t n), (a, x, y, n))
FWD(int, iq1m_mul_mat, (const void *w, int64_t r, int64_t k, const float *x, int64_t n, float *o, const void *p),
    (w, r, k, x, n, o, p))
FWD(int, iq1m_moe_up_gate, (const void *u, const void *g, int64_t e, int64_t r, int64_t k, const float *x,
    int64_t n, const int32_t *ids, int64_t t, int32_t a, float *o, const void *p), (u, g, e, r, k, x, n, ids, t, a, o, p))
void iq1m_last_path_rows(int64_t *d, int64_t *r) { ((void (*)(int64_t *, int64_t *))real("iq1m_last_path_rows"))(d, r); }

int iq1m_mul_mat_id(const void *w, int64_t e, int64_t rows, int64_t k, const float *x, int64_t n,
                    const int32_t *ids, int64_t top_k, float *out, const void *p) {
    int (*f)(const void *, int64_t, int64_t, int64_t, const float *, int64_t, const int32_t *, int64_t, float *,
             const void *) = real("iq1m_mul_mat_id");
    if (!mode("mul_mat_id") || n * top_k * rows == 0) return f(w, e, rows, k, x, n, ids, top_k, out, p);
    size_t len = (size_t)(n * top_k * rows);
    float *tmp = malloc(len * sizeof(float));
    int rc = f(w, e, rows, k, x, n, ids, top_k, tmp, p);
    memcpy(out, tmp, (len - 1) * sizeof(float));  /* the last element (of an unused slot too) forgotten */
    free(tmp);
    return rc;
}

int iq1m_quantize_q8_K(const float *x, void *y, int64_t k) {
    int (*f)(const float *, void *, int64_t) = real("iq1m_quantize_q8_K");
    if (!mode("quantize") || k == 0) return f(x, y, k);
    uint8_t *tmp = malloc((size_t)(k / 256) * 292);
    int rc = f(x, tmp, k);
    memcpy(y, tmp, (size_t)(k / 256) * 292 - 32);  /* the last block's bsums forgotten */
    free(tmp);
    return rc;
}

int iq1m_prepack(const void *w, int64_t n, int64_t k, void *out) {
    int (*f)(const void *, int64_t, int64_t, void *) = real("iq1m_prepack");
    if (!mode("prepack") || n == 0) return f(w, n, k, out);
    size_t len = (size_t)(n * (k / 256)) * 80;
    uint8_t *tmp = malloc(len);
    int rc = f(w, n, k, tmp);
    memcpy(out, tmp, len - 4);  /* the last block's zero padding forgotten */
    free(tmp);
    return rc;
}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(folder / "libshim.so"), str(folder / "shim.c"),
                    "-ldl"], check=True)
    return folder / "libshim.so"


@pytest.fixture
def shim_runner(shim, iq1m_runner, tmp_path, monkeypatch):
    if iq1m_runner.variant.sanitizer or iq1m_runner.target.name != "kernels":
        pytest.skip("the shim wraps a plain kernels build")

    def make(mode):
        monkeypatch.setenv("IQ1M_REAL_LIB", str(iq1m_runner.library))
        monkeypatch.setenv("SHIM_MODE", mode)
        return Runner(f"prebuilt:{shim}", tmp_path / mode)
    return make


def test_the_shim_itself_passes(shim_runner):
    runner = shim_runner("none")
    try:
        runner.check(hs.pinned_moe_case("mul_mat_id", [2, 0, 3], runner.isas))
    finally:
        runner.close()


def test_an_unwritten_unused_slot_is_caught(shim_runner):
    """The last element belongs to an unused slot: its expected value is +0.0, which is what
    an output allocated with zeros would have held."""
    runner = shim_runner("mul_mat_id")
    try:
        case = hs.pinned_moe_case("mul_mat_id", [2, 3], runner.isas, top_k=2)
        ids = case.arrays["ids"].copy()
        ids[-1, -1] = -1
        case = case.with_arrays({**case.arrays, "ids": ids})
        with pytest.raises(UnwrittenOutput) as info:
            runner.check(case)
        t, s = ids.shape[0] - 1, ids.shape[1] - 1
        assert f"(token, slot, row)=({t}, {s}, {case.rows - 1})" in str(info.value)
    finally:
        runner.close()


def test_unwritten_q8k_bsums_are_caught(shim_runner):
    runner = shim_runner("quantize")
    try:
        x = hs.activation_values("normal", np.random.default_rng(1), 2, 512)
        with pytest.raises(UnwrittenOutput) as info:
            runner.check(Case("quantize_q8k", {"x": x}, [KernelOptions(isa=i) for i in runner.isas]))
        assert "(token, block)=(1, 1) bsums" in str(info.value)
    finally:
        runner.close()


def test_unwritten_prepacked_weights_are_caught(shim_runner):
    """Both through the prepack op and through the weights a prepacked GEMM run uses."""
    runner = shim_runner("prepack")
    try:
        w = hs.random_weights(np.random.default_rng(2), (5,), 512)
        with pytest.raises(UnwrittenOutput) as info:
            runner.check(Case("prepack", {"w": w}, [KernelOptions(isa=runner.isas[-1])]))
        assert "(row, block)=(4, 1) zero bytes" in str(info.value)
        case = hs.pinned_moe_case("mul_mat_id", [3], runner.isas)
        with pytest.raises(UnwrittenOutput) as info:
            runner.check(case)
        assert "iq1m_prepack output" in str(info.value) and "prepacked" in str(info.value)
    finally:
        runner.close()


def test_canaries_are_not_values_the_library_makes():
    for run in range(200):
        bits = canary.float_bits(run)
        assert canary.is_canary_float(bits)
        f = np.array([bits], np.uint32).view(np.float32)
        assert np.isnan(f[0]) and not bits & (1 << 22)  # a signalling NaN
        assert bits & 0x1FFF  # low payload bits: no fp16 NaN widens to it
        with np.errstate(invalid="ignore"):
            quiet = (f * np.float32(1)).view(np.uint32)[0]  # any arithmetic quiets it
        assert quiet != bits
    assert len({canary.float_bits(r) for r in range(200)}) == 200
