"""The adaptive batching benchmark (run.py): PyTorch MLP, batching off vs on."""
