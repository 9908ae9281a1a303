"""Blinded visual Turing test reading sessions: building, reading, scoring and reporting them."""
