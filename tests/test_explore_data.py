"""The data behind the explorer's pages 5-8, over workdirs of real runs: duplicate clusters
with word diffs, threshold what-if (checked against real re-runs), search over a LanceDB index
the run wrote, and the comparison of two runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamill import dropped_rows
from datamill.errors import ArgumentError, InputError
from datamill.explore import compare, duplicates, search_page, whatif
from datamill.explore.rowread import RunSteps, rows_by_id
from datamill.manifest import load_manifest

from .explore_runs import XSS, dedup_docs


@pytest.fixture(autouse=True)
def _explore_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the explorer derives (what-if inputs, statistics) is cached outside the
    workdir: here, in the test's folder."""
    monkeypatch.setenv("DATAMILL_EXPLORE_CACHE", str(tmp_path / "explore-cache"))

# --- duplicates -----------------------------------------------------------------------------
def test_clusters_list_every_dedup_step_largest_first(dedup_workdir) -> None:
    steps = RunSteps(dedup_workdir)
    assert duplicates.dedup_steps(steps) == ["drop_duplicates", "minhash_dedup"]
    exact = duplicates.clusters(steps, "drop_duplicates")
    near = duplicates.clusters(steps, "minhash_dedup")
    assert (exact.total_clusters, exact.total_dropped) == (10, 10)
    assert (near.total_clusters, near.total_dropped) == (10, 10)
    page = duplicates.clusters(steps, "minhash_dedup", offset=8, limit=5)
    assert [c["cluster_id"] for c in page.clusters] == [c["cluster_id"]
                                                        for c in near.clusters[8:10]]


def test_a_cluster_shows_the_kept_row_and_word_diffs(dedup_workdir) -> None:
    steps = RunSteps(dedup_workdir)
    texts = [d["text"] for d in dedup_docs()]
    for c in duplicates.clusters(steps, "minhash_dedup").clusters:
        got = duplicates.cluster(steps, "minhash_dedup", c["cluster_id"])
        assert got.kept["_id"] == c["cluster_id"] and got.total == 1
        assert got.text_columns == ["text"] and got.image_columns == []
        dup = got.duplicates[0]
        assert dup["_reason"] == "near_duplicate"
        changed = [(tag, t) for tag, t in dup["diffs"]["text"] if tag != "equal"]
        kept_words, dup_words = got.kept["text"].split(), dup["text"].split()
        assert changed == [("delete", kept_words[10]), ("insert", dup_words[10])]
        assert "".join(t for tag, t in dup["diffs"]["text"] if tag != "delete") == dup["text"]
        assert got.kept["text"] in texts and dup["text"] in texts
    first = duplicates.cluster(steps, "minhash_dedup",
                               duplicates.clusters(steps, "minhash_dedup").clusters[0]
                               ["cluster_id"])
    inserted = [t for tag, t in first.duplicates[0]["diffs"]["text"] if tag == "insert"]
    assert XSS in inserted  # raw here: escaping is the template's job


def test_exact_duplicates_have_nothing_to_highlight(dedup_workdir) -> None:
    steps = RunSteps(dedup_workdir)
    for c in duplicates.clusters(steps, "drop_duplicates").clusters:
        got = duplicates.cluster(steps, "drop_duplicates", c["cluster_id"])
        assert [tag for tag, _t in got.duplicates[0]["diffs"]["text"]] == ["equal"]
        assert got.duplicates[0]["text"] == got.kept["text"]


def test_image_clusters_name_their_image_columns_without_reading_bytes(
        image_dedup_workdir) -> None:
    steps = RunSteps(image_dedup_workdir)
    page = duplicates.clusters(steps, "image_dedup")
    assert page.total_clusters == 3 and page.total_dropped == 3
    got = duplicates.cluster(steps, "image_dedup", page.clusters[0]["cluster_id"])
    assert got.image_columns == ["image"]
    assert "image" not in got.kept and "image" not in got.duplicates[0]
    assert got.kept["path"].endswith(".png") and got.duplicates[0]["path"].endswith(".jpg")
    assert got.duplicates[0]["diffs"] == {}  # a file name is no prose to diff


def test_bad_cluster_requests_are_errors(dedup_workdir) -> None:
    steps = RunSteps(dedup_workdir)
    with pytest.raises(InputError, match="records no duplicate clusters"):
        duplicates.clusters(steps, "read_jsonl")
    with pytest.raises(InputError, match="no cluster kept by row 123456789"):
        duplicates.cluster(steps, "minhash_dedup", 123456789)


