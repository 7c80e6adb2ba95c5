"""A local causal LM behind the same interface as a server (`backend="transformers"`).

Models are kept in one process-level cache (`shared_model`), keyed by the digest of the GGUF
file (or a folder's path and files) and bounded to `MAX_MODELS`: every step of a worker
process that names the same model uses one copy. A GGUF file is converted once to a plain
transformers folder (`gguf_to_transformers`, cached by digest) and loaded from there: its
safetensors load in about a second, where dequantizing the GGUF costs tens of CPU-seconds.

Replies are shaped like OpenAI chat completions, with token counts; `score` gives the
probabilities of fixed labels as the reply's next tokens (judging and classifying without
parsing prose)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import RequestFailed, Usage

MAX_MODELS = 2  # models kept loaded in one process
loads = 0  # models loaded by this process (tests count them)
_models: OrderedDict[str, LoadedModel] = OrderedDict()
_models_lock = threading.Lock()
_digests: dict[tuple, str] = {}


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    lock: threading.Lock  # one generation at a time: the model uses all the cores


@contextlib.contextmanager
def quiet_progress():
    """No transformers progress bars (loading weights; converting a GGUF, whose bar is a
    plain tqdm) in run output."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was, bar = hf_logging.is_progress_bar_enabled(), getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = lambda items, **_: items
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        if was:
            hf_logging.enable_progress_bar()


def model_key(model: str) -> str:
    """A GGUF file's sha256 (remembered per path, size and mtime), or a folder's path."""
    from .gguf import file_digest

    path = Path(model).resolve()
    if not path.is_file():
        return f"folder:{path}"
    st = path.stat()
    stamp = (str(path), st.st_size, st.st_mtime_ns)
    if stamp not in _digests:
        _digests[stamp] = file_digest(path)
    return _digests[stamp]


def load(model: str, digest: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) on the CPU in eval mode, from a model folder, or from a GGUF file
    through its converted folder (made once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .gguf import gguf_to_transformers

    global loads
    path = Path(model)
    with quiet_progress():
        folder = gguf_to_transformers(path, digest=digest) if path.is_file() else path
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        lm = AutoModelForCausalLM.from_pretrained(str(folder))
    lm.eval()
    loads += 1
    return tokenizer, lm


def shared_model(model: str) -> LoadedModel:
    """The process's copy of `model`, loaded on first use (the least recently used of more
    than MAX_MODELS is let go)."""
    key = model_key(model)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        digest = None if key.startswith("folder:") else key
        tokenizer, lm = load(model, digest)
        _models[key] = LoadedModel(tokenizer, lm, threading.Lock())
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
        return _models[key]


class TransformersBackend:
    """Generates (or scores) one request at a time on the shared model."""

    def __init__(self, model: str):
        loaded = shared_model(model)
        self.tokenizer, self.model, self.lock = loaded.tokenizer, loaded.model, loaded.lock

    async def chat(self, payload: dict, usage: Usage, tokens: float) -> dict:
        usage.requests += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._generate, payload)

    async def score(self, payload: dict, usage: Usage) -> dict:
        usage.requests += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._score, payload)

    def _generate(self, payload: dict) -> dict:
        import torch

        n = payload.get("n") or 1
        if n != 1:
            raise RequestFailed("http_400", "the transformers backend makes one sample per "
                                "request")
        with self.lock, torch.inference_mode():
            ids = self.tokenizer.apply_chat_template(
                payload["messages"], add_generation_prompt=True, return_tensors="pt",
                return_dict=True)
            temperature = payload.get("temperature") or 0.0
            options: dict[str, Any] = {"max_new_tokens": payload.get("max_tokens") or 256,
                                       "do_sample": temperature > 0,
                                       "pad_token_id": self.tokenizer.eos_token_id}
            if temperature > 0:
                options["temperature"] = temperature
                if payload.get("top_p") is not None:
                    options["top_p"] = payload["top_p"]
                if payload.get("seed") is not None:
                    torch.manual_seed(int(payload["seed"]))
            else:  # greedy: no sampling settings (transformers warns about them)
                options.update(temperature=None, top_p=None, top_k=None)
            out = self.model.generate(**ids, **options)
            prompt_len = ids["input_ids"].shape[1]
            new = out[0, prompt_len:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            for stop in payload.get("stop") or ():
                if stop in text:
                    text = text[:text.index(stop)]
            finished = new.shape[0] < options["max_new_tokens"] or \
                (new.shape[0] and int(new[-1]) == self.tokenizer.eos_token_id)
        return {"choices": [{"message": {"role": "assistant", "content": text},
                             "finish_reason": "stop" if finished else "length"}],
                "usage": {"prompt_tokens": int(prompt_len),
                          "completion_tokens": int(new.shape[0])}}

    def _score(self, payload: dict) -> dict:
        """{"probabilities": label -> p (summing to 1 over the labels), "mass": the model's
        total probability of the labels, "usage"}: the reply is the chat template's assistant
        turn opened with `prefix`, followed by " label"."""
        import torch

        tok = self.tokenizer
        text = tok.apply_chat_template(payload["messages"], add_generation_prompt=True,
                                       tokenize=False) + payload["prefix"]
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        seqs = {label: label_tokens(tok, text, prompt, label) for label in payload["labels"]}
        contexts: list[tuple] = []  # the longest label prefixes: one forward pass each
        for ctx in sorted({tuple(s[:-1]) for s in seqs.values()}, key=len, reverse=True):
            if not any(c[:len(ctx)] == ctx for c in contexts):
                contexts.append(ctx)
        logp: dict[str, float] = {}
        with self.lock, torch.inference_mode():
            for ctx in contexts:
                ids = torch.tensor([prompt + list(ctx)])
                rows = self.model(input_ids=ids).logits[0, len(prompt) - 1:].float()
                rows = rows.log_softmax(-1)
                for label, seq in seqs.items():
                    if label not in logp and tuple(seq[:-1]) == ctx[:len(seq) - 1]:
                        logp[label] = float(sum(rows[i, t] for i, t in enumerate(seq)))
        exact = exact_probabilities({k: tuple(v) for k, v in seqs.items()}, logp)
        mass = sum(exact.values())
        probs = {k: (v / mass if mass > 0 else 1 / len(exact)) for k, v in exact.items()}
        return {"probabilities": probs, "mass": mass,
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 0}}


def label_tokens(tok: Any, text: str, prompt: list[int], label: str) -> list[int]:
    """The tokens of " label" after `text` (as the tokenizer splits the whole; apart when
    the label would merge into the prompt's last token)."""
    whole = tok(text + " " + label, add_special_tokens=False)["input_ids"]
    if whole[:len(prompt)] == prompt and len(whole) > len(prompt):
        return whole[len(prompt):]
    return tok(" " + label, add_special_tokens=False)["input_ids"]


def exact_probabilities(seqs: dict[str, tuple], logp: dict[str, float]) -> dict[str, float]:
    """P(the reply is exactly the label): a label whose tokens begin another's ("1" of "10")
    loses the probability of the longer ones that continue it."""
    prob = {k: math.exp(v) for k, v in logp.items()}
    out = {}
    for label, seq in seqs.items():
        longer = [m for m, s in seqs.items() if len(s) > len(seq) and s[:len(seq)] == seq]
        # only the shortest continuations (a "100" is already inside its "10")
        direct = [m for m in longer if not any(
            len(seqs[o]) < len(seqs[m]) and seqs[m][:len(seqs[o])] == seqs[o] for o in longer)]
        out[label] = max(0.0, prob[label] - sum(prob[m] for m in direct))
    return out
