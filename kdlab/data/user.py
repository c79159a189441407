"""User data through the same API: image folders, CIFAR python batches on disk, any torch ``Dataset``.

Each ``from_*`` reads the data, registers it by name (so ``load(name, split=...)`` and specs work) with
a fixed stratified val split, and returns the ``{"train", "val", "test"}`` splits.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdlab.data.base import ArrayDataset, check_finite, check_labels, check_pixels
from kdlab.data.cache import cached
from kdlab.data.register import (
    REBUILDERS,
    TEST,
    TRAIN,
    VAL,
    UserData,
    assign_parts,
    check_name,
    put_user,
    register_arrays,
)
from kdlab.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy")
SPLIT_FOLDERS = {"train": TRAIN, "val": VAL, "valid": VAL, "validation": VAL, "test": TEST}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ConfigError(f"size: expected a positive int or (height, width), got {size!r}")
    return hw  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------- folders

def _images_under(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root, f) for f in sorted(files)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_folder(path: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int, int]]]:
    """Class names and ``(file, class, split code)`` for an ImageFolder tree (optionally split in
    ``train/``, ``val/``, ``test/`` folders, each holding one folder per class)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"path: {str(root)!r} is not a folder; expected <path>/<class>/<image> files")
    subs = _subdirs(root)
    names = {p.name.lower() for p in subs}
    if subs and names <= set(SPLIT_FOLDERS) and "train" in names:
        roots = [(p, SPLIT_FOLDERS[p.name.lower()]) for p in subs]
    else:
        roots = [(root, TRAIN)]
    classes = sorted({c.name for r, _ in roots for c in _subdirs(r)})
    if not classes:
        loose = len(_images_under(root))
        hint = f" (found {loose} images but no class folders)" if loose else ""
        raise ConfigError(f"path: {str(root)!r} has no class subfolders{hint}; expected one folder per class "
                          f"holding its images, e.g. {root}/cat/001.png")
    files = [(f, classes.index(c.name), code) for r, code in roots for c in _subdirs(r)
             for f in _images_under(c)]
    if not files:
        raise ConfigError(f"path: no images in the class folders of {str(root)!r} ({', '.join(classes)}); "
                          f"accepted files: {', '.join(IMAGE_EXTENSIONS)}")
    empty = sorted(set(classes) - {classes[k] for _, k, _ in files})
    if empty:
        raise ConfigError(f"path: class folders without images in {str(root)!r}: {', '.join(empty)}")
    return classes, files


def _read_image(file: Path, size: tuple[int, int] | None, name: str = "", index: int = 0) -> np.ndarray:
    """One image as uint8 (H, W, 3), resized (bilinear) when ``size`` is given; a float ``.npy`` holding NaN
    or inf fails, naming dataset ``name`` and the image's ``index`` in it."""
    if file.suffix.lower() == ".npy":
        a = np.load(file, allow_pickle=False)
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = a.transpose(1, 2, 0)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
            raise ConfigError(f"path: {file} holds an array of shape {a.shape}; expected (H, W) or (H, W, C)")
        a = a[..., :3]
        check_finite(a[None], name or file.parent.name, first=index, where=f" ({file})",
                     fix="images must hold finite values; fix or drop that file")
        if a.dtype != np.uint8:
            a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        a = np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a
        if size is not None and a.shape[:2] != size:
            t = torch.from_numpy(a).permute(2, 0, 1)[None].float()
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
            a = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        return a
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - PIL ships with the lab's dependencies
        raise ConfigError(f"path: reading {file.suffix} images needs Pillow (pip install pillow); "
                          f"or save images as .npy") from e
    try:
        with Image.open(file) as img:
            img = img.convert("RGB")
            if size is not None and (img.height, img.width) != size:
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except OSError as e:
        raise ConfigError(f"path: cannot read image {file}: {e}") from None


