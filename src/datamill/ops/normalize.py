"""Text normalization: Unicode forms, mojibake, whitespace and control characters, and
boilerplate lines removed by configurable rules."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

from pydantic import Field

from ..operation import Arguments, MapOperation

DEFAULT_BOILERPLATE = [
    r"(?i)^\s*(this (web)?site uses cookies|we use cookies|accept (all )?cookies)\b.*$",
    r"(?i)^\s*(read more|continue reading|click here|show more|load more)\s*[.…»>]*\s*$",
    r"(?i)^\s*(home|menu|skip to (main )?content|back to top|share( this)?)\s*$",
    r"(?i)^\s*(all rights reserved|copyright ©?|©)\b.*$",
    r"(?i)^\s*(subscribe to (our )?newsletter|sign up for our newsletter)\b.*$",
]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class NormalizeTextArgs(Arguments):
    column: str = Field("text", description="Text column to normalize (replaced in place).")
    unicode_form: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode form.")
    fix_mojibake: bool = Field(False, description="Repair mis-decoded text with ftfy "
                                                  "(install datamill[text]).")
    whitespace: bool = Field(True, description="Drop control characters, collapse runs of "
                                               "spaces, trim lines, keep at most one blank line.")
    boilerplate: list[str] = Field(default_factory=lambda: list(DEFAULT_BOILERPLATE),
                                   description="Regular expressions; a line matching any is "
                                               "removed. Pass [] to keep every line.")


class NormalizeText(MapOperation):
    """Normalize text: Unicode NFC/NFKC, optional mojibake repair, control characters and
    whitespace, and removal of boilerplate lines (cookie banners, "read more", navigation)
    by configurable rules. Replaces the column; nulls stay null."""

    name = "normalize_text"
    Args = NormalizeTextArgs
    consumes = {"{column}": "string"}
    in_place = True

    def resolve_produces(self, schema: dict) -> dict:
        return self._template({"{column}": "string"})

    def setup(self) -> None:
        self._rules = [re.compile(r) for r in self.args.boilerplate]
        self._fix = None
        if self.args.fix_mojibake:
            import ftfy

            self._fix = ftfy.fix_text

    def normalize(self, text: str) -> str:
        if self._fix is not None:
            text = self._fix(text)
        if self.args.unicode_form != "none":
            text = unicodedata.normalize(self.args.unicode_form, text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.args.whitespace:
            text = _CONTROL.sub("", text)
        lines = text.split("\n")
        if self._rules:
            lines = [ln for ln in lines if not any(r.search(ln) for r in self._rules)]
        if self.args.whitespace:
            lines = [_SPACES.sub(" ", ln).strip() for ln in lines]
            text = _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
        else:
            text = "\n".join(lines)
        return text

    def process(self, batch: Any) -> Any:
        if not hasattr(self, "_rules"):
            self.setup()
        values = batch[self.args.column].to_pylist()
        return {self.args.column: [None if v is None else self.normalize(v) for v in values]}
