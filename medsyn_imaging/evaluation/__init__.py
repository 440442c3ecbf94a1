"""Judging synthetic images: the ResNet9 classifier (TRTR/TSTR), features, FID/KID/PRDC, memorisation and
the imaging report."""
