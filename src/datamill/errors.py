"""Errors datamill raises. Each names what it knows: operation, step, column, file, row."""

from __future__ import annotations


class DatamillError(Exception):
    """Base class of every error datamill raises on purpose."""

    def __reduce__(self):  # keep message and attributes across process boundaries
        return (_restore, (type(self), str(self), dict(self.__dict__)))


def _restore(cls: type, message: str, attributes: dict) -> DatamillError:
    error = Exception.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error


class PipelineError(DatamillError):
    """A pipeline is invalid; raised while the DAG is built, before any data is read."""

    def __init__(self, message: str, *, step: str | None = None, operation: str | None = None):
        self.step = step
        self.operation = operation
        where = []
        if step:
            where.append(f"step {step!r}")
        if operation and operation != step:
            where.append(f"operation {operation!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)


class ArgumentError(PipelineError):
    """An operation received an unknown, missing or ill-typed argument. For an unknown one,
    `unknown` is its name and `known` the operation's argument names."""

    def __init__(self, message: str, *, step: str | None = None, operation: str | None = None,
                 unknown: str | None = None, known: tuple[str, ...] = ()):
        super().__init__(message, step=step, operation=operation)
        self.unknown = unknown
        self.known = tuple(known)


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...], what: str = "") -> str:
    """"; did you mean 'x'?" for the closest candidate (empty when none is close). End a
    clause with it: nothing but a space or a bracket may follow the question mark."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {what + ' ' if what else ''}{close[0]!r}?" if close else ""


class SchemaError(PipelineError):
    """A column is missing, has the wrong type, or collides with another."""


class InputError(DatamillError):
    """Input data could not be read: names the file and, where known, the line or row."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class OperationError(DatamillError):
    """An operation raised while processing rows (with on_error='raise')."""

    def __init__(self, message: str, *, step: str, row_id: int | None = None):
        self.step = step
        self.row_id = row_id
        where = f"step {step!r}"
        if row_id is not None:
            where += f", row _id={row_id}"
        super().__init__(f"[{where}] {message}")


class WorkdirBusyError(DatamillError):
    """Another run holds the workdir's lock."""


class StorageError(DatamillError):
    """Writing or reading the workdir failed (full disk, permissions, corrupt files)."""


class CorruptFileError(StorageError):
    """A committed file of a workdir is missing or its bytes changed since its commit."""

    def __init__(self, message: str, *, workdir: str, key: str, step: str, partition: int,
                 path: str, problem: str):
        self.workdir = workdir
        self.key = key
        self.step = step
        self.partition = partition
        self.path = path
        self.problem = problem
        super().__init__(message)


class OutputBusyError(DatamillError):
    """Another workdir's run is writing the same output folder."""
