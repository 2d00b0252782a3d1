"""The README's Python quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_quickstart() -> None:
    assert python_blocks(), "README.md must contain a ```python quickstart"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = python_blocks()[index]
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()


def test_readme_mentions_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text
