"""Beyond one machine: extraction and batch prediction on Ray Data (`semloc.scale.ray_extract`),
training with PyTorch DDP under torchrun (`semloc.training.distributed`). See docs/scale.md.

Ray is an optional dependency (``pip install semloc[ray]``); it is imported only when a Ray
function runs.
"""
