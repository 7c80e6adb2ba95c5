"""Writers of fine-tuning sets, one set of files per split (the `split` column, e.g. from
assign_split): OpenAI fine-tuning JSONL (validated), a Hugging Face `save_to_disk` folder,
and a Hugging Face Hub Parquet folder with a dataset card listing the lineage.

Each partition writes its own files per split, committed atomically (temp name, rename) with
checksums, so a killed run resumes from its committed partitions, as the other file sinks
do. After the last partition, `finalize` writes what describes the whole (the merged OpenAI
files, `state.json`/`dataset_dict.json`, the card) and lists them in `_datamill_published.json`:
a step whose published files are missing is not complete, and runs `finalize` again."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from pydantic import Field

from ..errors import OperationError, StorageError
from ..messages import ROLES, is_messages
from ..operation import Arguments
from .sink import LINEAGE, ChecksummedFile, FileSink

PUBLISHED = "_datamill_published.json"


class SplitSinkArgs(Arguments):
    path: str = Field(description="Output directory (any fsspec URL).")
    split: str = Field("split", description="Column naming each row's split (assign_split's "
                                            "output); rows without one go to default_split.")
    default_split: str = Field("train", description="The split of rows with no split column "
                                                    "or a null in it.")


class SplitSink(FileSink):
    """Shared machinery: per partition, one file per split (`_name(split, partition)`)."""

    Args = SplitSinkArgs
    private_columns = ("_id",)

    def _name(self, split: str, index: int) -> str:
        raise NotImplementedError

    def _owned(self) -> list[str]:
        """The partitions' files under the output folder, and temp files of killed writes
        (cleared on a fresh write)."""
        raise NotImplementedError

    def _publish(self, record: dict, lineage: dict) -> list[str]:
        """Write what describes the whole; return the files written (relative names)."""
        return []

    def _columns(self, table: Any) -> Any:
        """The columns written (the split column and private columns aside)."""
        return table.select([c for c in table.schema.names
                             if not c.startswith("_") and c != self.args.split])

    # --- lifecycle --------------------------------------------------------------------
    def prepare(self, fresh: bool = True) -> None:
        import os

        self._driver_pid = os.getpid()
        fs = self.fs
        fs.makedirs(self._root, exist_ok=True)
        for f in self._owned():  # partitions' files (kept when resuming) and temp files
            if fresh or ".tmp-" in f.rsplit("/", 1)[-1]:
                fs.rm(f)
        published = list(self._published_files())  # rewritten by finalize
        for name in [*published, PUBLISHED, "_SUCCESS", *([LINEAGE] if fresh else [])]:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(f"{self._root}/{name}")

    def _relative(self, path: str) -> str:
        return path[len(self._root.rstrip("/")) + 1:]

    def _published_files(self) -> dict[str, int]:
        try:
            return json.loads(self.fs.cat_file(f"{self._root}/{PUBLISHED}").decode())["files"]
        except (FileNotFoundError, ValueError, KeyError):
            return {}

    def open_partition(self, index: int) -> SplitWriter:
        for stale in self._owned():
            name = self._relative(stale)
            if ".tmp-" in name and f"{index:05d}" in name:
                self.fs.rm(stale)
        return SplitWriter(self, index)

    def finalize(self, record: dict, lineage: dict) -> None:
        fs = self.fs
        try:
            written = self._publish(record, lineage)
            files = {name: fs.info(f"{self._root}/{name}")["size"] for name in written}
            with fs.open(f"{self._root}/{PUBLISHED}", "w") as fh:
                fh.write(json.dumps({"files": files}, indent=1))
        except OSError as exc:
            raise StorageError(f"cannot finish {self.args.path}: {exc}") from exc
        super().finalize(record, lineage)

    def outputs_ok(self, record: dict) -> bool:
        if not super().outputs_ok(record):
            return False
        if "partitions" not in record:  # one partition's files
            return True
        published = self._published_files()  # the whole step: finalize's files too
        if not self.fs.exists(f"{self._root}/{PUBLISHED}"):
            return False
        for name, size in published.items():
            try:
                if self.fs.info(f"{self._root}/{name}")["size"] != size:
                    return False
            except FileNotFoundError:
                return False
        return True

    # --- per format -------------------------------------------------------------------
    def _start(self, fh: Any, schema: Any) -> Any:
        raise NotImplementedError

    def _write_rows(self, writer: Any, table: Any, ids: list[int]) -> None:
        raise NotImplementedError

    def _finish(self, writer: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def split_rows(sink: SplitSink, table: Any) -> dict[str, Any]:
        """{split: positions} of the rows of `table`."""
        import numpy as np
        import pyarrow as pa

        default = sink.args.default_split
        if sink.args.split not in table.schema.names:
            return {default: np.arange(table.num_rows)}
        values = table.column(sink.args.split)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.string())
        names = np.asarray([default if v is None else v for v in values.to_pylist()],
                           dtype=object)
        for name in dict.fromkeys(names.tolist()):
            if not name or "/" in name or name.startswith((".", "_")):
                raise OperationError(f"split name {name!r} cannot name a file",
                                     step=sink.name)
        return {name: np.flatnonzero(names == name) for name in dict.fromkeys(names.tolist())}


class SplitWriter:
    """One partition: a file per split met, each committed on close."""

    def __init__(self, sink: SplitSink, index: int):
        self.sink, self.index = sink, index
        self.fs, self.root = sink.fs, sink._root
        self.open: dict[str, tuple] = {}  # split -> (final, tmp, fh, writer, rows)
        self.done: list[dict] = []

    def write(self, table: Any) -> None:
        ids = table.column("_id").to_pylist() if "_id" in table.schema.names else \
            [None] * table.num_rows
        data = self.sink._columns(table)
        try:
            for split, positions in SplitSink.split_rows(self.sink, table).items():
                if split not in self.open:
                    final = f"{self.root}/{self.sink._name(split, self.index)}"
                    folder, name = final.rsplit("/", 1)
                    self.fs.makedirs(folder, exist_ok=True)
                    tmp = f"{folder}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
                    fh = ChecksummedFile(self.fs.open(tmp, "wb"))
                    self.open[split] = [final, tmp, fh, self.sink._start(fh, data.schema), 0]
                entry = self.open[split]
                rows = data.take(positions)
                self.sink._write_rows(entry[3], rows, [ids[i] for i in positions.tolist()])
                entry[4] += rows.num_rows
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.sink.args.path}: {exc}") from exc
        except BaseException:
            self.abort()
            raise

    def close(self) -> list[dict]:
        try:
            for split, (final, tmp, fh, writer, rows) in self.open.items():
                self.sink._finish(writer)
                fh.close()
                self.fs.mv(tmp, final)
                self.done.append({"file": final[len(self.root.rstrip("/")) + 1:],
                                  "size": self.fs.info(final)["size"],
                                  "checksum": fh.checksum.value(), "split": split,
                                  "rows": rows})
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.sink.args.path}: {exc}") from exc
        self.open = {}
        return self.done

    def abort(self) -> None:
        for _final, tmp, fh, writer, _rows in self.open.values():
            with contextlib.suppress(Exception):
                self.sink._finish(writer)  # its file is removed below
            with contextlib.suppress(Exception):
                fh.close()
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
        for done in self.done:
            with contextlib.suppress(Exception):
                self.fs.rm(f"{self.root}/{done['file']}")
        self.open, self.done = {}, []


def split_rows_of(record: dict) -> dict[str, int]:
    """Rows per split over the partitions' committed files."""
    counts = {split: 0 for split in files_of(record)}
    for out in record.get("outputs", []):
        if "split" in out:
            counts[out["split"]] += int(out.get("rows", 0))
    return counts


