"""The VQGAN f16 decoder (taming-transformers, as converted to Flax by vqgan-jax) as pure JAX:
image tokens -> codebook vectors -> convolutional decoder -> RGB in roughly [0, 1], NHWC."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
from jax import lax

GN_GROUPS, GN_EPS = 32, 1e-6


@dataclass(frozen=True)
class VQGANConfig:
    ch: int = 128
    ch_mult: tuple = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16,)
    resolution: int = 256
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 16384
    out_ch: int = 3
    resamp_with_conv: bool = True

    def __post_init__(self):
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))

    @property
    def levels(self) -> int:
        return len(self.ch_mult)

    @property
    def grid(self) -> int:
        """Token grid side: resolution / 2^(levels - 1) (16 for the f16 model at 256 px)."""
        return self.resolution // 2 ** (self.levels - 1)


def conv(x, p, padding="SAME"):
    """Flax nn.Conv: NHWC input, HWIO kernel, stride 1 (3x3 'SAME' equals padding 1)."""
    y = lax.conv_general_dilated(x, p["kernel"], (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def group_norm(x, p):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, GN_GROUPS, c // GN_GROUPS)
    mean = jnp.mean(g, axis=(1, 2, 4), keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(g), axis=(1, 2, 4), keepdims=True) - jnp.square(mean), 0.0)
    g = (g - mean) * lax.rsqrt(var + GN_EPS)
    return g.reshape(b, h, w, c) * p["scale"] + p["bias"]


def resnet_block(x, p):
    h = conv(jax.nn.swish(group_norm(x, p["norm1"])), p["conv1"])
    h = conv(jax.nn.swish(group_norm(h, p["norm2"])), p["conv2"])
    if "nin_shortcut" in p:
        x = conv(x, p["nin_shortcut"])
    return x + h


def attn_block(x, p):
    b, h, w, c = x.shape
    y = group_norm(x, p["norm"])
    q, k, v = (conv(y, p[n]).reshape(b, h * w, c) for n in ("q", "k", "v"))
    weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) * (c ** -0.5), axis=-1)
    out = jnp.einsum("bqk,bkc->bqc", weights, v).reshape(b, h, w, c)
    return x + conv(out, p["proj_out"])


def upsample(x, p):
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, h * 2, w * 2, c), method="nearest")
    return conv(x, p["conv"]) if "conv" in p else x


def codes_to_latents(params, cfg: VQGANConfig, codes):
    """(B, grid*grid) token ids -> (B, grid, grid, embed_dim), row-major."""
    z = params["quantize"]["embedding"]["embedding"][codes]
    return z.reshape(codes.shape[0], cfg.grid, cfg.grid, -1)


def decode_latents(params, cfg: VQGANConfig, z):
    d = params["decoder"]
    x = conv(conv(z, params["post_quant_conv"]), d["conv_in"])
    x = resnet_block(x, d["mid"]["block_1"])
    x = attn_block(x, d["mid"]["attn_1"])
    x = resnet_block(x, d["mid"]["block_2"])
    for level in reversed(range(cfg.levels)):
        up = d[f"up_{level}"]
        for j in range(cfg.num_res_blocks + 1):
            x = resnet_block(x, up[f"block_{j}"])
            if f"attn_{j}" in up:
                x = attn_block(x, up[f"attn_{j}"])
        if "upsample" in up:
            x = upsample(x, up["upsample"])
    return conv(jax.nn.swish(group_norm(x, d["norm_out"])), d["conv_out"])


@lru_cache(maxsize=None)
def _compiled(cfg: VQGANConfig):
    return jax.jit(lambda params, codes: decode_latents(params, cfg, codes_to_latents(params, cfg, codes)))


def decode_code(params, cfg: VQGANConfig, codes):
    """(B, grid*grid) image tokens -> (B, H, W, 3) float pixels, unclipped."""
    return _compiled(cfg)(params, jnp.asarray(codes, jnp.int32))


def to_uint8(pixels):
    """The original notebook's conversion: clip to [0, 1], scale by 255 and truncate."""
    import numpy as np

    return np.asarray(np.clip(np.asarray(pixels, np.float32), 0.0, 1.0) * 255, dtype=np.uint8)
