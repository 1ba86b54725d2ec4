"""The README's Python examples run as written (in order, in one namespace, on the embedded set)."""

import re

from conftest import REPO


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run():
    blocks = _python_blocks((REPO / "README.md").read_text())
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation


def test_api_page_python_blocks_run():
    blocks = _python_blocks((REPO / "docs" / "python-api.md").read_text())
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)  # noqa: S102
