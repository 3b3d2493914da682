"""The register-tiled matrix product (kernels.gemm_kernel via charnn.gemm) against numpy.

The kernel runs on any CPU (it is only fast with AVX-512), so these tests call it directly and
never skip. Tolerance: float32 sums of up to 513 products, compared with the float64 product,
relative to its largest entry: numpy's own float32 matmul is off by up to ~1e-6 on these shapes.
"""
import numba
import numpy as np
import pytest

from charnn.backend.numba import gemm
from charnn.backend.numba import kernels as K

TOL = 3e-6


def rel(a, ref):
    return np.abs(a.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30)


def tiles_product(A, B):
    Bp = np.full((-(-B.shape[1] // K.NR), B.shape[0], K.NR), np.nan, dtype=np.float32)  # padding must be written
    K.pack_panels_kernel(B, Bp)
    C = np.full((A.shape[0], B.shape[1]), np.nan, dtype=np.float32)
    K.gemm_kernel(A, Bp, C)
    return C, Bp


@pytest.mark.parametrize("M", [1, 3, 4, 5, 33])
@pytest.mark.parametrize("Kd", [0, 1, 7, 256, 513])
@pytest.mark.parametrize("N", [1, 63, 64, 65, 130])
def test_gemm_kernel_matches_numpy(M, Kd, N):
    rng = np.random.default_rng(M * 1000 + Kd * 10 + N)
    A = rng.standard_normal((M, Kd), dtype=np.float32)
    B = rng.standard_normal((Kd, N), dtype=np.float32)
    C, Bp = tiles_product(A, B)
    ref = A.astype(np.float64) @ B
    assert rel(C, ref) < TOL
    assert rel(A @ B, ref) < TOL  # numpy meets the same bound
    assert not np.isnan(Bp).any() and (Bp[-1, :, N - (Bp.shape[0] - 1) * K.NR:] == 0).all()  # zero padding


def test_strided_operands_and_output():
    """A as a transposed view and as a slice of a 3-D cache, B transposed, C a strided view."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 37), dtype=np.float32)
    H = rng.standard_normal((5, 9, 70), dtype=np.float32)
    W = rng.standard_normal((130, 70), dtype=np.float32)
    for A, B in [(X.T, rng.standard_normal((300, 70), dtype=np.float32)),  # a weight gradient's shape
                 (H[:, 3], W.T)]:  # one recurrent step's h_t, and Wh.T
        ref = A.astype(np.float64) @ B
        C, Bp = tiles_product(A, B)
        assert rel(C, ref) < TOL
        out = np.zeros((A.shape[0], 2 * B.shape[1]), dtype=np.float32)[:, ::2]
        K.gemm_kernel(A, Bp, out)
        assert rel(out, ref) < TOL


def test_long_sums_are_as_accurate_as_blas():
    """k is summed in blocks of KB (a 2048-term running sum was 4x less accurate than BLAS)."""
    rng = np.random.default_rng(1)
    worst_tiles, worst_blas = 0.0, 0.0
    for _ in range(5):
        A = rng.standard_normal((8, 2048), dtype=np.float32)
        B = rng.standard_normal((2048, 64), dtype=np.float32)
        ref = A.astype(np.float64) @ B
        worst_tiles = max(worst_tiles, rel(tiles_product(A, B)[0], ref))
        worst_blas = max(worst_blas, rel(A @ B, ref))
    assert worst_tiles < 2 * worst_blas, (worst_tiles, worst_blas)


def test_nan_and_inf_propagate():
    """No fastmath beyond contraction: a NaN in A reaches every entry of its row."""
    A = np.ones((6, 300), dtype=np.float32)
    A[1, 5] = np.nan
    A[5, 299] = np.inf
    B = np.ones((300, 70), dtype=np.float32)
    C, _ = tiles_product(A, B)
    assert np.isnan(C[1]).all() and np.isposinf(C[5]).all()
    assert (C[[0, 2, 3, 4]] == 300).all()


def test_same_result_with_one_or_two_threads():
    """Every output tile is summed by one thread in a fixed order: bit-identical results."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((37, 300), dtype=np.float32)
    B = rng.standard_normal((300, 200), dtype=np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _ = tiles_product(A, B)
        numba.set_num_threads(before)
        two, _ = tiles_product(A, B)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("tiles", [True, False])
def test_matmul_wrapper(monkeypatch, tiles):
    """charnn.gemm.matmul: the same product with the tiles on or off, packed or not, out= or not;
    float64 always goes to numpy (the gradient checks run in float64)."""
    monkeypatch.setattr(gemm, "TILES", tiles)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((9, 40), dtype=np.float32)
    B = rng.standard_normal((40, 75), dtype=np.float32)
    ref = A.astype(np.float64) @ B
    packed = gemm.pack(B)
    assert (packed.panels is not None) == tiles
    out = np.empty((9, 75), dtype=np.float32)
    for result in (gemm.matmul(A, B), gemm.matmul(A, packed), gemm.matmul(A, packed, out=out)):
        assert result.dtype == np.float32 and rel(result, ref) < TOL
    assert np.shares_memory(gemm.matmul(A, packed, out=out), out)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    assert gemm.pack(B64).panels is None
    assert np.array_equal(gemm.matmul(A64, B64), A64 @ B64)
    with pytest.raises(ValueError, match="do not align"):
        gemm.matmul(A, B.T)


def test_tiles_need_avx512(monkeypatch):
    monkeypatch.setattr(gemm, "cpu_flags", lambda: {"avx2", "fma"})
    assert not gemm._tiles_enabled()
    monkeypatch.setattr(gemm, "cpu_flags", lambda: {"avx512f", "avx2"})
    assert gemm._tiles_enabled()
    monkeypatch.setenv("CHARNN_GEMM", "blas")
    assert not gemm._tiles_enabled()
