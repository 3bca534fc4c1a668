"""Parameter shapes of the published checkpoint layouts, from a config alone.

Used to build tiny random checkpoints (tests/tiny_models.py) and to compute
the memory of real-size models (benchmarks) without downloading them.
"""
from __future__ import annotations

from imaginarynet.backends.dalle_mini.dallebart import DalleBartConfig
from imaginarynet.backends.dalle_mini.vqgan import VQGANConfig


def _ln(d, scale):
    return {"bias": (d,), **({"scale": (d,)} if scale else {})}


def _stack(n, tree):
    if isinstance(tree, dict):
        return {k: _stack(n, v) for k, v in tree.items()}
    return (n, *tree)


def dallebart_shapes(cfg: DalleBartConfig) -> dict:
    d = cfg.d_model

    def attn():
        return {n: {"kernel": (d, d)} for n in ("q_proj", "k_proj", "v_proj", "out_proj")}

    def glu(ffn):
        return {"LayerNorm_0": _ln(d, False), "Dense_0": {"kernel": (d, ffn)}, "Dense_1": {"kernel": (d, ffn)},
                "LayerNorm_1": _ln(ffn, False), "Dense_2": {"kernel": (ffn, d)}}

    enc_layer = {"LayerNorm_0": _ln(d, False), "FlaxBartAttention_0": attn(), "LayerNorm_1": _ln(d, True),
                 "GLU_0": glu(cfg.encoder_ffn_dim)}
    dec_layer = {"LayerNorm_0": _ln(d, False), "FlaxBartAttention_0": attn(), "LayerNorm_1": _ln(d, True),
                 "LayerNorm_2": _ln(d, False), "FlaxBartAttention_1": attn(), "LayerNorm_3": _ln(d, True),
                 "GLU_0": glu(cfg.decoder_ffn_dim)}
    image_rows = cfg.image_vocab_size + 1

    def stack(name, length, vocab, layer, n):
        return {"embed_tokens": {"embedding": (vocab, d)}, "embed_positions": {"embedding": (length, d)},
                "layernorm_embedding": _ln(d, True), "layers": {name: _stack(n, layer)}, "final_ln": _ln(d, False)}

    return {"model": {
        "encoder": stack("FlaxBartEncoderLayers", cfg.max_text_length, cfg.encoder_vocab_size, enc_layer,
                         cfg.encoder_layers),
        "decoder": stack("FlaxBartDecoderLayers", cfg.image_length, image_rows, dec_layer, cfg.decoder_layers)},
        "lm_head": {"kernel": (d, image_rows)}}


def vqgan_decoder_shapes(cfg: VQGANConfig) -> dict:
    """Decoder side only (quantize, post_quant_conv, decoder): all that inference needs."""

    def conv(cin, cout, k=3):
        return {"kernel": (k, k, cin, cout), "bias": (cout,)}

    def gn(c):
        return {"scale": (c,), "bias": (c,)}

    def res(cin, cout):
        block = {"norm1": gn(cin), "conv1": conv(cin, cout), "norm2": gn(cout), "conv2": conv(cout, cout)}
        if cin != cout:
            block["nin_shortcut"] = conv(cin, cout, 1)
        return block

    def attn(c):
        return {"norm": gn(c), **{n: conv(c, c, 1) for n in ("q", "k", "v", "proj_out")}}

    top = cfg.ch * cfg.ch_mult[-1]
    dec = {"conv_in": conv(cfg.z_channels, top),
           "mid": {"block_1": res(top, top), "attn_1": attn(top), "block_2": res(top, top)}}
    block_in, res_now = top, cfg.grid
    for level in reversed(range(cfg.levels)):
        block_out = cfg.ch * cfg.ch_mult[level]
        up = {}
        for j in range(cfg.num_res_blocks + 1):
            up[f"block_{j}"] = res(block_in, block_out)
            block_in = block_out
            if res_now in cfg.attn_resolutions:
                up[f"attn_{j}"] = attn(block_in)
        if level != 0:
            up["upsample"] = {"conv": conv(block_in, block_in)}
            res_now *= 2
        dec[f"up_{level}"] = up
    dec["norm_out"] = gn(block_in)
    dec["conv_out"] = conv(block_in, cfg.out_ch)
    return {"quantize": {"embedding": {"embedding": (cfg.n_embed, cfg.embed_dim)}},
            "post_quant_conv": conv(cfg.embed_dim, cfg.z_channels, 1), "decoder": dec}


def count(tree) -> int:
    import math

    if isinstance(tree, dict):
        return sum(count(v) for v in tree.values())
    return math.prod(tree)
