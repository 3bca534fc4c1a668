"""DALL·E mini / mega inference on current JAX, loading the published checkpoints unchanged.

text.py     the original tool's prompt normalisation
dallebart.py  the DalleBart encoder–decoder and its cached sampler
vqgan.py    the VQGAN f16 decoder (image tokens → pixels)
loading.py  config.json + flax_model.msgpack from a hub id or a local folder
backend.py  the ImaginaryNet backend built on them
"""
