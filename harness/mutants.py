"""Mutants of the C kernel sources: where they are and what each one changes.

A small C lexer finds mutation sites (comments, strings and #include/#if lines are never
touched); each operator below proposes textual replacements of one token, or drops one
statement. A mutant's id is stable across edits elsewhere in the file: it hashes the file
name, the stripped text of its line, the occurrence of that line, the column and the
replacement, so the committed list of equivalent mutants survives unrelated changes.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
  | (?P<number>0[xX][0-9a-fA-F]+[uUlL]*|\d+\.\d*(?:[eE][-+]?\d+)?[fF]?|\d+[uUlL]*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<op><<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|[-+*/%&|^<>=!~?:;,.()\[\]{}])
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

SWAPS = {
    "+": ["-"], "-": ["+"], "*": ["/", "+"], "/": ["*"], "%": ["/"],
    "<": ["<=", ">"], "<=": ["<", ">"], ">": [">=", "<"], ">=": [">", "<"],
    "==": ["!="], "!=": ["=="], "&&": ["||"], "||": ["&&"],
    "<<": [">>"], ">>": ["<<"], "&": ["|", "^"], "|": ["&", "^"], "^": ["|"],
    "+=": ["-="], "-=": ["+="], "*=": ["/="], "|=": ["&="], "&=": ["|="],
}
# a '*' or '&' right after these is a declarator or address-of, not arithmetic
_TYPE_WORDS = {"const", "void", "char", "short", "int", "long", "float", "double", "unsigned", "signed", "struct",
               "return", "sizeof", "static", "volatile", "restrict", "inline"}
_VALUE_END = {"ident", "number"}
_KEYWORDS_NOT_STATEMENTS = ("return", "break", "continue", "goto", "case", "default", "if", "for", "while", "do",
                            "else", "switch", "typedef", "static", "const", "struct", "union", "enum", "extern")


@dataclass(frozen=True)
class Mutant:
    file: str          # path relative to the kernels directory
    line: int          # 1-based
    col: int           # 0-based offset in the line
    original: str
    replacement: str
    operator: str      # operator class, e.g. "arith", "compare", "constant", "drop-statement"
    mid: str           # stable id

    def apply(self, text: str) -> str:
        lines = text.split("\n")
        src = lines[self.line - 1]
        assert src[self.col:self.col + len(self.original)] == self.original, (self, src)
        lines[self.line - 1] = src[:self.col] + self.replacement + src[self.col + len(self.original):]
        return "\n".join(lines)

    def diff(self, text: str) -> str:
        before = text.split("\n")[self.line - 1]
        after = self.apply(text).split("\n")[self.line - 1]
        return f"{self.file}:{self.line}\n- {before.strip()}\n+ {after.strip()}"


def _operator_class(tok: str) -> str:
    if tok in ("<", "<=", ">", ">=", "==", "!="):
        return "compare"
    if tok in ("&&", "||"):
        return "logic"
    if tok in ("<<", ">>"):
        return "shift"
    if tok in ("&", "|", "^", "|=", "&="):
        return "bitmask"
    return "arith"


def _make_id(file: str, line_text: str, occurrence: int, col: int, replacement: str) -> str:
    h = hashlib.sha1(f"{file}\0{line_text.strip()}\0{occurrence}\0{col}\0{replacement}".encode())
    return h.hexdigest()[:10]


_COMMENT_OR_LITERAL = re.compile(r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""", re.DOTALL)


def _blank_comments(text: str) -> str:
    """text with every comment's characters but its newlines replaced by spaces (columns and
    line numbers kept), so a comment that starts after code and ends on a later line is
    not mistaken for code."""
    def blank(m):
        s = m.group()
        return s if s[0] in "\"'" else re.sub(r"[^\n]", " ", s)
    return _COMMENT_OR_LITERAL.sub(blank, text)


def _tokens(line: str):
    for m in _TOKEN.finditer(line):
        kind = m.lastgroup
        if kind in ("space",):
            continue
        yield kind, m.group(), m.start()


def typedef_names(kernels_dir: Path) -> set[str]:
    """Type names declared by the kernels (a '*' after one is a declarator)."""
    names = set()
    for p in list(kernels_dir.rglob("*.h")) + list(kernels_dir.rglob("*.c")):
        text = p.read_text(errors="replace")
        names.update(re.findall(r"}\s*(\w+)\s*;", text))
        names.update(re.findall(r"typedef\s+[^;{}]*?\b(\w+)\s*;", text))
        names.update(re.findall(r"\(\s*\*\s*(\w+)\s*\)\s*\(", text))
    return names


def _is_type(word: str, types: set[str]) -> bool:
    return word in _TYPE_WORDS or word in types or word.endswith("_t") or word.startswith("__m")


# Code between a line containing MUTATE_OFF and one containing MUTATE_ON is not mutated. For
# code no output can observe by construction (prefetch hints): every mutant there is
# equivalent, and each would cost a whole suite run to prove it. The marker comment says why.
MUTATE_OFF, MUTATE_ON = "mutate: off", "mutate: on"


