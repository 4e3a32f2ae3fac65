"""ovi-studio: declarative storyboards and batch production for Ovi."""
__version__ = "0.1.0"
