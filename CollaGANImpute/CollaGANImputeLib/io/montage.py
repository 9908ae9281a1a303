"""A one-row PNG of one axial slice: every input, the imputed contrast, the real one, and |difference|."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_path


def _to_grey(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    return (np.clip((plane - low) / max(high - low, 1e-8), 0, 1) * 255).astype(np.uint8)


def montage_image(panels: Sequence[tuple[str, np.ndarray]], mask: np.ndarray, shared_window: Sequence[int] = (),
                  index: int | None = None) -> Image.Image:
    """Panels are (title, canonical volume); the slice shown is `index`, by default the one with most brain.

    Each panel is windowed to the 0.5-99.5 percentiles of its brain voxels; panels whose indices are in
    `shared_window` (real, then imputed, say) share the window of the first of them so they compare fairly.
    """
    if index is None:
        index = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    windows = [tuple(np.percentile(volume[mask], [0.5, 99.5])) for _, volume in panels]
    for i in shared_window:
        windows[i] = windows[shared_window[0]]
    tiles = [_to_grey(volume[index], *window) for (_, volume), window in zip(panels, windows)]
    height, width = tiles[0].shape
    title_height = 18
    canvas = Image.new("L", (width * len(tiles), height + title_height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, ((title, _), tile) in enumerate(zip(panels, tiles)):
        canvas.paste(Image.fromarray(tile), (i * width, title_height))
        draw.text((i * width + 4, 3), title, fill=255)
    return canvas


def write_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as temp:
        image.save(temp, format="PNG")
    return path