SPLIT_ORDER = ("train", "validation", "test")


def files_of(record: dict) -> dict[str, list[str]]:
    """The committed files per split (train, validation, test first), in partition order."""
    files: dict[str, list[str]] = {}
    for out in sorted(record.get("outputs", []), key=lambda o: o["file"]):
        if "split" in out:
            files.setdefault(out["split"], []).append(out["file"])
    known = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return dict(sorted(files.items(), key=lambda kv: (known.get(kv[0], len(known)), kv[0])))


# --- OpenAI fine-tuning JSONL -------------------------------------------------------------

OPENAI_ROLES = ("system", "user", "assistant")


def openai_problem(conversation: Any) -> str | None:
    """What makes a conversation unfit for OpenAI's chat fine-tuning files, or None:
    messages present; roles system, user, assistant (a tool message needs the assistant's
    tool_calls, which the messages type does not carry); non-empty string contents; a
    `weight`, where present, only on assistant messages and 0 or 1; at least one assistant
    message."""
    if not conversation:
        return "no messages"
    for i, m in enumerate(conversation):
        role = m.get("role")
        if role not in OPENAI_ROLES:
            extra = " (tool messages need tool_calls, which are not kept)" \
                if role in ROLES else ""
            return f"message {i} has role {role!r}; allowed: {', '.join(OPENAI_ROLES)}{extra}"
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"message {i} ({role}) has empty content"
        weight = m.get("weight")
        if weight is not None:
            if role != "assistant":
                return f"message {i} ({role}) has a weight; only assistant messages may"
            if weight not in (0, 1):
                return f"message {i} has weight {weight!r}; allowed: 0 or 1"
    if not any(m.get("role") == "assistant" for m in conversation):
        return "no assistant message"
    return None


