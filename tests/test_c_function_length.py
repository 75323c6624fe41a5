"""House rule: no C function in csrc/ longer than 80 lines (from its opening brace to its closing brace).

The scan strips comments, string/char literals and preprocessor lines (macro bodies are not functions), then
tracks brace depth: a top-level ``{`` whose preceding declaration text ends in ``)`` opens a function body.
"""
import pathlib
import re

import pytest

MAX_LINES = 80
CSRC = pathlib.Path(__file__).resolve().parent.parent / "csrc"
if not CSRC.is_dir():      # the tests run against an installed wheel, away from the sources (.ci/wheel.sh)
    pytest.skip("csrc/ is not beside the tests: no C sources to check", allow_module_level=True)


def _strip(text):
    """text with comments, literals and preprocessor lines blanked (newlines kept, so line numbers hold)."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'",
                  lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    out, in_macro = [], False
    for line in text.split("\n"):
        is_pp = in_macro or line.lstrip().startswith("#")
        in_macro = is_pp and line.rstrip().endswith("\\")
        out.append("" if is_pp else line)
    return "\n".join(out)


def _function_name(head):
    """Name of the function whose declaration text ends `head` (``f(...)`` or ``FN(f)(...)``), else None."""
    if not head.endswith(")"):
        return None
    depth, i = 0, len(head) - 1
    while i >= 0:                      # back to the "(" opening the parameter list
        depth += {")": 1, "(": -1}.get(head[i], 0)
        if depth == 0:
            break
        i -= 1
    m = re.search(r"(?:\bFN\s*\(\s*(\w+)\s*\)|(\w+))\s*$", head[:i])
    return (m.group(1) or m.group(2)) if m else None


def function_lengths(path):
    """[(name, first line, number of lines)] of the function bodies defined at file scope in path."""
    code = _strip(path.read_text())
    found, depth, decl, start, name = [], 0, [], 0, None
    line = 1
    for ch in code:
        if ch == "\n":
            line += 1
        if depth == 0:
            if ch == "{":
                head = "".join(decl).strip()
                name, start = _function_name(head), line
                decl = []
                depth = 1
            elif ch in ";}":
                decl = []
            else:
                decl.append(ch)
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and name is not None:
                found.append((name, start, line - start + 1))
    return found


def _sources():
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".c", ".inc", ".h"))


def test_scanner_sees_the_kernels():
    names = {n for p in _sources() for n, _, _ in function_lengths(p)}
    assert {"fo_batchnorm_forward", "fo_batchnorm_backward", "fo_blocked_sum", "fo_exp_core_f32"} <= names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_no_function_over_80_lines(path):
    long = [f"{name} (line {start}): {n} lines" for name, start, n in function_lengths(path) if n > MAX_LINES]
    assert not long, f"{path.name}: functions over {MAX_LINES} lines: {long}"
