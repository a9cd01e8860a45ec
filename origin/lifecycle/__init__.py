"""Bucket lifecycle: rules (pure: parse, render, match) and the worker that applies them."""
