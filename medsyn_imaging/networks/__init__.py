"""The image networks, by name: StyleGAN2-style and DCGAN generators/discriminators, ResNet9, DiffAugment."""
