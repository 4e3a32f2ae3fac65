"""The Ovi GPU engine: our own implementation of Ovi that loads the official checkpoints.

The engine knows nothing of storyboards or the CLI. This package file imports nothing on
purpose: `engine.variants` and `engine.arch` are pure Python and may be used by code that must
not pay for importing torch (lint, plan).
"""
