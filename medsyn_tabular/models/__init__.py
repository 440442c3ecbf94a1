"""The tabular generative models (CTGAN, TVAE, AIM), their shared output activations and training
checkpoints. :data:`medsyn_tabular.models.registry.MODELS` maps a model name to how it is built."""
