"""redact_pii: detection quality on a labelled set, redaction, hashes, counts (column, step
counters, `datamill inspect`), the Operation.count hook, and bad input."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

import datamill as dm
from datamill.cli import main
from datamill.errors import ArgumentError, OperationError
from datamill.ops.pii import TYPES, card_brand, find_spans, iban_ok, luhn_ok, ssn_ok

from .conftest import write_jsonl
from .pii_corpus import corpus, handwritten, score

TEXT = {"text": "string"}
BLIND = Path(__file__).parent / "data" / "pii" / "blind.jsonl"
NATIONAL = Path(__file__).parent / "data" / "pii" / "national_phones.jsonl"


def read(path, **kw):
    return dm.Dataset.read(path, schema=TEXT, **kw)


# --- detection quality ---------------------------------------------------------------------
def test_labelled_corpus_precision_and_recall_per_type():
    examples = corpus(seed=0)
    gold = [t for ex in examples for _, _, t in ex["spans"]]
    assert all(gold.count(t) >= 100 for t in TYPES)
    assert sum(not ex["spans"] for ex in examples) >= 500  # hard negatives only
    table = score(examples, find_spans([ex["text"] for ex in examples]))
    for kind, row in table.items():
        assert row["precision"] >= 0.95 and row["recall"] >= 0.95, (kind, row)
        assert row["exact"] >= 0.95, (kind, row)


def test_handwritten_examples():
    examples = handwritten()
    table = score(examples, find_spans([ex["text"] for ex in examples]))
    tp = sum(r["tp"] for r in table.values())
    fp = sum(r["fp"] for r in table.values())
    fn = sum(r["fn"] for r in table.values())
    assert tp >= 50 and tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95, table


def test_blind_set_precision_and_recall_per_type():
    # blind.jsonl (made by make_blind.py) was written blind, by a different author than the
    # detector, with its own labelling conventions. Its first scores showed five error
    # classes (tel:/key= phones, User-Agent versions as IPs, CSV cards and SSNs, 4-4-5 cards,
    # a part number as a phone); those were then fixed by general rules, so the set is no
    # longer fully blind: this test keeps the regressions out (first scores in docs/pii.md).
    examples = [json.loads(line) for line in BLIND.read_text(encoding="utf-8").splitlines()]
    examples = [{"text": ex["text"], "spans": [(s["start"], s["end"], s["type"])
                                               for s in ex["spans"]]} for ex in examples]
    assert len(examples) > 2000
    table = score(examples, find_spans([ex["text"] for ex in examples]))
    for kind, row in table.items():
        assert row["tp"] + row["fn"] >= 100, (kind, row)
        assert row["precision"] >= 0.95 and row["recall"] >= 0.95, (kind, row)


def test_national_phones_held_out_set():
    # national_phones.jsonl (made by make_national_phones.py from numbering-plan facts, each
    # number checked by libphonenumber, before the national rules were written) holds phones
    # of 19 plans without country code, with and without a cue word, and hard negatives.
    # The rules were developed on other seeds of the generator; this set was scored once,
    # at the end (docs/pii.md).
    rows = [json.loads(line) for line in NATIONAL.read_text(encoding="utf-8").splitlines()]
    examples = [{"text": r["text"], "spans": [(s["start"], s["end"], s["type"])
                                              for s in r["spans"]]} for r in rows]
    per_region = Counter(r["region"] for r in rows if r["spans"])
    assert len(per_region) == 19 and min(per_region.values()) >= 50, per_region
    predicted = find_spans([ex["text"] for ex in examples])
    phone = score(examples, predicted)["phone"]
    assert phone["recall"] >= 0.97 and phone["precision"] >= 0.99, phone
    negatives = [p for r, p in zip(rows, predicted) if not r["spans"]]
    assert len(negatives) >= 1000
    assert sum(bool(p) for p in negatives) <= 0.01 * len(negatives)


@pytest.mark.parametrize(("text", "found"), [
    ("Tel.: 0176 1234 5678", ["0176 1234 5678"]),  # the three examples
    ("Phone: 612 345 678", ["612 345 678"]),
    ("Mobile: 098765 43210", ["098765 43210"]),
    ("Handy 0171/1234567 oder 0176-12345678", ["0171/1234567", "0176-12345678"]),
    ("Móvil 612345678", ["612345678"]),  # bare digits without trunk prefix: after a cue
    ("Bar El Rincón, 612345678", []),  # ... and only there
    ("Bar El Rincón, 612 34 56 78", ["612 34 56 78"]),
    ("电话：010-6512 3456，手机 13812345678", ["010-6512 3456", "13812345678"]),
    ("请拨打13812345678咨询", ["13812345678"]),
    ("Тел.: 8 (495) 123-45-67", ["8 (495) 123-45-67"]),
    ("Me chama no (11) 91234-5678", ["(11) 91234-5678"]),
    ("Mehmet Kaya, 0532 123 45 67", ["0532 123 45 67"]),
    ("Hubungi 0812-3456-7890 24/7", ["0812-3456-7890"]),
    ("Tel: (232) 215 38 90 oder 02122132011", ["(232) 215 38 90", "02122132011"]),
    ("Trattoria da Gino - 011-878862", ["011-878862"]),  # Italy: the 0 is no trunk prefix
    ("phoneNumber: 206-555-1111, mobileNo: 0176 12345678", ["206-555-1111", "0176 12345678"]),
])
def test_national_formats(text, found):
    assert [text[s:e] for s, e, _ in find_spans([text])[0]] == found


@pytest.mark.parametrize("text", [
    "Bosch 0 986 494 123", "Steuer-ID 12 345 678 901", "Order # 408-1234567-1234567",
    "El presupuesto asciende a 612 345 678 euros.", "Invoice No. 2024-123456",
    "GPS 55.755800 37.617300", "SNILS 112-233-445 95", "〒100-0001 東京都",
    "Kundennummer: 0176123456", "SSN 093-36-0000 is invalid", "Row: 97 43 30 33 33",
    "ISBN 0306406152", "Aadhaar 1234 5678 9012", "Konto 0123456789, BLZ 370 400 44",
    "Population 146 150 789 habitants", "CPF 123.456.789-09", "Pedido nº 612345678",
    "user_id=09876543210", "Art.-Nr. 0176 1234", "08:30-12:00 und 13:00-17:30",
    "Lat/long: -23.5505, -46.6333", "Seiten 120–345, 2024年5月17日",
    # found in real text (AWS CLI examples, HTML pages) while the national rules were written
    "0.33333206 ,  0.33333334", '"sequenceStoreId": "0123456789"',
    '"accountId": "098765432101"', '"Slots": "10923-11190,13375-16383"',
    "a progress count like 11704/12853",
])
def test_national_look_alikes_are_left_alone(text):
    assert find_spans([text]) == [[]]


def test_plans_follow_libphonenumber():
    # phone_plans.py is generated from libphonenumber's metadata; each plan's own example
    # numbers, printed in its national format, are found with and without a cue word.
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    from datamill.ops.phone_plans import PLANS

    assert len(PLANS) == 19
    for region, (code, trunk, _) in PLANS.items():
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert (code, trunk) == (str(meta.country_code), meta.national_prefix), region
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            number = phonenumbers.format_number(
                phonenumbers.example_number_for_type(region, kind), PhoneNumberFormat.NATIONAL)
            for text in (f"Tel.: {number}", f"Ask {number} (office)"):
                found = [text[s:e] for s, e, t in find_spans([text])[0] if t == "phone"]
                assert found == [number], (region, text, found)


@pytest.mark.parametrize(("text", "found"), [
    ('<a href="tel:+81 90 1234 5678">', ["+81 90 1234 5678"]),
    ("phone_number=+61412345678&country=AU", ["+61412345678"]),
    ("phone=020 7946 0958", ["020 7946 0958"]),
    ("id,name,card\n7,Ana,4111 1111 1111 1111,11/26,863", ["4111 1111 1111 1111"]),
    ("Ana Silva;078-05-1120;12/18/2017", ["078-05-1120"]),
    ("Visa 4222 2222 22222 declined", ["4222 2222 22222"]),
    ("UA: Mozilla/5.0 AppleWebKit/537.36 Chrome/10.5.5.63 Safari/537.36", []),
    ("GET /hosts/10.5.5.63 HTTP/1.1", ["10.5.5.63"]),
    ("P/N 04-0158-7817-F; part no. 0800 123 4567", []),
    ("id=415-555-2671, build:4155552671", []),
    ("amount 0,4111111111111111 and 1,234,4111111111111111", []),
    ("to='info@example.co.jp', cc=o'brien@example.ie", ["info@example.co.jp",
                                                         "o'brien@example.ie"]),
])
def test_field_separators_uri_schemes_and_code_cues(text, found):
    assert [text[s:e] for s, e, _ in find_spans([text])[0]] == found


@pytest.mark.parametrize("text", [
    "Upgrade to version 1.2.3.4 today.", "Windows v10.0.19041 build", "on 2024-01-15 at 10:30",
    "born 15/01/2024", "ISBN 978-3-16-148410-0", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "id 550e8400-e29b-41d4-a716-446655440000", "MAC 00:1A:2B:3C:4D:5E", "std::vector<int>",
    "card 4532 1234 5678 9011 declined", "IBAN DE89 3704 0044 0532 0130 01", "SSN 000-12-3456",
    "SSN 666-12-3456", "SSN 912-34-5678", "ts 1705312245123", "price $1,299.99",
    "at 40.7128, -74.0060", "icon@2x.png", "npm i lodash@4.17.21", "mask 255.255.255.0",
    "Order #4839201746 shipped", "Invoice 2023-000145", "pages 123-145, 12 34 56 78 90",
])
def test_hard_negatives_are_left_alone(text):
    assert find_spans([text]) == [[]]


def test_validators():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_brand("378282246310005") == "amex" and card_brand("1234567890123456") is None
    assert card_brand("5555555555554444") == "mastercard"
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543")  # the country's length
    assert ssn_ok("078", "05", "1120")
    assert not any(ssn_ok(*p) for p in [("000", "12", "3456"), ("666", "12", "3456"),
                                         ("901", "12", "3456"), ("078", "00", "1120"),
                                         ("078", "05", "0000")])


def test_spans_are_exact_and_typed():
    text = ("Ping 10.0.0.5:8080 or [2001:db8::1]:443, mail <a.b+c@example.co.uk>, "
            "IBAN GB82 WEST 1234 5698 7654 32 BIC x, token ghp_" + "a" * 36 + ".")
    found = {text[s:e]: t for s, e, t in find_spans([text])[0]}
    assert found == {"10.0.0.5": "ip_address", "2001:db8::1": "ip_address",
                     "a.b+c@example.co.uk": "email", "GB82 WEST 1234 5698 7654 32": "iban",
                     "ghp_" + "a" * 36: "secret"}


def test_private_key_blocks_whole_or_cut_off():
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    whole = f"key:\n-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\nok"
    cut = f"-----BEGIN PRIVATE KEY-----\n{body}\n\nThe rest of the mail stays."
    (s1, e1, _), = find_spans([whole])[0]
    assert whole[s1:e1].startswith("-----BEGIN") and whole[e1:] == "\nok"
    (s2, e2, _), = find_spans([cut])[0]
    assert (s2, cut[e2:]) == (0, "\n\nThe rest of the mail stays.")


# --- the operation --------------------------------------------------------------------------
ROWS = [
    "Mail John.Smith@Example.com or call +1 (415) 555-2671 now.",
    "Again: john.smith@example.com, +1 415 555 2671, SSN 078-05-1120.",
    None,
    "",
    "   \n\t ",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
]


def test_redact_in_place_counts_and_step_counters(tmp_path, capsys):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in ROWS])
    ds = read(path).apply("redact_pii")
    assert ds.lineage()["text"] == "redact_pii" and ds.lineage()["pii_counts"] == "redact_pii"
    result = ds.run(tmp_path / "w", workers=1, progress=False)
    out = ds.collect(tmp_path / "w")
    text = out["text"].to_pylist()
    assert text[0] == "Mail <EMAIL> or call <PHONE> now."
    assert text[1] == "Again: <EMAIL>, <PHONE>, SSN <SSN>."
    assert text[2:5] == [None, "", "   \n\t "]
    assert text[5] == "aws_secret_access_key = <SECRET>"
    counts = out["pii_counts"].to_pylist()
    assert counts[1] == {"email": 1, "phone": 1, "ip_address": 0, "credit_card": 0, "iban": 0,
                         "ssn": 1, "secret": 0}
    assert counts[2] == dict.fromkeys(TYPES, 0)
    record = result.step("redact_pii")
    assert record["counters"] == {"email": 2, "phone": 2, "ip_address": 0, "credit_card": 0,
                                  "iban": 0, "ssn": 1, "secret": 1, "rows_with_pii": 3}
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    step = next(s for s in manifest["datasets"][0]["steps"] if s["name"] == "redact_pii")
    assert step["counters"]["email"] == 2
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "w")]) == 0
    assert "counters of redact_pii: credit_card=0, email=2" in capsys.readouterr().out


def test_hash_tokens_are_keyed_and_stable_across_formats(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in ROWS])
    ds = read(path).apply("redact_pii", replacement="hash", salt="pepper", output="clean",
                          types=["email", "phone"], counts_column="found")
    out = ds.collect(tmp_path / "w", workers=1, progress=False)
    assert out["text"].to_pylist() == ROWS  # the input column is kept
    clean = out["clean"].to_pylist()
    first, second = (dict(zip(("email", "phone"), _tokens(c))) for c in clean[:2])
    assert first == second  # same value, other case or separators: same token
    assert first["email"].startswith("<EMAIL:") and len(first["email"]) == len("<EMAIL:>") + 8
    assert "078-05-1120" in clean[1]  # ssn not selected
    assert out["found"].type == pa.struct([("email", pa.int32()), ("phone", pa.int32())])
    other = read(path).apply("redact_pii", replacement="hash", salt="salt2", output="clean")
    assert _tokens(other.collect(tmp_path / "w2", workers=1, progress=False)["clean"][0]
                   .as_py())[0] != first["email"]


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"<[A-Z_]+:[0-9a-f]+>", text)


def test_arguments_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    with pytest.raises(ArgumentError, match="needs a salt"):
        read(path).apply("redact_pii", replacement="hash")
    with pytest.raises(ArgumentError, match="types"):
        read(path).apply("redact_pii", types=["emails"])
    ds = read(path).apply("redact_pii", counts_column=None)
    assert "pii_counts" not in ds.schema


def test_non_string_column_is_refused_before_running(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "n": 1}])
    with pytest.raises(dm.PipelineError, match="n"):
        dm.Dataset.read(path).apply("redact_pii", column="n")


# --- the counters hook ----------------------------------------------------------------------
class CountVowels(dm.MapOperation):
    """Test op: counts vowels, fails on rows containing 'boom'."""

    consumes = {"text": "string"}
    produces = {"n": "int64"}

    def process(self, batch):
        values = batch["text"].to_pylist()
        self.count("vowels", sum(sum(c in "aeiou" for c in v) for v in values))
        if any("boom" in v for v in values):
            raise ValueError("boom")
        self.count("rows", len(values))
        return {"n": [len(v) for v in values]}


def test_operation_count_is_summed_per_partition_and_step(tmp_path):
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"text": "aaa"}, {"text": "boom e"}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"text": "io"}])
    ds = read(tmp_path / "in").apply(CountVowels, on_error="skip", step_name="vowels")
    record = ds.run(tmp_path / "w", workers=2, progress=False).step("vowels")
    # the failed batch's partial counts are dropped and its rows count again one by one;
    # the failing row keeps what it counted before raising (a failure counted by kind stays)
    assert record["counters"] == {"rows": 2, "vowels": 3 + 3 + 2}
    parts = [json.loads(p.read_text()) for p in
             sorted((tmp_path / "w" / "steps" / record["cache_key"]).glob("stats-*.json"))]
    assert sorted(p["counters"]["rows"] for p in parts) == [1, 1]


# --- bad input ------------------------------------------------------------------------------
def test_binary_junk_and_nul_bytes(tmp_path):
    rng = random.Random(3)
    junk = bytes(rng.randrange(256) for _ in range(20_000)).decode("latin-1")
    rows = [junk, "\x00" * 50, "a@b.co\x00x@y.org", "é\u200b\ufffd" * 3]
    spans = find_spans(rows)
    assert [rows[2][s:e] for s, e, _ in spans[2]] == ["a@b.co", "x@y.org"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": junk}, {"text": "\x00" * 10}])
    out = read(path).apply("redact_pii").collect(tmp_path / "w", workers=1, progress=False)
    assert out.num_rows == 2


PATHOLOGICAL = ("1 ", "1", "1.", "a@", "a:", "AKIA", "eyJ.", "-----BEGIN PRIVATE KEY-----\n",
                "12-34-", "+1 (", "(0)", "a/1.2.3.4 ", ",4111 1111 ", "tel:+1 ", "0 12 ",
                "Tel. 0", "8 (", "030/1")


def _counting_detectors(monkeypatch) -> dict[str, int]:
    """Wrap every detector's validator to count its calls (the work done per candidate)."""
    import dataclasses

    from datamill.ops import pii

    calls: dict[str, int] = {}

    def counted(det):
        def accept(text, m):
            calls[det.kind] = calls.get(det.kind, 0) + 1
            return det.accept(text, m)
        return dataclasses.replace(det, accept=accept)

    monkeypatch.setattr(pii, "DETECTORS", {kind: tuple(counted(d) for d in dets)
                                           for kind, dets in pii.DETECTORS.items()})
    return calls


