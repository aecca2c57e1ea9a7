"""Image folders: one subfolder per class, read with Pillow into an N×C×H×W tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainlab.data.dataset import DataError, Dataset

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

_GRAY_MODES = ("1", "L", "LA")
_GRAY_16BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def load_image_folder(path: str | Path, task: str = "auto", name: str | None = None) -> Dataset:
    """Read a folder of class subfolders of images into a :class:`Dataset`.

    The subfolders, sorted by name, are the classes (labels 0..C−1); in each, the files
    ending in one of :data:`IMAGE_SUFFIXES` (any case), sorted by name, are its samples.
    Other files and hidden entries (names starting with ``.``) are skipped. Images are kept
    grayscale (C = 1) when every one is grayscale, else all are read as RGB (C = 3; alpha
    is dropped, a grayscale image is repeated over the 3 channels). An animated GIF
    contributes its first frame.

    Parameters
    ----------
    path : str or Path
        The folder.
    task : {"auto", "classification"}
        An image folder is always a classification dataset.
    name : str, optional
        The dataset's name (default: ``path`` as given); also how errors name the folder.

    Returns
    -------
    Dataset
        X float32 in [0, 1], N×C×H×W; ``metadata["files"]`` lists each sample's file,
        relative to the folder.

    Raises
    ------
    DataError
        If there are fewer than two class subfolders, a class subfolder holds no images,
        an image cannot be read (the file is named), or sizes differ (the file and both
        sizes are named).
    """
    root = Path(path)
    label = str(path) if name is None else name
    if task not in ("auto", "classification"):
        raise DataError(f"{label}: an image folder is a classification dataset, not {task!r}")
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.name,
    )
    if len(class_dirs) < 2:
        found = f"only {class_dirs[0].name!r}" if class_dirs else "none"
        raise DataError(
            f"{label}: an image folder needs one subfolder of images per class, at least 2 "
            f"(found {found})"
        )

    pixels, labels, files = [], [], []
    first: tuple[Path, tuple[int, int]] | None = None
    for k, d in enumerate(class_dirs):
        images = sorted(
            (
                f
                for f in d.iterdir()
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            ),
            key=lambda f: f.name,
        )
        if not images:
            raise DataError(
                f"{label}: class folder {d.name!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        for f in images:
            array, size = _read(f)
            if first is None:
                first = (f, size)
            elif size != first[1]:
                raise DataError(
                    f"{f}: size {size[0]}×{size[1]} differs from {first[0]}: "
                    f"{first[1][0]}×{first[1][1]} (width×height); all images must be one size"
                )
            pixels.append(array)
            labels.append(k)
            files.append(f.relative_to(root).as_posix())

    gray = all(a.ndim == 2 for a in pixels)
    if gray:
        X = np.stack(pixels)[:, None]
    else:
        X = np.stack([np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in pixels])
        X = X.transpose(0, 3, 1, 2)
    return Dataset(
        name=label,
        X=torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)),
        y=torch.tensor(labels, dtype=torch.int64),
        task="classification",
        classes=[d.name for d in class_dirs],
        feature_names=None,
        metadata={
            "source": "image_folder",
            "path": str(path),
            "mode": "L" if gray else "RGB",
            "image_size": list(first[1]),
            "files": files,
        },
    )


def _read(file: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels in [0, 1] (H×W when grayscale, else H×W×3) and the (width, height)."""
    try:
        with Image.open(file) as im:
            im.load()  # decode now: a truncated or corrupt file fails here, named
            return _pixels(im), im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{file}: not a readable image ({e})") from None


def _pixels(im: Image.Image) -> np.ndarray:
    if im.mode in _GRAY_MODES:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if im.mode in _GRAY_16BIT_MODES:  # 16-bit grayscale PNG
        return np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    # A palette image (GIF, some PNGs) is grayscale if its colors are.
    if im.mode in ("P", "PA") and (rgb == rgb[..., :1]).all():
        return rgb[..., 0].copy()
    return rgb
