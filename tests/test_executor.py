"""The local executor: fused streaming passes, workers, row ids, error policies."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import datamill as dm
from datamill import ExpandOperation, FilterOperation, MapOperation, OperationError

from .conftest import make_rows, write_jsonl


class Upper(MapOperation):
    """Upper-case copy of `text`."""

    name = "test_upper"
    consumes = {"text": "string"}
    produces = {"upper": "string"}

    def process(self, batch):
        return {"upper": pc.utf8_upper(batch["text"])}


class EvenOnly(FilterOperation):
    """Keep even `n`."""

    name = "test_even_only"
    consumes = {"n": "int64"}

    def process(self, batch):
        n = batch["n"].to_numpy()
        return n % 2 == 0, ["odd" if v % 2 else None for v in n]


class Words(ExpandOperation):
    """One row per word."""

    name = "test_words"
    consumes = {"text": "string"}
    produces = {"word": "string", "position": "int32"}

    def process(self, batch):
        parents, words, positions = [], [], []
        for i, text in enumerate(batch["text"].to_pylist()):
            for j, w in enumerate(text.split()):
                parents.append(i)
                words.append(w)
                positions.append(j)
        return {"_parent_index": parents, "word": words, "position": positions}


class SetupCounter(MapOperation):
    """Records the worker pid and how often setup ran in it."""

    name = "test_setup_counter"
    consumes = {"n": "int64"}
    produces = {"pid": "int64", "setups": "int64"}

    def setup(self):
        self.setups = getattr(self, "setups", 0) + 1

    def process(self, batch):
        return {"pid": [os.getpid()] * batch.num_rows, "setups": [self.setups] * batch.num_rows}


def _many_partitions(tmp_path, n=3000):
    write_jsonl(tmp_path / "in" / "a.jsonl", make_rows(n, seed=1))
    write_jsonl(tmp_path / "in" / "b.jsonl", make_rows(n, seed=2))
    return dm.Dataset.read(str(tmp_path / "in"), block_size=20_000)


def test_map_filter_expand_values(tmp_path, docs):
    ds = dm.Dataset.read(docs).apply(EvenOnly).apply(Upper).apply(Words)
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    rows = make_rows(500)
    expected = [(w.upper(), w, j) for r in rows if r["n"] % 2 == 0
                for j, w in enumerate(r["text"].split())]
    got = list(zip(table["upper"].to_pylist(), table["word"].to_pylist(),
                   table["position"].to_pylist()))
    assert [(u.split()[p], w, p) for u, w, p in got] == [(w.upper(), w, j)
                                                          for _, w, j in expected]
    assert table.schema.field("position").type == pa.int32()


def test_workers_give_identical_results(tmp_path):
    ds = _many_partitions(tmp_path).apply(EvenOnly).apply(Upper).apply(Words)
    assert len(ds.step.chain()[0].op.partitions()) > 4
    one = dm.LocalExecutor(tmp_path / "w1", workers=1, progress=False)
    two = dm.LocalExecutor(tmp_path / "w2", workers=2, progress=False)
    one.run([ds])
    two.run([ds])
    from datamill.reader import read_table

    cols = ["_id", "_parent_id", "word", "upper", "n"]
    a = read_table(one.workdir, ds.step, cols)
    b = read_table(two.workdir, ds.step, cols)
    assert a.num_rows > 1000 and a.equals(b)
    assert len(set(a["_id"].to_pylist())) == a.num_rows  # children have unique ids


def test_filter_reasons_recorded(tmp_path, docs):
    result = dm.Dataset.read(docs).apply(EvenOnly).apply(
        "text_length_filter", min_words=5).run(tmp_path / "w", workers=1, progress=False)
    even = result.step("test_even_only")
    assert even["rows_in"] == 500 and even["rows_out"] == 250
    assert even["dropped"] == {"odd": 250}
    length = result.step("text_length_filter")
    expected = sum(1 for r in make_rows(500) if r["n"] % 2 == 0 and len(r["text"].split()) < 5)
    assert length["dropped"] == {"too_few_words": expected}
    dropped = dm.dropped_rows(tmp_path / "w")
    assert dropped.num_rows == 250 + expected
    assert set(dropped["_reason"].to_pylist()) == {"odd", "too_few_words"}


class HalfOrFail(FilterOperation):
    """Keeps even `n` and gives them `half`; raises on n == 7 (a row error)."""

    name = "test_half_or_fail"
    consumes = {"n": "int64"}
    produces = {"half": "int64"}

    def process(self, batch):
        n = batch["n"].to_numpy()
        if 7 in n:
            raise ValueError("seven")
        return n % 2 == 0, ["odd" if v % 2 else None for v in n], {"half": n // 2}


class Twice(MapOperation):
    """`twice` = 2 * `half`."""

    name = "test_twice"
    consumes = {"half": "int64"}
    produces = {"twice": "int64"}

    def process(self, batch):
        return {"twice": pc.multiply(batch["half"], 2)}


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_filter_that_produces_columns(tmp_path, on_error):
    rows = [{"n": i} for i in range(20) if on_error == "skip" or i != 7]
    write_jsonl(tmp_path / "in.jsonl", rows)
    ds = dm.Dataset.read(str(tmp_path / "in.jsonl")).apply(HalfOrFail, on_error=on_error)
    result = ds.apply(Twice).run(tmp_path / "w", workers=1, progress=False)
    table = ds.apply(Twice).collect(tmp_path / "w", progress=False)  # from the cache
    evens = [i for i in range(20) if i % 2 == 0]
    assert table["n"].to_pylist() == evens
    assert table["half"].to_pylist() == [i // 2 for i in evens]
    assert table["twice"].to_pylist() == evens
    step = result.step("test_half_or_fail")
    assert step["dropped"] == {"odd": 9}  # 7 is an error (skip) or not in the input
    assert step["errors"] == (1 if on_error == "skip" else 0)


def test_filter_that_produces_columns_must_return_them(tmp_path):
    class Forgets(FilterOperation):
        name = "test_forgets_columns"
        consumes = {"n": "int64"}
        produces = {"half": "int64"}

        def process(self, batch):
            return batch["n"].to_numpy() > 0, "nonpositive"

    write_jsonl(tmp_path / "in.jsonl", [{"n": 1}, {"n": 2}])
    ds = dm.Dataset.read(str(tmp_path / "in.jsonl")).apply(Forgets)
    with pytest.raises(OperationError, match="must return \\(mask, reasons, columns\\)"):
        ds.collect(tmp_path / "w", progress=False)


class Overlapping(MapOperation):
    """`double` = 2n, submitted ahead; `waiting`: the batches submitted and not yet collected
    when this one was. Raises on n == 13 (a row error, isolated through `process`)."""

    name = "test_overlapping"
    consumes = {"n": "int64"}
    produces = {"double": "int64", "waiting": "int64"}
    batch_size = 10
    batches_in_flight = 3

    def submit(self, batch):
        self.waiting = getattr(self, "waiting", 0) + 1
        return batch["n"].to_pylist()

    def collect(self, handle):
        waiting, self.waiting = self.waiting, self.waiting - 1
        if 13 in handle:
            raise ValueError("thirteen")
        return {"double": [2 * v for v in handle], "waiting": [waiting] * len(handle)}

    def process(self, batch):
        return self.collect(self.submit(batch))


def test_overlapping_batches_keep_order_and_row_errors(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(95)])
    ds = dm.Dataset.read(str(tmp_path / "in.jsonl")).apply(Overlapping, on_error="skip")
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    table = ds.collect(tmp_path / "w", progress=False)
    assert table["n"].to_pylist() == [i for i in range(95) if i != 13]
    assert table["double"].to_pylist() == [2 * i for i in range(95) if i != 13]
    assert max(table["waiting"].to_pylist()) == 3  # three batches submitted at once, no more
    step = result.step("test_overlapping")
    assert step["errors"] == 1 and step["rows_out"] == 94


def test_setup_runs_once_per_worker(tmp_path):
    ds = _many_partitions(tmp_path).apply(SetupCounter)
    table = ds.collect(tmp_path / "w", workers=2, progress=False)
    assert set(table["setups"].to_pylist()) == {1}
    assert len(set(table["pid"].to_pylist())) <= 2


class SetupInDriver(SetupCounter):
    """SetupCounter, set up once in the driver before the workers are forked."""

    name = "test_setup_in_driver"
    produces = {"pid": "int64", "setups": "int64", "setup_pid": "int64"}
    setup_before_fork = True

    def setup(self):
        super().setup()
        self.setup_pid = os.getpid()

    def process(self, batch):
        return {**super().process(batch), "setup_pid": [self.setup_pid] * batch.num_rows}


def test_setup_before_fork_runs_once_in_the_driver(tmp_path):
    ds = _many_partitions(tmp_path).apply(SetupInDriver)
    table = ds.collect(tmp_path / "w", workers=2, progress=False)
    workers = set(table["pid"].to_pylist())
    assert set(table["setup_pid"].to_pylist()) == {os.getpid()}
    assert workers and os.getpid() not in workers
    assert set(table["setups"].to_pylist()) == {1}


def test_only_consumed_columns_are_read(tmp_path):
    seen = {}

    class Spy(MapOperation):
        name = "test_spy"
        consumes = {"n": "int64"}
        produces = {"m": "int64"}

        def process(self, batch):
            seen["columns"] = batch.schema.names
            return {"m": pc.multiply(batch["n"], 2)}

    table = pa.table({"n": list(range(10)), "big": ["x" * 100] * 10})
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "t.parquet")
    out = dm.Dataset.read(tmp_path / "t.parquet").apply(Spy).collect(tmp_path / "w", workers=1,
                                                                      progress=False)
    assert seen["columns"] == ["n"]
    assert out["m"].to_pylist() == [2 * i for i in range(10)]


class Fragile(MapOperation):
    """Fails on rows whose n is a multiple of 100."""

    name = "test_fragile"
    consumes = {"n": "int64"}
    produces = {"inv": "float64"}

    def process(self, batch):
        values = batch["n"].to_pylist()
        if any(v % 100 == 0 for v in values):
            raise ValueError(f"cannot handle {[v for v in values if v % 100 == 0][0]}")
        return {"inv": [1 / v for v in values]}


def test_on_error_raise_names_step_and_row(tmp_path, docs):
    ds = dm.Dataset.read(docs).apply(Fragile)
    with pytest.raises(OperationError) as err:
        ds.run(tmp_path / "w", workers=1, progress=False)
    msg = str(err.value)
    assert "test_fragile" in msg and "_id=0" in msg and "cannot handle 0" in msg


def test_on_error_raise_from_worker_process(tmp_path):
    ds = _many_partitions(tmp_path).apply(Fragile)
    with pytest.raises(OperationError, match="test_fragile"):
        ds.run(tmp_path / "w", workers=2, progress=False)


def test_on_error_skip_and_quarantine(tmp_path, docs):
    skip = dm.Dataset.read(docs).apply(Fragile, on_error="skip")
    table = skip.collect(tmp_path / "w1", workers=1, progress=False)
    assert table.num_rows == 495 and 0 not in table["n"].to_pylist()
    quarantine = dm.Dataset.read(docs).apply(Fragile, on_error="quarantine").apply(Upper)
    result = quarantine.run(tmp_path / "w2", workers=1, progress=False)
    assert result.step("test_fragile")["errors"] == 5
    import pyarrow.parquet as pq

    step_dir = tmp_path / "w2" / "steps" / quarantine.step.parent.key
    q = pq.read_table(next(step_dir.glob("quarantine-*.parquet")))
    assert q.num_rows == 5
    assert sorted(q["n"].to_pylist()) == [0, 100, 200, 300, 400]
    # the whole input row, every column (not only the consumed `n`), to replay it
    assert q.column_names[5:] == list(quarantine.step.parent.parent.schema)[1:]
    assert q.filter(pc.equal(q["n"], 100))["text"].to_pylist() == [make_rows(500)[100]["text"]]
    for error in q["_error"].to_pylist():  # the exception's text once, not twice
        assert error.count("cannot handle") == 1 and error.startswith("ValueError: ")
    assert set(q["_path"].to_pylist()) == {str(docs)}
    out = quarantine.collect(tmp_path / "w2", workers=1, progress=False)
    assert out.num_rows == 495
    assert out["upper"].to_pylist() == [r["text"].upper() for r in make_rows(500)
                                        if r["n"] % 100]


def test_decorated_and_pandas_operations(tmp_path, docs):
    @dm.map_operation(consumes={"n": "int64"}, produces={"double": "int64"})
    def double(batch, factor: int = 2):
        """Multiply n."""
        return {"double": pc.multiply(batch["n"], factor)}

    @dm.filter_operation(consumes={"text": "string"})
    def has_data(batch: pd.DataFrame, word: str = "data"):  # noqa: F821
        return batch["text"].str.contains(word).to_numpy(), "no_word"

    ds = dm.Dataset.read(docs).apply(double, factor=3).apply(has_data)
    assert has_data.batch_format == "pandas"
    table = ds.collect(tmp_path / "w", workers=1, progress=False)
    rows = [r for r in make_rows(500) if "data" in r["text"]]
    assert table["double"].to_pylist() == [3 * r["n"] for r in rows]
    with pytest.raises(dm.ArgumentError, match="did you mean 'factor'"):
        dm.Dataset.read(docs).apply(double, factr=3)


def test_bad_operation_output_is_reported(tmp_path, docs):
    class Wrong(MapOperation):
        name = "test_wrong_output"
        consumes = {"n": "int64"}
        produces = {"x": "int64"}

        def process(self, batch):
            return {"y": batch["n"]}

    with pytest.raises(OperationError, match="did not return declared column"):
        dm.Dataset.read(docs).apply(Wrong).run(tmp_path / "w", workers=1, progress=False)

    class WrongType(MapOperation):
        name = "test_wrong_type"
        consumes = {"text": "string"}
        produces = {"x": "int64"}

        def process(self, batch):
            return {"x": batch["text"]}

    with pytest.raises(OperationError, match="declared int64"):
        dm.Dataset.read(docs).apply(WrongType).run(tmp_path / "w2", workers=1, progress=False)


def test_multiple_outputs_share_prefix(tmp_path, docs):
    base = dm.Dataset.read(docs).apply(EvenOnly)
    a = base.apply(Upper).write(tmp_path / "a")
    b = base.apply("text_length_filter", min_words=3).write(tmp_path / "b", format="jsonl")
    result = dm.LocalExecutor(tmp_path / "w", workers=1, progress=False).run([a, b])
    assert {s["name"] for s in result.steps} >= {"read_jsonl", "test_even_only", "test_upper",
                                                 "text_length_filter"}
    assert list((tmp_path / "a").glob("*.parquet")) and list((tmp_path / "b").glob("*.jsonl"))


class BatchSpy(MapOperation):
    """Records the rows and bytes of every batch it is given."""

    name = "test_batch_spy"
    consumes = {"text": "string"}
    produces = {"chars": "int64"}
    seen: list = []

    def process(self, batch):
        BatchSpy.seen.append((batch.num_rows, batch.nbytes))
        return {"chars": pc.utf8_length(batch["text"]).cast(pa.int64())}


@pytest.mark.parametrize("source_batch", [True, False])
def test_batches_are_capped_by_bytes(tmp_path, monkeypatch, source_batch):
    """Long rows make small batches: a batch holds about BATCH_BYTES of input, whatever the
    row count (a stage reading from the source and one reading stored columns alike)."""
    from datamill.executors import rowwise

    rows = [{"text": "word " * (200 + 50 * (i % 5)), "n": i} for i in range(400)]  # 1-2 KB
    src = write_jsonl(tmp_path / "long.jsonl", rows)
    ds = dm.Dataset.read(src)
    if not source_batch:  # the map runs in a second stage, reading the filter's output
        ds = ds.filter(lambda b: [True] * b.num_rows, consumes=["n"])
        ds.run(tmp_path / "w", workers=1, progress=False)
    monkeypatch.setattr(rowwise, "BATCH_BYTES", 16_000)
    BatchSpy.seen = []
    table = ds.apply(BatchSpy).collect(tmp_path / "w", columns=["n", "chars"], workers=1,
                                       progress=False)
    assert table["chars"].to_pylist() == [len(r["text"]) for r in rows]
    assert sum(n for n, _ in BatchSpy.seen) == 400
    assert len(BatchSpy.seen) >= 400 * 1500 // 16_000  # cut by bytes, not by 65,536 rows
    assert max(b for _, b in BatchSpy.seen) <= 16_000 + 2_500  # budget + at most one row


class InFlightSpy(MapOperation):
    """Counts, at each call, the batches it was given that are still alive (held anywhere)."""

    name = "test_in_flight_spy"
    consumes = {"text": "string"}
    produces = {"chars": "int64"}
    given: list = []
    alive: list = []

    def process(self, batch):
        import weakref

        InFlightSpy.given.append(weakref.ref(batch))
        InFlightSpy.alive.append(sum(ref() is not None for ref in InFlightSpy.given))
        return {"chars": pc.utf8_length(batch["text"]).cast(pa.int64())}


def test_one_batch_in_flight_per_worker(tmp_path, monkeypatch):
    """A pass holds no batch once the next one is given to an operation: the memory of a
    worker is one batch, however many batches its partition has."""
    from datamill.executors import rowwise

    rows = [{"text": "word " * (200 + 50 * (i % 5)), "n": i} for i in range(400)]
    src = write_jsonl(tmp_path / "long.jsonl", rows)
    monkeypatch.setattr(rowwise, "BATCH_BYTES", 16_000)
    InFlightSpy.given, InFlightSpy.alive = [], []
    ds = dm.Dataset.read(src).apply(EvenOnly).apply(InFlightSpy)
    table = ds.collect(tmp_path / "w", columns=["chars"], workers=1, progress=False)
    assert table.num_rows == 200
    assert len(InFlightSpy.alive) >= 20  # many batches went through
    assert max(InFlightSpy.alive) == 1  # only the batch being processed


class SmallBatches(MapOperation):
    """Asks for batches of at most 16 kB."""

    name = "test_small_batches"
    consumes = {"text": "string"}
    produces = {"chars": "int64"}
    batch_bytes = 16_000

    def process(self, batch):
        return {"chars": pc.utf8_length(batch["text"]).cast(pa.int64())}


@pytest.mark.parametrize("small", [True, False])
def test_jsonl_parses_what_the_smallest_step_takes(tmp_path, monkeypatch, small):
    """The JSONL reader parses chunks no larger than the smallest `batch_bytes` a step of the
    pass declares, so no larger input sits in memory than a step takes at once."""
    from datamill.io import jsonl

    rows = [{"text": "word " * (200 + 50 * (i % 5)), "n": i} for i in range(400)]
    src = write_jsonl(tmp_path / "long.jsonl", rows)
    parsed = []
    read_json = jsonl._read_json
    monkeypatch.setattr(jsonl, "_read_json",
                        lambda data, schema: parsed.append(len(data)) or read_json(data, schema))
    monkeypatch.setattr(jsonl, "PARSE_CHUNK", 200_000)
    ds = dm.Dataset.read(src, schema={"text": "string", "n": "int64"})
    ds = ds.apply(SmallBatches if small else Upper)
    ds.run(tmp_path / "w", workers=1, progress=False)
    parsed, during_run = [], parsed
    table = ds.collect(tmp_path / "w", columns=["n"], workers=1, progress=False)
    assert table["n"].to_pylist() == list(range(400))
    parsed = during_run
    limit = 16_000 if small else 200_000
    assert max(parsed) <= limit + 2_000  # the chunk, then the rest of its last line
    assert len(parsed) >= sum(len(r["text"]) for r in rows) // limit


def test_batch_slices_cover_the_table_once():
    from datamill.executors.rowwise import batch_slices

    table = pa.table({"x": list(range(1000)), "s": ["a" * (i % 50) for i in range(1000)]})
    parts = list(batch_slices(table, max_bytes=2_000, max_rows=64))
    assert pa.concat_tables(parts).equals(table)
    assert max(p.num_rows for p in parts) <= 64
    assert all(p.nbytes <= 2_000 + 64 for p in parts)
    assert [p.num_rows for p in batch_slices(table.slice(0, 0))] == []
    huge = pa.table({"s": ["x" * 10_000] * 3})
    assert [p.num_rows for p in batch_slices(huge, max_bytes=100)] == [1, 1, 1]
