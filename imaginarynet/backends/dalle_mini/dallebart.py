"""DalleBart: the DALL·E mini/mega text encoder and image-token decoder, as pure JAX functions
over the checkpoint's own parameter tree (scanned layers, Flax kernel layouts).

Supported: what the published mini and mega checkpoints use (layernorm, NormFormer
positions, GLU feed-forward, no biases, final layer norms, absolute positions).
Generation keeps a key/value cache, so each new token costs one decoder step,
and mixes conditional and unconditional logits for super-conditioning.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
from jax import lax

from imaginarynet.errors import UserError

LN_EPS = 1e-5


@dataclass(frozen=True)
class DalleBartConfig:
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    encoder_vocab_size: int
    image_vocab_size: int
    image_length: int
    max_text_length: int
    decoder_start_token_id: int
    eos_token_id: int
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    activation_function: str = "gelu"
    ln_type: str = "layernorm"
    ln_positions: str = "normformer"
    use_glu: bool = True
    use_bias: bool = False
    use_final_ln_encoder: bool = True
    use_final_ln_decoder: bool = True
    use_absolute_position_embeddings: bool = True
    use_cosine_attention: bool = False
    use_head_scale: bool = False
    use_deepnet_scaling: bool = False
    use_swin_position_embeddings: bool = False
    use_alibi: bool = False
    sinkhorn_iters: int = 1
    scale_embedding: bool = False
    normalize_text: bool = True
    do_sample: bool = True
    top_k: int = 50  # transformers' config default, which the original's generate() falls back to
    top_p: float = 1.0
    temperature: float = 1.0

    def check_supported(self) -> None:
        unsupported = {
            "ln_type": self.ln_type != "layernorm", "ln_positions": self.ln_positions != "normformer",
            "use_glu": not self.use_glu, "use_bias": self.use_bias,
            "use_cosine_attention": self.use_cosine_attention, "use_head_scale": self.use_head_scale,
            "use_deepnet_scaling": self.use_deepnet_scaling, "use_alibi": self.use_alibi,
            "use_swin_position_embeddings": self.use_swin_position_embeddings,
            "sinkhorn_iters": self.sinkhorn_iters != 1, "activation_function": self.activation_function != "gelu",
            "use_absolute_position_embeddings": not self.use_absolute_position_embeddings,
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise UserError(f"DalleBart checkpoint uses options this implementation does not: {', '.join(bad)}")


# ---------------------------------------------------------------- building blocks

def layer_norm(x, p):
    """Flax LayerNorm (variance as E[x^2] - E[x]^2); the scale is absent on 'pre' norms."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
    y = (x - mean) * lax.rsqrt(var + LN_EPS)
    if "scale" in p:
        y = y * p["scale"]
    return y + p["bias"] if "bias" in p else y


def _heads(x, n_heads):
    b, length, d = x.shape
    return x.reshape(b, length, n_heads, d // n_heads)


def attend(q, k, v, bias):
    """q (B,Lq,H,Dh), k/v (B,Lk,H,Dh), bias broadcastable to (B,H,Lq,Lk)."""
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return out.reshape(out.shape[0], out.shape[1], -1)


def project_kv(x, p, n_heads):
    return _heads(x @ p["k_proj"]["kernel"], n_heads), _heads(x @ p["v_proj"]["kernel"], n_heads)


def glu(x, p):
    y = layer_norm(x, p["LayerNorm_0"])
    gated = jax.nn.gelu(y @ p["Dense_0"]["kernel"], approximate=False) * (y @ p["Dense_1"]["kernel"])
    return layer_norm(gated, p["LayerNorm_1"]) @ p["Dense_2"]["kernel"]


def mask_bias(mask, dtype):
    """(B, Lk) 1/0 mask -> additive (B, 1, 1, Lk) bias on the keys."""
    return jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(dtype).min).astype(dtype)


def _embed(p, ids, positions):
    return layer_norm(p["embed_tokens"]["embedding"][ids] + p["embed_positions"]["embedding"][positions],
                      p["layernorm_embedding"])


def _final(p, x):
    return layer_norm(x, p["final_ln"]) if "final_ln" in p else x


# ---------------------------------------------------------------- encoder / decoder

def encode(params, cfg: DalleBartConfig, input_ids, attention_mask):
    """(B, L, d_model) encoder states, padded positions included (as the original returns them)."""
    p = params["model"]["encoder"]
    x = _embed(p, input_ids, jnp.arange(input_ids.shape[1]))
    bias = mask_bias(attention_mask, x.dtype)
    heads = cfg.encoder_attention_heads

    def layer(h, lp):
        a = lp["FlaxBartAttention_0"]
        y = layer_norm(h, lp["LayerNorm_0"])
        q = _heads(y @ a["q_proj"]["kernel"], heads)
        k, v = project_kv(y, a, heads)
        h = h + layer_norm(attend(q, k, v, bias) @ a["out_proj"]["kernel"], lp["LayerNorm_1"])
        return h + glu(h, lp["GLU_0"]), None

    x, _ = lax.scan(layer, x, p["layers"]["FlaxBartEncoderLayers"])
    return _final(p, x)