def _folder_key(root: Path, files: list[tuple[Path, int, int]], size: Any, channels: Any) -> str:
    h = hashlib.sha1(f"{root.resolve()}|{size}|{channels}".encode())
    for f, k, code in files:
        st = f.stat()
        h.update(f"{f}|{k}|{code}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"folder-{h.hexdigest()[:20]}"


def read_folder(path: str | os.PathLike, *, size: int | Sequence[int] | None = None,
                channels: int | None = None) -> tuple[ArrayDataset, np.ndarray]:
    """All images of an ImageFolder tree and their split codes (0 train, 1 val, 2 test from folders).

    ``channels`` 1 or 3 forces grey or RGB; by default RGB only if some image has colour. Decoded arrays
    are cached (keyed by the files' sizes and times), so reading the same folder again is fast.
    """
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels: expected 1, 3 or None (automatic), got {channels!r}")
    hw = _size(size)
    root = Path(path).expanduser()
    classes, files = scan_folder(root)

    def build() -> dict[str, np.ndarray]:
        images = [_read_image(f, hw, root.name, i) for i, (f, _, _) in enumerate(files)]
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            first = images[0].shape
            odd = next(i for i, a in enumerate(images) if a.shape != first)
            raise ConfigError(f"size: images differ in size ({files[0][0].name} is {first[1]}x{first[0]}, "
                              f"{files[odd][0]} is {images[odd].shape[1]}x{images[odd].shape[0]}); pass "
                              f"size=(height, width) to resize them")
        x = np.stack(images).transpose(0, 3, 1, 2)  # (N, 3, H, W) uint8
        grey = bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())
        if grey and channels != 3:
            x = x[:, :1]
        elif channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
            luma = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x.astype(np.float32), ([0], [1]))
            x = np.clip(np.round(luma), 0, 255).astype(np.uint8)[:, None]
        return {"x": np.ascontiguousarray(x), "y": np.array([k for _, k, _ in files], np.int64),
                "part": np.array([c for _, _, c in files], np.int64)}

    a = cached(_folder_key(root, files, hw, channels), build, keys=("x", "y", "part"))
    x = torch.from_numpy(a["x"]).float().div_(255.0)
    return ArrayDataset(x, torch.from_numpy(a["y"]), root.name, classes, f"folder {root}"), a["part"]


def from_folder(path: str | os.PathLike, name: str | None = None, *, size: int | Sequence[int] | None = None,
                channels: int | None = None, val_size: int | float = 0.1, test_size: int | float = 0.2,
                persist: bool = True) -> dict[str, ArrayDataset]:
    """Register an ImageFolder tree ``path/<class>/<image>`` (optionally in ``train/``/``val/``/``test/``).

    Missing val/test splits are carved from the training images, stratified (sizes: counts or fractions).
    Images must share a size unless ``size`` (int or (height, width)) resizes them.
    """
    root = Path(path).expanduser()
    key = check_name(name or _default_name(root.resolve().name))
    full, given = read_folder(root, size=size, channels=channels)
    full.name = key
    part = assign_parts(full.y.numpy(), given, val_size, test_size)
    user = UserData.of(key, full, part)
    record = {"kind": "folder", "path": str(root.resolve()), "size": list(_size(size) or []) or None,
              "channels": channels, "val_size": val_size, "test_size": test_size}
    put_user(key, user, record if persist else None)
    return user.splits()


def _default_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in text).lstrip("_.-")
    return cleaned or "user_data"


# ----------------------------------------------------------------------------------------- CIFAR

