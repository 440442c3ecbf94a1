"""The Flower App bundle's package: see medsyn_federated.apps."""
