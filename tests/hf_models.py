"""Tiny random Hugging Face models for tests: a vocabulary, texts drawn from it, and folders as
`save_pretrained` writes them (BERT, DistilBERT, GPT-2), with their tokenizers.

Imported as `tests.hf_models` (the repository root is on the path, see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [
    "the", "a", "socket", "file", "open", "read", "write", "number", "square", "root", "of",
    "thread", "lock", "time", "date", "parse", "return", "value", "list", "string", "text",
]  # fmt: skip
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
#: GPT-2's end token, after the vocabulary (GPT-2 has no padding token).
END = "<|endoftext|>"


def texts(n: int, seed: int = 0) -> list[str]:
    """`n` texts of 2 to 8 words of the vocabulary, seeded."""
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (int(k),), generator=g))
        for k in torch.randint(2, 9, (n,), generator=g)
    ]


def tiny_folder(tmp: Path, family: str, *, layers: int = 3, heads: int = 2) -> Path:
    """A tiny random model (hidden width 16) of `family` and its tokenizer in `tmp/family`:
    "bert" and "distilbert" (sequence classifiers of three classes), "bert-embedding" (a bare
    encoder: mean-pooled embeddings), "gpt2" (Conv1D layers, a classifier on the last token
    that is not padding)."""
    import transformers

    folder = tmp / family
    folder.mkdir(parents=True)
    labels = {i: f"t{i}" for i in range(3)}
    common = dict(id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    if family in ("bert", "bert-embedding"):
        config = transformers.BertConfig(
            vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=24, max_position_embeddings=16, **common,
        )  # fmt: skip
        model = (
            transformers.BertForSequenceClassification(config)
            if family == "bert"
            else transformers.BertModel(config)
        )
    elif family == "distilbert":
        config = transformers.DistilBertConfig(
            vocab_size=len(VOCAB), dim=16, n_layers=layers, n_heads=heads, hidden_dim=24,
            max_position_embeddings=16, **common,
        )  # fmt: skip
        model = transformers.DistilBertForSequenceClassification(config)
    elif family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=len(VOCAB) + 1, n_positions=16, n_embd=16, n_layer=layers, n_head=heads,
            eos_token_id=len(VOCAB), bos_token_id=len(VOCAB), **common,
        )  # fmt: skip
        model = transformers.GPT2ForSequenceClassification(config)
    else:
        raise ValueError(f"unknown family {family!r}")
    model.eval().save_pretrained(folder)
    if family == "gpt2":
        word_tokenizer(folder)
    else:
        bert_tokenizer(folder)
    return folder


def bert_tokenizer(folder: Path) -> None:
    """BERT's word-piece tokenizer over the vocabulary, saved in `folder`."""
    import transformers

    (folder / "vocab.txt").write_text("\n".join(VOCAB))
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)


def word_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over the vocabulary with GPT-2's end token and, like GPT-2's, no
    padding token, saved in `folder`."""
    import tokenizers
    import transformers

    vocab = {w: i for i, w in enumerate(VOCAB)} | {END: len(VOCAB)}
    words = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=words, eos_token=END, unk_token="[UNK]"
    ).save_pretrained(folder)
