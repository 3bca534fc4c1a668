"""Tiny random models in the real formats for the tests and benchmarks (the demo's own are in
imaginarynet/demo.py): SDXL, open_clip CLIP, OWLv2, Grounding DINO, a Qwen2 chat model, DalleBart + VQGAN,
SAM / SAM-HQ / SAM 2, and the uncached DALL·E decoder the cached sampler is checked and measured against.
Not part of the package."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from imaginarynet.demo import (
    SENTENCES,
    build_demo_models,
    build_tiny_gpt2,
    build_tiny_sd,
    clip_text_config,
    clip_tokenizer,
    default_cache,
    is_built,
    mark_built,
)

__all__ = ["build_tiny_gpt2", "build_tiny_sd", "build_tiny_models"]  # one import place for every builder


def build_tiny_sdxl(folder: Path) -> Path:
    """A StableDiffusionXLPipeline (two text encoders, text_time conditioning), 64 px native."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder / "_tok")
    text_cfg = clip_text_config(tokenizer, layers=2, projection_dim=32)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), norm_num_groups=32,
        projection_class_embeddings_input_dim=8 * 6 + 32, cross_attention_dim=64)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=64, layers_per_block=1)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)), tokenizer_2=tokenizer,
        unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "_tok")
    return mark_built(folder)


def build_tiny_chat_lm(folder: Path) -> Path:
    """An instruction-tuned chat LM in Qwen2.5-Instruct's format: Qwen2ForCausalLM (2 layers, 32 wide, 4 heads
    over 2 KV heads) with a byte-level BPE tokenizer trained here in a second that carries a ChatML chat
    template (written as chat_template.jinja); <|im_end|> is eos (generation stops there), <|endoftext|> pad.
    Loads with AutoTokenizer and AutoModelForCausalLM."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2TokenizerFast

    chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 4 + ["system", "user", "assistant"], vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None, bos_token=None,
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                   chat_template=chat_template, model_max_length=256)
    end_of_text, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=256, vocab_size=len(tokenizer),
                         tie_word_embeddings=True, bos_token_id=end_of_text, eos_token_id=im_end,
                         pad_token_id=end_of_text)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=end_of_text, eos_token_id=im_end,
                                               pad_token_id=end_of_text)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return mark_built(folder)


def build_tiny_owlv2(folder: Path) -> Path:
    """An OWLv2 open-vocabulary detector (Owlv2ForObjectDetection + Owlv2Processor), 1-layer towers 32
    wide, 64x64 input in 16x16 patches (16 boxes per image); loads with AutoModelForZeroShotObjectDetection
    and AutoProcessor like google/owlv2-base-patch16-ensemble."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    torch.manual_seed(0)
    # The processor pads every query to model_max_length (77 here; 16 in the real model, whose BPE has merges:
    # this one spends a token per character, so 16 would not hold "a photo of a potted plant").
    tokenizer = clip_tokenizer(folder / "_tok")
    text = clip_text_config(tokenizer, layers=1, max_positions=tokenizer.model_max_length)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                  image_size=64, patch_size=16)
    # projection_dim must equal the text width: the class head compares projected queries with patches.
    model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
    # transformers draws the detection heads' weights with std 1, which on a 32-wide model saturates every
    # box to a line and every score to 0 or 1; 1/sqrt(fan_in) keeps each box near its patch and the scores
    # spread over (0, 1).
    with torch.no_grad():
        for head in (model.class_head, model.box_head, model.objectness_head):
            for layer in head.modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(std=layer.in_features ** -0.5)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                               tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    shutil.rmtree(folder / "_tok")
    return mark_built(folder)


