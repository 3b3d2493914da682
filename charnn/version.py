"""charnn's version: what checkpoints and the compiled-kernel stamps record."""
__version__ = "0.1.0"
