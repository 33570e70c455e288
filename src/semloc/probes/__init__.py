"""Training-free and cheap CLIP baselines on a feature store's pooled embeddings.

- `zeroshot`: classify by cosine with class-prompt embeddings of the store's own CLIP;
- `linear_probe`: logistic regression with C chosen on dev.

The trained baselines (text/image-only, late fusion, Hate-CLIPper, cross transformer) are models
like SG-MFT and live in `semloc.models.baselines`.
"""
