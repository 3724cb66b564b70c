"""The Python side hand-copies constants of the C ABI (kernels/include/iq1m.h): ISA and
activation ids, REPACK_NEVER, block sizes, status codes, the layout of iq1m_options (in the
library's binding, harness/targets/libiq1m.py). This parses the header and checks every copy, so a change on one side cannot
drift silently."""
import ctypes
import importlib.util
import re
from pathlib import Path

import reference

from harness.targets import libggml as ggml_binding
from harness.targets import libiq1m as binding

ROOT = Path(__file__).resolve().parents[2]
HEADER = (ROOT / "kernels" / "include" / "iq1m.h").read_text()
C_MACROS = {"INT32_MAX": 2**31 - 1}


def _code() -> str:
    """The header without comments."""
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", HEADER, flags=re.S)


def _defines() -> dict[str, int]:
    out = {}
    for name, value in re.findall(r"^\s*#define\s+(IQ1M_\w+)\s+(\S+)\s*$", _code(), flags=re.M):
        out[name] = C_MACROS[value] if value in C_MACROS else int(value, 0)
    return out


def _enum(type_name: str) -> dict[str, int]:
    m = re.search(r"typedef\s+enum\s*\{([^}]*)\}\s*" + type_name + r"\s*;", _code())
    assert m, f"enum {type_name} not found in iq1m.h"
    values, nxt = {}, 0
    for item in (i.strip() for i in m.group(1).split(",")):
        if not item:
            continue
        name, _, value = (p.strip() for p in item.partition("="))
        nxt = int(value, 0) if value else nxt
        values[name] = nxt
        nxt += 1
    return values


def _struct_fields(type_name: str) -> list[tuple[str, str]]:
    m = re.search(r"typedef\s+struct\s*\{([^}]*)\}\s*" + type_name + r"\s*;", _code())
    assert m, f"struct {type_name} not found in iq1m.h"
    return [tuple(re.match(r"(.+?)\s*(\w+)(\[[^\]]*\])?$", f.strip()).group(1, 2))
            for f in m.group(1).split(";") if f.strip()]


def test_parser_sees_the_header():
    assert _defines()["IQ1M_QK_K"] == 256 and _enum("iq1m_isa")["IQ1M_ISA_AUTO"] == 0


def test_isa_ids():
    isa = _enum("iq1m_isa")
    assert binding.ISA_NAMES == {name: isa[f"IQ1M_ISA_{name.upper()}"] for name in binding.ISA_NAMES}
    assert len(binding.ISA_NAMES) == len(isa), "an ISA of the header is missing in the binding"
    assert binding.ISA_BY_VALUE == {v: k for k, v in binding.ISA_NAMES.items()}


def test_activation_ids():
    act = _enum("iq1m_act")
    assert binding.ACT_NAMES == {name: act[f"IQ1M_ACT_{name.upper()}"] for name in binding.ACT_NAMES}
    assert len(binding.ACT_NAMES) == len(act)


def test_sizes_and_special_values():
    d = _defines()
    assert binding.REPACK_NEVER == d["IQ1M_REPACK_NEVER"]
    assert binding.QK_K == reference.QK_K == d["IQ1M_QK_K"]
    assert binding.BLOCK_BYTES == reference.IQ1M_BLOCK_BYTES == d["IQ1M_BLOCK_BYTES"]
    assert binding.PREPACKED_BLOCK_BYTES == reference.PREPACKED_BLOCK_BYTES == d["IQ1M_PREPACKED_BLOCK_BYTES"]
    # the binding's quantize_q8k output and ggml's Q8_K bytes use the header's block size
    assert reference.Q8K_BLOCK_BYTES == ggml_binding.Q8K_BYTES == d["IQ1M_Q8K_BLOCK_BYTES"]
    assert f"(nb, {d['IQ1M_Q8K_BLOCK_BYTES']})" in Path(binding.__file__).read_text()


def test_q8k_struct_matches_its_size():
    fields = dict((name, ctype) for ctype, name in _struct_fields("iq1m_block_q8K"))
    assert fields == {"d": "float", "qs": "int8_t", "bsums": "int16_t"}
    qk = _defines()["IQ1M_QK_K"]
    assert 4 + qk + 2 * (qk // 16) == _defines()["IQ1M_Q8K_BLOCK_BYTES"]


def test_options_struct_field_order_and_types():
    c_fields = _struct_fields("iq1m_options")
    py_fields = binding.COptions._fields_
    assert [name for _, name in c_fields] == [name for name, _ in py_fields]
    ctypes_of = {"int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64}
    assert [ctypes_of[ctype] for ctype, _ in c_fields] == [t for _, t in py_fields]


def test_status_codes():
    status = _enum("iq1m_status")
    codes = getattr(binding, "STATUS_CODES", None)  # the binding's copy, where it has one
    if codes is not None:
        assert codes == {name.removeprefix("IQ1M_ERR_").lower(): v for name, v in status.items() if v}
    spec = importlib.util.spec_from_file_location("_library_errors", ROOT / "tests" / "kernels" / "test_library_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, value in status.items():
        short = name.removeprefix("IQ1M_ERR_").removeprefix("IQ1M_")
        assert getattr(module, short) == value, f"{name} is {value} in iq1m.h"
