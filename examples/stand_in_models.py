"""Tiny, randomly initialised CLIP and BLIP models, saved locally, for running image pipelines
where no real weights can be downloaded (tests, CI, a first try of an example).

They exercise the real loading and batching code (transformers' CLIPModel and
BlipForConditionalGeneration, their processors and tokenizers, read from a folder as a real
model is), but their numbers mean nothing: scores are random and captions are word salad.
Point the operations at real models for real data (docs/images.md lists them).
"""

from __future__ import annotations

from pathlib import Path

CAPTION_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of",
                 "cat", "dog", "the", "red", "on", "mat", "cup"]


def _clip_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: every byte, alone and word-final."""
    keep = {*range(33, 127), *range(161, 173), *range(174, 256)}
    symbols, extra = [], 0
    for b in range(256):
        if b in keep:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return vocab


def _image_processor(kind: str):
    """transformers 5 without torchvision names its Pillow processors `...Pil`."""
    import importlib

    module = importlib.import_module(f"transformers.models.{kind.lower()}")
    pil = getattr(module, f"{kind}ImageProcessorPil", None)
    return pil or getattr(importlib.import_module("transformers"), f"{kind}ImageProcessor")


def tiny_clip(folder: str | Path, seed: int = 0) -> str:
    """Save a 2-layer CLIP (32-wide towers, 16-dimensional shared space) into `folder`."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    vocab = _clip_vocab()
    eos = vocab["<|endoftext|>"]
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=24, eos_token_id=eos,
                         bos_token_id=vocab["<|startoftext|>"], pad_token_id=eos, **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    processor = _image_processor("CLIP")(size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor,
                  tokenizer=CLIPTokenizer(vocab=vocab, merges=[])).save_pretrained(folder)
    return str(folder)


def tiny_blip(folder: str | Path, seed: int = 0) -> str:
    """Save a 2-layer BLIP captioner with a 16-word vocabulary into `folder`."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4)
    config = BlipConfig(
        text_config=dict(vocab_size=len(CAPTION_WORDS), max_position_embeddings=40,
                         bos_token_id=5, sep_token_id=3, pad_token_id=0, eos_token_id=3,
                         encoder_hidden_size=32, **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(CAPTION_WORDS)},
                              bos_token="[DEC]")
    processor = _image_processor("Blip")(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)