class _ArraysOnly(pickle.Unpickler):
    """Unpickler for CIFAR batch files: numpy arrays, lists, dicts and strings, nothing executable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(file: Path) -> dict[str, Any]:
    try:
        with open(file, "rb") as f:
            raw = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"path: {file} is not a readable CIFAR python batch file ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"path: {file} does not hold a CIFAR batch (a dict), got {type(raw).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


CIFAR_FILES = {
    "cifar10": {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"], "meta": "batches.meta"},
    "cifar100": {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta"},
}


def _cifar_dir(root: Path, which: str) -> Path:
    spec = CIFAR_FILES[which]
    needed = spec["train"] + spec["test"]
    tried = [root / spec["folder"], root]
    for d in tried:
        if all((d / f).is_file() for f in needed):
            return d
    have = tried[0] if tried[0].is_dir() else root
    missing = [f for f in needed if not (have / f).is_file()]
    raise ConfigError(f"path: {which} python batch files not found in {str(have)!r}: missing "
                      f"{', '.join(missing)}; expected {', '.join(needed)} (the extracted python version, "
                      f"folder {spec['folder']})")


def read_cifar(path: str | os.PathLike, which: str = "cifar10",
               label: str = "fine") -> tuple[ArrayDataset, np.ndarray]:
    """CIFAR-10/100 from torchvision-style python batch files (no torchvision): images and split codes."""
    if which not in CIFAR_FILES:
        raise ConfigError(f"which: {which!r} is not one of {list(CIFAR_FILES)}")
    if label not in ("fine", "coarse"):
        raise ConfigError(f"label: {label!r} is not one of ['fine', 'coarse']")
    root = Path(path).expanduser()
    d = _cifar_dir(root, which)
    spec = CIFAR_FILES[which]
    key = "labels" if which == "cifar10" else f"{label}_labels"
    xs, ys, parts = [], [], []
    for code, files in ((TRAIN, spec["train"]), (TEST, spec["test"])):
        for f in files:
            batch = _unpickle(d / f)
            if "data" not in batch or key not in batch:
                raise ConfigError(f"path: {d / f} lacks 'data' or {key!r}; is it a {which} batch file?")
            data, labels = np.asarray(batch["data"]), np.asarray(batch[key])
            check_finite(data, which, where=f" of {d / f}", fix="CIFAR pixels are bytes 0..255; is the file damaged?")
            check_labels(labels, which, where=f" of {d / f}")
            data = data.astype(np.uint8, copy=False)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ConfigError(f"path: {d / f} data has shape {data.shape}; expected (N, 3072)")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels.astype(np.int64, copy=False))
            parts.append(np.full(len(data), code, np.int64))
    y = np.concatenate(ys)
    names = _cifar_names(d / spec["meta"], which, label, int(y.max()) + 1 if len(y) else 0)
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    full = ArrayDataset(x, torch.from_numpy(y), which, names, f"{which} python batches in {d}")
    return full, np.concatenate(parts)


def _cifar_names(meta: Path, which: str, label: str, n: int) -> list[str]:
    """Class names from the meta file when present, else the known CIFAR-10 names or indices."""
    want = {"cifar10": "label_names", "cifar100": f"{label}_label_names"}[which]
    names: list[str] = []
    if meta.is_file():
        try:
            names = [v.decode() if isinstance(v, bytes) else str(v) for v in _unpickle(meta).get(want, [])]
        except ConfigError:
            names = []
    if not names and which == "cifar10":
        names = list(CIFAR10_CLASSES)
    if len(names) < n:
        names = [str(i) for i in range(n)]
    return names


def from_cifar(path: str | os.PathLike, which: str = "cifar10", name: str | None = None, *,
               label: str = "fine", val_size: int | float = 5000,
               persist: bool = True) -> dict[str, ArrayDataset]:
    """Register CIFAR-10/100 read from its python batch files (``data_batch_1..5``/``test_batch``, or
    ``train``/``test``); val is a stratified carve of the training set (default 5,000 images)."""
    key = check_name(name or which)
    full, given = read_cifar(path, which, label)
    full.name = key
    part = assign_parts(full.y.numpy(), given, val_size, 0)
    user = UserData.of(key, full, part)
    record = {"kind": "cifar", "path": str(Path(path).expanduser().resolve()), "which": which, "label": label,
              "val_size": val_size}
    put_user(key, user, record if persist else None)
    return user.splits()


def rebuilder(name: str, record: dict[str, Any]) -> Callable[[], tuple[ArrayDataset, np.ndarray]]:
    """How to re-read a recorded folder or CIFAR dataset in another process (used by ``restore``)."""

    def build() -> tuple[ArrayDataset, np.ndarray]:
        if record["kind"] == "folder":
            full, given = read_folder(record["path"], size=record.get("size"),
                                      channels=record.get("channels"))
            part = assign_parts(full.y.numpy(), given, record["val_size"], record["test_size"])
        else:
            full, given = read_cifar(record["path"], record["which"], record.get("label", "fine"))
            part = assign_parts(full.y.numpy(), given, record["val_size"], 0)
        full.name = name
        return full, part

    return build


REBUILDERS["folder"] = REBUILDERS["cifar"] = rebuilder


# ----------------------------------------------------------------------------------------- torch datasets

def _as_chw(img: Any, i: int) -> torch.Tensor:
    """One image as a float (C, H, W) tensor in [0, 1] (tensor, numpy array or PIL image)."""
    if not isinstance(img, torch.Tensor):
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[-1] in (1, 3, 4) and a.shape[0] not in (1, 3, 4):
            a = a.transpose(2, 0, 1)  # PIL / numpy images are (H, W, C)
        img = torch.from_numpy(np.ascontiguousarray(a))
    t = img.float().div(255.0) if img.dtype == torch.uint8 else img.float()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ConfigError(f"dataset[{i}]: image has shape {tuple(t.shape)}; expected (C, H, W) or (H, W)")
    return t


def materialize(dataset: Any, name: str = "data", classes: Sequence[str] | None = None) -> ArrayDataset:
    """Read every ``(image, label, ...)`` item of a torch ``Dataset`` into an in-memory ``ArrayDataset``."""
    n = len(dataset)
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ConfigError(f"dataset[{i}]: expected (image, label), got {type(item).__name__}")
        x = _as_chw(item[0], i)
        if xs and x.shape != xs[0].shape:
            raise ConfigError(f"dataset[{i}]: image shape {tuple(x.shape)} differs from dataset[0]'s "
                              f"{tuple(xs[0].shape)}; add a resize transform")
        xs.append(x)
        label = item[1]
        ys.append(label.item() if isinstance(label, (torch.Tensor, np.ndarray, np.generic)) else label)
    if not xs:
        raise ConfigError(f"{name}: the dataset is empty")
    x = torch.stack(xs)
    check_pixels(x, name, tol=1e-6, fix="; drop normalisation transforms (ArrayDataset holds plain pixels)")
    try:
        y = torch.tensor(ys)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{name}: labels must be class indices (numbers), got {e}") from None
    check_labels(y, name)
    y = y.to(torch.int64)
    if int(y.min()) < 0:
        raise ConfigError(f"{name}: labels must be class indices >= 0, got {int(y.min())}")
    names = list(classes) if classes is not None else list(getattr(dataset, "classes", []) or [])
    if len(names) <= int(y.max()):
        names = [str(c) for c in range(int(y.max()) + 1)]
    return ArrayDataset(x.clamp_(0.0, 1.0), y, name, [str(c) for c in names],
                        f"torch dataset {type(dataset).__name__}")


def from_torch(dataset: Any, name: str | None = None, *, test: Any = None,
               classes: Sequence[str] | None = None, val_size: int | float = 0.1,
               test_size: int | float = 0.2, persist: bool = True) -> dict[str, ArrayDataset]:
    """Register any torch ``Dataset`` of ``(image tensor, label)`` (and an optional ``test`` dataset).

    The items are materialised once; val (and test, unless given) are fixed stratified carves. With
    ``persist`` the arrays are saved so other processes can ``load(name)``.
    """
    key = check_name(name or _default_name(type(dataset).__name__.lower()))
    data = materialize(dataset, key, classes)
    test_data = materialize(test, f"{key} (test)", classes or data.classes) if test is not None else None
    return register_arrays(key, data, test_data=test_data, val_size=val_size, test_size=test_size,
                           persist=persist)
