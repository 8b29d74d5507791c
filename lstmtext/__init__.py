"""lstmtext: a command-line next-word text trainer, a NumPy LSTM language model you can read."""

__version__ = "0.1.0"
