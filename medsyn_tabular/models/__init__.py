"""The tabular generative models (CTGAN, TVAE), their shared output activations and training
checkpoints. :data:`MODELS` maps a model name to how it is built."""