def build_tiny_grounding_dino(folder: Path) -> Path:
    """A Grounding DINO open-vocabulary detector (GroundingDinoForObjectDetection + GroundingDinoProcessor):
    a 4-stage Swin 8 wide, 1-layer BERT 32 wide, d_model 32, 1 encoder and 2 decoder layers, 16 queries,
    images resized to shortest edge 64 / longest edge 96; loads with AutoModelForZeroShotObjectDetection and
    AutoProcessor like IDEA-Research/grounding-dino-tiny."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    # A WordPiece vocabulary laid out like bert-base-uncased where the model depends on it: GroundingDinoModel
    # hard-codes [CLS]=101, [SEP]=102, "."=1012 and "?"=1029 as the phrase delimiters of its text attention
    # mask. Printable ASCII sits at 999.. as in BERT; "##" letters and digits spell out any other word.
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 994)] + [chr(c) for c in range(ord("!"), ord("~") + 1)]
    vocab += ["##" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    words = {"".join(c if c.isalpha() else " " for c in s.lower()) for s in SENTENCES}
    words = set(" ".join(words).split()) | {"dog", "cat", "dining", "table", "potted", "plant", "person"}
    vocab += sorted(w for w in words if w not in vocab)
    (folder / "_tok").mkdir(parents=True, exist_ok=True)
    (folder / "_tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "_tok" / "vocab.txt"), model_max_length=256)
    # Swin patches of 2 (4 in the real one) keep the extra stride-32 level at least 2x1 on a 64x96 input:
    # its GroupNorm(32, d_model) has one channel per group at d_model 32 and fails on a 1x1 map.
    swin = SwinConfig(image_size=64, patch_size=2, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=4, out_indices=[2, 3, 4])
    text = dict(model_type="bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                num_attention_heads=4, intermediate_size=64, max_position_embeddings=256,
                pad_token_id=tokenizer.pad_token_id)
    # decoder_layers >= 2: the checkpoint ties bbox_embed.1.. to bbox_embed.0, which fails with one layer.
    config = GroundingDinoConfig(backbone_config=swin, text_config=text, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                                 encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=16, num_feature_levels=4,
                                 encoder_n_points=2, decoder_n_points=2, max_text_len=256)
    model = GroundingDinoForObjectDetection(config)
    # The class logits are a bare dot product of the decoder's layer-normed queries with the text features;
    # at unit LayerNorm gain they have std ~sqrt(d_model), so the scores saturate at 0 or 1. A gain drawn with
    # std 1/sqrt(d_model) brings the logits to std ~1. The box head (shared by the decoder layers) starts at
    # zero, leaving every box on its anchor; 1/sqrt(fan_in) moves the boxes a little off the anchors.
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.normal_(std=config.d_model ** -0.5)
        for layer in model.bbox_embed[0].layers:
            layer.weight.normal_(std=layer.in_features ** -0.5)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    shutil.rmtree(folder / "_tok")
    return mark_built(folder)


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def build_tiny_clip(folder: Path) -> Path:
    """An open_clip ViT in the hub layout (open_clip_config.json + weights): load as local-dir:FOLDER."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    config = {"model_cfg": TINY_CLIP,
              "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                 "std": [0.26862954, 0.26130258, 0.27577711]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return mark_built(folder)


