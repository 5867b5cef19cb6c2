import gzip
import hashlib
import io
import time
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from idxdata import idx_bytes, make_dataset_dir, write_idx

from fastsoftmax.io import datasets
from fastsoftmax.io.datasets import FILES, DatasetError, DatasetNotFoundError, load_dataset
from fastsoftmax.io.idx import IdxError

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


pytestmark = pytest.mark.usefixtures("isolated_data")


def test_load_generated_mixed_gz_and_raw(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 256, (30, 5, 3), np.uint8),
        rng.integers(0, 10, 30, np.uint8),
        rng.integers(0, 256, (7, 5, 3), np.uint8),
        rng.integers(0, 10, 7, np.uint8),
    ]
    folder = tmp_path / "d"
    folder.mkdir()
    for stem, suffix, array in zip(FILES, [".gz", "", "", ".gz"], arrays):
        write_idx(folder / f"{stem}{suffix}", array)
    ds = load_dataset("fashion-mnist", data_dir=folder)
    assert ds.name == "fashion-mnist"
    assert ds.source == folder
    assert ds.image_shape == (5, 3)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    assert len(ds.class_names) == 10
    for got, want in zip([ds.x_train, ds.y_train, ds.x_test, ds.y_test], arrays):
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want.reshape(len(want), -1) if want.ndim == 3 else want)


def test_mnist_class_names(tmp_path):
    ds = load_dataset("mnist", data_dir=make_dataset_dir(tmp_path / "d"))
    assert ds.class_names == tuple("0123456789")
    assert ds.x_train.shape == (60, 16) and ds.x_test.shape == (20, 16)


def test_dataset_is_frozen(tmp_path):
    ds = load_dataset(data_dir=make_dataset_dir(tmp_path / "d"))
    with pytest.raises(AttributeError):
        ds.name = "other"
    assert "fashion-mnist" in repr(ds)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar'; known: fashion-mnist, mnist"):
        load_dataset("cifar")


def test_search_order(tmp_path, monkeypatch):
    data_dir = make_dataset_dir(tmp_path / "arg")
    env_dir = make_dataset_dir(tmp_path / "env")
    cache_dir = make_dataset_dir(tmp_path / "cache/fastsoftmax/fashion-mnist")
    system_dir = make_dataset_dir(tmp_path / "system/fashion-mnist")
    monkeypatch.setenv("FASTSOFTMAX_DATA", str(env_dir))
    assert load_dataset(data_dir=data_dir).source == data_dir
    assert load_dataset().source == env_dir
    monkeypatch.delenv("FASTSOFTMAX_DATA")
    assert load_dataset().source == cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert load_dataset().source == system_dir


def test_home_cache_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache_dir = make_dataset_dir(tmp_path / "home/.cache/fastsoftmax/mnist")
    assert load_dataset("mnist").source == cache_dir


def test_name_subfolder_preferred_and_incomplete_folder_skipped(tmp_path, monkeypatch):
    root = make_dataset_dir(tmp_path / "root")
    sub = make_dataset_dir(tmp_path / "root/mnist")
    assert load_dataset("mnist", data_dir=root).source == sub
    assert load_dataset("fashion-mnist", data_dir=root).source == root


@pytest.mark.parametrize("via", ["data_dir", "FASTSOFTMAX_DATA"])
def test_a_named_folder_without_the_data_is_an_error_not_a_fallback(tmp_path, monkeypatch, via):
    """Another copy (the cache here) is never read in place of the folder named."""
    make_dataset_dir(tmp_path / "cache/fastsoftmax/fashion-mnist")
    incomplete = make_dataset_dir(tmp_path / "incomplete")
    (incomplete / f"{FILES[3]}.gz").unlink()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for folder, message in [(incomplete, "Fashion-MNIST not found in"), (tmp_path / "missing", "not found in"),
                            (a_file, "is not a folder")]:
        if via == "data_dir":
            call = lambda: load_dataset(data_dir=folder)  # noqa: E731
        else:
            monkeypatch.setenv("FASTSOFTMAX_DATA", str(folder))
            call = load_dataset
        with pytest.raises(DatasetNotFoundError, match=message) as info:
            call()
        assert str(folder) in str(info.value)
        assert str(tmp_path / "cache") not in str(info.value).split("; to fix it")[0]


