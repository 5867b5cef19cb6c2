"""Find, download and check the MNIST-style data sets: Fashion-MNIST and MNIST.

``load_dataset`` reads the four idx files (each ``.gz`` or raw) from:

- the folder named by ``data_dir``, else by ``$FASTSOFTMAX_DATA`` (as
  ``<dir>/<name>/`` or the folder itself), and nowhere else: a named folder
  without the files is an error (or the download's target), never a reason
  to read another copy found elsewhere;
- else the first of the cache, ``$XDG_CACHE_HOME/fastsoftmax/<name>``
  (default ``~/.cache/fastsoftmax/<name>``), and
  ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist``).

If they are not there it downloads the official files, checking their md5,
into ``<dir>/<name>`` (a named folder, as torchvision's ``root``) or the
cache, unless ``FASTSOFTMAX_NO_DOWNLOAD`` is set (to anything but 0).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .cache import user_cache_dir
from .idx import MAX_BYTES, IdxError, is_compressed, read_idx, read_idx_dask, read_idx_header

__all__ = ["DATASET_NAMES", "Dataset", "DatasetError", "DatasetNotFoundError", "dataset_files", "load_dataset",
           "read_in_place_of"]

_log = logging.getLogger(__name__)

# The four files of a data set, without ".gz"; the order of the tuples below.
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SYSTEM_DIR = Path("/usr/share/datasets")  # where Debian's dataset-* packages put them
DOWNLOAD_TIMEOUT = 30  # seconds without a byte before a download gives up
MAX_DOWNLOAD = 2**28  # bytes of one .gz file; the largest official one is 26 MB


@dataclass(frozen=True)
class _Source:
    title: str
    class_names: tuple[str, ...]
    url: str  # the mirror: each file is at url + file + ".gz"
    md5: tuple[str, ...]  # of the .gz files, in FILES order
    apt_package: str | None


_SOURCES = {
    "fashion-mnist": _Source(
        "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        "dataset-fashion-mnist",
    ),
    "mnist": _Source(
        "MNIST",
        tuple("0123456789"),
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        None,
    ),
}
DATASET_NAMES = tuple(_SOURCES)


class DatasetError(ValueError):
    """The data set's files are readable but do not make a consistent data set."""


class DatasetNotFoundError(FileNotFoundError):
    """No folder holds the data set and it could not be downloaded."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set.

    Images are flattened to C-contiguous rows of uint8 pixels, shape
    (n, rows * columns), x_train a Dask array of such rows when loaded
    chunked; labels are the uint8 class indices as stored (cast them with
    ``.astype(np.int64)`` where an index type is wanted).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    source: Path  # the folder the files came from
    image_shape: tuple[int, int]

    @property
    def classes(self) -> range:
        """The class labels, 0..k-1, k from the class names (all of them, whether or not each occurs)."""
        return range(len(self.class_names))


def load_dataset(name: str = "fashion-mnist", data_dir: str | os.PathLike | None = None, *,
                 chunked: bool = False) -> Dataset:
    """Load a data set by name ("fashion-mnist" or "mnist"); see the module doc for where from.

    chunked: x_train is a Dask array (idx.read_idx_dask): a raw (not .gz)
    training-images file is then memory-mapped chunk by chunk, so it may be
    larger than memory; the labels and the test split are read as usual.

    Raises ValueError for an unknown name, DatasetNotFoundError when no folder
    has the files and downloading fails or is disabled (or when the folder
    named by data_dir or $FASTSOFTMAX_DATA lacks them: naming one turns the
    search off), IdxError for a malformed file and DatasetError for files
    that disagree. The files' headers are checked against each other before
    their data is read.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    source = _SOURCES[name]
    explicit, searched = _search_dirs(name, data_dir)
    folder = next((d for d in searched if _find_files(d)), None) or _download(name, source, searched, explicit)
    paths = _find_files(folder)
    headers = [_read(path, source, read_idx_header) for path in paths]
    n_classes = len(source.class_names)
    _check_split(paths[0], headers[0], paths[1], headers[1])
    _check_split(paths[2], headers[2], paths[3], headers[3])
    if headers[0][0][1:] != headers[2][0][1:]:
        raise DatasetError(
            f"{paths[0]} holds images of shape {headers[0][0][1:]} but {paths[2]} of shape "
            f"{headers[2][0][1:]}; the files come from different data sets"
        )
    mapped = chunked and not is_compressed(paths[0])  # memory-mapped: nothing is allocated for it
    size = sum(math.prod(shape) for shape, _ in headers[mapped:])  # uint8 throughout
    if size > MAX_BYTES:
        raise DatasetError(f"{folder}: the four files claim {size:,} bytes of data, more than the "
                           f"{MAX_BYTES:,} a data set may hold here; is it the right folder?")
    x_train = _read(paths[0], source, read_idx_dask if chunked else read_idx)
    y_train, x_test, y_test = (_read(path, source, read_idx) for path in paths[1:])
    _check_labels(paths[1], y_train, n_classes)
    _check_labels(paths[3], y_test, n_classes)
    return Dataset(
        name=name,
        x_train=x_train.reshape(len(x_train), -1),
        y_train=y_train,
        x_test=x_test.reshape(len(x_test), -1),
        y_test=y_test,
        class_names=source.class_names,
        source=folder,
        image_shape=headers[0][0][1:],
    )


