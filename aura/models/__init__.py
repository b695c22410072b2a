"""Recommender models: one module per algorithm class (pure numpy/scipy, ``to_bytes``/``from_bytes``)
and the registry that stores their versions (aura/models/registry.py). The stream (streams/) and the
batch jobs (jobs/) train them; the API loads stored versions through the registry."""
