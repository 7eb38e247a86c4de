"""User-facing messages stay on one bounded line, whatever text they carry from elsewhere."""
from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import pytest

import vaelab
from vaelab.errors import BRIEF_LIMIT, VaelabError, brief, one_line
from vaelab.files import read_safetensors

PACKAGE = Path(vaelab.__file__).parent


def test_one_line_collapses_breaks_and_escapes_control_characters():
    assert one_line("a\nb\r\n  c\td") == "a b c d"
    assert one_line("x\x00y\x1bz") == "x\\x00y\\x1bz"
    assert one_line("line\u2028sep") == "line sep"


def test_brief_is_one_bounded_line_with_the_type_on_request():
    long = ValueError("bad\n" + "x" * 5000)
    text = brief(long)
    assert "\n" not in text and len(text) == BRIEF_LIMIT and text.endswith("…")
    assert brief(KeyError("w"), typed=True) == "KeyError: 'w'"
    assert brief(RuntimeError()) == "RuntimeError"


def test_vaelab_error_is_always_one_line():
    assert str(VaelabError("cannot read\nfile.npy")) == "cannot read file.npy"


def test_safetensors_dtype_with_a_newline_is_refused_on_one_line(tmp_path):
    # The safetensors library quotes the bad dtype, newline included, in its own error.
    header = json.dumps({"w": {"dtype": "\n", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(VaelabError) as info:
        read_safetensors(path)
    message = str(info.value)
    assert "\n" not in message and "not a valid safetensors file" in message
    assert len(message) < len(str(path)) + 120 + BRIEF_LIMIT


def _raw_exception_uses(tree: ast.AST):
    """f-string fields that paste a caught third-party exception in as it is."""
    for handler in ast.walk(tree):
        if not isinstance(handler, ast.ExceptHandler) or not handler.name:
            continue
        caught = ast.unparse(handler.type) if handler.type else ""
        if caught in ("VaelabError", "WriteError"):  # already one clean line
            continue
        for node in ast.walk(handler):
            if isinstance(node, ast.FormattedValue):
                value = node.value
                if isinstance(value, ast.BoolOp):  # `exc.strerror or exc`
                    value = value.values[-1]
                if isinstance(value, ast.Name) and value.id == handler.name:
                    yield handler.lineno


def test_no_message_pastes_a_third_party_exception_without_brief():
    offenders = [f"{path.relative_to(PACKAGE)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
                 for line in _raw_exception_uses(ast.parse(path.read_text()))]
    assert not offenders, f"use vaelab.errors.brief(exc) in {offenders}"


def test_the_source_check_finds_a_raw_paste():
    bad = "try:\n    f()\nexcept ValueError as exc:\n    raise VaelabError(f'bad ({exc})')\n"
    good = bad.replace("({exc})", "({brief(exc)})")
    assert list(_raw_exception_uses(ast.parse(bad))) == [3]
    assert list(_raw_exception_uses(ast.parse(good))) == []