def _cpu(text: str) -> float:
    """The least CPU time of three scans (CPU, not wall: a loaded machine inflates both
    sizes alike)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        find_spans([text])
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("unit", PATHOLOGICAL)
def test_pathological_inputs_scan_in_linear_time(unit, monkeypatch):
    # Work is counted, not timed: 4x the input must give at most ~4x the validator calls,
    # and (backtracking inside a pattern is not visible to a counter) at most 10x the CPU
    # time, where a quadratic scan would take 16x.
    calls = _counting_detectors(monkeypatch)
    small, large = (unit * (n // len(unit)) for n in (25_000, 100_000))
    find_spans([small])
    few = dict(calls)
    calls.clear()
    find_spans([large])
    for kind, n in calls.items():
        assert n <= 4.2 * few.get(kind, 0) + 8, (unit, kind, few, calls)
    assert _cpu(large) <= 10 * _cpu(small) + 0.05, unit


def test_a_large_document_finds_what_its_parts_hold(monkeypatch):
    # One multi-MB document (the one-document path) finds the spans of the examples mixed
    # into it, and the validators run a number of times linear in its size.
    rng = random.Random(0)
    examples = corpus(seed=1, per_type=20, negatives=100)
    filler = ("The pipeline reads 3 files and writes 12 partitions; see section 4.2 of the "
              "design, revised on 2024-01-15 by the data team. ") * 20

    def document(megabytes: float) -> tuple[str, int]:
        parts, expected, size = [], 0, 0
        while size < megabytes * 1e6:
            if rng.random() < 0.02:
                ex = rng.choice(examples)
                parts.append(ex["text"])
                expected += len(ex["spans"])
            else:
                parts.append(filler)
            size += len(parts[-1]) + 1
        return "\n".join(parts), expected

    calls = _counting_detectors(monkeypatch)
    counts = []
    for megabytes in (1, 4):
        doc, expected = document(megabytes)
        calls.clear()
        spans = find_spans(pa.array([doc]))[0]
        assert abs(len(spans) - expected) <= expected * 0.03, (megabytes, len(spans), expected)
        counts.append(sum(calls.values()))
    assert 3 <= counts[1] / counts[0] <= 5, counts


def test_operation_error_names_the_step_with_on_error_raise(tmp_path, monkeypatch):
    from datamill.ops import pii

    def broken(*_args, **_kw):
        raise RuntimeError("detector failed")

    monkeypatch.setattr(pii, "find_spans", broken)
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}])
    with pytest.raises(OperationError, match="redact_pii"):
        read(path).apply("redact_pii").run(tmp_path / "w", workers=1, progress=False)
