"""What a Target is: one kind of library under test, with everything that differs between
kinds (how it is built or found, how the worker loads it, which runs of a case apply, how
its outcomes are judged, what it reports besides failures).

The parent (Runner) only talks to this interface; the worker process only calls
`open_binding` of the target named in the spec the parent prepared. One implementation
per kind: `KernelsTarget` (the project's kernels, bit-exact), `GgmlTarget` (a ggml build,
mainline or an older-API fork such as ik_llama.cpp, judged against the float64 bound).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..build import Variant, parse_variant


@dataclass
class Finding:
    """Something a check observed that is not (on this target, by default) a failure."""
    kind: str
    detail: str
    options: object = None      # the run it concerns, when there is one
    ratio: float | None = None  # error / bound, for bound findings


class Target:
    name: ClassVar[str]
    bit_exact: ClassVar[bool]
    # routing tables the target's strategies draw (harness.strategies.routing_tables styles)
    routing: ClassVar[str] = "any"
    # the most threads one run may ask for (ggml mainline's GGML_MAX_N_THREADS)
    max_threads: ClassVar[int] = 512
    # SIMD levels a run can select (empty: the build fixes it)
    isa_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, strict: bool = False):
        self.strict = strict
        self.stats: dict = {}

    # -- identity --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """What a case file records about the target it was run on."""
        return {"name": self.name}

    def label(self) -> str:
        return self.name

    RUN_KNOBS: ClassVar[tuple[str, ...] | None] = None  # the KernelOptions fields this target varies
    load_hint: ClassVar[str] = "check the library"    # what to do when the worker cannot load it

    def run_label(self, options) -> str:
        return options.label(self.RUN_KNOBS)

    def varies(self, knob: str) -> bool:
        """Whether this target's runs vary that KernelOptions field (ggml: threads, fusion)."""
        return self.RUN_KNOBS is None or knob in self.RUN_KNOBS

    @property
    def slug(self) -> str:
        """A short name for file and folder names."""
        return self.name

    @property
    def variant(self) -> Variant:
        """The kernel build variant whose sanitizer runtime the worker preloads."""
        return parse_variant("release")

    # the operations (harness.ops) this kind of library runs; None: every one of the registry
    ops: ClassVar[tuple[str, ...] | None] = ("mul_mat", "mul_mat_id", "moe_up_gate")

    def supports(self, op) -> bool:
        """Whether this target runs operation `op` (an Op or its name). Strategies, the
        pytest suite and campaigns skip the others."""
        name = op if isinstance(op, str) else op.name
        return self.ops is None or name in self.ops

    @property
    def invariance_fails(self) -> bool:
        """Whether a thread-count or batch-composition divergence is a failure."""
        return self.bit_exact or self.strict

    # -- parent side -----------------------------------------------------------------------
    def prepare(self) -> dict:
        """Build or locate the library (a one-line UsageError when impossible) and return the
        JSON spec the worker opens it from."""
        raise NotImplementedError

    @property
    def library(self):
        """The built library (kernels) or library directory (ggml), once prepared."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {}

    def adapt(self, case, hello: dict):
        """The case as this target runs it: the runs that apply here, and whatever the target
        cannot express mapped (and labelled) the way it will really run. Returns a Case."""
        raise NotImplementedError

    def needs_extras(self) -> bool:
        """Whether the worker must also return the target's own intermediate data (e.g.
        ggml's Q8_K bytes of the activations) for `judge`."""
        return False

    def judge(self, case, outcomes: list, extras: dict, case_path) -> list[Finding]:
        """Raise the most specific HarnessFailure, or return the findings."""
        raise NotImplementedError

    def info_lines(self, hello: dict) -> list[str]:
        """`iq1m-harness info`: what the worker loaded, as "name: value" lines."""
        raise NotImplementedError

    def summary_lines(self) -> list[str]:
        """Per-target statistics for a person (pytest summary, campaign console)."""
        return []

