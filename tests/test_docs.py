"""The README's Python examples run as written (docs must not drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

import datamill as dm

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    from .conftest import make_rows, write_jsonl

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "docs" / "a.jsonl", make_rows(300, seed=1))
    namespace: dict = {}
    blocks = _python_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    result = namespace["pipeline"].run(tmp_path / "work", workers=1, progress=False)
    assert result.step("word_count")["rows_in"] == result.step("text_length_filter")["rows_out"]
    assert (tmp_path / "out" / "docs" / "_datamill_lineage.json").exists()
    keyword = dm.Dataset.read(tmp_path / "docs").apply(namespace["KeywordFilter"],
                                                       keyword="data")
    chars = keyword.apply(namespace["char_count"], strip=True)
    table = chars.collect(tmp_path / "work", workers=1, progress=False)
    assert table.num_rows and all("data" in t for t in table["text"].to_pylist())


def test_finetune_doc_examples_run(tmp_path, monkeypatch):
    """docs/finetune.md's examples, in order, in one namespace."""
    monkeypatch.chdir(tmp_path)
    text = (README.parent / "docs" / "finetune.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/finetune.md", "exec"), namespace)  # noqa: S102
    assert namespace["table"].num_rows == 1


def test_components_doc_examples_run(tmp_path, monkeypatch):
    """docs/components.md's examples, in order, in one namespace: write an operation, check
    its contract, run it by name with remapped columns."""
    monkeypatch.chdir(tmp_path)
    text = (README.parent / "docs" / "components.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    namespace: dict = {"__name__": "docs_components"}
    for block in blocks:
        exec(compile(block, "docs/components.md", "exec"), namespace)  # noqa: S102
    assert namespace["result"].step("vowel_ratio")["rows_out"] == 5
    assert namespace["table"].num_rows == 3
    steps = {s["name"]: s for s in
             dm.Dataset.run(namespace["ratios"], tmp_path / "work", progress=False).steps}
    assert steps["vowel_ratio"]["remapped"] == {"consumes": {"text": "body"},
                                                "produces": {"vowel_ratio": "vr"}}
    assert steps["normalize_text"]["remapped"] == {"consumes": {"text": "title"},
                                                   "produces": {"text": "title"}}
    assert steps["drop_duplicates"]["dropped"] == {"duplicate": 1}
