"""Named datasets, image folders and arrays, all loaded to one in-memory form.

Every source ends as a :class:`Dataset` of float32 images N×C×H×W in [0, 1] plus optional
int64 labels, held in memory so training takes batches by indexing, not per-sample
Python calls. Every check on the input raises :class:`VaelabError` naming the file. The
container itself also holds feature vectors and code maps (see :mod:`vaelab.data.derive`).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vaelab.data.batch import Batch
from vaelab.data.download import fetch
from vaelab.data.idx import read_idx
from vaelab.errors import VaelabError, VaelabWarning, brief

DATASETS = ("mnist", "fashion-mnist", "kmnist", "digits", "frey-faces", "cifar10", "ptb", "fsdd")
SPLITS = ("train", "test")
_SPECS = ", ".join(DATASETS + ("folder:PATH", "npy:PATH", "wav:PATH", "text:PATH"))
# Datasets that ship their own validation file: split "val" reads it (choices are made on it).
OWN_VALIDATION = ("ptb",)


@dataclass(frozen=True)
class Dataset:
    """N rows of data held in memory: ``x`` of any rank and dtype (images N×C×H×W float32,
    feature vectors N×D, integer code maps N×H×W), optional ``y`` and which rows carry it.

    ``y`` is class indices (N, int64), or attribute vectors / target tensors with N rows.
    ``labelled`` (N, bool) marks the rows whose ``y`` means something, so "unlabelled" needs
    no sentinel; None means every row is labelled when ``y`` is given, none when it is not.
    ``extras`` are further per-row tensors (e.g. the target mask of a completion task).
    ``front_end`` says, as JSON-able settings, how x was made from raw recordings or text
    (a log-mel analysis, a vocabulary); empty for images. A family copies it into its config
    (``data_settings``) so a loaded model can turn a WAV or a sentence into x and back.
    Image checks (float32, range, layout) belong to the loaders and :meth:`require_images`,
    not here, so features and codes fit the same container.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None
    labelled: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict, hash=False)
    front_end: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        where = f"dataset {self.name}"
        if not isinstance(self.x, torch.Tensor) or self.x.ndim < 1:
            raise VaelabError(f"{where}: x must be a tensor with one row per example, got {_describe(self.x)}")
        n = len(self.x)
        for key, value in (("y", self.y), *((f"extras[{k!r}]", v) for k, v in self.extras.items())):
            if value is not None and (not isinstance(value, torch.Tensor) or value.ndim < 1 or len(value) != n):
                raise VaelabError(f"{where}: {key} must be a tensor with {n} rows (one per x), got {_describe(value)}")
        if self.y is not None and self.y.ndim == 1 and _is_integer(self.y) and self.y.dtype != torch.int64:
            raise VaelabError(f"{where}: class labels y must be int64, got {self.y.dtype}; convert them with y.long()")
        if self.labelled is not None and (not isinstance(self.labelled, torch.Tensor)
                                          or self.labelled.dtype != torch.bool or tuple(self.labelled.shape) != (n,)):
            raise VaelabError(f"{where}: labelled must be a bool tensor of shape ({n},), got {_describe(self.labelled)}")
        if self.y is None and self.labelled is not None and bool(self.labelled.any()):
            raise VaelabError(f"{where}: {int(self.labelled.sum())} rows are marked labelled but y is None; "
                              "give their labels or mark them unlabelled")
        if self.has_class_labels:
            self._check_class_range(where)

    def _check_class_range(self, where: str) -> None:
        """Class indices of the labelled rows lie in 0..K-1 (K = len(classes) when named)."""
        y = self.y if self.labelled is None else self.y[self.labelled]
        if not y.numel():
            return
        low, high = int(y.min()), int(y.max())
        if low < 0:
            raise VaelabError(f"{where}: labelled rows hold the class index {low}; class indices start at 0 "
                              "(mark rows without a label with the labelled mask instead)")
        if self.classes is not None and high >= len(self.classes):
            raise VaelabError(f"{where}: labelled rows hold the class index {high} but only {len(self.classes)} "
                              f"classes are named; name every class or fix the labels")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one row: (C, H, W) for images, (D,) for feature vectors."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def is_image(self) -> bool:
        """Whether x holds float images N×C×H×W (values are the loaders' business)."""
        return self.x.ndim == 4 and self.x.is_floating_point()

    @property
    def has_class_labels(self) -> bool:
        """Whether y holds class indices (one int64 per row), as classifiers and M2 need."""
        return self.y is not None and self.y.ndim == 1 and self.y.dtype == torch.int64

    @property
    def n_classes(self) -> int | None:
        """Number of classes: the named ones, else 1 + the largest labelled index; None
        when y is not class indices."""
        if not self.has_class_labels:
            return None
        if self.classes is not None:
            return len(self.classes)
        y = self.y[self.labelled_mask]
        return int(y.max()) + 1 if y.numel() else 0

    @property
    def labelled_mask(self) -> torch.Tensor:
        """(N,) bool: which rows carry a meaningful y (always a tensor, unlike ``labelled``)."""
        if self.labelled is not None:
            return self.labelled
        return torch.full((len(self),), self.y is not None, dtype=torch.bool)

    @property
    def n_labelled(self) -> int:
        return int(self.labelled_mask.sum())

    def subset(self, index) -> Dataset:
        """The rows selected by ``index`` (indices, mask or slice), same name and classes."""
        def pick(t):
            return None if t is None else t[index]
        return Dataset(self.name, self.x[index], pick(self.y), self.classes, pick(self.labelled),
                       {k: v[index] for k, v in self.extras.items()}, self.front_end)

    def split_labelled(self) -> tuple[Dataset, Dataset]:
        """(the labelled rows, the unlabelled rows): the second has no y at all, so nothing
        downstream can read labels it was not meant to see."""
        mask = self.labelled_mask
        labelled, rest = self.subset(mask), self.subset(~mask)
        return replace(labelled, labelled=None), replace(rest, y=None, labelled=None)

    def batch(self) -> Batch:
        """Every row as one :class:`~vaelab.data.batch.Batch`, what samplers and models take."""
        return Batch(self.x, self.y, self.labelled, dict(self.extras))

    def require_images(self, what: str = "this step") -> Dataset:
        """``self`` if x holds float32 images N×C×H×W, else one line saying what it holds."""
        if self.x.ndim != 4 or self.x.dtype != torch.float32:
            raise VaelabError(f"{what} needs images (float32 N×C×H×W) but dataset {self.name} holds "
                              f"{self.x.dtype} {tuple(self.x.shape)}; use image data or a model made for this data")
        return self


