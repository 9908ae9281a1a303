"""Measuring imputations: evaluation against the real contrast, contrast importance, and the demo."""