def test_not_found_with_download_disabled(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "nowhere") in message
    assert "FASTSOFTMAX_NO_DOWNLOAD" in message
    for option in ["data_dir", "--data-dir", "FASTSOFTMAX_DATA", "apt-get install dataset-fashion-mnist",
                   "connect to the internet"]:
        assert option in message
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    assert "apt-get" not in str(info.value)


@pytest.mark.parametrize(
    ("stem", "array", "message"),
    [
        (FILES[1], np.zeros(59, np.uint8), "has 59 labels but"),
        (FILES[3], np.full(20, 10, np.uint8), "label 10 at index 0 is out of range [0, 10)"),
        (FILES[1], np.zeros((60, 1), np.uint8), "expected uint8 labels of shape (count,)"),
        (FILES[3], np.zeros(20, np.int32), "expected uint8 labels"),
        (FILES[0], np.zeros((60, 16), np.uint8), "expected uint8 images of shape (count, rows, columns)"),
        (FILES[2], np.zeros((20, 4, 4), np.float32), "expected uint8 images"),
        (FILES[2], np.zeros((20, 4, 5), np.uint8), "holds images of shape (4, 4) but"),
    ],
)
def test_inconsistent_files(tmp_path, stem, array, message):
    folder = make_dataset_dir(tmp_path / "d", compress=False)
    write_idx(folder / stem, array)
    with pytest.raises(DatasetError) as info:
        load_dataset(data_dir=folder)
    assert message in str(info.value)
    assert str(folder / stem) in str(info.value)


@pytest.mark.parametrize("split", [0, 2])
def test_an_empty_split_is_named(tmp_path, split):
    folder = make_dataset_dir(tmp_path / "d")
    write_idx(folder / f"{FILES[split]}.gz", np.zeros((0, 4, 4), np.uint8))
    write_idx(folder / f"{FILES[split + 1]}.gz", np.zeros(0, np.uint8))
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset(data_dir=folder)


def test_files_too_large_are_refused_from_their_headers(tmp_path, monkeypatch):
    """The four headers are read, and checked against each other and a size limit, before any data."""
    folder = make_dataset_dir(tmp_path / "d")
    monkeypatch.setattr(datasets, "MAX_BYTES", 1000)  # the generated set holds 60*16 + 60 + 20*16 + 20 bytes
    with pytest.raises(DatasetError, match="more than the 1,000 a data set may hold"):
        load_dataset(data_dir=folder)
    # A header that disagrees with the others is found before the data is read.
    reads = []
    monkeypatch.setattr(datasets, "read_idx", lambda path: reads.append(path))
    write_idx(folder / f"{FILES[1]}.gz", np.zeros(59, np.uint8))
    with pytest.raises(DatasetError, match="has 59 labels but"):
        load_dataset(data_dir=folder)
    assert reads == []


def test_classes_come_from_the_class_names(tmp_path):
    folder = make_dataset_dir(tmp_path / "d", n_classes=3)  # labels 0..2 only: the set still has 10 classes
    assert list(load_dataset(data_dir=folder).classes) == list(range(10))


def test_malformed_file_in_system_dir_suggests_reinstall(tmp_path):
    folder = make_dataset_dir(tmp_path / "system/fashion-mnist")
    path = folder / f"{FILES[0]}.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(IdxError, match="corrupt gzip data.*or reinstall dataset-fashion-mnist"):
        load_dataset()
    # Elsewhere the plain idx message stands.
    other = make_dataset_dir(tmp_path / "d")
    (other / f"{FILES[0]}.gz").write_bytes(b"")
    with pytest.raises(IdxError, match="file is empty") as info:
        load_dataset(data_dir=other)
    assert "reinstall" not in str(info.value)