def find_mutants(path: Path, rel: str, types: set[str] = frozenset()) -> list[Mutant]:
    text = path.read_text()
    out: list[Mutant] = []
    seen_lines: dict[str, int] = {}
    unobservable = False
    code_lines = _blank_comments(text).split("\n")
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        occurrence = seen_lines.get(stripped, 0)
        seen_lines[stripped] = occurrence + 1
        if MUTATE_OFF in line or MUTATE_ON in line:
            unobservable = MUTATE_OFF in line
            continue
        if unobservable:
            continue
        if stripped.startswith("#") and not stripped.startswith("#define"):
            continue
        if stripped.startswith("*"):
            continue  # once taken for a block comment's continuation; kept so the population stays the same
        toks = list(_tokens(code_lines[lineno - 1]))

        def add(col, original, replacement, op):
            out.append(Mutant(rel, lineno, col, original, replacement, op,
                              _make_id(rel, line, occurrence, col, replacement)))

        for i, (kind, tok, col) in enumerate(toks):
            prev = toks[i - 1] if i else ("", "", 0)
            binary = prev[0] in _VALUE_END and not _is_type(prev[1], types) or prev[1] in (")", "]")
            if kind == "op" and tok in SWAPS:
                if tok in ("*", "&", "-", "+") and not binary:
                    continue  # pointer declarator, dereference, address-of, unary sign
                if tok in ("<", ">") and prev[1] == "include":
                    continue
                for rep in SWAPS[tok]:
                    add(col, tok, rep, _operator_class(tok))
            elif kind == "number" and re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", tok):
                digits = re.match(r"0[xX][0-9a-fA-F]+|\d+", tok).group()
                value = int(digits, 0)
                suffix = tok[len(digits):]
                if prev[1] == "[" and i + 1 < len(toks) and toks[i + 1][1] == "]" and _is_declaration(toks, types):
                    continue  # array sizes in declarations: a mutant only wastes memory
                for v in (value + 1, value - 1):
                    if v >= 0:
                        rep = (hex(v) if digits.lower().startswith("0x") else str(v)) + suffix
                        add(col, tok, rep, "constant")
        if _droppable(toks, stripped, types):
            first_col = toks[0][2]
            add(first_col, line[first_col:len(line.rstrip())], ";", "drop-statement")
        out.extend(_argument_swaps(rel, line, lineno, occurrence, toks))
    return out


def _is_declaration(toks, types) -> bool:
    return bool(toks) and _is_type(toks[0][1], types)


def _droppable(toks, stripped: str, types) -> bool:
    """An expression statement on one line: an assignment or a call, not a declaration."""
    if len(toks) < 3 or not stripped.endswith(";") or toks[0][0] != "ident":
        return False
    if toks[0][1] in _KEYWORDS_NOT_STATEMENTS or _is_declaration(toks, types):
        return False
    if toks[1][0] == "ident" or (toks[1][1] == "*" and toks[0][1][0].isupper()):
        return False  # "type name ..." declarations
    if "{" in stripped or "}" in stripped:
        return False
    return any(t[1] in ("=", "+=", "-=", "*=", "|=", "&=", "++", "--", "(") for t in toks[1:])


def _argument_swaps(rel, line, lineno, occurrence, toks) -> list[Mutant]:
    """f(a, b) with two simple arguments -> f(b, a)."""
    out = []
    for i in range(len(toks) - 5):
        (k0, name, _), (_, lp, _), (ka, a, ca), (_, comma, _), (kb, b, cb), (_, rp, _) = toks[i:i + 6]
        if (k0 == "ident" and lp == "(" and comma == "," and rp == ")" and ka in _VALUE_END and kb in _VALUE_END
                and a != b and name not in ("if", "while", "for", "sizeof", "switch")):
            original = line[ca:cb + len(b)]
            replacement = f"{b}{line[ca + len(a):cb]}{a}"
            out.append(Mutant(rel, lineno, ca, original, replacement, "swap-args",
                              _make_id(rel, line, occurrence, ca, replacement)))
    return out


def all_mutants(kernels_dir: Path, files: list[str] | None = None) -> list[Mutant]:
    src = kernels_dir / "src"
    paths = sorted(src.rglob("*.c"))
    types = typedef_names(kernels_dir)
    mutants = []
    for p in paths:
        rel = str(p.relative_to(kernels_dir))
        if "GENERATED" in p.read_text()[:400]:
            continue  # data tables (the grid) are checked against gguf, not by mutation
        if files and not any(rel == f or rel.endswith("/" + f) or Path(rel).name == f for f in files):
            continue
        mutants += find_mutants(p, rel, types)
    return mutants


def load_equivalent(path: Path) -> dict[str, str]:
    """Committed list of equivalent mutants: `ID  reason` per line, # comments allowed."""
    known = {}
    if path.exists():
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
            if not line:
                continue
            mid, _, reason = line.partition(" ")
            known[mid] = reason.strip()
    return known