def _decoder_layer(h, lp, heads, self_kv, self_bias, cross_kv, cross_bias):
    """One decoder layer; self_kv(y) returns the keys/values the queries attend to."""
    a = lp["FlaxBartAttention_0"]
    y = layer_norm(h, lp["LayerNorm_0"])
    q = _heads(y @ a["q_proj"]["kernel"], heads)
    k, v, extra = self_kv(y, a)
    h = h + layer_norm(attend(q, k, v, self_bias) @ a["out_proj"]["kernel"], lp["LayerNorm_1"])
    c = lp["FlaxBartAttention_1"]
    y = layer_norm(h, lp["LayerNorm_2"])
    q = _heads(y @ c["q_proj"]["kernel"], heads)
    h = h + layer_norm(attend(q, *cross_kv, cross_bias) @ c["out_proj"]["kernel"], lp["LayerNorm_3"])
    return h + glu(h, lp["GLU_0"]), extra


def decode(params, cfg: DalleBartConfig, decoder_input_ids, encoder_states, encoder_mask):
    """Logits (B, L, vocab) for a whole decoder input at once (teacher forcing, no cache)."""
    p = params["model"]["decoder"]
    length = decoder_input_ids.shape[1]
    x = _embed(p, decoder_input_ids, jnp.arange(length))
    heads = cfg.decoder_attention_heads
    causal = jnp.where(jnp.tril(jnp.ones((length, length), bool)), 0.0, jnp.finfo(x.dtype).min).astype(x.dtype)
    cross_bias = mask_bias(encoder_mask, x.dtype)

    def layer(h, lp):
        cross_kv = project_kv(encoder_states, lp["FlaxBartAttention_1"], heads)
        h, _ = _decoder_layer(h, lp, heads, lambda y, a: (*project_kv(y, a, heads), None),
                              causal[None, None], cross_kv, cross_bias)
        return h, None

    x, _ = lax.scan(layer, x, p["layers"]["FlaxBartDecoderLayers"])
    return _final(p, x) @ params["lm_head"]["kernel"]


def cross_cache(params, cfg: DalleBartConfig, encoder_states):
    """Cross-attention keys/values of every decoder layer, computed once per prompt."""
    heads = cfg.decoder_attention_heads
    return jax.vmap(lambda lp: project_kv(encoder_states, lp["FlaxBartAttention_1"], heads))(
        params["model"]["decoder"]["layers"]["FlaxBartDecoderLayers"])


