"""The process that runs operations inside their isolated environment (environments.py).

One per environment and calling process, started by `isolated.EnvironmentWorker` with the
environment's Python; it holds the operations that need the environment, reads requests
on stdin and answers on stdout, each message a JSON header and an Arrow IPC stream:

    parent -> worker   {"init": id} + the operation            {"call": id} + a batch
    worker -> parent   {"ok": true, ...} + the result table, or {"ok": false, "type": ...}

The operation is rebuilt here from its class (imported by module, or loaded from the file
that defines it, as multiprocessing's spawn does: a script's `__main__` runs as
`__mp_main__`) and its arguments; `setup()` runs once. What the operation prints goes to
stderr: stdout carries the protocol alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pickle
import struct
import sys
import traceback
from typing import Any, BinaryIO

HEADER = struct.Struct("<IQ")  # JSON header length, payload length


def send(out: BinaryIO, header: dict, table: Any = None, raw: bytes = b"") -> None:
    """Write one message: `header`, then `table` as an Arrow IPC stream (or `raw` bytes)."""
    payload: Any = raw
    if table is not None:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        payload = sink.getvalue()  # written from Arrow's buffer, not copied into bytes
    data = json.dumps(header).encode()
    out.write(HEADER.pack(len(data), len(payload)) + data)
    if len(payload):
        out.write(payload)
    out.flush()


def receive(inp: BinaryIO, raw: bool = False) -> tuple[dict, Any] | None:
    """The next message (None at the end of the stream); its payload as a Table, or as
    bytes when `raw`."""
    head = inp.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    size, payload_size = HEADER.unpack(head)
    header = json.loads(_read(inp, size))
    payload = _read(inp, payload_size) if payload_size else None
    if payload is not None and not raw:
        import pyarrow as pa

        payload = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    return header, payload


def _read(inp: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = inp.read(left)
        if not chunk:
            raise EOFError("the other end of an environment worker's pipe went away")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def load_class(module: str, path: str | None, qualname: str) -> type:
    """The operation class `module.qualname`, importing its module, or loading the file
    that defines it when it cannot be imported by name (a pipeline file, a script)."""
    name = "__mp_main__" if module == "__main__" else module  # this process's __main__ is
    if name in sys.modules:                                    # the worker's own
        found: Any = sys.modules[name]
    elif module != "__main__" and importlib.util.find_spec(module) is not None:
        found = importlib.import_module(module)
    elif path:
        spec = importlib.util.spec_from_file_location(name, path)
        found = importlib.util.module_from_spec(spec)
        sys.modules[name] = found
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in sys.path:
            sys.path.append(folder)
        spec.loader.exec_module(found)
    else:
        raise ImportError(f"cannot import module {module!r} of the operation")
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def send_error(out: BinaryIO, exc: BaseException) -> None:
    """Report `exc`: its type, message and innermost frame; a DatamillError also pickled
    whole (it keeps its step, column, row across processes)."""
    from ..errors import DatamillError

    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}, line {frames[-1].lineno}, in {frames[-1].name}" \
        if frames else ""
    raw = b""
    if isinstance(exc, DatamillError):
        try:
            raw = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an unpicklable attribute: the message will do
            raw = b""
    send(out, {"ok": False, "type": type(exc).__name__, "message": str(exc), "where": where,
               "traceback": "".join(traceback.format_exception(exc))}, raw=raw)


def result_header_and_table(op: Any, result: Any, produced: dict[str, str]) -> tuple[dict, Any]:
    """What the operation returned, as a header (filter masks' reasons) and one Table."""
    import pyarrow as pa

    header: dict = {"ok": True, "counters": op.take_counters()}
    if op.kind == "filter":
        parts = result if isinstance(result, tuple) else (result,)
        mask = parts[0]
        if isinstance(mask, (pa.Array, pa.ChunkedArray)):
            mask = mask.fill_null(False)
        columns = {"_mask": pa.array(mask, pa.bool_())}
        reasons = parts[1] if len(parts) > 1 else None
        if isinstance(reasons, (pa.Array, pa.ChunkedArray)):
            reasons = reasons.to_pylist()
        elif reasons is not None and not isinstance(reasons, str):
            reasons = list(reasons)
        header["reasons"] = reasons
        if len(parts) > 2:
            header["columns"] = True
            extra = _table(parts[2], produced)
            for name in extra.schema.names:
                columns[name] = extra.column(name)
        return header, pa.table(columns)
    if not isinstance(result, (pa.Table, pa.RecordBatch, dict)) and not hasattr(result, "columns"):
        header["single"] = True
        result = {"_value": result}
    return header, _table(result, produced)


def _table(result: Any, produced: dict[str, str]) -> Any:
    import pyarrow as pa

    from ..schema import to_arrow_type

    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    if isinstance(result, pa.Table):
        return result
    if hasattr(result, "columns") and hasattr(result, "to_dict"):  # pandas
        return pa.Table.from_pandas(result, preserve_index=False)
    arrays = {}
    for name, value in dict(result).items():
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            arrays[str(name)] = value
            continue
        typ = to_arrow_type(produced[name]) if name in produced else None
        try:
            arrays[str(name)] = pa.array(value, type=typ, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            arrays[str(name)] = pa.array(value, from_pandas=True)
    return pa.table(arrays)


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the operation's prints go to stderr
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    ops: dict[str, tuple[Any, dict]] = {}  # id -> (operation, its produced columns)
    while True:
        message = receive(inp, raw=True)
        if message is None:
            break
        header, payload = message
        op = None
        try:
            if "init" in header:
                init = pickle.loads(payload)
                cls = load_class(init["module"], init["path"], init["qualname"])
                op = cls(**init["arguments"])
                op.setup()
                ops[init["id"]] = (op, init["produced"])
                send(out, {"ok": True, "pid": os.getpid(), "python": sys.version})
                continue
            import pyarrow as pa

            op, produced = ops[header["call"]]
            table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            batch = table.to_pandas() if op.batch_format == "pandas" else table
            op.take_counters()
            result = op.process(batch)
            reply, result_table = result_header_and_table(op, result, produced)
            send(out, reply, result_table)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            if op is not None:
                op.take_counters()
            send_error(out, exc)
    for op, _ in ops.values():
        op.teardown()
