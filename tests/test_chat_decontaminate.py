"""decontaminate on generated instruction data: the answers, or the whole conversation
flattened by messages_text, checked against a held-out evaluation set."""

from __future__ import annotations

import random

import datamill as dm

from .conftest import write_jsonl

EVAL = [  # held-out question/answer pairs (an evaluation set the model must not train on)
    {"question": "What happens when a generator function reaches a return statement inside "
                 "its body while it is being iterated by a for loop?",
     "answer": "The generator raises StopIteration with the returned value attached, and the "
               "for loop that drives it ends quietly without propagating the exception."},
    {"question": "How does the with statement guarantee that a file object is closed even "
                 "when the block inside it raises an unexpected exception?",
     "answer": "It calls the context manager's exit method on the way out of the block, and "
               "the file's exit method closes the underlying descriptor in every case."},
]
TOPICS = ["lists", "dictionaries", "sets", "tuples", "strings", "bytes", "modules", "classes"]


def conversations() -> tuple[list[dict], set[int], set[int]]:
    """Generated-looking rows; returns (rows, ids copying an eval answer, ids copying an
    eval question)."""
    rng = random.Random(3)
    rows, leaked_answers, leaked_questions = [], set(), set()
    for i in range(40):
        topic = rng.choice(TOPICS)
        question = f"Question {i}: how are {topic} used in everyday Python programs?"
        answer = (f"Answer {i}: {topic} appear in many programs; a short example with "
                  f"{rng.choice(TOPICS)} shows the idea.")
        if i % 13 == 5:
            answer += " In short, " + EVAL[i % 2]["answer"]
            leaked_answers.add(i)
        elif i % 13 == 9:
            question = "Quiz: " + EVAL[i % 2]["question"]
            leaked_questions.add(i)
        rows.append({"n": i, "messages": [
            {"role": "system", "content": "You teach Python."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer}]})
    return rows, leaked_answers, leaked_questions


def test_decontaminate_answers_and_whole_conversations(tmp_path):
    rows, leaked_answers, leaked_questions = conversations()
    assert leaked_answers and leaked_questions
    data = write_jsonl(tmp_path / "generated.jsonl", rows)
    evals = write_jsonl(tmp_path / "eval.jsonl",
                        [{"text": f"{e['question']}\n{e['answer']}"} for e in EVAL])
    chats = dm.Dataset.read(data)

    answers = chats.apply("messages_text", roles=["assistant"], output="answer") \
        .apply("decontaminate", column="answer", eval_path=str(evals))
    kept = answers.collect(tmp_path / "w", workers=1, progress=False)
    assert set(range(40)) - set(kept["n"].to_pylist()) == leaked_answers

    whole = chats.apply("messages_text") \
        .apply("decontaminate", column="text", eval_path=str(evals), step_name="decontam")
    result = whole.run(tmp_path / "w", workers=1, progress=False)
    kept = whole.collect(tmp_path / "w", workers=1, progress=False)
    assert set(range(40)) - set(kept["n"].to_pylist()) == leaked_answers | leaked_questions
    assert result.step("decontam")["rows_out"] == 40 - len(leaked_answers | leaked_questions)
    # the kept rows still hold their conversations, untouched
    assert kept["messages"].to_pylist() == [r["messages"] for r in rows
                                            if r["n"] in set(kept["n"].to_pylist())]


def test_messages_text_flattens_by_role(tmp_path):
    rows, _, _ = conversations()
    data = write_jsonl(tmp_path / "generated.jsonl", rows[:2])
    table = dm.Dataset.read(data).apply("messages_text", roles=["user", "assistant"],
                                        separator=" | ") \
        .collect(tmp_path / "w", workers=1, progress=False)
    assert table["text"].to_pylist() == [
        f"{r['messages'][1]['content']} | {r['messages'][2]['content']}" for r in rows[:2]]
