"""`--llm`: captions from an instruction-tuned chat model (a tiny random Qwen2 with a ChatML template)."""
from __future__ import annotations

import pytest
from helpers import read_jsonl, run_main, write_classfile

from imaginarynet.prompts.llm import clean_caption


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    from tiny_models import build_tiny_chat_lm

    return build_tiny_chat_lm(tmp_path_factory.mktemp("chat") / "model")


@pytest.mark.parametrize("raw, want", [
    ('"A dog runs on the beach." Sure, here it is.', "A dog runs on the beach."),
    ("1. a brown dog jumps over a fence! 2. another", "A brown dog jumps over a fence!"),
    ("- A dog asleep on a red sofa\nA second line", "A dog asleep on a red sofa"),
    ("  “A   dog in   the snow.”  ", "A dog in the snow."),
    ("A cat sleeps on a mat.", None),  # not the class's name
    ("A hotdog stand in a park.", None),  # the name only inside another word
    ("dog", None),  # too short to be a caption
    ("A dog " + "very " * 60 + "big.", None),  # too long
    ("", None),
    ("A dog \ufffd\ufffd on grass.", None),  # bytes that were not a whole character
    ("A dog\x0e on grass.", None),  # a control character
])
def test_cleaning_and_name_rules(raw, want):
    assert clean_caption(raw, "dog") == want


def test_multi_word_names_must_appear_whole():
    assert clean_caption("A dining table set for two.", "dining table") == "A dining table set for two."
    assert clean_caption("A table in a dining room.", "dining table") is None


def test_planted_captions_make_the_stream(chat_lm, tiny_sd_args, tmp_path, monkeypatch):
    """The model's decoded samples are planted: the stream keeps the cleaned captions that name the class,
    in sample order, without repeats, and the chat template really wraps the instruction."""
    import transformers

    planted = ['"A dog runs on the beach." Sure!', "1. A cat sleeps.", "A dog runs on the beach.",
               "- A brown dog jumps over a fence!", "dog"] + ["no name here at all"] * 11
    seen_inputs = []
    original_generate = transformers.Qwen2ForCausalLM.generate

    def generate(self, *args, **kwargs):
        seen_inputs.append(kwargs["input_ids"])
        return original_generate(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Qwen2ForCausalLM, "generate", generate)
    tokenizer_cls = type(transformers.AutoTokenizer.from_pretrained(chat_lm))
    monkeypatch.setattr(tokenizer_cls, "batch_decode", lambda self, seqs, **kw: list(planted))
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    out = tmp_path / "out"
    assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--llm", chat_lm, "--no-report",
                     "--quiet", *tiny_sd_args]) == 0
    prompts = [m["prompt"] for m in read_jsonl(out / "metadata.jsonl")]
    assert prompts == ["A dog runs on the beach.", "A brown dog jumps over a fence!"]
    tok = transformers.AutoTokenizer.from_pretrained(chat_lm)
    text = tok.decode(seen_inputs[0][0])
    assert text.startswith("<|im_start|>user\nWrite one realistic caption for a photo of dog.")
    assert text.endswith("<|im_start|>assistant\n")
    assert len(seen_inputs) == 1  # one block gave both prompts


def test_blocks_are_seeded_and_the_real_model_falls_back_to_the_template(chat_lm, tiny_sd_args, tmp_path,
                                                                         monkeypatch, capsys):
    """Random weights never name the class: after four blocks without a caption the template is used,
    with one warning. The raw samples of a block depend on its seed only."""
    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig
    from imaginarynet.prompts import create_prompt_source, llm

    cfg = RunConfig(classfile="x", classes=[ImageClass("dog", "dog")], outputdir=tmp_path, llm=str(chat_lm),
                    device="cpu")
    source = create_prompt_source(cfg, tmp_path / ".state")
    source.load()
    with monkeypatch.context() as mp:
        mp.setattr(llm, "clean_caption", lambda text, name: text)  # see the raw samples
        first, again, other = (source.sample_block(cfg.classes[0], b) for b in (0, 0, 1))
    assert first == again and first != other and len(first) == llm.BLOCK
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    out = tmp_path / "out"
    assert run_main(["--per-class", 2, "--classfile", classes, "--outputdir", out, "--llm", chat_lm, "--no-report",
                     *tiny_sd_args]) == 0
    assert [m["prompt"] for m in read_jsonl(out / "metadata.jsonl")] == ["A photo of a dog."] * 2
    assert capsys.readouterr().err.count("the LLM gives no new prompt for 'dog'") == 1


