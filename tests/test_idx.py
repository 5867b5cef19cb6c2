import gzip

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idxdata import TYPE_CODES, idx_bytes, write_idx

from fastsoftmax.io.idx import IdxError, read_idx

DTYPES = [np.dtype(t) for t in TYPE_CODES]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=hnp.arrays(
        st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)
    ),
    suffix=st.sampled_from(["", ".gz"]),
)
def test_round_trip(tmp_path, array, suffix):
    out = read_idx(write_idx(tmp_path / f"a{suffix}", array))
    assert out.dtype == array.dtype and out.dtype.isnative
    assert out.shape == array.shape
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    ("header", "payload", "expected"),
    [
        # Hand-encoded, so that a wrong type table or byte order shows.
        (b"\0\0\x08\x01\0\0\0\x02", b"\x01\xff", np.array([1, 255], np.uint8)),
        (b"\0\0\x09\x01\0\0\0\x02", b"\x01\xff", np.array([1, -1], np.int8)),
        (b"\0\0\x0b\x01\0\0\0\x02", b"\x01\x02\xff\xfe", np.array([258, -2], np.int16)),
        (b"\0\0\x0c\x01\0\0\0\x01", b"\xff\xff\xff\xfe", np.array([-2], np.int32)),
        (b"\0\0\x0d\x01\0\0\0\x01", b"\x3f\xc0\0\0", np.array([1.5], np.float32)),
        (b"\0\0\x0e\x01\0\0\0\x01", b"\xc0\x04\0\0\0\0\0\0", np.array([-2.5], np.float64)),
        (b"\0\0\x08\x02\0\0\0\x02\0\0\0\x03", bytes(range(6)), np.arange(6, dtype=np.uint8).reshape(2, 3)),
    ],
)
def test_known_encodings(tmp_path, header, payload, expected):
    path = tmp_path / "a"
    path.write_bytes(header + payload)
    out = read_idx(path)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_gzip_detected_by_content_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    raw_named_gz = tmp_path / "raw.gz"
    raw_named_gz.write_bytes(idx_bytes(array))
    gz_named_raw = tmp_path / "gz"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(read_idx(str(gz_named_raw)), array)


def test_multi_member_gzip(tmp_path):
    data = idx_bytes(np.arange(10, dtype=np.uint8))
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(data[:7]) + gzip.compress(data[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(10))


GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\0\0\x08", "header is truncated"),
        (GOOD[:10], "header is truncated"),
        (b"\x01" + GOOD[1:], "not an idx file"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown idx type code 0x0A"),
        (GOOD[:-1], "file is truncated (expected 48 bytes of data for shape (2, 3, 4), found 47)"),
        (GOOD + b"\0", "file has trailing bytes"),
        (gzip.compress(GOOD)[:-20], "corrupt gzip data"),
        (gzip.compress(GOOD)[:2], "corrupt gzip data"),
        (gzip.compress(GOOD)[:-8] + b"\0" * 8, "corrupt gzip data"),
        (gzip.compress(GOOD) + b"junk", "corrupt gzip data"),
        (gzip.compress(GOOD[:-1]), "file is truncated"),
        (gzip.compress(b""), "file is empty"),
    ],
)
def test_malformed(tmp_path, content, message):
    path = tmp_path / "bad-file"
    path.write_bytes(content)
    with pytest.raises(IdxError) as info:
        read_idx(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "download it again" in str(info.value)


def test_corrupt_deflate_data(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8))))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IdxError, match="corrupt gzip data"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


def test_a_header_claiming_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + np.asarray([2**31, 28, 28], ">u4").tobytes())
    with pytest.raises(IdxError, match=r"header claims shape \(2147483648, 28, 28\) of uint8, 1,683,627,180,032 bytes"):
        read_idx(path)
    with pytest.raises(IdxError, match="more than the 10 an idx file may hold"):
        read_idx(write_idx(tmp_path / "small", np.zeros(11, np.uint8)), max_bytes=10)
    assert read_idx(tmp_path / "small", max_bytes=11).shape == (11,)


def test_a_gzip_bomb_is_inflated_no_further_than_its_header(tmp_path):
    """A few MB of .gz that inflate to 1 GiB: rejected after the header's 16 bytes of data."""
    import tracemalloc

    path = tmp_path / "bomb.gz"
    zeros = gzip.compress(bytes(2**24), compresslevel=9)  # 16 MiB of zeros, 16 KB compressed
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8))) + zeros * 64)
    tracemalloc.start()
    try:
        with pytest.raises(IdxError, match=r"file has trailing bytes \(expected 16 bytes of data for shape \(4, 4\)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**22  # a few MB of compressed input at most, never the inflated gigabyte


def test_header_alone(tmp_path):
    from fastsoftmax.io.idx import read_idx_header

    path = write_idx(tmp_path / "a.gz", np.zeros((5, 3, 2), np.int16))
    assert read_idx_header(path) == ((5, 3, 2), np.dtype(">i2"))