def _is_integer(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def _images(name: str, x: torch.Tensor, y: torch.Tensor | None = None,
            classes: tuple[str, ...] | None = None) -> Dataset:
    """A loaded image dataset; every loader ends here, so what it read is float32 N×C×H×W."""
    return Dataset(name, x, y, classes).require_images(f"loading {name}")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else ``$VAELAB_DATA_DIR``, else the user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("VAELAB_DATA_DIR"):
        return Path(os.environ["VAELAB_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelab" / "data"


def load_dataset(spec: str, split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Load ``spec`` (a name from ``DATASETS``, ``folder:PATH`` or ``npy:PATH``) for ``split``.

    Named datasets are read from ``resolve_data_dir(data_dir)/<name>/``; the IDX datasets
    are downloaded there (SHA-256 checked) when missing and ``download`` is true.
    PTB (``ptb``) also has split "val" (its own validation file); ``text:PATH`` is one split,
    sentences read with PTB's training vocabulary (see :mod:`vaelab.data.text`).
    """
    if not isinstance(spec, str):
        raise VaelabError(f"dataset spec must be a string, got {type(spec).__name__}; use one of {_SPECS}")
    if spec.startswith(TEXT_PREFIX):
        from .text import load_text_file
        return load_text_file(_user_path(spec, TEXT_PREFIX), resolve_data_dir(data_dir) / "ptb")
    if split == "val" and spec.strip().lower() in OWN_VALIDATION:
        from .text import load_ptb
        return load_ptb(resolve_data_dir(data_dir) / "ptb", "val")
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if spec.startswith(_USER_PREFIXES):
        return _load_user_data(spec, split)
    # A name never contributes a path component: <data_dir>/<name>/<canonical file names>.
    name = spec.strip().lower().replace("_", "-")
    if "/" in name or "\\" in name or ".." in name or "\0" in name or name.startswith("~"):
        raise VaelabError(f"dataset {spec!r} is not a dataset name; use one of {_SPECS} (prefix paths with folder: or npy:)")
    if name not in DATASETS:
        raise VaelabError(f"unknown dataset {spec!r}; choose one of {_SPECS}")
    root = resolve_data_dir(data_dir) / name
    if name == "digits":
        return _load_digits(split)
    if name == "frey-faces":
        return _load_frey(root, split)
    if name == "cifar10":
        return _load_cifar10(resolve_data_dir(data_dir), split)
    if name == "ptb":
        from .text import load_ptb
        return load_ptb(root, split)
    if name == "fsdd":
        from .speech import load_fsdd
        return load_fsdd(root, split)
    return _load_idx_dataset(name, root, split, download)


_USER_PREFIXES = ("folder:", "npy:", "wav:")
TEXT_PREFIX = "text:"


def _user_path(spec: str, prefix: str) -> Path:
    path = spec[len(prefix):].strip()
    if not path:
        raise VaelabError(f"dataset {spec!r} names no path; write {prefix}PATH")
    return Path(path).expanduser()


def _user_paths(spec: str) -> tuple[str, Path, Path | None]:
    """``(prefix, path, test path or None)`` of ``folder:PATH[,test=PATH]`` / ``npy:PATH[,test=PATH]``."""
    prefix = next(p for p in _USER_PREFIXES if spec.startswith(p))
    main, sep, test = spec.rpartition(",test=") if ",test=" in spec else (spec, "", "")
    if sep and not test.strip():
        raise VaelabError(f"dataset {spec!r} names no test path after test=; write {prefix}PATH,test=TEST_PATH")
    return prefix, _user_path(main, prefix), Path(test.strip()).expanduser() if sep else None


def has_test_split(spec: str) -> bool:
    """Whether ``spec`` has held-out test images of its own: every named dataset does; user
    data only with ``,test=PATH`` or a folder holding ``train/`` and ``test/``."""
    if not spec.startswith(_USER_PREFIXES):
        return True
    prefix, path, test = _user_paths(spec)
    return test is not None or (prefix in ("folder:", "wav:") and _has_split_folders(path))


def training_images_of(spec: str) -> str:
    """What names ``spec``'s training images: ``npy:/abs/A.npy`` for ``npy:A.npy,test=B.npy``,
    the name itself for a named dataset. Two specs with the same training images are the same
    data to a run, whatever test split each names."""
    if not spec.startswith(_USER_PREFIXES):
        return spec.strip().lower().replace("_", "-")
    prefix, path, _ = _user_paths(spec)
    return f"{prefix}{path.resolve()}"


def canonical_spec(spec: str) -> str:
    """``spec`` with absolute paths, so a run's record names its data from any directory."""
    if not spec.startswith(_USER_PREFIXES):
        return spec
    prefix, path, test = _user_paths(spec)
    return f"{prefix}{path.resolve()}" + ("" if test is None else f",test={test.resolve()}")


def _load_user_data(spec: str, split: str) -> Dataset:
    """A ``folder:``/``npy:`` split; "test" without held-out images is refused, since a test
    result measured on the training images would look better than it is."""
    prefix, path, test = _user_paths(spec)
    if split == "test" and test is not None:
        path = test
    elif split == "test" and not has_test_split(spec):
        raise VaelabError(no_test_split(spec))
    if prefix == "wav:":
        from .speech import load_wav_folder
        return load_wav_folder(path, split)
    return _load_folder(path, split) if prefix == "folder:" else _load_array(path)


def no_test_split(spec: str) -> str:
    """The one-line refusal for a test split that user data does not have, naming the fixes."""
    prefix, path, _ = _user_paths(spec)
    own = f"{prefix}{path},test=TEST.npy" if prefix == "npy:" else \
        f"{prefix}{path},test=TEST_FOLDER or train/ and test/ sub-folders"
    return (f"{spec} has no held-out test split (a test result would be measured on training images); "
            f"name one ({own}), or train with --test-fraction X to carve one off, or use --split train "
            "(results then say they are on training images)")


# --- MNIST, Fashion-MNIST, KMNIST: four IDX files each --------------------------------

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# SHA-256 of the .gz files. MNIST: /work/shared/data/README.md, equal to the list in
# ankane/torchvision-ruby lib/torchvision/datasets/mnist.rb. Fashion-MNIST and KMNIST:
# tensorflow/datasets tensorflow_datasets/url_checksums/{fashion_mnist,kmnist}.txt, equal
# to ankane/torchvision-ruby lib/torchvision/datasets/{fashion_mnist,kmnist}.rb.
_IDX_SOURCES = {
    "mnist": (
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "kmnist": (
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images-idx3-ubyte": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
    ),
}
_CLASSES = {
    "mnist": tuple("0123456789"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}


def _load_idx_dataset(name: str, root: Path, split: str, download: bool) -> Dataset:
    image_file, label_file = (_idx_path(name, root, stem, download) for stem in _IDX_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise VaelabError(f"{image_file} holds {images.dtype} {images.shape}, not N×28×28 uint8 images; replace the file")
    if labels.dtype != np.uint8 or labels.ndim != 1 or labels.max() > 9:
        raise VaelabError(f"{label_file} holds {labels.dtype} {labels.shape} (max {labels.max()}), not labels 0..9; replace the file")
    if len(images) != len(labels):
        raise VaelabError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels; replace both files")
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255)
    return _images(name, x, torch.from_numpy(labels.astype(np.int64)), _CLASSES[name])


def _idx_path(name: str, root: Path, stem: str, download: bool) -> Path:
    """The .gz (or uncompressed) file if present, else download the .gz or say where it goes."""
    for path in (root / f"{stem}.gz", root / stem):
        if path.is_file():
            return path
    dest = root / f"{stem}.gz"
    if not download:
        raise VaelabError(f"{name} file {dest} is missing; place it there (uncompressed also works) or load with download=True")
    mirrors, sha256 = _IDX_SOURCES[name]
    return fetch([m + dest.name for m in mirrors], dest, sha256[stem])


# --- small bundled / hand-placed datasets ---------------------------------------------

DIGITS_TEST_SIZE = 297


def _load_digits(split: str) -> Dataset:
    """scikit-learn's 1797 8×8 digits (0..16, scaled to [0, 1]).

    There is no official test split, so a fixed one is carved: test = the first 297
    indices of ``numpy.random.default_rng(0).permutation(1797)``, train = the other 1500;
    each split keeps the original order.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    perm = np.random.default_rng(0).permutation(len(bunch.target))
    rows = np.sort(perm[:DIGITS_TEST_SIZE] if split == "test" else perm[DIGITS_TEST_SIZE:])
    x = torch.from_numpy(bunch.data[rows].reshape(-1, 1, 8, 8) / 16.0).to(torch.float32)
    return _images("digits", x, torch.from_numpy(bunch.target[rows].astype(np.int64)), tuple("0123456789"))


FREY_FILE = "frey_faces_1965x560_uint8.npy"
FREY_TEST_SIZE = 200


def _load_frey(root: Path, split: str) -> Dataset:
    """Frey Face: 1965 unlabelled 28×20 grey faces.

    No official split exists: test = the last 200 rows, train = the first 1765. The file
    is a (1965, 560) uint8 .npy; there is no verified download source, so it must be
    placed by hand.
    """
    path = root / FREY_FILE
    if not path.is_file():
        raise VaelabError(
            f"Frey Face file {path} is missing; no verified download source exists, so place "
            f"{FREY_FILE} (a 1965×560 uint8 array) there by hand"
        )
    faces = _np_load(path)
    if not isinstance(faces, np.ndarray) or faces.shape != (1965, 560) or faces.dtype != np.uint8:
        raise VaelabError(f"{path} must hold a 1965×560 uint8 array; replace the file")
    faces = faces[-FREY_TEST_SIZE:] if split == "test" else faces[:-FREY_TEST_SIZE]
    x = torch.from_numpy(faces.reshape(-1, 1, 28, 20)).to(torch.float32).div_(255)
    return _images("frey-faces", x)


def _load_cifar10(data_dir: Path, split: str) -> Dataset:
    """CIFAR-10 from its lossy JPEG copies (:mod:`vaelab.data.cifar10`): 3×32×32 in [0, 1]."""
    from vaelab.data.cifar10 import CLASSES, load_cifar10

    images, labels = load_cifar10(data_dir, split)
    x = torch.from_numpy(images).to(torch.float32).div_(255)
    return _images("cifar10", x, torch.from_numpy(labels), CLASSES)


# --- folder:PATH -------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L")


def _load_folder(path: Path, split: str) -> Dataset:
    try:
        return _walk_folder(path, split)
    except OSError as e:
        raise VaelabError(f"cannot read image folder {path}: {e.strerror or brief(e)} ({e.filename}); check the path "
                          "and its permissions") from None


def _walk_folder(path: Path, split: str) -> Dataset:
    """Images under ``path``: each sub-folder (sorted by name) is a class, else unlabelled.

    If ``path`` has both ``train/`` and ``test/`` the split picks one of them; otherwise
    every image is read (``load_dataset`` refuses a "test" split that does not exist). All images must share one size (no silent resizing).
    All-grey images give C=1; otherwise everything is converted to RGB (alpha dropped).
    Symlinked image files are read (a folder of links is a common way to assemble a data
    set without copying); the search inside a class folder does not descend into
    symlinked sub-folders, so a link loop cannot make it run forever.
    """
    if not path.is_dir():
        raise VaelabError(f"image folder {path} does not exist or is not a folder; check the path")
    if _has_split_folders(path):
        path = path / split
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = _image_files(path, recursive=False)
    if class_dirs and files:
        raise VaelabError(f"{path} mixes images ({files[0].name}) with class sub-folders ({class_dirs[0].name}); move every image into a class folder")
    labels = []
    for label, class_dir in enumerate(class_dirs):
        found = _image_files(class_dir, recursive=True)
        if not found:
            raise VaelabError(f"class folder {class_dir} has no images ({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        files += found
        labels += [label] * len(found)
    if not files:
        raise VaelabError(f"no images ({' '.join(IMAGE_EXTENSIONS)}) found in {path}; check the path")
    x = torch.from_numpy(_read_images(files, f"folder:{path}"))
    if not class_dirs:
        return _images(f"folder:{path}", x)
    return _images(f"folder:{path}", x, torch.tensor(labels, dtype=torch.int64), tuple(d.name for d in class_dirs))


def _has_split_folders(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_images(files: list[Path], where: str) -> np.ndarray:
    """Decode and stack images to N×C×H×W float32 in [0, 1] (0/1-valued images kept as 0/1)."""
    pixels = []
    for f in files:
        pixels.append(_decode(f))
        if pixels[-1].shape[:2] != pixels[0].shape[:2]:
            (h0, w0), (h, w) = pixels[0].shape[:2], pixels[-1].shape[:2]
            raise VaelabError(
                f"images differ in size: {files[0]} is {w0}×{h0} but {f} is {w}×{h} (width×height); "
                "resize all images to one size first"
            )
    channels = 3 if any(p.ndim == 3 for p in pixels) else 1
    binary = max(int(p.max(initial=0)) for p in pixels) == 1
    if binary:
        _say_binary(where, "image files")
    out = np.empty((len(pixels), channels) + pixels[0].shape[:2], dtype=np.float32)
    for i, p in enumerate(pixels):
        out[i] = p.transpose(2, 0, 1) if p.ndim == 3 else p
        out[i] /= 1 if binary else 65535 if p.dtype != np.uint8 else 255
    return out


def _say_binary(where: str, what: str) -> None:
    """One line saying that 0/1 integer pixels are read as black and white: divided by 255
    they would be near-black images, and a model would silently learn nothing."""
    warnings.warn(f"{where}: the {what} hold only the values 0 and 1, so they are read as black-and-white "
                  "pixels (0/1), not as 0..255 grey levels", VaelabWarning, stacklevel=2)


def _decode(path: Path) -> np.ndarray:
    """H×W (grey, uint8 or 16-bit) or H×W×3 (RGB uint8) pixels of one image file."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, before decoding
            with Image.open(path, formats=_IMAGE_FORMATS) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise VaelabError(f"image {path} declares {width}×{height} pixels, over the "
                                      f"{MAX_IMAGE_PIXELS:,}-pixel limit; it is corrupt or far too large, resize it")
                if img.mode not in _GRAY_MODES:
                    return np.asarray(img.convert("RGB"))
                pixels = np.asarray(img.convert("L") if img.mode in ("1", "LA") else img)
    except VaelabError:
        raise
    except Exception as e:  # PIL raises many types for damaged files; all mean the same here
        raise VaelabError(f"cannot read image {path} ({brief(e, typed=True)}); fix or remove the file") from None
    if pixels.dtype != np.uint8 and (pixels.min() < 0 or pixels.max() > 65535):
        raise VaelabError(f"image {path} has values outside 0..65535; save it as 8- or 16-bit")
    return pixels


# --- npy:PATH ---------------------------------------------------------------------------


MAX_IMAGE_PIXELS = 1 << 26  # 8192×8192: far above any autoencoder input; more is a bomb or an error
_IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # what IMAGE_EXTENSIONS name; no EPS/PDF
_CHUNK = 1 << 24


def _np_load(path: Path):
    """A ``.npy`` array, or a ``.npz`` as ``(names, {"x": ..., "y": ...})``, read without pickles.

    numpy's own loader allocates what a header declares before reading, so the header is
    parsed here: object dtypes are refused (nothing is unpickled) and the declared size
    must fit in the bytes actually present before anything is allocated.
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise VaelabError(f"cannot open array file {path}: {e.strerror}; check the path") from None
    with f:
        try:
            magic = f.read(6)
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
        except OSError as e:
            raise VaelabError(f"cannot read array file {path}: {e.strerror}") from None
        if magic == b"\x93NUMPY":
            return _read_npy(f, size, str(path))
        if magic.startswith(b"PK\x03\x04"):
            return _read_npz(f, path)
    raise VaelabError(f"{path} is not a .npy or .npz file; save the array with numpy.save or numpy.savez")


def _read_npy(stream, available: int, where: str) -> np.ndarray:
    """One .npy record from ``stream``, which holds at most ``available`` bytes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
        header_end = stream.tell()
    except Exception as e:  # numpy raises several types for damaged headers
        raise VaelabError(f"cannot read {where} (bad .npy header: {brief(e)}); save it again with numpy.save") from None
    if dtype.hasobject:
        raise VaelabError(f"{where} holds Python objects (dtype=object), which are not loaded for safety; "
                          "save a numeric array")
    if dtype.itemsize == 0 or any(d < 0 for d in shape):
        raise VaelabError(f"{where} declares dtype {dtype} with shape {shape}, which holds no data; "
                          "save it again with numpy.save")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > available - header_end:
        raise VaelabError(f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds only "
                          f"{max(available - header_end, 0):,}; the file is truncated or corrupt")
    data = bytearray()
    try:
        while len(data) < nbytes:
            chunk = stream.read(min(nbytes - len(data), _CHUNK))
            if not chunk:
                break
            data += chunk
    except Exception as e:  # zip members raise zlib, CRC and EOF errors
        raise VaelabError(f"cannot read {where} ({brief(e, typed=True)}); save it again with numpy.save") from None
    if len(data) < nbytes:
        raise VaelabError(f"{where} ends after {len(data):,} of its {nbytes:,} data bytes; the file is truncated")
    try:
        if count == 0:
            return np.empty(shape, dtype=dtype)
        array = np.frombuffer(data, dtype=dtype, count=count)
        return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    except Exception as e:
        raise VaelabError(f"cannot read {where} ({brief(e, typed=True)}); save it again with numpy.save") from None


def _read_npz(f, path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The names in a .npz and its ``x`` and ``y`` arrays (nothing else is read)."""
    import zipfile

    try:
        archive = zipfile.ZipFile(f)
        infos = {info.filename: info for info in archive.infolist()}
    except Exception as e:  # BadZipFile, OSError, ValueError, ... for damaged archives
        raise VaelabError(f"cannot read {path} as .npz ({brief(e, typed=True)}); save it again with numpy.savez") from None
    with archive:
        names = sorted(n[:-4] for n in infos if n.endswith(".npy"))
        arrays = {}
        for key in ("x", "y"):
            info = infos.get(f"{key}.npy")
            if info is None:
                continue
            where = f"{path}: array {key!r}"
            bound = {zipfile.ZIP_STORED: info.compress_size,
                     zipfile.ZIP_DEFLATED: 1100 * info.compress_size + (1 << 16)}.get(info.compress_type)
            if bound is not None and info.file_size > bound:
                raise VaelabError(f"{where} declares {info.file_size:,} bytes, more than its "
                                  f"{info.compress_size:,} compressed bytes can hold; the archive is corrupt")
            try:
                member = archive.open(info)
            except Exception as e:
                raise VaelabError(f"cannot read {where} ({brief(e, typed=True)}); save it again with numpy.savez") from None
            with member:
                arrays[key] = _read_npy(member, info.file_size, where)
    return names, arrays


def _load_array(path: Path) -> Dataset:
    """A .npy of images, or a .npz with ``x`` and optional integer labels ``y``.

    Layouts: N×H×W, N×C×H×W or N×H×W×C with C in {1, 3}. uint8 is scaled by 1/255,
    bool and floats already in [0, 1] are kept, integers holding only 0 and 1 stay 0/1.
    The file is one split: a test split comes from ``npy:PATH,test=TEST_PATH``.
    """
    loaded = _np_load(path)
    y = None
    if isinstance(loaded, tuple):
        names, arrays = loaded
        if "x" not in arrays:
            raise VaelabError(f"{path} has arrays {names[:10]} but no 'x'; save images under the key x (labels under y)")
        x, y = arrays["x"], arrays.get("y")
    else:
        x = loaded
    x = torch.from_numpy(_to_unit_float(_to_nchw(x, path), path))
    classes = None
    if y is not None:
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x) or (y.size and (y.min() < 0 or y.max() >= 2**31)):
            raise VaelabError(f"{path}: y must be {len(x)} non-negative integer labels, got {y.dtype} {y.shape}")
        y = torch.from_numpy(y.astype(np.int64))
        classes = tuple(str(c) for c in range(int(y.max()) + 1))
    return _images(f"npy:{path}", x, y, classes)


def _to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise VaelabError(f"{path} has shape {x.shape}; expected N×H×W, N×C×H×W or N×H×W×C with C = 1 or 3")


def _to_unit_float(x: np.ndarray, path: Path) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 / 255, bool and floats in [0, 1] as they are, and
    integers holding only 0 and 1 as 0/1 (with a one-line notice)."""
    if len(x) == 0:
        raise VaelabError(f"{path} holds no images (shape {x.shape})")
    binary = x.dtype.kind in "iu" and x.size and x.min() >= 0 and x.max() == 1
    if binary:
        _say_binary(f"npy:{path}", f"{x.dtype} pixels")
    if x.dtype == np.uint8 or binary:
        out = np.ascontiguousarray(x, dtype=np.float32)
        if not binary:
            out /= 255
        return out
    if x.dtype == np.bool_ or x.dtype.kind == "f":
        out = np.ascontiguousarray(x, dtype=np.float32)
        if x.dtype.kind == "f":
            _check_finite(out, path)
            if out.size and not (out.min() >= 0 and out.max() <= 1):
                raise VaelabError(f"{path}: float images must lie in [0, 1] (found {out.min():g}..{out.max():g}); rescale them or save uint8")
        return out
    raise VaelabError(f"{path} has dtype {x.dtype}; save images as uint8 (0..255) or float in [0, 1]")


def _check_finite(x: np.ndarray, path: Path) -> None:
    """Refuse NaN and inf by name and count: a range message would hide what is wrong."""
    bad = ~np.isfinite(x)
    if bad.any():
        nan = int(np.isnan(x).sum())
        parts = [f"{nan:,} NaN" if nan else "", f"{int(bad.sum()) - nan:,} inf" if bad.sum() > nan else ""]
        raise VaelabError(f"{path}: the images hold {' and '.join(p for p in parts if p)} values "
                          f"(in {int(bad.reshape(len(x), -1).any(1).sum()):,} of {len(x):,} images); "
                          "replace them (e.g. numpy.nan_to_num) or drop those images")


# --- splitting and binarization -------------------------------------------------------


def split_validation(ds: Dataset, val_size: int | float, seed: int, last: bool = False) -> tuple[Dataset, Dataset]:
    """Split ``ds`` into (train, validation) by a seeded permutation, or with ``last`` the
    final rows as validation (MNIST's last 10,000 training images in Kingma et al. 2014).

    ``val_size`` is a count (int) or a fraction in (0, 1); rows keep their original order
    within each part, so the same seed always gives the same split.
    """
    n = len(ds)
    if isinstance(val_size, float) and 0 < val_size < 1:
        n_val = round(val_size * n)
    elif isinstance(val_size, int) and not isinstance(val_size, bool):
        n_val = val_size
    else:
        raise VaelabError(f"val_size must be a count (int) or a fraction in (0, 1), got {val_size!r}")
    if not 0 < n_val < n:
        raise VaelabError(f"val_size {val_size!r} gives {n_val} validation rows out of {len(ds)}; need at least 1 and fewer than {n}")
    if last:
        return ds.subset(slice(0, n - n_val)), ds.subset(slice(n - n_val, n))
    return _carve(ds, n_val, seed)


TEST_SPLIT_SEED = 0


def split_test(ds: Dataset, fraction: float, seed: int = TEST_SPLIT_SEED) -> tuple[Dataset, Dataset]:
    """Carve a held-out (train, test) pair off data that has no test split of its own.

    The seed is fixed, not the run's: every run on the same data and fraction holds out
    the same images, so their test results compare. Rows keep their order in each part.
    """
    n = len(ds)
    n_test = round(fraction * n)
    if not 0 < fraction < 1 or not 0 < n_test < n:
        raise VaelabError(f"test fraction {fraction!r} of {n} images gives {n_test} test images; choose a fraction "
                          f"in (0, 1) that leaves at least 1 test and 1 training image")
    return _carve(ds, n_test, seed)


def _carve(ds: Dataset, n_part: int, seed: int) -> tuple[Dataset, Dataset]:
    """(the rest, ``n_part`` rows) drawn by a seeded permutation; rows keep their order."""
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ds.subset(perm[n_part:].sort().values), ds.subset(perm[:n_part].sort().values)


def binarize_static(x: torch.Tensor, seed: int) -> torch.Tensor:
    """One fixed Bernoulli(x) draw (float32 0/1), as in the static-binarization protocol."""
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise VaelabError(f"binarize_static needs values in [0, 1], got {x.min().item():g}..{x.max().item():g}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x.to(torch.float32), generator=generator)
