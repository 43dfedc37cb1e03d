"""Keras-style callbacks for ``fit``."""
