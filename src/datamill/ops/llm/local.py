"""A local causal LM behind the same interface as a server (`backend="transformers"`): loaded
once per worker from a GGUF file (dequantized by transformers through the `gguf` package) or a
model folder; replies are shaped like OpenAI chat completions, with token counts."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from .client import RequestFailed, Usage


def load(model: str) -> tuple[Any, Any]:
    """(tokenizer, model) from a GGUF file or a model folder, on the CPU, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model)
    if path.is_file():
        kwargs: dict[str, Any] = {"gguf_file": path.name}
        where = str(path.parent)
    else:
        kwargs, where = {}, str(path)
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    lm.eval()
    return tokenizer, lm


class TransformersBackend:
    """Generates one reply at a time (a lock: the model runs on all of the worker's cores)."""

    def __init__(self, model: str):
        self.tokenizer, self.model = load(model)
        self.lock = threading.Lock()

    async def chat(self, payload: dict, usage: Usage, tokens: float) -> dict:
        usage.requests += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._generate, payload)

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
