"""Keras-style training on any Module: compile, fit, evaluate, predict."""
