"""Every ```python block of the user docs runs as written, so the docs cannot rot.

Each block runs in a fresh namespace with a temporary directory as the working directory.
Blocks that must not run here (they need Keras, optax, a shell) use another fence:
```text or ```console.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The docs whose python blocks are run; the last two are included when present.
REQUIRED = ("optimizers.md", "cli.md")
OPTIONAL = (
    "schedules.md",
    "techniques.md",
    "data.md",
    "models.md",
    "training.md",
    "config.md",
    "diagnose.md",
    "tuning.md",
    "sweep.md",
)

# An opening fence ```python (possibly indented, e.g. inside a list), its code, and the
# closing fence at the same indentation.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file: (line of the opening fence, code)."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        indent = match.group("indent")
        lines = match.group("code").splitlines()
        code = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        blocks.append((text.count("\n", 0, match.start()) + 1, code))
    return blocks


def _cases() -> list:
    cases = []
    for name in REQUIRED + OPTIONAL:
        path = DOCS / name
        if not path.exists():
            continue
        for line, code in python_blocks(path):
            cases.append(pytest.param(path, line, code, id=f"{name}:{line}"))
    return cases


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run in a temporary directory, without windows, and undo global torch settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    yield tmp_path
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("path", "line", "code"), _cases())
def test_python_block_in_docs_runs_as_written(path, line, code, isolated):
    compiled = compile(code, f"{path.relative_to(ROOT)}:{line}", "exec")
    exec(compiled, {"__name__": "__doc_snippet__"})


@pytest.mark.parametrize("name", REQUIRED)
def test_reference_doc_exists_and_has_runnable_examples(name):
    path = DOCS / name
    assert path.exists(), f"docs/{name} is missing"
    assert python_blocks(path), f"docs/{name} has no ```python block: nothing checks it"


def test_block_extraction_finds_indented_blocks_and_skips_other_fences(tmp_path):
    md = tmp_path / "x.md"
    md.write_text(
        "```python\nx = 1\n```\n\n```text\nnot code\n```\n\n"
        "- item\n\n  ```python\n  if True:\n      y = 2\n  ```\n",
        encoding="utf-8",
    )
    assert python_blocks(md) == [(1, "x = 1"), (11, "if True:\n    y = 2")]


def test_readme_gives_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme
