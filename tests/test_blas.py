from charnn._blas import SKYLAKEX_FLAGS, choose_openblas_coretype

AVX512 = set(SKYLAKEX_FLAGS) | {"sse2", "avx2"}


def test_avx512_cpu_gets_skylakex_kernels():
    env = {}
    assert "SkylakeX" in choose_openblas_coretype(env, modules={}, flags=AVX512)
    assert env == {"OPENBLAS_CORETYPE": "SkylakeX"}


def test_never_forced_without_avx512():
    env = {}
    assert "no AVX-512" in choose_openblas_coretype(env, modules={}, flags={"sse2", "avx2", "avx512f"})  # partial set
    assert env == {}


def test_users_choice_and_opt_out_stand():
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert "kept" in choose_openblas_coretype(env, modules={}, flags=AVX512) and env["OPENBLAS_CORETYPE"] == "Haswell"
    env = {"CHARNN_BLAS_AUTO": "0"}
    choose_openblas_coretype(env, modules={}, flags=AVX512)
    assert "OPENBLAS_CORETYPE" not in env


def test_too_late_once_numpy_is_loaded():
    env = {}
    assert "imported before" in choose_openblas_coretype(env, modules={"numpy": object()}, flags=AVX512)
    assert env == {}