def dataset_files(name: str = "fashion-mnist", data_dir: str | os.PathLike | None = None) -> list[Path] | None:
    """The four files load_dataset(name, data_dir) would read, found as it finds them but not read,
    or None where it would download them: what a command checks its outputs against before loading.

    Raises as load_dataset does for an unknown name or a data_dir that is a file.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    return next(filter(None, map(_find_files, _search_dirs(name, data_dir)[1])), None)


def read_in_place_of(path: str | os.PathLike) -> Path | None:
    """The name whose file load_dataset would read in place of the idx file `path` (it looks for the raw
    name first): a .gz file's name without .gz; None for a raw file."""
    path = Path(path)
    return path.with_suffix("") if path.suffix == ".gz" else None


def _search_dirs(name: str, data_dir: str | os.PathLike | None) -> tuple[Path | None, list[Path]]:
    """(the explicit folder or None, the folders to search in order).

    A folder named by data_dir (else $FASTSOFTMAX_DATA) is the only place
    looked in, as ``<dir>/<name>`` then ``<dir>``: naming one never falls
    back to another copy elsewhere. Without one: the cache, then the system
    folder.
    """
    root = data_dir if data_dir not in (None, "") else os.environ.get("FASTSOFTMAX_DATA") or None
    if root is None:
        return None, [user_cache_dir(name), SYSTEM_DIR / name]
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        via = "--data-dir (data_dir)" if data_dir not in (None, "") else "FASTSOFTMAX_DATA"
        raise DatasetNotFoundError(f"{root} is not a folder; {via} must name the folder that holds "
                                   f"the four idx files of {name} (or a folder with a {name}/ subfolder)")
    # <root>/<name> first, so that one root can hold several data sets.
    return root, [root / name, root]


def _find_file(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _find_files(folder: Path) -> list[Path] | None:
    """The four files in folder, or None unless all four are there."""
    paths = [_find_file(folder, stem) for stem in FILES]
    return None if None in paths else paths


def _download(name: str, source: _Source, searched: list[Path], explicit: Path | None) -> Path:
    """Download the missing files and return their folder, or raise DatasetNotFoundError.

    They go into ``<explicit>/<name>`` when a folder was named (as
    torchvision's ``root`` does), else into the cache.
    """
    cache = user_cache_dir(name) if explicit is None else explicit / name
    if os.environ.get("FASTSOFTMAX_NO_DOWNLOAD", "") not in ("", "0"):
        reason = "downloading is disabled (FASTSOFTMAX_NO_DOWNLOAD is set)"
    else:
        try:
            for stem, md5 in zip(FILES, source.md5):
                if _find_file(cache, stem) is None:  # resume an interrupted download
                    _fetch(f"{source.url}{stem}.gz", md5, cache / f"{stem}.gz")
            return cache
        # URLError, HTTPError and timeouts are OSErrors; a bad checksum is a ValueError.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = f"the download from {source.url} failed: {exc}"
    options = [
        f"pass --data-dir DIR (data_dir=DIR) naming a folder with the four idx files{' instead' if explicit else ''}",
        "set FASTSOFTMAX_DATA to such a folder",
        *([f"apt-get install {source.apt_package}"] if source.apt_package else []),
        f"connect to the internet and run again (the files are then kept in {cache})",
    ]
    # One line: the CLI prints it as its whole error message.
    raise DatasetNotFoundError(
        f"{source.title} not found in {', '.join(map(str, searched))}, and {reason}; "
        f"to fix it: {'; or '.join(options)}"
    )


def _fetch(url: str, md5: str, dest: Path) -> None:
    """Download url to dest if its md5 matches; dest never holds a partial file."""
    _log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        data = response.read(MAX_DOWNLOAD + 1)  # a server sending without end cannot fill the memory
    if len(data) > MAX_DOWNLOAD:
        raise ValueError(f"{url}: more than {MAX_DOWNLOAD:,} bytes, far more than the file holds")
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if digest != md5:
        raise ValueError(f"{url}: checksum mismatch (md5 {digest}, expected {md5})")
    with atomic_write(dest) as f:
        f.write(data)


def _read(path: Path, source: _Source, reader):
    try:
        return reader(path)
    except IdxError as exc:
        if source.apt_package and path.is_relative_to(SYSTEM_DIR):
            raise IdxError(f"{exc}, or reinstall {source.apt_package}") from None
        raise


def _check_split(images_path: Path, images: tuple, labels_path: Path, labels: tuple) -> None:
    """Raise DatasetError unless the headers (shape, dtype) of images and labels make one split."""
    (images_shape, images_dtype), (labels_shape, labels_dtype) = images, labels
    if len(images_shape) != 3 or images_dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (count, rows, columns), "
            f"found {images_dtype} of shape {images_shape}; is it an images file?"
        )
    if len(labels_shape) != 1 or labels_dtype != np.uint8:
        raise DatasetError(
            f"{labels_path}: expected uint8 labels of shape (count,), "
            f"found {labels_dtype} of shape {labels_shape}; is it a labels file?"
        )
    if labels_shape[0] != images_shape[0]:
        raise DatasetError(
            f"{labels_path} has {labels_shape[0]} labels but {images_path} has {images_shape[0]} images; "
            "the files come from different data sets"
        )
    if 0 in images_shape:
        raise DatasetError(f"{images_path} holds no images (shape {images_shape}); a split needs at least "
                           "one image of at least one pixel")


def _check_labels(labels_path: Path, labels: np.ndarray, n_classes: int) -> None:
    bad = np.flatnonzero(labels >= n_classes)
    if bad.size:
        raise DatasetError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is out of range [0, {n_classes}); "
            "is it the right data set?"
        )