def test_word_diff_pieces() -> None:
    pieces = duplicates.word_diff("the cat sat on the mat", "the dog sat on the mat today")
    assert pieces == [("equal", "the "), ("delete", "cat"), ("insert", "dog"),
                      ("equal", " sat on the mat"), ("insert", " today")]
    assert duplicates.similarity(pieces) == pytest.approx(19 / 28)
    long = " ".join(["w"] * (duplicates.MAX_DIFF_TOKENS + 10))
    assert duplicates.word_diff(long, long)[-1][0] == "cut"


def test_rows_by_id_reads_rows_in_the_order_asked(dedup_workdir) -> None:
    steps = RunSteps(dedup_workdir)
    step = steps.step("minhash_dedup")
    ids = [c["cluster_id"] for c in duplicates.clusters(steps, "minhash_dedup").clusters]
    rows = rows_by_id(steps, step.parent, list(reversed(ids)) + [987654321], ["text", "n"])
    assert [r["_id"] for r in rows] == list(reversed(ids))
    texts = {d["n"]: d["text"] for d in dedup_docs()}
    assert all(texts[r["n"]] == r["text"] for r in rows)


# --- what-if --------------------------------------------------------------------------------
def test_filters_with_stat_columns_are_candidates(quality_workdirs) -> None:
    found = {c.step: c for c in whatif.candidates(RunSteps(quality_workdirs["at_50"]))}
    assert sorted(found) == ["fineweb_filter", "gopher_quality_filter"]
    knobs = {k.name: k for k in found["gopher_quality_filter"].knobs}
    assert knobs["min_doc_words"].value == 50 and knobs["min_doc_words"].kind == "int"
    assert "gopher_non_symbol_words" in found["gopher_quality_filter"].consumed
    assert "column" not in knobs and "prefix" not in knobs


def test_what_if_agrees_with_a_real_rerun(quality_workdirs) -> None:
    at_50, at_30 = quality_workdirs["at_50"], quality_workdirs["at_30"]
    steps = RunSteps(at_50)
    got = whatif.what_if(steps, "gopher_quality_filter", {"min_doc_words": "30"}, sample=50)
    rerun = load_manifest(at_30)["datasets"][0]["steps"]
    record = next(s for s in rerun if s["name"] == "gopher_quality_filter")
    before = next(s for s in load_manifest(at_50)["datasets"][0]["steps"]
                  if s["name"] == "gopher_quality_filter")
    assert got.changes == {"min_doc_words": 30}
    assert got.kept_before == before["rows_out"] and got.kept_after == record["rows_out"]
    assert got.rows_in == before["rows_in"]
    dropped_then = {r["_id"]: r["_reason"]
                    for r in dropped_rows(at_50, "gopher_quality_filter").to_pylist()}
    dropped_now = {r["_id"]: r["_reason"]
                   for r in dropped_rows(at_30, "gopher_quality_filter").to_pylist()}
    flipped = {i for i in dropped_then.keys() | dropped_now.keys()
               if dropped_then.get(i) != dropped_now.get(i)}
    assert sum(got.newly_kept.values()) + sum(got.newly_dropped.values()) \
        + got.reason_changed == len(flipped) > 0
    assert {r["_id"] for r in got.sample} <= flipped
    for r in got.sample:
        assert (r["before"], r["after"]) == (dropped_then.get(r["_id"]),
                                             dropped_now.get(r["_id"]))
        assert r["text"] and r["stats"]["gopher_non_symbol_words"] is not None


def test_what_if_with_the_run_arguments_flips_nothing(quality_workdirs) -> None:
    steps = RunSteps(quality_workdirs["at_50"])
    for name in ("gopher_quality_filter", "fineweb_filter"):
        got = whatif.what_if(steps, name, {})
        assert got.kept_after == got.kept_before == steps.records[name]["rows_out"]
        assert not got.newly_kept and not got.newly_dropped and not got.reason_changed
        assert got.sample == []


def test_what_if_turns_a_rule_off(quality_workdirs) -> None:
    steps = RunSteps(quality_workdirs["at_50"])
    got = whatif.what_if(steps, "gopher_quality_filter", {"max_ellipsis_lines_ratio": "off"})
    record = steps.records["gopher_quality_filter"]["dropped"]
    assert got.newly_kept.get("gopher_quality:ellipsis_lines", 0) <= \
        record["gopher_quality:ellipsis_lines"]
    assert not any(r == "gopher_quality:ellipsis_lines" for r in got.newly_dropped)
    assert got.kept_after > got.kept_before


