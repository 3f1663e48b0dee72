"""urbangen: turn cheap synthetic label maps into real-domain segmentation training data."""

__version__ = "0.1.0"

__all__ = ["__version__"]