class MessagesSink(SplitSink):
    """A split sink that writes only the `column` of conversations (a `messages` column)."""

    def resolve_consumes(self, schema: dict) -> dict:
        from ..schema import normalize_columns

        return normalize_columns({self.args.column: "messages"})

    def _columns(self, table: Any) -> Any:
        return table.select([self.args.column])


class WriteOpenaiArgs(SplitSinkArgs):
    column: str = Field("messages", description="The messages column (a `weight` field per "
                                                "message, 0 or 1, is kept).")


class WriteOpenai(MessagesSink):
    """Write OpenAI chat fine-tuning files: `<split>.jsonl` per split (e.g. `train.jsonl`,
    `validation.jsonl`), each line `{"messages": [{"role", "content"[, "weight"]}, ...]}`.
    Every row is checked against OpenAI's documented rules (roles system, user, assistant;
    non-empty contents; `weight` 0 or 1 on assistant messages only; at least one assistant
    message); a row that breaks one stops the run with an error naming its `_id` and the
    rule (run validate_chat first to drop such rows instead). Partitions' files are kept in
    `parts/`; the per-split files are joined from them after the last partition."""

    name = "write_openai"
    Args = WriteOpenaiArgs
    extension = "jsonl"

    def _name(self, split: str, index: int) -> str:
        return f"parts/{split}-{index:05d}.jsonl"

    def _owned(self) -> list[str]:
        fs, root = self.fs, self._root.rstrip("/")
        return fs.glob(f"{root}/parts/*.jsonl") + fs.glob(f"{root}/parts/.*.tmp-*") + \
            fs.glob(f"{root}/.*.jsonl.tmp-*")

    def _start(self, fh: Any, schema: Any) -> Any:
        if not is_messages(schema.field(self.args.column).type):
            raise OperationError(f"column {self.args.column!r} is not a messages column",
                                 step=self.name)
        return fh

    def _write_rows(self, writer: Any, table: Any, ids: list[int]) -> None:
        lines = []
        for row_id, conversation in zip(ids, table.column(self.args.column).to_pylist()):
            problem = openai_problem(conversation)
            if problem is not None:
                raise OperationError(f"row _id={row_id} is not a valid OpenAI fine-tuning "
                                     f"example: {problem} (drop such rows first with "
                                     "validate_chat)", step=self.name, row_id=row_id)
            messages = [{"role": m["role"], "content": m["content"],
                         **({"weight": int(m["weight"])} if m.get("weight") is not None
                            else {})} for m in conversation]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        if lines:
            writer.write(("\n".join(lines) + "\n").encode("utf-8"))

    def _finish(self, writer: Any) -> None:
        pass

    def _publish(self, record: dict, lineage: dict) -> list[str]:
        fs, root = self.fs, self._root.rstrip("/")
        written = []
        for split, parts in files_of(record).items():
            final = f"{root}/{split}.jsonl"
            tmp = f"{root}/.{split}.jsonl.tmp-{uuid.uuid4().hex[:8]}"
            with fs.open(tmp, "wb") as out:
                for part in parts:
                    with fs.open(f"{root}/{part}", "rb") as fh:
                        while block := fh.read(1 << 22):
                            out.write(block)
            fs.mv(tmp, final)
            written.append(f"{split}.jsonl")
        return written