@pytest.fixture
def mirror(monkeypatch):
    """Serve a generated data set as the fashion-mnist mirror; returns (its .gz bytes by file, the URLs asked for)."""
    files = {stem: gzip.compress(idx_bytes(np.zeros(shape, np.uint8)))
             for stem, shape in zip(FILES, [(8, 2, 2), (8,), (3, 2, 2), (3,)])}
    source = datasets._SOURCES["fashion-mnist"]
    md5 = tuple(hashlib.md5(files[stem]).hexdigest() for stem in FILES)
    monkeypatch.setitem(datasets._SOURCES, "fashion-mnist", replace(source, url="https://mirror.test/", md5=md5))
    monkeypatch.setenv("FASTSOFTMAX_NO_DOWNLOAD", "0")  # as good as unset
    requested = []

    def urlopen(url, timeout):
        assert timeout == datasets.DOWNLOAD_TIMEOUT
        requested.append(url)
        return io.BytesIO(files[url.removeprefix("https://mirror.test/").removesuffix(".gz")])

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return files, requested


def test_download(tmp_path, mirror):
    files, requested = mirror
    ds = load_dataset()
    cache = tmp_path / "cache/fastsoftmax/fashion-mnist"
    assert ds.source == cache
    assert ds.x_train.shape == (8, 4) and ds.y_test.shape == (3,)
    assert requested == [f"https://mirror.test/{stem}.gz" for stem in FILES]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{stem}.gz" for stem in FILES)
    assert all((cache / f"{stem}.gz").read_bytes() == files[stem] for stem in FILES)
    # Once cached, it is not downloaded again.
    load_dataset()
    assert len(requested) == 4


def test_download_into_a_named_folder(tmp_path, mirror):
    """As torchvision's root: a named folder without the files is where they are downloaded to."""
    files, requested = mirror
    ds = load_dataset(data_dir=tmp_path / "new")
    assert ds.source == tmp_path / "new/fashion-mnist" and len(requested) == 4
    assert not (tmp_path / "cache").exists()


def test_download_of_endless_data_stops(tmp_path, mirror, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD", 10)
    with pytest.raises(DatasetNotFoundError, match="more than 10 bytes"):
        load_dataset()


def test_download_resumes_with_missing_files_only(tmp_path, mirror):
    files, requested = mirror
    cache = tmp_path / "cache/fastsoftmax/fashion-mnist"
    cache.mkdir(parents=True)
    (cache / FILES[0]).write_bytes(gzip.decompress(files[FILES[0]]))  # a raw copy counts
    load_dataset()
    assert requested == [f"https://mirror.test/{stem}.gz" for stem in FILES[1:]]


def test_download_checksum_mismatch_leaves_no_file(tmp_path, mirror):
    files, requested = mirror
    files[FILES[2]] = gzip.compress(idx_bytes(np.ones((3, 2, 2), np.uint8)))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch") as info:
        load_dataset()
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    cache = tmp_path / "cache/fastsoftmax/fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == [f"{stem}.gz" for stem in sorted(FILES[:2])]


def test_download_write_failure_leaves_no_partial_file(tmp_path, mirror, monkeypatch):
    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", disk_full)
    with pytest.raises(DatasetNotFoundError, match="No space left on device"):
        load_dataset()
    assert list((tmp_path / "cache/fastsoftmax/fashion-mnist").iterdir()) == []


def test_download_offline(tmp_path, mirror, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DatasetNotFoundError, match="Temporary failure in name resolution") as info:
        load_dataset()
    assert "connect to the internet" in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    start = time.perf_counter()
    ds = load_dataset("fashion-mnist", data_dir=REAL_FASHION)
    print(f"loaded Fashion-MNIST from {ds.source} in {time.perf_counter() - start:.3f} s")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == ds.y_train.dtype == np.uint8
    assert ds.image_shape == (28, 28)
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    assert ds.x_train.flags.c_contiguous and ds.x_train.flags.writeable
