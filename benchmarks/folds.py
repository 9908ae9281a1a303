"""The two half-data folds of a model's training subjects, whose models give out-of-fold imputations (the landmark
offsets are fitted on those). Kept free of the library's imports, so the GPU device's driver script can use it."""

from __future__ import annotations


def fold_subjects(train_subjects: list[str], fold: str) -> list[str]:
    """The model card's training subjects by alternate position: fold a 0, 2, 4, ...; fold b 1, 3, 5, ..."""
    return train_subjects[0::2] if fold == "a" else train_subjects[1::2]
