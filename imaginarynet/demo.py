"""`imaginarynet demo`: the pipeline offline on tiny random models, written to disk in the real formats.

Nothing here downloads: tokenizers are built from scratch, weights are random, and every model is saved
exactly as a real checkpoint is (save_pretrained), so the product loads it through its normal code path.
Images from these models are noise. The builders the tests and benchmarks need besides these (SDXL, CLIP,
OWLv2, Grounding DINO, a chat LM, DALL·E) live in tests/tiny_models.py and reuse the helpers here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

SENTENCES = [
    "A photo of a dog running on the grass in the park.",
    "A photo of a cat sleeping on a sofa next to the window.",
    "A photo of a car parked in front of a house at night.",
    "A photo of a person riding a bicycle down the street.",
    "A photo of an aeroplane flying over the sea and a boat.",
    "a bird, a bottle, a bus, a chair, a cow, a dining table, a horse, a motorbike.",
    "a potted plant, a sheep, a train and a tv monitor in the living room.",
]


def default_cache() -> Path:
    base = os.environ.get("IMAGINARYNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "imaginarynet")
    return Path(base) / "tiny-models"


def is_built(folder: Path) -> bool:
    return (folder / ".complete").exists()


def mark_built(folder: Path) -> Path:
    (folder / ".complete").write_text("")
    return folder


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2's mapping)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def clip_text_config(tokenizer, layers: int, max_positions: int = 77, **extra) -> dict:
    """A 32-wide CLIP text tower's config values over this tokenizer (SD, SDXL and OWLv2 share them)."""
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                num_attention_heads=4, max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def clip_tokenizer(folder: Path):
    """A CLIPTokenizer over the byte-level alphabet with no merges (no download needed)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = byte_alphabet()
    vocab = {}
    for s in symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(s, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def build_tiny_sd(folder: Path, safety_checker: bool = False) -> Path:
    """A StableDiffusionPipeline with a 2-level UNet; 64x64 images, ~0.2 s per step on CPU."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder / "_tok")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32, attention_head_dim=4)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=64, layers_per_block=1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip_text_config(tokenizer, layers=2)))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    checker, extractor = (None, None)
    if safety_checker:
        checker, extractor = _tiny_safety_checker()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=checker, feature_extractor=extractor,
                                   requires_safety_checker=safety_checker)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "_tok")
    return mark_built(folder)


def _tiny_safety_checker():
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    checker = StableDiffusionSafetyChecker(config)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


def build_tiny_gpt2(folder: Path) -> Path:
    """GPT-2 (2 layers, 32 wide) with a byte-level BPE tokenizer trained here in a second."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 4, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return mark_built(folder)


def build_demo_models(cache: Path | None = None) -> dict[str, Path]:
    """The demo's models (Stable Diffusion and GPT-2), built once into the cache."""
    cache = Path(cache) if cache else default_cache()
    return {"sd": build_tiny_sd(cache / "sd"), "gpt2": build_tiny_gpt2(cache / "gpt2")}