def _bart_tokenizer(folder: Path):
    """A BART byte-level BPE tokenizer (<s>=0, <pad>=1, </s>=2) trained here on a few sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([s.lower() for s in SENTENCES] * 4, vocab_size=380, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    return BartTokenizerFast(vocab=bpe.get_vocab(), merges=merges)


def _random_tree(shapes, rng, std=0.2):
    import numpy as np

    if isinstance(shapes, dict):
        return {k: _random_tree(v, rng, std) for k, v in shapes.items()}
    return (rng.standard_normal(shapes) * std).astype(np.float32)


def _fix_norms(tree):
    """LayerNorm/GroupNorm scales near 1, as trained models have them."""
    for k, v in tree.items():
        if isinstance(v, dict):
            _fix_norms(v)
        elif k == "scale":
            tree[k] = v + 1.0
    return tree


def build_tiny_dalle(folder: Path) -> Path:
    """DalleBart + VQGAN in the published checkpoint format (config.json + flax_model.msgpack),
    with a 16x16 token grid, so images are 256x256 like the real model's."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import numpy as np
    from flax.serialization import msgpack_serialize

    from imaginarynet.backends.dalle_mini.dallebart import DalleBartConfig
    from imaginarynet.backends.dalle_mini.shapes import dallebart_shapes, vqgan_decoder_shapes
    from imaginarynet.backends.dalle_mini.vqgan import VQGANConfig

    rng = np.random.default_rng(0)
    tokenizer = _bart_tokenizer(folder / "_tok")
    n_embed = 16
    bart = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                encoder_vocab_size=len(tokenizer), image_vocab_size=n_embed + 2, image_length=256,
                max_text_length=16, decoder_start_token_id=n_embed, bos_token_id=n_embed + 1,
                eos_token_id=n_embed + 1, pad_token_id=n_embed + 1)
    vq = dict(ch=32, ch_mult=[1, 1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[16], resolution=256,
              z_channels=16, embed_dim=8, n_embed=n_embed, out_ch=3)
    params = _fix_norms(_random_tree(dallebart_shapes(DalleBartConfig(**bart)), rng))
    vq_params = _fix_norms(_random_tree(vqgan_decoder_shapes(VQGANConfig(**vq)), rng, std=0.05))
    vq_params["decoder"]["conv_out"]["bias"] += 0.5  # pixels centred on mid-grey
    extra = {"model_type": "dallebart", "normalize_text": True, "do_sample": True, "use_scan": True,
             "ln_positions": "normformer", "use_glu": True, "use_bias": False, "min_length": 257,
             "max_length": 257}
    (folder / "dallebart").mkdir(parents=True, exist_ok=True)
    (folder / "dallebart" / "config.json").write_text(json.dumps({**bart, **extra}, indent=2))
    (folder / "dallebart" / "flax_model.msgpack").write_bytes(msgpack_serialize(params))
    tokenizer.save_pretrained(folder / "dallebart")
    (folder / "vqgan").mkdir(parents=True, exist_ok=True)
    (folder / "vqgan" / "config.json").write_text(json.dumps(vq, indent=2))
    (folder / "vqgan" / "flax_model.msgpack").write_bytes(msgpack_serialize(vq_params))
    shutil.rmtree(folder / "_tok")
    return mark_built(folder)


def build_tiny_models(cache: Path | None = None) -> dict[str, Path]:
    """The demo's models plus the CLIP, OWLv2 and SAM most tests use, built once into the cache."""
    cache = Path(cache) if cache else default_cache()
    return {**build_demo_models(cache), "clip": build_tiny_clip(cache / "clip"),
            "owlv2": build_tiny_owlv2(cache / "owlv2"), "sam": build_tiny_sam(cache / "sam")}


def dalle_generate_uncached(params, cfg, input_ids, attention_mask):
    """Greedy DalleBart decoding that recomputes the whole prefix every step: the reference the cached
    sampler is checked against (tests) and measured against (benchmarks). Not used by the product."""
    import jax
    import jax.numpy as jnp

    from imaginarynet.backends.dalle_mini.dallebart import decode, encode

    enc = jax.jit(lambda p, ids, mask: encode(p, cfg, ids, mask))(params, input_ids, attention_mask)
    full_pass = jax.jit(lambda p, ids, e, mask: decode(p, cfg, ids, e, mask))
    seq = jnp.full((input_ids.shape[0], 1), cfg.decoder_start_token_id, jnp.int32)
    for _ in range(cfg.image_length):
        logits = full_pass(params, seq, enc, attention_mask)[:, -1].astype(jnp.float32)
        logits = logits.at[:, cfg.eos_token_id].set(-jnp.inf)
        seq = jnp.concatenate([seq, jnp.argmax(logits, axis=-1).astype(jnp.int32)[:, None]], axis=1)
    return seq


# SAM family: the smallest shapes transformers' own tests use (tests/models/sam*/test_modeling_sam*.py), at a
# 64 px input so that 8x8 patches still give the prompt encoder and mask decoder a real grid.
SAM_VISION = dict(image_size=64, patch_size=8, hidden_size=32, output_channels=32, num_hidden_layers=2,
                  num_attention_heads=4, mlp_dim=64, window_size=4, global_attn_indexes=[1], num_pos_feats=16,
                  initializer_range=0.02)  # the config's default 1e-10 would make every image embed the same
SAM_PROMPT = dict(image_size=64, patch_size=8, hidden_size=32, mask_input_channels=4)
SAM_DECODER = dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32)


