"""The vocabulary every layer shares: errors, contrast names, progress, image-quality measures and long-running jobs. Imports nothing of the package."""
