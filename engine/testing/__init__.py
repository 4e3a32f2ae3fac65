"""Helpers to build tiny random-weight checkpoint folders in the exact published layout."""
