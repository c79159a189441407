"""User data through the same API: image folders, CIFAR batch files, torch datasets, decorated functions."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.data import (
    DATASETS,
    ArrayDataset,
    catalog,
    forget,
    from_cifar,
    from_folder,
    from_torch,
    load,
    register_arrays,
    register_dataset,
    shifted,
)
from kdlab.errors import ConfigError, UnknownNameError


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.flatten(1).numpy()}


# ----------------------------------------------------------------------------------------- folders

def test_from_folder_grey_splits_and_pixels(image_folder) -> None:
    root = image_folder(per_class=10)
    parts = from_folder(root, name="pets")
    assert {s: len(d) for s, d in parts.items()} == {"train": 21, "val": 3, "test": 6}
    assert parts["train"].classes == ["cat", "dog", "owl"] and parts["train"].in_shape == (1, 6, 5)
    assert torch.bincount(parts["test"].y).tolist() == [2, 2, 2]  # stratified
    assert torch.bincount(parts["val"].y).tolist() == [1, 1, 1]
    assert not _rows(parts["train"].x) & _rows(parts["test"].x)
    from PIL import Image

    raw = np.asarray(Image.open(root / "dog" / "003.png"), dtype=np.float32) / 255.0
    all_x = torch.cat([d.x for d in parts.values()])
    assert raw.tobytes() in _rows(all_x)  # exact pixels, scaled to [0, 1]
    assert torch.equal(load("pets", split="val").x, parts["val"].x)
    assert torch.equal(load("pets", split="test", seed=9).y, parts["test"].y)


def test_from_folder_rgb_and_forced_grey(image_folder, tmp_path: Path) -> None:
    root = image_folder(rgb=True, root=tmp_path / "rgb")
    assert from_folder(root, name="rgbpets", persist=False)["train"].in_shape == (3, 6, 5)
    grey = from_folder(root, name="rgbpets", channels=1, persist=False)["train"]  # replaces the entry
    assert grey.in_shape == (1, 6, 5) and 0.0 <= float(grey.x.min()) and float(grey.x.max()) <= 1.0


def test_from_folder_pre_split_layout(image_folder, tmp_path: Path) -> None:
    image_folder(per_class=10, root=tmp_path / "ds" / "train")
    image_folder(per_class=4, root=tmp_path / "ds" / "test", seed=1)
    parts = from_folder(tmp_path / "ds", name="presplit", val_size=0.2, persist=False)
    assert {s: len(d) for s, d in parts.items()} == {"train": 24, "val": 6, "test": 12}


def test_from_folder_sizes_must_match_unless_resized(image_folder, write_png) -> None:
    root = image_folder(per_class=4)
    write_png(root / "owl" / "big.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(ConfigError, match=r"size: images differ in size .*big.png.*pass size="):
        from_folder(root, name="mixed")
    parts = from_folder(root, name="mixed", size=8, val_size=0, test_size=2)
    assert parts["train"].in_shape == (1, 8, 8) and len(parts["train"]) == 11 and "val" not in parts
    with pytest.raises(ConfigError, match="split: dataset 'mixed' has no 'val' rows; register it with a"):
        load("mixed", split="val")


def test_from_folder_errors(tmp_path: Path, write_png) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"path: .*has no class subfolders; expected one folder per class"):
        from_folder(tmp_path / "empty")
    write_png(tmp_path / "loose" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match=r"found 1 images but no class folders"):
        from_folder(tmp_path / "loose")
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match=r"path: no images in the class folders .*accepted files: .png"):
        from_folder(tmp_path / "noimg")
    with pytest.raises(ConfigError, match="is not a folder"):
        from_folder(tmp_path / "missing")
    with pytest.raises(ConfigError, match="name: 'mnist5k' is a built-in dataset"):
        from_folder(tmp_path / "loose", name="mnist5k")


def test_folder_dataset_is_restored_in_a_fresh_registry(image_folder) -> None:
    parts = from_folder(image_folder(), name="restored")
    DATASETS.remove("restored")  # what a new worker process sees: only the manifest
    assert "restored" not in DATASETS.names()
    again = load("restored", split="test")
    assert torch.equal(again.x, parts["test"].x) and again.classes == parts["test"].classes
    row = catalog().set_index("name").loc["restored"]
    assert (row["train"], row["val"], row["test"], row["input shape"]) == (21, 3, 6, (1, 6, 5))
    forget("restored")
    with pytest.raises(UnknownNameError, match="unknown dataset 'restored'"):
        load("restored")


# ----------------------------------------------------------------------------------------- CIFAR

def test_from_cifar10_batches(fake_cifar) -> None:
    root = fake_cifar("cifar10")
    parts = from_cifar(root, "cifar10", name="c10", val_size=20)
    assert {s: len(d) for s, d in parts.items()} == {"train": 80, "val": 20, "test": 20}
    assert parts["train"].in_shape == (3, 32, 32) and parts["train"].classes[:2] == ["airplane", "automobile"]
    assert torch.bincount(parts["val"].y).tolist() == [2] * 10
    batch = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    want = torch.from_numpy(batch[b"data"].reshape(-1, 3, 32, 32)).float() / 255.0
    assert _rows(want) == _rows(parts["test"].x)
    # the batch folder itself works as well as its parent
    same = from_cifar(root / "cifar-10-batches-py", name="c10b", val_size=20, persist=False)
    assert torch.equal(same["val"].x, parts["val"].x)


def test_from_cifar100_fine_and_coarse(fake_cifar) -> None:
    root = fake_cifar("cifar100")
    fine = from_cifar(root, "cifar100", name="c100", val_size=0.1, persist=False)
    assert fine["train"].num_classes == 100 and fine["train"].classes[3] == "fine3"
    assert (len(fine["train"]), len(fine["val"]), len(fine["test"])) == (180, 20, 100)
    coarse = from_cifar(root, "cifar100", name="c100c", label="coarse", val_size=0.1, persist=False)
    assert coarse["test"].num_classes == 20 and coarse["test"].classes[0] == "coarse0"


def test_cifar_errors_name_the_expected_files(fake_cifar, tmp_path: Path) -> None:
    root = fake_cifar("cifar10")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match=r"path: cifar10 python batch files not found .*missing "
                                          r"data_batch_3; expected data_batch_1, .*test_batch"):
        from_cifar(root)
    with pytest.raises(ConfigError, match=r"missing train, test"):
        from_cifar(tmp_path, "cifar100")
    with pytest.raises(ConfigError, match=r"which: 'cifar1000' is not one of \['cifar10', 'cifar100'\]"):
        from_cifar(root, "cifar1000")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_reader_refuses_code_in_pickles(fake_cifar) -> None:
    root = fake_cifar("cifar10")
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(ConfigError, match="refusing to load"):
        from_cifar(root, val_size=10)


# ----------------------------------------------------------------------------------------- torch datasets

class _Toy(torch.utils.data.Dataset):
    classes = ["a", "b", "c", "d"]

    def __init__(self, n: int = 40, shape: tuple[int, ...] = (1, 4, 4), scale: float = 1.0):
        g = torch.Generator().manual_seed(n)
        self.x = torch.rand((n, *shape), generator=g) * scale
        self.y = torch.arange(n) % 4

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def test_from_torch_materialises_and_persists() -> None:
    toy = _Toy()
    parts = from_torch(toy, name="toy", test=_Toy(12))
    assert {s: len(d) for s, d in parts.items()} == {"train": 36, "val": 4, "test": 12}
    assert parts["train"].classes == ["a", "b", "c", "d"]
    assert _rows(toy.x) == _rows(torch.cat([parts["train"].x, parts["val"].x]))
    DATASETS.remove("toy")  # another process: arrays come back from the cache
    assert torch.equal(load("toy", split="val").x, parts["val"].x)
    assert len(load("toy", n_train=8, seed=1)) == 8
    assert shifted("toy", shift="invert", severity=1.0, split="test").x.shape == (12, 1, 4, 4)


def test_from_torch_accepts_pil_and_uint8_images() -> None:
    from PIL import Image

    items = [(Image.fromarray(np.full((5, 5, 3), 10 * i, np.uint8)), i % 2) for i in range(10)]
    parts = from_torch(items, name="pil", val_size=2, test_size=2, persist=False)
    assert parts["train"].in_shape == (3, 5, 5) and float(parts["train"].x.max()) <= 90 / 255 + 1e-6


def test_from_torch_errors() -> None:
    with pytest.raises(ConfigError, match=r"images must be in \[0, 1\].*normalisation"):
        from_torch(_Toy(scale=3.0), name="bad")
    mixed = [(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 5, 5), 1)]
    with pytest.raises(ConfigError, match=r"dataset\[1\]: image shape \(1, 5, 5\) differs"):
        from_torch(mixed, name="bad")


def test_non_finite_pixels_are_refused_at_every_entry_point(fake_cifar, image_folder) -> None:
    """NaN passes every [0, 1] comparison, so each entry point must look for it: torch datasets, arrays,
    decorated functions, .npy files in folders, CIFAR batch files. The error names the dataset, the count
    and the first bad sample; nothing gets registered."""
    toy = _Toy()
    toy.x[5, 0, 1, 2] = toy.x[9, 0, 0, 0] = toy.x[9, 0, 3, 3] = float("nan")
    assert torch.isnan(toy.x).sum() == 3 and not torch.isinf(toy.x).any()  # NaN, not inf: the case that slipped
    with pytest.raises(ConfigError, match=r"^toynan: 3 pixel values are NaN or infinite \(3 NaN, 0 inf\) in 2 of 40 "
                                          r"samples, the first is sample 5; images must hold finite values"):
        from_torch(toy, name="toynan")
    with pytest.raises(ConfigError, match=r"^toynan \(test\): 3 pixel values .* the first is sample 5"):
        from_torch(_Toy(), name="toynan", test=toy)
    with pytest.raises(ConfigError, match=r"^arrnan: 3 pixel values are NaN .*the first is sample 5"):
        register_arrays("arrnan", ArrayDataset(toy.x, toy.y))
    assert "toynan" not in DATASETS.names() and "arrnan" not in DATASETS.names()

    @register_dataset("fnnan", params={})
    def fnnan() -> tuple[torch.Tensor, torch.Tensor]:
        return toy.x, toy.y

    with pytest.raises(ConfigError, match=r"^fnnan: 3 pixel values are NaN or infinite .*first is sample 5"):
        load("fnnan")

    root = image_folder(per_class=4)
    bad = np.full((6, 5), 0.5, np.float32)
    bad[2, 2] = np.nan
    np.save(root / "dog" / "002.npy", bad)
    with pytest.raises(ConfigError, match=r"^imgs: 1 pixel values are NaN or infinite \(1 NaN, 0 inf\) in sample 6 "
                                          r"\(.*dog/002.npy\); images must hold finite values; fix or drop that file"):
        from_folder(root, name="foldernan")

    root = fake_cifar("cifar10")
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    raw = pickle.loads(batch.read_bytes(), encoding="bytes")
    raw[b"data"] = raw[b"data"].astype(np.float64)
    raw[b"data"][7, 100] = np.nan
    batch.write_bytes(pickle.dumps(raw, protocol=2))
    with pytest.raises(ConfigError, match=r"^cifar10: 1 pixel values are NaN or infinite \(1 NaN, 0 inf\) in 1 of 20 "
                                          r"samples, the first is sample 7 of .*data_batch_2"):
        from_cifar(root, name="cifarnan", val_size=20)


def test_non_finite_or_fractional_labels_are_refused() -> None:
    """Float labels became int64 unchecked: NaN turned into a huge negative class, 2.5 into 2."""
    x = torch.rand(6, 1, 4, 4)
    y = torch.tensor([0.0, 1.0, float("nan"), 1.0, 0.0, float("nan")])
    with pytest.raises(ConfigError, match=r"^lab: 2 labels are NaN or infinite \(2 NaN, 0 inf\) in 2 of 6 samples, "
                                          r"the first is sample 2; labels must be class indices"):
        ArrayDataset(x, y, name="lab")
    items = [(x[i], float(v)) for i, v in enumerate(y)]
    with pytest.raises(ConfigError, match=r"^labnan: 2 labels are NaN .*the first is sample 2"):
        from_torch(items, name="labnan")
    with pytest.raises(ConfigError, match=r"^labs: 1 labels are not whole numbers \(the first in sample 3 is 2.5\)"):
        ArrayDataset(x, torch.tensor([0.0, 1.0, 1.0, 2.5, 0.0, 1.0]), name="labs")
    assert ArrayDataset(x, np.array([0.0, 1.0, 2.0, 1.0, 0.0, 1.0]), name="ok").y.dtype == torch.int64


# ----------------------------------------------------------------------------------------- decorator

def test_register_dataset_whole_data_function() -> None:
    calls = []

    @register_dataset("blobs", params={})
    def blobs() -> tuple[np.ndarray, np.ndarray]:
        """Tiny synthetic blobs."""
        calls.append(1)
        y = np.arange(50) % 5
        return (np.repeat(y * 50, 16).reshape(50, 4, 4).astype(np.uint8), y)

    parts = {s: load("blobs", split=s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 35, "val": 5, "test": 10}
    assert len(calls) == 1 and parts["test"].in_shape == (1, 4, 4) and float(parts["test"].x.max()) <= 1.0
    row = catalog().set_index("name").loc["blobs"]
    assert (row["train"], row["classes"], row["doc"]) == (35, 5, "Tiny synthetic blobs.")


def test_register_dataset_per_split_function_with_params() -> None:
    from kdlab.registry import Param

    @register_dataset("ramp", params={"n": Param(6, "images per split", int, 1, 100)})
    def ramp(split: str, n: int = 6) -> ArrayDataset:
        base = {"train": 0.0, "val": 0.5, "test": 1.0}[split]
        return ArrayDataset(torch.full((n, 1, 2, 2), base), torch.arange(n) % 2)

    assert float(load("ramp", split="val", n=3).x.max()) == 0.5 and len(load("ramp", n=3)) == 3
    with pytest.raises(ConfigError, match=r"params.n: 0 is outside \[1, 100\]"):
        load("ramp", n=0)
    with pytest.raises(ConfigError, match="is a built-in dataset"):
        register_dataset("digits")(ramp)