# --- Hugging Face: a save_to_disk folder ---------------------------------------------------

def _hf_features(schema: Any) -> dict:
    """The `datasets` Features of an Arrow schema, as dataset_info.json holds them."""
    try:
        import datasets
    except ImportError:
        raise ImportError("the Hugging Face writers need datasets: "
                          "pip install 'datamill[finetune]'") from None
    return datasets.Features.from_arrow_schema(schema).to_dict()


class WriteHfDataset(SplitSink):
    """Write a Hugging Face `DatasetDict` folder, as `save_to_disk` lays it out and
    `datasets.load_from_disk` (or `Dataset.read(path)`) reads it: a folder per split of
    Arrow stream files (`data-PPPPP-of-NNNNN.arrow`, one per partition holding rows of the
    split) with `state.json` and `dataset_info.json` (the features), and
    `dataset_dict.json` naming the splits. Written by datamill partition by partition
    (bounded memory, resumable); the `datasets` library only describes the features."""

    name = "write_hf_dataset"
    extension = "arrow"

    def _name(self, split: str, index: int) -> str:
        return f"{split}/data-{index:05d}-of-{self.partition_count or 1:05d}.arrow"

    def _owned(self) -> list[str]:
        fs, root = self.fs, self._root.rstrip("/")
        return fs.glob(f"{root}/*/data-*-of-*.arrow") + fs.glob(f"{root}/*/.data-*.tmp-*")

    def _start(self, fh: Any, schema: Any) -> Any:
        import pyarrow as pa

        self._schema = schema
        return pa.ipc.new_stream(fh, schema)

    def _write_rows(self, writer: Any, table: Any, ids: list[int]) -> None:
        writer.write_table(table)

    def _finish(self, writer: Any) -> None:
        writer.close()

    def _publish(self, record: dict, lineage: dict) -> list[str]:
        import pyarrow as pa

        fs, root = self.fs, self._root.rstrip("/")
        written = []
        splits = files_of(record)
        for split, files in splits.items():
            with fs.open(f"{root}/{files[0]}", "rb") as fh:
                schema = pa.ipc.open_stream(fh).schema
            state = {"_data_files": [{"filename": f.rsplit("/", 1)[-1]} for f in files],
                     "_fingerprint": record.get("cache_key", uuid.uuid4().hex)[:16],
                     "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                     "_output_all_columns": False, "_split": split}
            info = {"citation": "", "description": "written by datamill", "homepage": "",
                    "license": "", "features": _hf_features(schema)}
            for name, body in (("state.json", state), ("dataset_info.json", info)):
                with fs.open(f"{root}/{split}/{name}", "w") as fh:
                    fh.write(json.dumps(body, indent=2))
                written.append(f"{split}/{name}")
        with fs.open(f"{root}/dataset_dict.json", "w") as fh:
            fh.write(json.dumps({"splits": list(splits)}))
        return [*written, "dataset_dict.json"]


# --- Hugging Face: a Hub-layout Parquet folder with a dataset card --------------------------

class WriteHfParquetArgs(SplitSinkArgs):
    title: str | None = Field(None, description="The card's title (default: the folder's "
                                                "name).")
    compression: str = Field("zstd", description="Parquet codec.")


class WriteHfParquet(SplitSink):
    """Write a folder laid out as a Hugging Face Hub dataset repository: Parquet files
    `data/<split>-PPPPP-of-NNNNN.parquet` (one per partition holding rows of the split;
    NNNNN is the number of partitions) and a `README.md` dataset card whose YAML header
    declares the splits (`configs:`), with the rows per split and the lineage from the
    manifest: each step's operation, arguments, rows in and out, and drop reasons. Upload
    the folder as it is (`huggingface-cli upload --repo-type dataset NAME FOLDER`)."""

    name = "write_hf_parquet"
    Args = WriteHfParquetArgs
    extension = "parquet"

    def _name(self, split: str, index: int) -> str:
        return f"data/{split}-{index:05d}-of-{self.partition_count or 1:05d}.parquet"

    def _owned(self) -> list[str]:
        fs, root = self.fs, self._root.rstrip("/")
        return fs.glob(f"{root}/data/*-of-*.parquet") + fs.glob(f"{root}/data/.*.tmp-*")

    def _start(self, fh: Any, schema: Any) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(fh, schema, compression=self.args.compression)

    def _write_rows(self, writer: Any, table: Any, ids: list[int]) -> None:
        writer.write_table(table)

    def _finish(self, writer: Any) -> None:
        writer.close()

    def _publish(self, record: dict, lineage: dict) -> list[str]:
        title = self.args.title or self._root.rstrip("/").rsplit("/", 1)[-1]
        card = dataset_card(title, split_rows_of(record), lineage)
        with self.fs.open(f"{self._root.rstrip('/')}/README.md", "w") as fh:
            fh.write(card)
        return ["README.md"]


def dataset_card(title: str, splits: dict[str, int], lineage: dict) -> str:
    """A Hub dataset card: YAML `configs:` header (a split per `data/<split>-*` pattern),
    the rows per split, and the lineage (steps, operations, arguments, rows, drops)."""
    from .._version import __version__

    yaml = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        yaml += [f"  - split: {split}", f"    path: data/{split}-*"]
    lines = [*yaml, "---", "", f"# {title}", "",
             f"Written by datamill {__version__}. Rows per split:", "",
             "| split | rows |", "| --- | --- |"]
    lines += [f"| {s} | {n} |" for s, n in splits.items()]
    lines += ["", "## Lineage", "", "The steps that made this dataset, in order (from the "
              "run's manifest):", "",
              "| step | operation | rows in | rows out | dropped |",
              "| --- | --- | --- | --- | --- |"]
    steps = [s for s in lineage.get("steps", []) if s.get("kind") != "sink"]
    for s in steps:
        dropped = ", ".join(f"{k}: {v}" for k, v in (s.get("dropped") or {}).items()) or "-"
        lines.append(f"| {s.get('name')} | `{s.get('operation')}` | {s.get('rows_in', '')} | "
                     f"{s.get('rows_out', '')} | {dropped} |")
    lines += ["", "### Arguments", ""]
    for s in steps:
        args = json.dumps(s.get("arguments", {}), ensure_ascii=False, sort_keys=True,
                          default=str)
        lines.append(f"- **{s.get('name')}** (`{s.get('operation')}`): `{args}`")
    return "\n".join(lines) + "\n"


# --- packed token sequences for training -----------------------------------------------------

class WritePackedArgs(SplitSinkArgs):
    tokenizer: str = Field(description="The tokenizer and chat template: a .gguf model file, "
                                       "a tokenizer folder, or a name in the offline Hugging "
                                       "Face cache.")
    max_length: int = Field(2048, gt=0, description="Tokens per packed sequence.")
    column: str = Field("messages", description="The messages column.")
    assistant_only: bool = Field(True, description="Labels only on the assistant's tokens "
                                                   "(-100 elsewhere); False: on every token.")
    compression: str = Field("zstd", description="Parquet codec.")


class WritePacked(MessagesSink):
    """Write conversations as packed token sequences for training, per split:
    `data/<split>-PPPPP-of-NNNNN.parquet` with `input_ids`, `labels`, `position_ids` and
    `seq_lens` (list<int32> each) per packed row. Each conversation is tokenized as the chat
    template renders it; conversations are packed greedily, in order, into rows of at most
    `max_length` tokens (no padding). Boundaries: `position_ids` restart at 0 at each
    conversation and `seq_lens` gives their lengths (cumulated: flash-attention's
    `cu_seqlens`); a trainer must attend within each conversation only (block-diagonal
    causal), as transformers' DataCollatorWithFlattening does from `position_ids`. `labels`
    are -100 on the tokens not trained on: everything but the assistant's turns (found by
    rendering each conversation's prefixes) unless `assistant_only=False`. A conversation
    longer than `max_length` stops the run naming its row (drop such rows before with
    validate_chat(max_tokens=...))."""

    name = "write_packed"
    Args = WritePackedArgs
    extension = "parquet"

    def key_inputs(self) -> dict[str, str]:
        from .tokenizer import tokenizer_digest

        return {"tokenizer": tokenizer_digest(self.args.tokenizer)}

    def _name(self, split: str, index: int) -> str:
        return f"data/{split}-{index:05d}-of-{self.partition_count or 1:05d}.parquet"

    def _owned(self) -> list[str]:
        fs, root = self.fs, self._root.rstrip("/")
        return fs.glob(f"{root}/data/*-of-*.parquet") + fs.glob(f"{root}/data/.*.tmp-*")

    def _start(self, fh: Any, schema: Any) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .tokenizer import load_tokenizer

        ints = pa.list_(pa.int32())
        out = pa.schema([("input_ids", ints), ("labels", ints), ("position_ids", ints),
                         ("seq_lens", ints)])
        return {"writer": pq.ParquetWriter(fh, out, compression=self.args.compression),
                "schema": out, "tok": load_tokenizer(self.args.tokenizer), "rows": [],
                "current": None}

    def _write_rows(self, writer: Any, table: Any, ids: list[int]) -> None:
        tok, limit = writer["tok"], self.args.max_length
        for row_id, conversation in zip(ids, table.column(self.args.column).to_pylist()):
            input_ids, labels = tokenize_for_training(tok, conversation or [],
                                                      self.args.assistant_only)
            if len(input_ids) > limit:
                raise OperationError(f"row _id={row_id} has {len(input_ids)} tokens, more than "
                                     f"max_length={limit} (drop such rows first with "
                                     f"validate_chat(max_tokens={limit}))", step=self.name,
                                     row_id=row_id)
            current = writer["current"]
            if current is None or len(current["input_ids"]) + len(input_ids) > limit:
                self._flush(writer)
                current = writer["current"] = {"input_ids": [], "labels": [],
                                               "position_ids": [], "seq_lens": []}
            current["input_ids"] += input_ids
            current["labels"] += labels
            current["position_ids"] += list(range(len(input_ids)))
            current["seq_lens"].append(len(input_ids))

    def _flush(self, writer: Any, final: bool = False) -> None:
        import pyarrow as pa

        if writer["current"] is not None:
            writer["rows"].append(writer["current"])
            writer["current"] = None
        if writer["rows"] and (final or len(writer["rows"]) >= 256):
            writer["writer"].write_table(pa.Table.from_pylist(writer["rows"], writer["schema"]))
            writer["rows"] = []

    def _finish(self, writer: Any) -> None:
        self._flush(writer, final=True)
        writer["writer"].close()


def tokenize_for_training(tok: Any, conversation: list[dict],
                          assistant_only: bool) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation as the chat template renders it; labels -100
    outside the assistant's turns when `assistant_only`. An assistant turn's tokens are
    those between the rendering of the conversation before it (with the generation prompt)
    and the rendering up to it."""
    def ids(messages: list[dict], prompt: bool = False) -> list[int]:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        return tok(text, add_special_tokens=False)["input_ids"]

    input_ids = ids(conversation)
    if not assistant_only:
        return input_ids, list(input_ids)
    labels = [-100] * len(input_ids)
    for k, m in enumerate(conversation):
        if m.get("role") == "assistant":
            start, end = len(ids(conversation[:k], prompt=True)), len(ids(conversation[:k + 1]))
            labels[start:end] = input_ids[start:end]
    return input_ids, labels
