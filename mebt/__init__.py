"""MeBT: Memory-efficient Bidirectional Transformer for long-video generation (Yoo et al., CVPR 2023).

One idea per file:
  config.py      dataclass configs and presets (tiny / small / paper)
  data.py        built-in synthetic videos (with ground truth) and SkyTimelapse frame folders
  quantizer.py   EMA vector quantiser
  tokenizer.py   3D-conv VQ-VAE: video <-> token grid
  token_cache.py the training set encoded once, on disk
  attention.py   the one transformer block (query attends to key/value)
  encoder.py     context -> latents (the bottleneck)
  decoder.py     latents -> targets, linear in the number of targets
  model.py       MeBT = embeddings + encoder + decoder + head
  baselines.py   full-attention and autoregressive transformers for comparison
  masking.py     context / target splits for training
  curriculum.py  short-to-long clip lengths over training
  decoding.py    iterative masked decoding (sampling)
  consistency.py exact object-persistence and motion metrics on synthetic data
  profiling.py   FLOPs and saved-activation bytes of a training step
"""