@pytest.mark.parametrize("given, message", [
    ({"min_doc_word": "3"}, "no numeric argument 'min_doc_word'.*min_doc_words"),
    ({"min_doc_words": "many"}, "'many' is not an integer"),
    ({"min_avg_word_length": "nan"}, "finite"),
    ({"column": "x"}, "no numeric argument 'column'"),
])
def test_bad_what_if_arguments_are_named(quality_workdirs, given, message) -> None:
    steps = RunSteps(quality_workdirs["at_50"])
    with pytest.raises(ArgumentError, match=message):
        whatif.what_if(steps, "gopher_quality_filter", given)


def test_what_if_refuses_a_step_that_is_not_such_a_filter(quality_workdirs) -> None:
    with pytest.raises(InputError, match="not a filter that decides from stored numeric"):
        whatif.what_if(RunSteps(quality_workdirs["at_50"]), "fineweb_stats", {})


# --- compare --------------------------------------------------------------------------------
def test_compare_two_workdirs_by_row_id(quality_workdirs) -> None:
    a = compare.open_run(quality_workdirs["at_50"])
    b = compare.open_run(quality_workdirs["at_30"])
    got = compare.compare(a, b)
    da = {r["_id"]: (r["_step"], r["_reason"]) for r in dropped_rows(a.workdir).to_pylist()}
    db = {r["_id"]: (r["_step"], r["_reason"]) for r in dropped_rows(b.workdir).to_pylist()}
    assert got.counts["kept_to_dropped"] == len(db.keys() - da.keys())
    assert got.counts["dropped_to_kept"] == len(da.keys() - db.keys()) > 0
    assert got.counts["reason_changed"] == sum(da[i] != db[i] for i in da.keys() & db.keys())
    assert sum(g["rows"] for g in got.groups) == sum(got.counts.values())
    assert got.same_input and not got.notes
    changed = {s["name"]: s for s in got.steps}
    assert changed["gopher_quality_filter"]["diff"] == ["min_doc_words: 50 -> 30"]
    assert changed["gopher_quality_stats"]["status"] == "same"
    assert changed["fineweb_filter"]["diff"] == ["its input changed"]
    total, rows = compare.flipped_rows(a, b, "dropped_to_kept", limit=500)
    assert total == len(rows) == got.counts["dropped_to_kept"]
    assert {r["_id"] for r in rows} == da.keys() - db.keys()
    assert all(r["text"] and r["a_step"] == da[r["_id"]][0] for r in rows)
    total, page = compare.flipped_rows(a, b, None, offset=3, limit=4)
    assert total == sum(got.counts.values()) and len(page) == 4
    assert [r["_id"] for r in page] == sorted(r["_id"] for r in page)


def test_compare_the_runs_of_one_workdir(quality_workdirs) -> None:
    runs = compare.runs_of(quality_workdirs["changed"])
    assert len(runs) == 2
    before = compare.open_run(quality_workdirs["changed"], runs[1]["run_id"])
    after = compare.open_run(quality_workdirs["changed"])
    two = compare.compare(compare.open_run(quality_workdirs["at_50"]),
                          compare.open_run(quality_workdirs["at_30"]))
    got = compare.compare(before, after)
    assert got.counts == two.counts and got.groups == two.groups


def test_bad_compare_requests_are_errors(quality_workdirs) -> None:
    with pytest.raises(InputError, match="no run 'nope'"):
        compare.open_run(quality_workdirs["changed"], "nope")
    a = compare.open_run(quality_workdirs["at_50"])
    with pytest.raises(InputError, match="unknown kind of flip"):
        compare.flipped_rows(a, a, "sideways")
    assert compare.compare(a, a).counts == dict.fromkeys(compare.KINDS, 0)


# --- search ---------------------------------------------------------------------------------
def test_search_the_index_the_run_wrote(search_workdir) -> None:
    manifest = load_manifest(search_workdir)
    found = search_page.indexes(manifest)
    assert [(i.table, i.source_step) for i in found] == [("passages", "embed_text")]
    got = search_page.run_search(manifest, 0, "  launch   vehicles to space  ", k=2)
    assert got.query == "launch vehicles to space" and len(got.hits) == 2
    top = got.hits[0]
    assert top["metadata"]["url"] == "https://example.org/rockets"
    assert top["metadata"]["title"] == "Rockets " + XSS and "rocket engine" in top["text"]
    assert top["score"] > got.hits[1]["score"] and top["image"] is None
    assert len(search_page.run_search(manifest, 0, "bread", k=10_000).hits) == 4


@pytest.mark.parametrize("number, query, message", [
    (1, "x", "no index number 1"), (0, "   ", "the query is empty")])
def test_bad_searches_are_errors(search_workdir, number, query, message) -> None:
    with pytest.raises(InputError, match=message):
        search_page.run_search(load_manifest(search_workdir), number, query)