def empty_self_cache(cfg: DalleBartConfig, batch: int, dtype):
    shape = (cfg.decoder_layers, batch, cfg.image_length, cfg.decoder_attention_heads,
             cfg.d_model // cfg.decoder_attention_heads)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def decode_step(params, cfg: DalleBartConfig, token, t, self_cache, cross, encoder_mask):
    """Logits (B, vocab) for position t given the previous token; returns the updated cache."""
    p = params["model"]["decoder"]
    heads = cfg.decoder_attention_heads
    x = _embed(p, token[:, None], jnp.full((1,), t))
    seen = jnp.where(jnp.arange(cfg.image_length) <= t, 0.0, jnp.finfo(x.dtype).min).astype(x.dtype)
    cross_bias = mask_bias(encoder_mask, x.dtype)

    def layer(h, xs):
        lp, k_cache, v_cache, cross_k, cross_v = xs

        def self_kv(y, a):
            k, v = project_kv(y, a, heads)
            kc = lax.dynamic_update_slice_in_dim(k_cache, k.astype(k_cache.dtype), t, axis=1)
            vc = lax.dynamic_update_slice_in_dim(v_cache, v.astype(v_cache.dtype), t, axis=1)
            return kc, vc, (kc, vc)

        return _decoder_layer(h, lp, heads, self_kv, seen[None, None, None], (cross_k, cross_v), cross_bias)

    x, new_cache = lax.scan(layer, x, (p["layers"]["FlaxBartDecoderLayers"], *self_cache, *cross))
    return (_final(p, x) @ params["lm_head"]["kernel"])[:, 0], new_cache


# ---------------------------------------------------------------- sampling

def warp(logits, temperature, top_k, top_p):
    """Temperature, then top-k, then top-p, as transformers' Flax warpers apply them."""
    if temperature is not None and temperature != 1.0:
        logits = logits / temperature
    vocab = logits.shape[-1]
    if top_k:
        vals, idx = lax.top_k(logits, min(max(top_k, 1), vocab))
        rows = jnp.arange(logits.shape[0])[:, None]
        logits = jnp.full_like(logits, -jnp.inf).at[rows, idx].set(vals)
    if top_p is not None and top_p < 1.0:
        vals, idx = lax.top_k(logits, vocab)
        keep = jnp.cumsum(jax.nn.softmax(vals, axis=-1), axis=-1) < top_p
        keep = jnp.roll(keep, 1, axis=-1).at[:, 0].set(True)  # also keep the token that crosses top_p
        kept = jnp.where(keep, vals, -jnp.inf)
        logits = lax.sort_key_val(idx, kept, dimension=-1)[1]
    return logits


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = True
    condition_scale: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    per_row_keys: bool = False  # one PRNG key chain per row (ImaginaryNet) or one for the batch (original)


@lru_cache(maxsize=None)
def _compiled(cfg: DalleBartConfig, s: Sampling):
    guided = s.condition_scale != 1.0

    def choose(key, logits):
        if not s.do_sample:
            return jnp.argmax(logits, axis=-1), key
        if s.per_row_keys:
            pairs = jax.vmap(jax.random.split)(key)
            tokens = jax.vmap(lambda k, row: jax.random.categorical(k, row))(pairs[:, 0], logits)
            return tokens, pairs[:, 1]
        now, nxt = jax.random.split(key)
        return jax.random.categorical(now, logits, axis=-1), nxt

    def run(params, input_ids, enc_mask, uncond_ids, enc_mask_u, key):
        enc = encode(params, cfg, input_ids, enc_mask)
        batch = enc.shape[0]
        dtype = enc.dtype
        cross = cross_cache(params, cfg, enc)
        cache = empty_self_cache(cfg, batch, dtype)
        if guided:
            enc_u = encode(params, cfg, uncond_ids, enc_mask_u)  # one row, shared by the batch
            cross_u = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (a.shape[0], batch) + a.shape[2:]),
                                             cross_cache(params, cfg, enc_u))
            enc_mask_u = jnp.broadcast_to(enc_mask_u, (batch, enc_mask_u.shape[1]))
            cache_u = empty_self_cache(cfg, batch, dtype)
        else:
            cross_u, cache_u = None, None

        def step(carry, t):
            token, cache, cache_u, key = carry
            logits, cache = decode_step(params, cfg, token, t, cache, cross, enc_mask)
            logits = logits.astype(jnp.float32)
            if guided:
                logits_u, cache_u = decode_step(params, cfg, token, t, cache_u, cross_u, enc_mask_u)
                logits_u = logits_u.astype(jnp.float32)
                logits = logits_u + s.condition_scale * (logits - logits_u)
            logits = logits.at[:, cfg.eos_token_id].set(-jnp.inf)  # min_length = max_length: never stop
            if s.do_sample:
                top_k = cfg.top_k if s.top_k is None else s.top_k
                top_p = cfg.top_p if s.top_p is None else s.top_p
                temperature = cfg.temperature if s.temperature is None else s.temperature
                logits = warp(logits, temperature, top_k, top_p)
            token, key = choose(key, logits)
            token = token.astype(jnp.int32)
            return (token, cache, cache_u, key), token

        start = jnp.full((batch,), cfg.decoder_start_token_id, jnp.int32)
        _, tokens = lax.scan(step, (start, cache, cache_u, key), jnp.arange(cfg.image_length))
        return jnp.concatenate([start[:, None], tokens.T], axis=1)

    return jax.jit(run)


def generate(params, cfg: DalleBartConfig, input_ids, attention_mask, key=None, sampling: Sampling = Sampling(),
             uncond_ids=None, uncond_mask=None):
    """(B, image_length + 1) sequences starting with the decoder start token, as the original returns.

    `key` is one PRNG key for the batch, or (B, 2) keys with sampling.per_row_keys.
    Super-conditioning (condition_scale != 1) needs the unconditional prompt's ids (1 row or B rows).
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    if sampling.condition_scale != 1.0:
        if uncond_ids is None:
            raise ValueError("super-conditioning needs the unconditional prompt (uncond_ids)")
        uncond_ids, uncond_mask = uncond_ids[:1], uncond_mask[:1]
    else:
        uncond_ids, uncond_mask = input_ids[:1], attention_mask[:1]  # unused
    return _compiled(cfg, sampling)(params, input_ids, attention_mask, uncond_ids, uncond_mask, key)


def cast_params(params, dtype):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)


def stack_unscanned(params, cfg: DalleBartConfig) -> dict:
    """Checkpoints saved with use_scan=false name layers FlaxBart*Layer_{i}: stack them."""
    import numpy as np

    for part, name, n in (("encoder", "FlaxBartEncoderLayer", cfg.encoder_layers),
                          ("decoder", "FlaxBartDecoderLayer", cfg.decoder_layers)):
        layers = params["model"][part]["layers"]
        if f"{name}s" not in layers and f"{name}_0" in layers:
            per = [layers[f"{name}_{i}"] for i in range(n)]
            layers[f"{name}s"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *per)
    return params