def _sam_processor_parts():
    """SamImageProcessor for a 64 px model: longest edge resized to 64 and padded to 64x64, as the real one
    does at 1024 (its defaults, which post_process_masks also reads, would not match the model)."""
    from transformers import SamImageProcessor

    return SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                             mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})


def _spread_mask_decoder(model) -> None:
    """transformers draws the mask decoder's layers with std 0.02, which through its depth leaves every mask
    logit within 1e-4 of the threshold and all three predicted IoUs within float noise of each other (~0 for
    SAM, ~0.5 for SAM 2). 1/sqrt(fan_in) keeps the scale through the layers: logits of order 1, and IoUs far
    enough apart that the highest-IoU choice and the binarised mask do not hang on the last bits."""
    import torch

    with torch.no_grad():
        for layer in model.mask_decoder.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                layer.weight.normal_(std=layer.weight[0].numel() ** -0.5)


def build_tiny_sam(folder: Path) -> Path:
    """A SAM (SamModel + SamProcessor, as facebook/sam-vit-base, SlimSAM and MedSAM): a 2-layer ViT 32 wide on
    64x64 inputs in 8x8 patches, one global-attention layer, a 2-layer mask decoder 32 wide."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from transformers import SamConfig, SamModel, SamProcessor

    torch.manual_seed(0)
    model = SamModel(SamConfig(vision_config=SAM_VISION, prompt_encoder_config=SAM_PROMPT,
                               mask_decoder_config=SAM_DECODER))
    _spread_mask_decoder(model)
    model.save_pretrained(folder)
    SamProcessor(image_processor=_sam_processor_parts()).save_pretrained(folder)
    return mark_built(folder)


def build_tiny_sam_hq(folder: Path) -> Path:
    """A SAM-HQ (SamHQModel + SamHQProcessor, as syscv-community/sam-hq-vit-base): the tiny SAM's shapes; the
    HQ decoder reads the global-attention layer's features (vit_dim = the ViT's width)."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor

    torch.manual_seed(0)
    model = SamHQModel(SamHQConfig(vision_config=SAM_VISION, prompt_encoder_config=SAM_PROMPT,
                                   mask_decoder_config={**SAM_DECODER, "vit_dim": SAM_VISION["hidden_size"]}))
    _spread_mask_decoder(model)
    model.save_pretrained(folder)
    SamHQProcessor(image_processor=_sam_processor_parts()).save_pretrained(folder)
    return mark_built(folder)


def build_tiny_sam2(folder: Path) -> Path:
    """A SAM 2 (Sam2Model + Sam2Processor, as facebook/sam2.1-hiera-tiny): a 4-stage Hiera 12..96 wide with
    blocks (1, 1, 2, 1) and one global-attention block, on 64x64 inputs (FPN levels 16, 8 and 4 px square), a
    2-layer mask decoder 32 wide."""
    folder = Path(folder)
    if is_built(folder):
        return folder
    import torch
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2Model,
        Sam2Processor,
        Sam2VisionConfig,
    )

    torch.manual_seed(0)
    # A global block must not open a stage (query pooling there needs a window), and each stage's window must
    # be at least 2 so that the pooled window of the next stage's first block is not 0.
    hiera = Sam2HieraDetConfig(hidden_size=12, image_size=64, blocks_per_stage=[1, 1, 2, 1],
                               embed_dim_per_stage=[12, 24, 48, 96], num_attention_heads_per_stage=[1, 2, 4, 8],
                               window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3])
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision,
                        prompt_encoder_config=dict(image_size=64, patch_size=16, hidden_size=32,
                                                   mask_input_channels=8),
                        mask_decoder_config=SAM_DECODER)
    model = Sam2Model(config)
    _spread_mask_decoder(model)
    model.save_pretrained(folder)
    image_processor = Sam2ImageProcessor(size={"height": 64, "width": 64}, mask_size={"height": 16, "width": 16})
    Sam2Processor(image_processor=image_processor).save_pretrained(folder)
    return mark_built(folder)