def test_scene_instructions_one_per_attempt_and_captions_must_name_every_class(chat_lm, tiny_sd_args, tmp_path,
                                                                                monkeypatch, capsys):
    """A scene block sends each attempt's own instruction (its classes, through the chat template, left-padded in
    one generate); a caption that misses one prompted class is replaced by the template prompt, with a warning."""
    import transformers

    from imaginarynet.classes import ImageClass
    from imaginarynet.config import RunConfig, validate
    from imaginarynet.scenes import english_names, scene_names

    seen_inputs = []
    original_generate = transformers.Qwen2ForCausalLM.generate

    def generate(self, *args, **kwargs):
        seen_inputs.append(kwargs["input_ids"])
        return original_generate(self, *args, **kwargs)

    def planted(self, seqs, **kw):  # attempt k's reply names its classes when k is even
        return [("Here " + english_names(names) + " sit together." if k % 2 == 0 else "Nothing to see here.")
                for k, names in enumerate(scenes)]

    labels = ["dog", "cat", "apple"]
    cfg = validate(RunConfig(classfile="x", classes=[ImageClass(x, x) for x in labels], outputdir=tmp_path / "out",
                             llm=str(chat_lm), template=None, objects_per_image="2", sd_model=tiny_sd_args[1]))
    scenes = [scene_names(cfg, cfg.classes[0], k) for k in range(16)]
    monkeypatch.setattr(transformers.Qwen2ForCausalLM, "generate", generate)
    tokenizer_cls = type(transformers.AutoTokenizer.from_pretrained(chat_lm))
    monkeypatch.setattr(tokenizer_cls, "batch_decode", planted)
    classes = write_classfile(tmp_path / "c.txt", labels)
    assert run_main(["--per-class", 4, "--classfile", classes, "--outputdir", tmp_path / "out", "--llm", chat_lm,
                     "--objects-per-image", 2, "--no-report", *tiny_sd_args]) == 0
    dog = [r for r in read_jsonl(tmp_path / "out" / ".state" / "ledger.jsonl") if r["class"] == "dog"]
    for r in dog:
        names = scenes[r["k"]]
        want = "Here " + english_names(names) + " sit together." if r["k"] % 2 == 0 else \
            "A photo of " + english_names(names) + "."
        assert r["prompt"] == want
    tok = transformers.AutoTokenizer.from_pretrained(chat_lm)
    rows = [tok.decode(row, skip_special_tokens=False).replace(tok.pad_token or "", "") for row in seen_inputs[0]]
    assert len(rows) == 16
    for row, names in zip(rows, scenes):
        assert f"Write one realistic caption for a photo of {english_names(names)}." in row
        assert row.endswith("<|im_start|>assistant\n")
    assert "the LLM gave no usable prompt for some scenes of 'dog'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--gpt"], "give --gpt (GPT-2 continuations) or --llm (chat-model captions), not both"),
    (["--llm-instruction", "Describe {0}"], "--llm-instruction may only contain {name}"),
    ("no template", "has no chat template"),
])
def test_bad_llm_options(extra, message, chat_lm, tiny, tmp_path, capsys):
    classes = write_classfile(tmp_path / "c.txt", ["dog"])
    model = tiny["gpt2"] if extra == "no template" else chat_lm  # GPT-2 is not a chat model
    extra = [] if extra == "no template" else extra
    code = run_main(["--num", 1, "--classfile", classes, "--outputdir", tmp_path / "out", "--sd-model", tiny["sd"],
                     "--llm", model, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
