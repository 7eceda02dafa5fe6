"""vsslpipe: self-supervised video representation learning, from raw videos to paper tables."""

__version__ = "0.1.0"
