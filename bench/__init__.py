"""Speed benchmark of lstmtext against a PyTorch reference (`make bench`; see bench/README.md).

A bench-only package: lstmtext never imports it, and torch is imported only by bench/torch_ref.py."""
