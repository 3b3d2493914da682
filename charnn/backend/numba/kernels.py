"""Every numba kernel in charnn, in one module: numba's on-disk cache is reliable only when a
kernel's callees live in its own file.

The kernels fuse the elementwise work that numpy would spread over a dozen temporary arrays per
step, and compute the matrix products with AVX-512 register tiles where the CPU has them (numpy's
BLAS otherwise; gemm.py decides). The Python wrappers in layers.py keep the exact signatures of
the numpy reference functions (charnn.nn). Each kernel's docstring names its reference; tests/test_kernels.py
and tests/test_gemm.py check that every pair agrees.

Conventions:
- Recurrent kernels take the whole C-contiguous (B, T, ...) cache arrays plus the step index t,
  so the inner loop over hidden units is unit-stride and vectorises; they write step t in place.
- error_model="numpy": float division by zero gives inf/nan instead of a Python exception check
  per division, which is what lets LLVM vectorise these loops at all.
- No fastmath: it would break isfinite (divergence detection relies on NaN surviving).
- cache=True is safe because every callee lives in this file and no kernel reads a mutable global.
- tanh is a rational approximation (accurate to a few float32 ulp: max relative error 3.6e-7 over
  the whole float range, measured in tests) because math.tanh compiles to a scalar libm call
  that runs ~10x slower than the vectorised loop; sigmoid is computed from it.
- Parallel loops (prange) only where every iteration writes its own slice: the recurrent step
  kernels over batch rows, the matrix product over output tiles, Adam over elements, a first
  layer's lookups over rows, the batch sampling kernels over groups of streams (each group on a
  copy of its own state). The scatter-adds (embedding gradients) split the columns, never the
  rows: rows repeat, and adds into the same row from two threads would race. One exception: the
  samplers' threads share a parallel region for a whole call and claim its units of work
  through atomic counters (sample_steps, batch_sample_steps), so each unit is still written by one thread.
- Shapes: B batch, T steps, H hidden width, G gate width (4H lstm, 3H gru, H rnn), V vocabulary,
  N rows, S sampled streams; each kernel's docstring gives its arrays' shapes.
- The products and the row kernels of the cells use fastmath, and only its "contract" flag
  (fused multiply-add: the tanh polynomial in half the instructions).
- Vectors of the register width are explicit where the time goes: the products' tiles
  (_lanes_fma), the cells' row kernels and the samplers' matvec (Lanes, muladd) and batch_matvec (_lanes_fma). LLVM's vectoriser, which
  the remaining loops are left to, runs at half width on Intel's AVX-512 cores.
- Sections: scalar functions; the training step kernels (rnn, lstm, gru), softmax-CE, embedding,
  Adam; matrix products; then sampling (batch-1, and batches of streams), whose Python side
  (weight layout, thread choice) is sampler.py. Measurements behind these choices: bench/README.md.
"""
from __future__ import annotations

import math
import operator
import platform

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, lower_builtin, models, overload, register_model, type_callable
from llvmlite import ir

from .target import target_lanes

JIT = dict(cache=True, error_model="numpy", nogil=True)
CONTRACT = {"contract"}  # fastmath that allows fused multiply-add and nothing else (NaN must survive)

# activation codes, in the order of charnn.activations.ACTIVATIONS
TANH, SIGMOID, RELU, LEAKY_RELU, ELU, SOFTPLUS = range(6)
ACTIVATION_CODES = {"tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "leaky_relu": LEAKY_RELU, "elu": ELU, "softplus": SOFTPLUS}
LEAKY_SLOPE = 0.01
RNN, LSTM, GRU = range(3)  # recurrent cell codes of the sampling kernels
CELL_CODES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


# ---------------------------------------------------------------- explicit vectors
# The cells' elementwise loops are written over Lanes: LANES floats in one LLVM vector, as wide as
# the target's float32 registers. Why not leave them to LLVM's vectoriser: it is tuned to 256-bit
# vectors on Intel's AVX-512 cores (Skylake-SP to Emerald Rapids), where these loops would run at
# half width; a vector type in the IR is kept at its width, per kernel, whatever the tuning.
# lanes(a, j, n) is a[j : j+n] (n <= LANES; the other lanes 0) and put(a, j, n, v) stores the first n;
# + - * / between two Lanes, or Lanes and a float, work lane by lane (so tanh and sigmoid below
# serve both). A loop over H units runs H // LANES full vectors, then the n = H % LANES rest: the
# same inline body called with n = LANES, whose masks LLVM folds into plain loads, and with n.
# float64 (models made for gradient checks and pictures) gets LANES doubles, two registers' worth.
LANES = target_lanes()  # float32 lanes of one vector register of numba's target: 16, 8 or 4


class Lanes(types.Type):
    """numba's type of LANES values of dtype (float32 or float64) in one LLVM vector."""
    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Lanes({LANES} x {dtype})")


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _vector(fe_type.dtype))


def _vector(dtype=types.float32):
    return ir.VectorType(ir.FloatType() if dtype == types.float32 else ir.DoubleType(), LANES)


def _pointer(context, builder, ty, array, indices):
    """Address of array[indices]: indices known to be in range and non-negative (no wraparound
    arithmetic, which numba adds per access otherwise: three integer operations per load of A)."""
    arr = context.make_array(ty)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, ty, arr, indices, wraparound=False)


def _vector_pointer(context, builder, ty, array, indices):
    """Address of the LANES floats of array from array[indices] on, as a pointer to one vector."""
    return builder.bitcast(_pointer(context, builder, ty, array, indices), _vector(ty.dtype).as_pointer())


def _splat(builder, x, vec):
    """x in every lane of a vector of type vec."""
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count)
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), zeros)


def _first(builder, n):
    """The mask of lanes 0 .. n-1 (an all-true constant where n is the constant LANES)."""
    lanes = ir.VectorType(ir.IntType(32), LANES)
    count = _splat(builder, builder.trunc(n, ir.IntType(32)) if n.type.width > 32 else n, lanes)
    return builder.icmp_unsigned("<", ir.Constant(lanes, list(range(LANES))), count)


def _lanes_array(ty):
    """ty, checked while typing: vector loads and stores need a contiguous 1-D float array."""
    if not (isinstance(ty, types.Array) and ty.ndim == 1 and ty.dtype in (types.float32, types.float64) and ty.layout in "CF"):
        raise TypingError(f"lanes and put take contiguous 1-D float32 or float64 arrays, not {ty}")
    return ty


def _masked(context, builder, operation, ty, a, index, n):
    """LLVM's masked load or store ("load", "store") of the n floats of a (array type ty) from
    a[index] on (index a list, one per dimension): the function, and its arguments but the stored
    value (pointer, alignment, mask of the first n lanes)."""
    vec = _vector(ty.dtype)
    mask = ir.VectorType(ir.IntType(1), LANES)
    args = [vec.as_pointer(), ir.IntType(32), mask, vec] if operation == "load" else [vec, vec.as_pointer(), ir.IntType(32), mask]
    name = f"llvm.masked.{operation}.v{LANES}f{ty.dtype.bitwidth}.p0"
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec if operation == "load" else ir.VoidType(), args), name)
    ptr = _vector_pointer(context, builder, ty, a, index)
    return function, [ptr, ir.Constant(ir.IntType(32), ty.dtype.bitwidth // 8), _first(builder, n)]


@intrinsic
def lanes(typingctx, a, j, n):
    """a[j : j+n] as Lanes, lanes n.. zero: a (H,) contiguous, 0 <= j, n <= LANES, j + n <= H."""
    def codegen(context, builder, signature, args):
        ty, (a_, j_, n_) = signature.args[0], args
        load, operands = _masked(context, builder, "load", ty, a_, [j_], n_)
        return builder.call(load, operands + [ir.Constant(_vector(ty.dtype), None)])
    return Lanes(_lanes_array(a).dtype)(a, types.intp, types.intp), codegen


@intrinsic
def put(typingctx, a, j, n, v):
    """a[j : j+n] = the first n lanes of v (see lanes)."""
    def codegen(context, builder, signature, args):
        a_, j_, n_, _ = args
        store, operands = _masked(context, builder, "store", signature.args[0], a_, [j_], n_)
        builder.call(store, [args[3]] + operands)
        return context.get_dummy_value()
    return types.void(a, types.intp, types.intp, Lanes(_lanes_array(a).dtype)), codegen


def _lane_operation(op, instruction):
    """op between Lanes and Lanes or a float (splat into every lane): one LLVM vector instruction.
    A float64 number meets float32 Lanes only as an error: numba would compute a float32 kernel in
    float64 (see tanh); a float32 one meets float64 Lanes as numba's promotion would."""
    @type_callable(op)
    def typer(context):
        def typed(x, y):
            vectors = [t for t in (x, y) if isinstance(t, Lanes)]
            if vectors and all(t == vectors[0] or (isinstance(t, types.Float) and t.bitwidth <= vectors[0].dtype.bitwidth)
                               for t in (x, y)):
                return vectors[0]
        return typed

    def lower(context, builder, signature, args):
        dtype = signature.return_type.dtype
        x, y = (v if isinstance(t, Lanes) else _splat(builder, context.cast(builder, v, t, dtype), _vector(dtype))
                for t, v in zip(signature.args, args))
        return getattr(builder, instruction)(x, y)
    for types_ in ((Lanes, Lanes), (Lanes, types.Float), (types.Float, Lanes)):
        lower_builtin(op, *types_)(lower)


for _op, _instruction in ((operator.add, "fadd"), (operator.sub, "fsub"), (operator.mul, "fmul"), (operator.truediv, "fdiv")):
    _lane_operation(_op, _instruction)


@intrinsic
def clamp(typingctx, x, c):
    """x limited to [-c, c], lane by lane for Lanes: a NaN stays NaN (divergence detection relies on it)."""
    def codegen(context, builder, signature, args):
        x_, c_ = args
        if isinstance(signature.args[0], Lanes):
            c_ = _splat(builder, c_, x_.type)
        x_ = builder.select(builder.fcmp_ordered(">", x_, c_), c_, x_)
        low = builder.fneg(c_)
        return builder.select(builder.fcmp_ordered("<", x_, low), low, x_)
    return x(x, x.dtype if isinstance(x, Lanes) else x), codegen


# ---------------------------------------------------------------- copies
# The kernels copy arrays element by element, not by slice assignment (a[:] = b): numba compiles
# a slice assignment with a check that the shapes broadcast and the message it raises if not,
# 1-5 s a kind of array, where the shapes here match by construction (bench/README.md, "nineteenth session").
@njit(inline="always")
def copy_row(dst, src):
    """dst[:] = src: two (n,) arrays."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(**JIT)
def copy_into(dst, src):
    """dst[...] = src: two arrays of one shape, any number of dimensions (a state: once a call)."""
    for i in np.ndindex(dst.shape):
        dst[i] = src[i]


# ---------------------------------------------------------------- scalar functions
@njit(inline="always", error_model="numpy")
def tanh(x):
    """tanh(x) as x P(x^2) / Q(x^2), clamped at |x| = 7.9053 where float32 tanh is already +-1;
    x a float or Lanes (lane by lane).

    Coefficients: the minimax rational fit used by Eigen's float tanh (generic_fast_tanh_float).
    They are float32 literals: a Python float would make numba compute every float32 kernel that
    calls this in float64 (half the SIMD lanes and a slow double division). float64 inputs still
    compute in float64, to the approximation's own accuracy (3.6e-7 relative)."""
    x = clamp(x, np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = x2 * p + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = x2 * q + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(inline="always", error_model="numpy")
def sigmoid(x):
    half = np.float32(0.5)  # float32 literals keep float32 math in float32 (see tanh)
    return half + half * tanh(half * x)  # same identity as the numpy reference: no exp to overflow


@njit(inline="always", error_model="numpy")
def activate(a, code):
    """One activation of one value. Reference: charnn.nn.activations.ACTIVATIONS[name].forward.
    (A NaN input gives NaN, as numpy's formulas do: divergence detection relies on it.)"""
    if code == TANH:
        return tanh(a)
    if code == SIGMOID:
        return sigmoid(a)
    zero = np.float32(0.0)  # float32 literals: see tanh
    if code == RELU:
        return a if a > zero else zero * a
    if code == LEAKY_RELU:
        return a if a > zero else np.float32(LEAKY_SLOPE) * a
    if code == ELU:
        return a if a > 0 else math.expm1(a)
    return (a if a > zero else zero * a) + math.log1p(math.exp(-abs(a)))  # softplus


@njit(**JIT)
def activate_row(a, h, code):
    """h = act(a) elementwise over one row (h may be a itself). tanh and sigmoid in vectors (one
    test of the code a vector); the others one element at a time, with the branch on the code
    outside that loop (tested per element, the loop does not vectorise)."""
    H = a.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    if code == TANH or code == SIGMOID:
        _activate_lanes(a, h, code, 0, J, LANES)
        _activate_lanes(a, h, code, J, H, H - J)
    else:
        for j in range(a.shape[0]):
            h[j] = activate(a[j], code)


@njit(inline="always", error_model="numpy")
def _activate_lanes(a, h, code, j0, j1, n):
    """activate_row's tanh or sigmoid over units j0 .. j1-1, n at a time."""
    for j in range(j0, j1, LANES):
        x = lanes(a, j, n)
        put(h, j, n, tanh(x) if code == TANH else sigmoid(x))


@njit(inline="always", error_model="numpy")
def activate_grad(h, code):
    """dh/da written from the output h. Reference: charnn.activations.ACTIVATIONS[name].backward."""
    one, zero = np.float32(1.0), np.float32(0.0)  # float32 literals: see tanh
    if code == TANH:
        return one - h * h
    if code == SIGMOID:
        return h * (one - h)
    if code == RELU:
        return one if h > zero else zero
    if code == LEAKY_RELU:
        return one if h > zero else np.float32(LEAKY_SLOPE)
    if code == ELU:
        return one if h > zero else h + one
    return -math.expm1(-h)  # softplus: 1 - e^-h


# ---------------------------------------------------------------- the recurrent step kernels
# Each step kernel loops over the batch rows and hands one row's (.., H) slices to a row kernel
# that loops over the hidden units: on 1-D views the unit loop vectorises, while indexing the 3-D
# cache arrays inside it (xa[b, t, j]) compiles to generic, several times slower code. The step kernels run the rows
# in parallel (prange): each row writes only its own slices of the caches.
# The forward kernels take step t's xa_t = x[:, t] @ Wx without the bias and add it themselves;
# the sum (xa_t + bias) + ha rounds as the reference's (x @ Wx + b) + h @ Wh does.

# ---------------------------------------------------------------- vanilla RNN
@njit(fastmath=CONTRACT, **JIT)
def rnn_row_forward(xa, bias, ha, h_next, code):
    """h_next = act((xa + bias) + ha) for one batch row (or one block of units, in sampling):
    xa, bias, ha, h_next (H,)."""
    H = h_next.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    _rnn_forward_lanes(xa, bias, ha, h_next, code, 0, J, LANES)
    _rnn_forward_lanes(xa, bias, ha, h_next, code, J, H, H - J)
    if code != TANH:
        activate_row(h_next, h_next, code)  # on the pre-activation, in place


@njit(inline="always", error_model="numpy")
def _rnn_forward_lanes(xa, bias, ha, h_next, code, j0, j1, n):
    """rnn_row_forward over units j0 .. j1-1, n at a time: tanh in the same pass (the usual case),
    or the pre-activation."""
    for j in range(j0, j1, LANES):
        a = (lanes(xa, j, n) + lanes(bias, j, n)) + lanes(ha, j, n)
        put(h_next, j, n, tanh(a) if code == TANH else a)


@njit(parallel=True, **JIT)
def rnn_step_forward_kernel(t, xa_t, bias, ha, h, code):
    """h[:, t+1] = act(xa_t + bias + ha). xa_t (B, H) = x[:, t] @ Wx, bias (H,), ha (B, H) = h[:, t] @ Wh,
    h (B, T+1, H). Reference: rnn.rnn_cell (its xa includes the bias)."""
    for b in prange(ha.shape[0]):
        rnn_row_forward(xa_t[b], bias, ha[b], h[b, t + 1], code)


@njit(fastmath=CONTRACT, **JIT)
def rnn_row_backward(dhs, dh_rec, h_next, da, code):
    """da = act'(h_next) * (dhs + dh_rec) for one batch row, all (H,)."""
    if code == TANH:  # the usual case, in vectors
        H = da.shape[0]
        J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
        _rnn_tanh_backward_lanes(dhs, dh_rec, h_next, da, 0, J, LANES)
        _rnn_tanh_backward_lanes(dhs, dh_rec, h_next, da, J, H, H - J)
        return
    for j in range(da.shape[0]):
        da[j] = activate_grad(h_next[j], code) * (dhs[j] + dh_rec[j])


@njit(inline="always", error_model="numpy")
def _rnn_tanh_backward_lanes(dhs, dh_rec, h_next, da, j0, j1, n):
    """rnn_row_backward for tanh over units j0 .. j1-1, n at a time."""
    one = np.float32(1.0)
    for j in range(j0, j1, LANES):
        h = lanes(h_next, j, n)
        put(da, j, n, (one - h * h) * (lanes(dhs, j, n) + lanes(dh_rec, j, n)))


@njit(parallel=True, **JIT)
def rnn_step_backward_kernel(t, dhs, dh_rec, h, da, code):
    """da[:, t] = act'(h[:, t+1]) * (dhs[:, t] + dh_rec); dh_rec = da[:, t+1] @ Wh.T from the step
    after. Reference: rnn.rnn_cell_backward."""
    for b in prange(dh_rec.shape[0]):
        rnn_row_backward(dhs[b, t], dh_rec[b], h[b, t + 1], da[b, t], code)


# ---------------------------------------------------------------- LSTM
@njit(fastmath=CONTRACT, **JIT)
def lstm_row_forward(xa, bias, ha, c_prev, c_next, h_next, gates, tanh_c):
    """One batch row of lstm_step_forward_kernel: xa, bias, ha, gates (4H,); c_prev, c_next, h_next,
    tanh_c (H,)."""
    H = c_prev.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    _lstm_forward_lanes(xa, bias, ha, c_prev, c_next, h_next, gates, tanh_c, 0, J, LANES)
    _lstm_forward_lanes(xa, bias, ha, c_prev, c_next, h_next, gates, tanh_c, J, H, H - J)


@njit(inline="always", error_model="numpy")
def _lstm_forward_lanes(xa, bias, ha, c_prev, c_next, h_next, gates, tanh_c, j0, j1, n):
    """lstm_row_forward over units j0 .. j1-1, n at a time."""
    H = c_prev.shape[0]
    for j in range(j0, j1, LANES):
        i = sigmoid((lanes(xa, j, n) + lanes(bias, j, n)) + lanes(ha, j, n))
        f = sigmoid((lanes(xa, H + j, n) + lanes(bias, H + j, n)) + lanes(ha, H + j, n))
        o = sigmoid((lanes(xa, 2 * H + j, n) + lanes(bias, 2 * H + j, n)) + lanes(ha, 2 * H + j, n))
        g = tanh((lanes(xa, 3 * H + j, n) + lanes(bias, 3 * H + j, n)) + lanes(ha, 3 * H + j, n))
        c = f * lanes(c_prev, j, n) + i * g
        tc = tanh(c)
        put(gates, j, n, i)
        put(gates, H + j, n, f)
        put(gates, 2 * H + j, n, o)
        put(gates, 3 * H + j, n, g)
        put(c_next, j, n, c)
        put(tanh_c, j, n, tc)
        put(h_next, j, n, o * tc)


@njit(parallel=True, **JIT)
def lstm_step_forward_kernel(t, xa_t, bias, ha, h, c, gates, tanh_c):
    """One LSTM step written into the caches. xa_t (B, 4H) = x[:, t] @ Wx, bias (4H,), ha (B, 4H) =
    h[:, t] @ Wh; h, c (B, T+1, H); gates (B, T, 4H) post-activation i, f, o, g; tanh_c (B, T, H).
    Reference: lstm.lstm_cell (its xa includes the bias)."""
    for b in prange(ha.shape[0]):
        lstm_row_forward(xa_t[b], bias, ha[b], c[b, t], c[b, t + 1], h[b, t + 1], gates[b, t], tanh_c[b, t])


@njit(fastmath=CONTRACT, **JIT)
def lstm_row_backward(dhs, dh_rec, dc, c_prev, gates, tanh_c, da):
    """One batch row of lstm_step_backward_kernel: dhs, dh_rec, dc, c_prev, tanh_c (H,); gates,
    da (4H,)."""
    H = dc.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    _lstm_backward_lanes(dhs, dh_rec, dc, c_prev, gates, tanh_c, da, 0, J, LANES)
    _lstm_backward_lanes(dhs, dh_rec, dc, c_prev, gates, tanh_c, da, J, H, H - J)


@njit(inline="always", error_model="numpy")
def _lstm_backward_lanes(dhs, dh_rec, dc, c_prev, gates, tanh_c, da, j0, j1, n):
    """lstm_row_backward over units j0 .. j1-1, n at a time."""
    H = dc.shape[0]
    one = np.float32(1.0)  # not 1.0: a Python float would promote float32 math to float64
    for j in range(j0, j1, LANES):
        i = lanes(gates, j, n)
        f = lanes(gates, H + j, n)
        o = lanes(gates, 2 * H + j, n)
        g = lanes(gates, 3 * H + j, n)
        tc = lanes(tanh_c, j, n)
        dh = lanes(dhs, j, n) + lanes(dh_rec, j, n)
        dct = lanes(dc, j, n) + dh * o * (one - tc * tc)  # forward: h = o * tanh(c)
        put(da, j, n, dct * g * i * (one - i))  # forward: c = f*c_prev + i*g
        put(da, H + j, n, dct * lanes(c_prev, j, n) * f * (one - f))
        put(da, 2 * H + j, n, dh * tc * o * (one - o))
        put(da, 3 * H + j, n, dct * i * (one - g * g))
        put(dc, j, n, dct * f)


@njit(parallel=True, **JIT)
def lstm_step_backward_kernel(t, dhs, dh_rec, dc, c, gates, tanh_c, da):
    """Writes da[:, t] (B, 4H) and replaces dc (B, H) (the gradient of c[:, t+1]) by that of c[:, t].
    dh_rec (B, H) = da[:, t+1] @ Wh.T from the step after. Reference: lstm.lstm_cell_backward."""
    for b in prange(dc.shape[0]):
        lstm_row_backward(dhs[b, t], dh_rec[b], dc[b], c[b, t], gates[b, t], tanh_c[b, t], da[b, t])


# ---------------------------------------------------------------- GRU
@njit(fastmath=CONTRACT, **JIT)
def gru_row_forward(xa, bias, ha, h_prev, h_next, gates, ha_n):
    """One batch row of gru_step_forward_kernel: xa, bias, ha, gates (3H,); h_prev, h_next, ha_n (H,)."""
    H = h_prev.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    _gru_forward_lanes(xa, bias, ha, h_prev, h_next, gates, ha_n, 0, J, LANES)
    _gru_forward_lanes(xa, bias, ha, h_prev, h_next, gates, ha_n, J, H, H - J)


@njit(inline="always", error_model="numpy")
def _gru_forward_lanes(xa, bias, ha, h_prev, h_next, gates, ha_n, j0, j1, k):
    """gru_row_forward over units j0 .. j1-1, k at a time (n is the candidate state here)."""
    H = h_prev.shape[0]
    one = np.float32(1.0)  # not 1.0: a Python float would promote float32 math to float64
    for j in range(j0, j1, LANES):
        r = sigmoid((lanes(xa, j, k) + lanes(bias, j, k)) + lanes(ha, j, k))
        z = sigmoid((lanes(xa, H + j, k) + lanes(bias, H + j, k)) + lanes(ha, H + j, k))
        hn = lanes(ha, 2 * H + j, k)
        n = tanh((lanes(xa, 2 * H + j, k) + lanes(bias, 2 * H + j, k)) + r * hn)
        put(gates, j, k, r)
        put(gates, H + j, k, z)
        put(gates, 2 * H + j, k, n)
        put(ha_n, j, k, hn)
        put(h_next, j, k, (one - z) * n + z * lanes(h_prev, j, k))


@njit(parallel=True, **JIT)
def gru_step_forward_kernel(t, xa_t, bias, ha, h, gates, ha_n):
    """One GRU step (reset after the recurrent matmul). xa_t (B, 3H) = x[:, t] @ Wx, bias (3H,),
    ha (B, 3H) = h[:, t] @ Wh, h (B, T+1, H), gates (B, T, 3H) post-activation r, z, n,
    ha_n (B, T, H). Reference: gru.gru_cell (its xa includes the bias)."""
    for b in prange(ha.shape[0]):
        gru_row_forward(xa_t[b], bias, ha[b], h[b, t], h[b, t + 1], gates[b, t], ha_n[b, t])


@njit(fastmath=CONTRACT, **JIT)
def gru_row_backward(dhs, dh_rec, dh_direct, h_prev, gates, ha_n, dxa, dha):
    """One batch row of gru_step_backward_kernel: dhs, dh_rec, dh_direct, h_prev, ha_n (H,);
    gates, dxa, dha (3H,)."""
    H = h_prev.shape[0]
    J = H - H % LANES  # full vectors, then the rest (see "explicit vectors")
    _gru_backward_lanes(dhs, dh_rec, dh_direct, h_prev, gates, ha_n, dxa, dha, 0, J, LANES)
    _gru_backward_lanes(dhs, dh_rec, dh_direct, h_prev, gates, ha_n, dxa, dha, J, H, H - J)


@njit(inline="always", error_model="numpy")
def _gru_backward_lanes(dhs, dh_rec, dh_direct, h_prev, gates, ha_n, dxa, dha, j0, j1, k):
    """gru_row_backward over units j0 .. j1-1, k at a time (n is the candidate state here)."""
    H = h_prev.shape[0]
    one = np.float32(1.0)  # not 1.0: see gru_row_forward
    for j in range(j0, j1, LANES):
        r = lanes(gates, j, k)
        z = lanes(gates, H + j, k)
        n = lanes(gates, 2 * H + j, k)
        dh = lanes(dhs, j, k) + lanes(dh_direct, j, k) + lanes(dh_rec, j, k)
        da_n = dh * (one - z) * (one - n * n)  # forward: h = (1-z) n + z h_prev ; n = tanh(a_n)
        dr = da_n * lanes(ha_n, j, k)  # forward: a_n = xa_n + r * ha_n
        da_r = dr * r * (one - r)
        da_z = dh * (lanes(h_prev, j, k) - n) * z * (one - z)
        put(dxa, j, k, da_r)
        put(dxa, H + j, k, da_z)
        put(dxa, 2 * H + j, k, da_n)
        put(dha, j, k, da_r)
        put(dha, H + j, k, da_z)
        put(dha, 2 * H + j, k, da_n * r)
        put(dh_direct, j, k, dh * z)


@njit(parallel=True, **JIT)
def gru_step_backward_kernel(t, dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha):
    """Writes dxa[:, t], dha[:, t] (B, 3H) and dh_direct (B, H), the part of dh_prev through z * h_prev.
    The gradient reaching h[:, t+1] is dhs[:, t] + dh_direct (from the step after) + dh_rec
    (= dha[:, t+1] @ Wh.T). Reference: gru.gru_cell_backward."""
    for b in prange(dh_rec.shape[0]):
        gru_row_backward(dhs[b, t], dh_rec[b], dh_direct[b], h[b, t], gates[b, t], ha_n[b, t], dxa[b, t], dha[b, t])


# ---------------------------------------------------------------- softmax cross-entropy
@njit(parallel=True, **JIT)
def softmax_cross_entropy_kernel(logits, targets, probs, losses):
    """Writes softmax(logits) into probs (N, V) and each row's log p(target) into losses (N,)
    float64; returns the summed -log p(target) (float64). The rows run on the threads, and their
    losses are added in row order after: the same bits on any number of threads.
    Reference: layers.softmax_cross_entropy_forward (which returns the mean)."""
    N, V = logits.shape
    for n in prange(N):
        m = logits[n, 0]
        for v in range(1, V):
            m = max(m, logits[n, v])  # subtract the row max so exp cannot overflow
        s = 0.0
        for v in range(V):
            e = math.exp(logits[n, v] - m)
            probs[n, v] = e
            s += e
        inv = 1.0 / s
        for v in range(V):
            probs[n, v] *= inv
        losses[n] = logits[n, targets[n]] - m - math.log(s)
    total = 0.0
    for n in range(N):
        total -= losses[n]
    return total


@njit(parallel=True, **JIT)
def softmax_cross_entropy_backward_kernel(probs, targets, scale, dlogits):
    """dlogits = scale * (probs - onehot(targets)), the rows on the threads.
    Reference: layers.softmax_cross_entropy_backward."""
    N, V = probs.shape
    for n in prange(N):
        for v in range(V):
            dlogits[n, v] = scale * probs[n, v]
        dlogits[n, targets[n]] -= scale


# ---------------------------------------------------------------- embedding
SCATTER_COLUMNS = 256  # columns per task of the scatter-add: one 1 KB piece of a row


@njit(parallel=True, **JIT)
def scatter_rows_kernel(ids, dx, dP):
    """dP[k, ids[n, k]] += dx[n] for every row n and slot k, in order of n then k. ids (N, K),
    dx (N, G), dP (K, V, G) zeroed by the caller: the gradient of an embedding (K = 1) and of a
    first layer's lookups (layers.input_projection_backward). Reference: layers.embedding_backward.
    The threads split the columns: rows repeat, so splitting the rows would race."""
    N, G = dx.shape
    for task in prange((G + SCATTER_COLUMNS - 1) // SCATTER_COLUMNS):
        g0 = task * SCATTER_COLUMNS
        g1 = min(G, g0 + SCATTER_COLUMNS)
        for n in range(N):
            dx_row = dx[n, g0:g1]
            for k in range(ids.shape[1]):
                dP_row = dP[k, ids[n, k], g0:g1]  # slices: indexing dP[k, row, g] would not vectorise
                for g in range(dP_row.shape[0]):
                    dP_row[g] += dx_row[g]


@njit(parallel=True, **JIT)
def lookup_rows_kernel(ids, P, out):
    """out[n] = P[0, ids[n, 0]] + P[1, ids[n, 1]] + ..., slots in order: ids (N, K), P (K, V, G),
    out (N, G). A first layer's input projection (layers.input_projection). Parallel over rows,
    each written by one thread."""
    for n in prange(ids.shape[0]):
        row = out[n]
        copy_row(row, P[0, ids[n, 0]])
        for k in range(1, ids.shape[1]):
            src = P[k, ids[n, k]]
            for g in range(row.shape[0]):
                row[g] += src[g]


# ---------------------------------------------------------------- optimizer
@njit(parallel=True, **JIT)
def adam_kernel(p, g, m, v, beta1, beta2, step_size, v_correction, eps):
    """One Adam update of flat float32 arrays, in place, in a single pass over memory.
    Reference: optim.Adam.step. Parallel: every element is its own update (disjoint writes, no
    sums), so threads change nothing in the result; the pass is memory-bound."""
    # constants formed in float64 and rounded once, as numpy does with Python-float scalars
    # (1 - float32(0.999) would be off by 1e-5 relative)
    b1 = p.dtype.type(beta1)
    b2 = p.dtype.type(beta2)
    c1 = p.dtype.type(1.0 - beta1)
    c2 = p.dtype.type(1.0 - beta2)
    lr = p.dtype.type(step_size)
    vc = p.dtype.type(v_correction)
    ep = p.dtype.type(eps)
    for k in prange(p.size):
        gk = g[k]
        mk = b1 * m[k] + c1 * gk
        vk = b2 * v[k] + c2 * (gk * gk)
        m[k] = mk
        v[k] = vk
        p[k] -= lr * mk / (math.sqrt(vk) * vc + ep)


@njit(parallel=True, **JIT)
def threading_probe(x):
    """x[i] = i: an empty parallel region, run so that numba chooses its threading layer (threads.py)."""
    for i in prange(x.shape[0]):  # disjoint writes
        x[i] = i


# ---------------------------------------------------------------- matrix products
# C = A @ B as a register-tiled GEMM, the way BLAS libraries write theirs: B is first copied into
# panels of NR columns, Bp (P, K, NR), so the inner loop reads it front to back; then each task
# computes MR x NR tiles of C, keeping the sums in vector registers for the whole k loop. With
# AVX-512 a tile is 6 x 64: 24 zmm accumulators, and per k six broadcasts of A[i, k], four vector
# loads of Bp, 24 FMAs; with AVX2 4 x 24, 12 ymm accumulators; with SSE only 4 x 12 in 12 xmm
# (there are 16: wider tiles spill their sums to memory every k). The vectors are explicit LLVM vectors
# (_lanes_fma), so the width is the target's whatever LLVM's tuning prefers.
# Why not only numpy's OpenBLAS: which of the two trains a shape faster depends on the CPU and the
# BLAS build, so the backend measures it (calibrate.py); tests check the two agree.
MR, NR = (6, 64) if LANES == 16 else (4, 3 * LANES)  # tile: 24 zmm accumulators of 32, or 12 ymm (xmm) of 16
MC = 64  # rows of A per task: 64 x KB floats (32 KB) stay in cache
KB = 128  # k block: partial sums of at most KB products each (accuracy; see gemm_kernel)


@intrinsic
def _tile_scratch(typingctx):
    """float32[max(MR * NR, SAMPLE_SUMS)] on the stack, for the training tile's sums and the
    samplers' (_stream_tile). A fixed-size stack buffer indexed only by constants (the loops have
    constant trip counts and unroll) is promoted by LLVM into registers; a numba heap array is
    not, and then every FMA loads and stores its sum through L1."""
    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=max(MR * NR, SAMPLE_SUMS))
    return types.CPointer(types.float32)(), codegen


@intrinsic
def _lanes_fma(typingctx, acc, offset, A, i, k, Bp, p, j):
    """acc[offset : offset+LANES] += A[i, k] * Bp[p, k, j : j+LANES], as one multiply-add on an
    explicit LLVM vector of LANES floats. Why explicit: LLVM's tuning for Intel cores caps its
    vectoriser at 256 bits even where AVX-512 is present, and 64 sums in 256-bit registers do not
    fit; a vector type in the IR is kept at its width. llvm.fmuladd, not llvm.fma: fused wherever
    the CPU has FMA (every AVX2 and AVX-512 one), a multiply and an add where it has not, instead
    of a library call per lane. Bp (P, K, panel width) C-contiguous."""
    def codegen(context, builder, signature, args):
        acc_ptr, offset, A_, i_, k_, Bp_, p_, j_ = args
        a = builder.load(_pointer(context, builder, signature.args[2], A_, [i_, k_]))
        _fma_into(context, builder, acc_ptr, offset, a, signature.args[5], Bp_, [p_, k_, j_])
        return context.get_dummy_value()
    return types.void(acc, offset, A, i, k, Bp, p, j), codegen


def _fmuladd(builder, a, b, c):
    """a * b + c for float32 vectors of LANES lanes, by llvm.fmuladd (see _lanes_fma: fused where
    the CPU has FMA): the one multiply-add of the tiles and the samplers' products."""
    vec = _vector()
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fmuladd.v{LANES}f32")
    return builder.call(fma, [a, b, c])


def _fma_into(context, builder, acc_ptr, offset, a, Bp_ty, Bp, b_index):
    """The multiply-add of _lanes_fma, once A's float a is loaded: acc[offset : offset+LANES] +=
    a * the LANES floats of Bp from b_index on."""
    vec = _vector()
    b = builder.load(_vector_pointer(context, builder, Bp_ty, Bp, b_index), align=4)
    sums_ptr = builder.bitcast(builder.gep(acc_ptr, [offset]), vec.as_pointer())
    builder.store(_fmuladd(builder, _splat(builder, a, vec), b, builder.load(sums_ptr, align=4)), sums_ptr, align=4)


@intrinsic
def _lanes_store(typingctx, acc, offset, C, i, j, add):
    """C[i, j : j+LANES] = acc[offset : offset+LANES] (plus C's own values if add), as vectors
    where C's rows are contiguous (a 'C' array type); one element at a time otherwise. Why: the
    element-by-element stores LLVM makes of the sums otherwise extract each float from its
    register, ~4 instructions an element, a tenth of a 256-deep tile's time."""
    def codegen(context, builder, signature, args):
        acc_ptr, offset, C_, i_, j_, add_ = args
        C_ty = signature.args[2]
        if C_ty.layout == "C":
            vec = _vector()
            sums = builder.load(builder.bitcast(builder.gep(acc_ptr, [offset]), vec.as_pointer()), align=4)
            c_ptr = _vector_pointer(context, builder, C_ty, C_, [i_, j_])
            with builder.if_then(add_):
                builder.store(builder.fadd(sums, builder.load(c_ptr, align=4)), c_ptr, align=4)
            with builder.if_then(builder.not_(add_)):
                builder.store(sums, c_ptr, align=4)
        else:
            for lane in range(LANES):
                at = ir.Constant(offset.type, lane)
                s = builder.load(builder.gep(acc_ptr, [builder.add(offset, at)]))
                c_ptr = _pointer(context, builder, C_ty, C_, [i_, builder.add(j_, ir.Constant(j_.type, lane))])
                old = builder.load(c_ptr)
                builder.store(builder.select(add_, builder.fadd(s, old), s), c_ptr)
        return context.get_dummy_value()
    return types.void(acc, offset, C, i, j, add), codegen


@njit(inline="always", fastmath=CONTRACT, error_model="numpy")
def _gemm_tile(A, Bp, p, i0, rows, k0, k1, C, n_valid):
    """C[i0:i0+rows, p*NR : p*NR+n_valid] (+)= A[i0:i0+rows, k0:k1] @ panel p's rows k0:k1:
    assigned when k0 == 0, added otherwise. rows is MR, or 4, 2 or 1 for the rows left below the
    last full tile (the compiler specialises each: the argument is a constant at each call)."""
    acc = _tile_scratch()
    for x in range(MR * NR):
        acc[x] = np.float32(0.0)
    for k in range(k0, k1):
        for i in range(rows):
            for v in range(NR // LANES):
                _lanes_fma(acc, i * NR + v * LANES, A, i0 + i, k, Bp, p, v * LANES)
    if n_valid == NR:
        _store_sums(acc, C, i0, p * NR, rows, k0 != 0)
    else:  # the last panel is partly padding
        _store_through_copy(acc, C, i0, p * NR, rows, n_valid, k0 != 0)


@njit(inline="always", error_model="numpy")
def _store_sums(acc, C, i0, j0, rows, add):
    """C[i0 : i0+rows, j0 : j0+NR] = a tile's sums acc (plus C's own values if add), as vectors.
    rows must be a constant at the call: acc stays in registers only while every index into it is."""
    for i in range(rows):
        for v in range(NR // LANES):
            _lanes_store(acc, i * NR + v * LANES, C, i0 + i, j0 + v * LANES, add)


@njit(inline="always", error_model="numpy")
def _store_through_copy(acc, C, i0, j0, rows, n_valid, add):
    """C[i0 : i0+rows, j0 : j0+n_valid] = a tile's sums acc (plus C's own if add), for a tile that is
    partly padding: all MR x NR sums go to a second stack tile first, unconditionally (a store under
    `if j < n_valid`, or indexed by a count known only at run time, keeps acc out of registers)."""
    tile = _tile_scratch()
    for x in range(MR * NR):
        tile[x] = acc[x]
    for i in range(rows):
        for j in range(n_valid):
            C[i0 + i, j0 + j] = C[i0 + i, j0 + j] + tile[i * NR + j] if add else tile[i * NR + j]


@njit(parallel=True, **JIT)
def pack_panels_kernel(B, Bp):
    """Bp[p, k, j] = B[k, p*W + j], zero past B's last column. B (K, N) any strides -> Bp (P, K, W):
    W = NR for B's panels; W = MR, with B = A.T, for A's strips (gemm_packed_strided).

    The loops follow B's memory order. Row-major B (an activation gradient, 2048 x 1024): row k is
    read once, front to back, and dealt out to the P panels; parallel over blocks of rows, each
    writing its own rows of every panel. Going panel by panel instead reads 256 bytes from every
    row, a new page each time, and ran at 6 GB/s. Column-major B (a transposed weight, Wh.T):
    panel by panel, each column of B read front to back; parallel over panels."""
    K, N = B.shape
    P, W = Bp.shape[0], Bp.shape[2]
    full = N // W  # panels with no padding
    if B.strides[1] <= B.strides[0]:
        for kb in prange((K + 63) // 64):
            for k in range(kb * 64, min(K, kb * 64 + 64)):
                for p in range(full):
                    for j in range(W):
                        Bp[p, k, j] = B[k, p * W + j]
                for p in range(full, P):
                    for j in range(W):
                        Bp[p, k, j] = B[k, p * W + j] if p * W + j < N else np.float32(0.0)
    else:
        for p in prange(P):
            for j in range(W):
                col = p * W + j
                if col < N:
                    for k in range(K):
                        Bp[p, k, j] = B[k, col]
                else:
                    for k in range(K):
                        Bp[p, k, j] = np.float32(0.0)


@njit(inline="always", fastmath=CONTRACT, error_model="numpy")
def _gemm_panel_rows(A, Bp, p, r0, r1, C):
    """C[r0:r1, panel p's columns] = A[r0:r1] @ panel p: the k blocks, each through tiles of MR
    rows and then of 4, 2 and 1 for the rows left below the last full tile."""
    K = A.shape[1]
    n_valid = min(NR, C.shape[1] - p * NR)
    for k0 in range(0, max(K, 1), KB):  # K = 0 still assigns the zero product
        k1 = min(K, k0 + KB)
        i0 = r0
        while i0 + MR <= r1:
            _gemm_tile(A, Bp, p, i0, MR, k0, k1, C, n_valid)
            i0 += MR
        if MR > 4 and r1 - i0 >= 4:  # constant heights: the compiler specialises each; with MR = 4
            # fewer than 4 rows are left, and the constant test drops that copy before numba inlines it
            _gemm_tile(A, Bp, p, i0, 4, k0, k1, C, n_valid)
            i0 += 4
        if r1 - i0 >= 2:
            _gemm_tile(A, Bp, p, i0, 2, k0, k1, C, n_valid)
            i0 += 2
        if r1 - i0 >= 1:
            _gemm_tile(A, Bp, p, i0, 1, k0, k1, C, n_valid)


@njit(parallel=True, fastmath=CONTRACT, **JIT)
def gemm_kernel(A, Bp, C):
    """C = A @ B: A (M, K) float32 any strides, B packed as Bp (P, K, NR) by pack_panels_kernel,
    C (M, N) with N <= P*NR. Reference: numpy's A @ B (tests/test_gemm.py).

    Tasks are (group of MC rows, panel) pairs, row-group-major: a group's rows of A (32 KB at
    KB = 128) stay in cache while the thread runs through the panels, and each panel slice is
    reused by the group's MC / MR tiles. At M = 32 (one recurrent step) there is one group, so
    two threads split the panels and each keeps its half of the weights in its own L2 from one
    step to the next. Every task writes only its own block of C.
    The sum over k runs in blocks of KB, each block's partial sums added to C: one long running sum
    over 2048 terms (a weight gradient's) is 4x less accurate than numpy's blocked BLAS; and a
    block's slice of a panel (KB x NR floats, 32 KB) stays in L1 while the group's tiles reuse it."""
    M = A.shape[0]
    P = Bp.shape[0]
    groups = (M + MC - 1) // MC
    for task in prange(groups * P):
        g = task // P
        _gemm_panel_rows(A, Bp, task - g * P, g * MC, min(M, g * MC + MC), C)


@njit(**JIT)
def gemm_strided(A, Bp, C):
    """gemm_kernel(A, Bp, C) for A of any layout through one compiled gemm_kernel, the version for
    strided A that the time loops use too (A[:, :] is typed strided): numba compiles a kernel once
    per layout of its arguments, and gemm_kernel takes the longest of all (~8 s a layout)."""
    gemm_kernel(A[:, :], Bp, C)


@njit(fastmath=CONTRACT, **JIT)
def gemm_rows(A, Bp, C, r0, r1):
    """C[r0:r1] = A[r0:r1] @ B on the calling thread (the row-split loops below): gemm_kernel's
    arithmetic, so each row's sums are the same bits whichever thread computes them."""
    for p in range(Bp.shape[0]):
        _gemm_panel_rows(A, Bp, p, r0, r1, C)


# A product whose A is a transposed activation (a weight gradient, X.T @ dA) reads each k's MR
# values from a different row of X, a few cache sets apart; packing A first, as BLAS libraries do
# (Ap[t, k, i] = A[t*MR + i, k]: A.T's panels of MR columns), makes a tile's broadcasts one stream in order. The copy pays only
# where many panels reuse it: gemm.py packs a product's A where calibrate.py measured it faster.
# The sums are gemm_kernel's, the same FMAs in the same order, so packing never changes a bit.
@intrinsic
def _packed_fma(typingctx, acc, offset, Ap, t, k, i, Bp, p, j):
    """acc[offset : offset+LANES] += Ap[t, k, i] * Bp[p, k, j : j+LANES]: _lanes_fma with A packed
    (Ap (T, K, MR) and Bp (P, K, NR) C-contiguous)."""
    def codegen(context, builder, signature, args):
        acc_ptr, offset, Ap_, t_, k_, i_, Bp_, p_, j_ = args
        a = builder.load(_pointer(context, builder, signature.args[2], Ap_, [t_, k_, i_]))
        _fma_into(context, builder, acc_ptr, offset, a, signature.args[6], Bp_, [p_, k_, j_])
        return context.get_dummy_value()
    return types.void(acc, offset, Ap, t, k, i, Bp, p, j), codegen


@njit(inline="always", fastmath=CONTRACT, error_model="numpy")
def _gemm_packed_tile(Ap, t, Bp, p, k0, k1, C, n_valid):
    """_gemm_tile for the MR rows of packed tile t: C[t*MR : ..., panel p's columns] (+)= the k0:k1
    block; rows past C's last (Ap's zero padding) are not stored."""
    acc = _tile_scratch()
    for x in range(MR * NR):
        acc[x] = np.float32(0.0)
    for k in range(k0, k1):
        for i in range(MR):
            for v in range(NR // LANES):
                _packed_fma(acc, i * NR + v * LANES, Ap, t, k, i, Bp, p, v * LANES)
    rows = min(MR, C.shape[0] - t * MR)
    if rows == MR and n_valid == NR:
        _store_sums(acc, C, t * MR, p * NR, MR, k0 != 0)
    else:  # the last panel, or the last rows: partly padding
        _store_through_copy(acc, C, t * MR, p * NR, rows, n_valid, k0 != 0)


@njit(parallel=True, fastmath=CONTRACT, **JIT)
def gemm_packed_kernel(Ap, Bp, C):
    """C = A @ B from A packed as A.T's MR-column panels (Ap) and B as its NR-column ones (Bp): gemm_kernel's
    tasks, k blocks and sums, bit for bit. C (M, N) C-contiguous. Reference: numpy's A @ B."""
    T, K = Ap.shape[0], Ap.shape[1]
    P = Bp.shape[0]
    per = max(1, MC // MR)  # packed tiles per task: about MC rows
    groups = (T + per - 1) // per
    for task in prange(groups * P):
        g = task // P
        p = task - g * P
        n_valid = min(NR, C.shape[1] - p * NR)
        for k0 in range(0, max(K, 1), KB):  # K = 0 still assigns the zero product
            k1 = min(K, k0 + KB)
            for t in range(g * per, min(T, g * per + per)):
                _gemm_packed_tile(Ap, t, Bp, p, k0, k1, C, n_valid)


@njit(**JIT)
def gemm_packed_strided(A, Ap, Bp, C):
    """C = A @ B with A packed into Ap (ceil(M / MR), K, MR) first (Ap[t, k, i] = A[t*MR + i, k],
    zero past A's last row), through one compiled packing whatever A's layout (as gemm_strided)."""
    pack_panels_kernel(A[:, :].T, Ap)
    gemm_packed_kernel(Ap, Bp, C)


# ---------------------------------------------------------------- whole sequences
# The time loops of layers.py's rnn/lstm/gru forward and backward, for when the weights are packed
# for the tiles (gemm.py): per step the products and one step kernel, with no Python in between.
# Reference: the same loops in layers.py, which run when BLAS does the products.
# Shapes: x (B, T, D), h (B, T+1, H), the step's scratch xa_t, ha (B, G); W*p packed panels.
# Forward, the input projection x_t @ Wx is computed step by step into a (B, G) scratch, not as
# one (B*T, G) product before the loop: its results are used while they are still in cache.
# A first layer reads ids instead (layers.Embedded): x is then ids (B, T) and Wxp the table's
# product P = table @ Wx (V, G), and the step's projection is a row lookup (project_step).


def project_step(x, Wxp, t, xa_t):
    """xa_t = x_t @ Wx (B, G), the product split by panels over the threads: x (B, T, D) with Wxp
    packed panels, or x ids (B, T) with Wxp = P (V, G), whose rows are looked up. Compiled only
    (the loops below call it; numba picks the version by the types, see _project_step)."""
    raise NotImplementedError("project_step runs inside the compiled time loops only")


def project_rows(x, Wxp, t, xa_t, r0, r1):
    """project_step for the rows r0:r1 only, on the calling thread (the row-split loops)."""
    raise NotImplementedError("project_rows runs inside the compiled time loops only")


@overload(project_step)
def _project_step(x, Wxp, t, xa_t):
    if x.ndim == 2:  # ids: the rows of P (from row int64(0), the row loops' type: one compiled _lookup_rows)
        return lambda x, Wxp, t, xa_t: _lookup_rows(x, Wxp, t, xa_t, np.int64(0), xa_t.shape[0])
    return lambda x, Wxp, t, xa_t: gemm_kernel(x[:, t], Wxp, xa_t)


@overload(project_rows)
def _project_rows(x, Wxp, t, xa_t, r0, r1):
    if x.ndim == 2:
        return lambda x, Wxp, t, xa_t, r0, r1: _lookup_rows(x, Wxp, t, xa_t, r0, r1)
    return lambda x, Wxp, t, xa_t, r0, r1: gemm_rows(x[:, t], Wxp, xa_t, r0, r1)


@njit(**JIT)
def _lookup_rows(ids, P, t, xa_t, r0, r1):
    """xa_t[b] = P[ids[b, t]] for b in r0:r1: a first layer's input projection at step t."""
    for b in range(r0, r1):
        copy_row(xa_t[b], P[ids[b, t]])


@njit(**JIT)
def rnn_forward_loop(x, Wxp, bias, Whp, h, xa_t, ha, code):
    """rnn_forward's time loop: x (B, T, D), Wxp, Whp packed Wx (D, H), Wh (H, H) (or x ids (B, T),
    Wxp = table @ Wx: see project_step); bias (H,);
    h (B, T+1, H) with h[:, 0] set, filled in; xa_t, ha (B, H) scratch."""
    for t in range(x.shape[1]):
        project_step(x, Wxp, t, xa_t)  # xa_t = x_t @ Wx
        gemm_kernel(h[:, t], Whp, ha)  # ha = h_{t-1} @ Wh
        rnn_step_forward_kernel(t, xa_t, bias, ha, h, code)


@njit(**JIT)
def rnn_backward_loop(dhs, dh_rec, h, da, WhTp, code):
    """rnn_backward's time loop, last step first: dhs (B, T, H), dh_rec (B, H) in: the gradient into
    the carried state, out: dh0; h (B, T+1, H); da (B, T, H) filled in; WhTp packed Wh.T (H, H)."""
    for t in range(da.shape[1] - 1, -1, -1):
        rnn_step_backward_kernel(t, dhs, dh_rec, h, da, code)
        gemm_kernel(da[:, t], WhTp, dh_rec)  # forward: a_t = ... + h_{t-1} @ Wh


@njit(**JIT)
def lstm_forward_loop(x, Wxp, bias, Whp, h, c, gates, tanh_c, xa_t, ha):
    """lstm_forward's time loop: x (B, T, D), Wxp, Whp packed Wx (D, 4H), Wh (H, 4H) (or x ids
    (B, T), Wxp = table @ Wx: see project_step); bias (4H,);
    h, c (B, T+1, H) with step 0 set; gates (B, T, 4H), tanh_c (B, T, H) filled in; xa_t, ha (B, 4H) scratch."""
    for t in range(x.shape[1]):
        project_step(x, Wxp, t, xa_t)  # xa_t = x_t @ Wx
        gemm_kernel(h[:, t], Whp, ha)  # ha = h_{t-1} @ Wh
        lstm_step_forward_kernel(t, xa_t, bias, ha, h, c, gates, tanh_c)


@njit(**JIT)
def lstm_backward_loop(dhs, dh_rec, dc, c, gates, tanh_c, da, WhTp):
    """lstm_backward's time loop, last step first: dhs (B, T, H); dh_rec, dc (B, H) in: the
    gradients into the carried state, out: dh0, dc0; c (B, T+1, H); gates (B, T, 4H); tanh_c
    (B, T, H); da (B, T, 4H) filled in; WhTp packed Wh.T (4H, H)."""
    for t in range(da.shape[1] - 1, -1, -1):
        lstm_step_backward_kernel(t, dhs, dh_rec, dc, c, gates, tanh_c, da)
        gemm_kernel(da[:, t], WhTp, dh_rec)  # forward: a_t = ... + h_{t-1} @ Wh


@njit(**JIT)
def gru_forward_loop(x, Wxp, bias, Whp, h, gates, ha_n, xa_t, ha):
    """gru_forward's time loop: x (B, T, D), Wxp, Whp packed Wx (D, 3H), Wh (H, 3H) (or x ids
    (B, T), Wxp = table @ Wx: see project_step); bias (3H,);
    h (B, T+1, H) with h[:, 0] set; gates (B, T, 3H), ha_n (B, T, H) filled in; xa_t, ha (B, 3H) scratch."""
    for t in range(x.shape[1]):
        project_step(x, Wxp, t, xa_t)  # xa_t = x_t @ Wx
        gemm_kernel(h[:, t], Whp, ha)  # ha = h_{t-1} @ Wh
        gru_step_forward_kernel(t, xa_t, bias, ha, h, gates, ha_n)


@njit(**JIT)
def gru_backward_loop(dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha, WhTp):
    """gru_backward's time loop, last step first: dhs (B, T, H); dh_rec, dh_direct (B, H) (the two
    parts of the gradient into h_prev; see gru_step_backward_kernel); h (B, T+1, H); gates
    (B, T, 3H); ha_n (B, T, H); dxa, dha (B, T, 3H) filled in; WhTp packed Wh.T (3H, H)."""
    for t in range(dha.shape[1] - 1, -1, -1):
        gru_step_backward_kernel(t, dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha)
        gemm_kernel(dha[:, t], WhTp, dh_rec)  # forward: ha = h_prev @ Wh

# The same loops split by batch rows instead: the rows of a sequence never meet until the weight
# gradients, so each of `parts` threads runs the whole time loop for its own rows, with one
# parallel region per sequence instead of two or three per step. Each thread then reads all of
# the weights every step, not half; which split trains a shape faster is measured (calibrate.py).
# Same arithmetic as the loops above, bit for bit (tests/test_kernels.py).
@njit(inline="always")
def _rows_of(part, parts, B):
    return part * B // parts, (part + 1) * B // parts


@njit(parallel=True, **JIT)
def rnn_forward_rows(x, Wxp, bias, Whp, h, xa_t, ha, code, parts):
    """rnn_forward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, x.shape[0])
        for t in range(x.shape[1]):
            project_rows(x, Wxp, t, xa_t, b0, b1)
            gemm_rows(h[:, t], Whp, ha, b0, b1)
            for b in range(b0, b1):
                rnn_row_forward(xa_t[b], bias, ha[b], h[b, t + 1], code)


@njit(parallel=True, **JIT)
def rnn_backward_rows(dhs, dh_rec, h, da, WhTp, code, parts):
    """rnn_backward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, dhs.shape[0])
        for t in range(da.shape[1] - 1, -1, -1):
            for b in range(b0, b1):
                rnn_row_backward(dhs[b, t], dh_rec[b], h[b, t + 1], da[b, t], code)
            gemm_rows(da[:, t], WhTp, dh_rec, b0, b1)


@njit(parallel=True, **JIT)
def lstm_forward_rows(x, Wxp, bias, Whp, h, c, gates, tanh_c, xa_t, ha, parts):
    """lstm_forward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, x.shape[0])
        for t in range(x.shape[1]):
            project_rows(x, Wxp, t, xa_t, b0, b1)
            gemm_rows(h[:, t], Whp, ha, b0, b1)
            for b in range(b0, b1):
                lstm_row_forward(xa_t[b], bias, ha[b], c[b, t], c[b, t + 1], h[b, t + 1], gates[b, t], tanh_c[b, t])


@njit(parallel=True, **JIT)
def lstm_backward_rows(dhs, dh_rec, dc, c, gates, tanh_c, da, WhTp, parts):
    """lstm_backward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, dhs.shape[0])
        for t in range(da.shape[1] - 1, -1, -1):
            for b in range(b0, b1):
                lstm_row_backward(dhs[b, t], dh_rec[b], dc[b], c[b, t], gates[b, t], tanh_c[b, t], da[b, t])
            gemm_rows(da[:, t], WhTp, dh_rec, b0, b1)


@njit(parallel=True, **JIT)
def gru_forward_rows(x, Wxp, bias, Whp, h, gates, ha_n, xa_t, ha, parts):
    """gru_forward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, x.shape[0])
        for t in range(x.shape[1]):
            project_rows(x, Wxp, t, xa_t, b0, b1)
            gemm_rows(h[:, t], Whp, ha, b0, b1)
            for b in range(b0, b1):
                gru_row_forward(xa_t[b], bias, ha[b], h[b, t], h[b, t + 1], gates[b, t], ha_n[b, t])


@njit(parallel=True, **JIT)
def gru_backward_rows(dhs, dh_rec, dh_direct, h, gates, ha_n, dxa, dha, WhTp, parts):
    """gru_backward_loop, each of `parts` threads over its own batch rows."""
    for part in prange(parts):
        b0, b1 = _rows_of(part, parts, dhs.shape[0])
        for t in range(dha.shape[1] - 1, -1, -1):
            for b in range(b0, b1):
                gru_row_backward(dhs[b, t], dh_rec[b], dh_direct[b], h[b, t], gates[b, t], ha_n[b, t], dxa[b, t], dha[b, t])
            gemm_rows(dha[:, t], WhTp, dh_rec, b0, b1)

# ================================================================ sampling
# One call of recurrent_sample_kernel / mlp_sample_kernel runs a whole block of characters: every
# layer's step, the head, temperature, top-k, top-p, softmax and the draw, so no Python runs per
# character (the *_batch_* kernels at the end do the same for several streams at once).
# sampler.py lays the weights out (RecurrentNet, MLPNet) and documents the equivalence with the
# numpy sampler (charnn.sampling.reference_steps), which is these kernels' reference. They work in
# float32 throughout, and step each block of hidden units with the training row kernels above
# (the block's slices are laid out as a batch row's: gate blocks of w units), so each cell's math
# is written once, with one exception (lstm_block_forward, which says why).

# ---------------------------------------------------------------- kernels: linear algebra
# The samplers' products x @ W read W laid out in vector panels (pack_panels_kernel with panels of
# PANEL = PV vectors, Wp (P, D, PANEL)), and keep their sums in registers from the first row to
# the last, so a row costs its loads and multiply-adds and no load or store of a sum.
# - matvec (one stream, _panel_sums) covers a whole panel a pass: PV = 8 chains hide the
#   multiply-add's latency (~4 cycles, 2 a cycle), and W's vectors, used once, stay operands of the
#   multiply-adds. Its eight sums are named, not a tile (below): the tile's dispatch over counts of
#   vectors costs numba reference counting in the panel loop, ~50 ns a panel, 15-20% of a small
#   block's product (bench/README.md, "2026-12-07 (thirteenth session)").
# - batch_matvec (S streams, _stream_tile) takes SAMPLE_GROUP streams at a time and covers a panel
#   in passes as wide as the registers allow (SAMPLE_PASS): each vector of W loaded serves every
#   stream of the group, and 4 streams x 3 vectors (AVX2; 6 x 4 with AVX-512) keep 12 (24) chains
#   in flight where pairs of streams kept 8: 0.7-0.8x the time (same section).
# - numba's inline="always" inlines at the level of numba's own IR, in time that grows faster than
#   the function it inlines into, and before it can drop a branch that tests an argument: with a
#   copy of _panel_sums for each count of vectors a panel may hold, eight, matvec and batch_matvec
#   took most of the sampling kernels' compile time. So a partial last panel takes its count as a
#   value (_panel_into: two copies), the loads and stores of sums are intrinsics (_get, _set), and
#   each count of streams has its own _panel_rows_of, whose constant pass width drops the counts
#   it never meets first. Nothing there is a call: a call with arrays costs numba's reference
#   counts (atomic), which two threads sharing the arrays contend for (bench/README.md,
#   "eighteenth session", "nineteenth session").
# Every sum is one chain in row order, out[j] = (...(x[0] W[0, j] + x[1] W[1, j]) + ...) + x[D-1] W[D-1, j],
# one multiply-add a row (fused where the CPU has FMA): matvec and batch_matvec give the same bits.
PV = 8  # vectors per panel (a0..a7 in _panel_sums)
PANEL = PV * LANES  # columns per panel
KC = max(1, 8192 // PANEL)  # rows of a panel (32 KB) that batch_matvec's groups of streams share from L1
REGISTERS = 32 if LANES == 16 else 16  # vector registers: 32 with AVX-512, 16 with AVX2 or SSE


def _pass_width(rows: int) -> int:
    """Vectors of a panel one pass of _stream_tile covers for `rows` streams: its rows x nv sums,
    the row's nv vectors of W (shared by the streams) and one broadcast x fit in the registers,
    and the panel's PV vectors split into passes of equal width. One stream: the whole panel."""
    if rows == 1:
        return PV
    most = max(1, min(PV, (REGISTERS - 1) // (rows + 1)))
    passes = -(-PV // most)
    return -(-PV // passes)


SAMPLE_PASS = tuple(_pass_width(rows) for rows in range(1, PV + 1))  # [rows - 1]: AVX2 8 4 3 3 2 2 1 1
SAMPLE_GROUP = max(range(1, PV + 1), key=lambda rows: rows * SAMPLE_PASS[rows - 1])  # streams a tile: the most sums
SAMPLE_SUMS = max(rows * SAMPLE_PASS[rows - 1] for rows in range(1, PV + 1)) * LANES  # floats of a tile's sums


def _whole_or_masked(context, builder, ty, out, index, whole, part):
    """Emits whole() where out holds LANES floats from out[index] on along its last axis, part(n)
    with n = the floats left (fewer: the last, partial vector) otherwise; returns the value of the
    branch taken (None if they return none)."""
    shape = cgutils.unpack_tuple(builder, context.make_array(ty)(context, builder, out).shape)
    n = builder.sub(shape[-1], index[-1])
    with builder.if_else(builder.icmp_signed(">=", n, ir.Constant(n.type, LANES))) as (then, otherwise):
        with then:
            a, a_block = whole(), builder.block
        with otherwise:
            b, b_block = part(n), builder.block
    if a is None:
        return None
    phi = builder.phi(a.type)
    phi.add_incoming(a, a_block)
    phi.add_incoming(b, b_block)
    return phi


def _sums_and_row(context, builder, signature, args, to_row):
    """Moves LANES sums between acc[offset:] and out[s, j : j+LANES]: a plain load or store where
    out has LANES columns from j on, a masked one (lanes past out's end: 0 loaded, left alone) for
    the last, partial vector."""
    acc, offset, out, s, j = args
    ty = signature.args[2]
    vec = _vector()
    sums = builder.bitcast(builder.gep(acc, [offset]), vec.as_pointer())

    def whole():
        row = _vector_pointer(context, builder, ty, out, [s, j])
        if to_row:
            builder.store(builder.load(sums, align=4), row, align=4)
        else:
            builder.store(builder.load(row, align=4), sums, align=4)

    def part(n):
        function, operands = _masked(context, builder, "store" if to_row else "load", ty, out, [s, j], n)
        if to_row:
            builder.call(function, [builder.load(sums, align=4)] + operands)
        else:
            builder.store(builder.call(function, operands + [ir.Constant(vec, None)]), sums, align=4)
    _whole_or_masked(context, builder, ty, out, [s, j], whole, part)
    return context.get_dummy_value()


def _row_type(out):
    """out, checked while typing: the sums' rows are a C-contiguous float32 (S, M) array."""
    if not (isinstance(out, types.Array) and out.ndim == 2 and out.dtype == types.float32 and out.layout == "C"):
        raise TypingError(f"the products' sums go to a C-contiguous 2-D float32 array, not {out}")
    return out


@intrinsic
def _sums_from(typingctx, acc, offset, out, s, j):
    """acc[offset : offset+LANES] = out[s, j : j+LANES] (see _sums_and_row)."""
    def codegen(context, builder, signature, args):
        return _sums_and_row(context, builder, signature, args, to_row=False)
    return types.void(acc, offset, _row_type(out), types.intp, types.intp), codegen


@intrinsic
def _sums_to(typingctx, acc, offset, out, s, j):
    """out[s, j : j+LANES] = acc[offset : offset+LANES], out's own columns only (see _sums_and_row)."""
    def codegen(context, builder, signature, args):
        return _sums_and_row(context, builder, signature, args, to_row=True)
    return types.void(acc, offset, _row_type(out), types.intp, types.intp), codegen


@intrinsic
def _sums_zero(typingctx, acc, offset):
    """acc[offset : offset+LANES] = 0."""
    def codegen(context, builder, signature, args):
        builder.store(ir.Constant(_vector(), None), builder.bitcast(builder.gep(args[0], [args[1]]), _vector().as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(acc, offset), codegen


@intrinsic
def muladd(typingctx, x, v, acc):
    """acc + x * v lane by lane (x a float, v and acc Lanes), by llvm.fmuladd: one fused
    multiply-add where the CPU has FMA, a multiply and an add where it has not."""
    def codegen(context, builder, signature, args):
        x_ = _splat(builder, context.cast(builder, args[0], signature.args[0], types.float32), _vector())
        return _fmuladd(builder, x_, args[1], args[2])
    if isinstance(v, Lanes) and v == acc and v.dtype == types.float32 and isinstance(x, types.Float):
        return acc(x, v, acc), codegen


@intrinsic
def zero_lanes(typingctx):
    """float32 Lanes of zeros."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_vector(), None)
    return Lanes(types.float32)(), codegen


@intrinsic
def _get(typingctx, out, j):
    """out[j : j+LANES] as Lanes, the lanes past out's end zero: a plain load where the vector is
    whole, a masked one only for the last, partial vector. An intrinsic, not an inlined function:
    numba's inlining costs compile time for each of the many places these are used."""
    def codegen(context, builder, signature, args):
        ty, (out_, j_) = signature.args[0], args

        def whole():
            return builder.load(_vector_pointer(context, builder, ty, out_, [j_]), align=4)

        def part(n):
            load, operands = _masked(context, builder, "load", ty, out_, [j_], n)
            return builder.call(load, operands + [ir.Constant(_vector(ty.dtype), None)])
        return _whole_or_masked(context, builder, ty, out_, [j_], whole, part)
    return Lanes(_lanes_array(out).dtype)(out, types.intp), codegen


@intrinsic
def _set(typingctx, out, j, v):
    """out[j : j+LANES] = v, the lanes past out's end left alone (a plain store where whole)."""
    def codegen(context, builder, signature, args):
        ty, (out_, j_, v_) = signature.args[0], args

        def whole():
            builder.store(v_, _vector_pointer(context, builder, ty, out_, [j_]), align=4)

        def part(n):
            store, operands = _masked(context, builder, "store", ty, out_, [j_], n)
            builder.call(store, [v_] + operands)
        _whole_or_masked(context, builder, ty, out_, [j_], whole, part)
        return context.get_dummy_value()
    return types.void(out, types.intp, Lanes(_lanes_array(out).dtype)), codegen


@njit(inline="always", error_model="numpy")
def _panel_sums(x, Wp, p, k0, k1, out, nv):
    """out[j0 : j0 + the panel's valid columns] (+)= x[k0:k1] @ panel p's rows k0:k1, j0 = p*PANEL:
    assigned when k0 == 0, continued from out's values otherwise (the same chain: a float32 stored
    and loaded back is the same number). nv (1..PV) vectors of the panel hold valid columns: PV, a
    constant, for a whole panel, so its sums stay in registers; a value for a partial one (see
    _panel_into)."""
    j0 = p * PANEL
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero_lanes()
    if k0 > 0:
        a0 = _get(out, j0)
        if nv > 1: a1 = _get(out, j0 + LANES)  # one line a vector
        if nv > 2: a2 = _get(out, j0 + 2 * LANES)
        if nv > 3: a3 = _get(out, j0 + 3 * LANES)
        if nv > 4: a4 = _get(out, j0 + 4 * LANES)
        if nv > 5: a5 = _get(out, j0 + 5 * LANES)
        if nv > 6: a6 = _get(out, j0 + 6 * LANES)
        if nv > 7: a7 = _get(out, j0 + 7 * LANES)
    xs, rows = x[k0:k1], Wp[p, k0:k1]  # indexed from 0: no wraparound arithmetic for k in the loop
    for i in range(k1 - k0):
        row = rows[i]  # (PANEL,)
        xk = xs[i]
        a0 = muladd(xk, lanes(row, 0, LANES), a0)
        if nv > 1: a1 = muladd(xk, lanes(row, LANES, LANES), a1)
        if nv > 2: a2 = muladd(xk, lanes(row, 2 * LANES, LANES), a2)
        if nv > 3: a3 = muladd(xk, lanes(row, 3 * LANES, LANES), a3)
        if nv > 4: a4 = muladd(xk, lanes(row, 4 * LANES, LANES), a4)
        if nv > 5: a5 = muladd(xk, lanes(row, 5 * LANES, LANES), a5)
        if nv > 6: a6 = muladd(xk, lanes(row, 6 * LANES, LANES), a6)
        if nv > 7: a7 = muladd(xk, lanes(row, 7 * LANES, LANES), a7)
    _set(out, j0, a0)
    if nv > 1: _set(out, j0 + LANES, a1)
    if nv > 2: _set(out, j0 + 2 * LANES, a2)
    if nv > 3: _set(out, j0 + 3 * LANES, a3)
    if nv > 4: _set(out, j0 + 4 * LANES, a4)
    if nv > 5: _set(out, j0 + 5 * LANES, a5)
    if nv > 6: _set(out, j0 + 6 * LANES, a6)
    if nv > 7: _set(out, j0 + 7 * LANES, a7)


@njit(inline="always", error_model="numpy")
def _panel_into(x, Wp, p, k0, k1, out):
    """_panel_sums for panel p: its count of valid vectors a constant for a whole panel (PV: every
    panel but perhaps the last), a value for a partial one (its branches taken the same way at
    every row; two copies inlined, not eight, and no call: see the note above)."""
    nv = min(PV, (out.shape[0] - p * PANEL + LANES - 1) // LANES)
    if nv == PV:
        _panel_sums(x, Wp, p, k0, k1, out, PV)
    else:
        _panel_sums(x, Wp, p, k0, k1, out, nv)


@njit(inline="always", fastmath=CONTRACT, error_model="numpy")
def _stream_tile(X, s0, rows, Wp, p, v0, nv, k0, k1, out):
    """out[s0 : s0+rows, j0 : j0 + nv*LANES] (+)= X[s0 : s0+rows, k0:k1] @ panel p's rows k0:k1, its
    vectors v0 .. v0+nv-1 (j0 = p*PANEL + v0*LANES; columns past out's end are left alone): assigned
    when k0 == 0, continued from out's values otherwise (the same chain: a float32 stored and loaded
    back is the same number). X (S, D), out (S, M). rows (2 .. SAMPLE_GROUP) and nv are constants
    at each call (see _panel_rows_of), so the loops unroll and the rows x nv sums stay in registers."""
    acc = _tile_scratch()
    j0 = p * PANEL + v0 * LANES
    for i in range(rows):
        for v in range(nv):
            if k0 > 0:
                _sums_from(acc, (i * nv + v) * LANES, out, s0 + i, j0 + v * LANES)
            else:
                _sums_zero(acc, (i * nv + v) * LANES)
    for k in range(k0, k1):
        for i in range(rows):
            for v in range(nv):
                _lanes_fma(acc, (i * nv + v) * LANES, X, s0 + i, k, Wp, p, (v0 + v) * LANES)
    for i in range(rows):
        for v in range(nv):
            _sums_to(acc, (i * nv + v) * LANES, out, s0 + i, j0 + v * LANES)


def _panel_rows_of(rows):
    """_stream_tile over panel p for the streams s0 .. s0+rows-1 (2 <= rows <= PV), in
    passes of SAMPLE_PASS[rows - 1] vectors; the last panel may hold fewer vectors of valid
    columns, and each count is a constant at its call. One function for each count of streams, its
    pass width a constant of its own, so the counts a pass never has are dropped before numba
    inlines anything: inlining costs compile time per copy (see the note above). Inlined, not
    called: a call per panel and group costs numba's reference counts of its arrays, atomic, which
    two threads sharing them contend for."""
    width = SAMPLE_PASS[rows - 1]

    @njit(inline="always", error_model="numpy")
    def panel_rows(X, s0, Wp, p, k0, k1, out):
        nvp = min(PV, (out.shape[1] - p * PANEL + LANES - 1) // LANES)
        for v0 in range(0, nvp, width):
            nv = min(width, nvp - v0)
            if nv == width:
                _stream_tile(X, s0, rows, Wp, p, v0, width, k0, k1, out)
            elif width > 1 and nv == 1:
                _stream_tile(X, s0, rows, Wp, p, v0, 1, k0, k1, out)
            elif width > 2 and nv == 2:
                _stream_tile(X, s0, rows, Wp, p, v0, 2, k0, k1, out)
            elif width > 3 and nv == 3:
                _stream_tile(X, s0, rows, Wp, p, v0, 3, k0, k1, out)
            elif width > 4 and nv == 4:
                _stream_tile(X, s0, rows, Wp, p, v0, 4, k0, k1, out)
            elif width > 5 and nv == 5:
                _stream_tile(X, s0, rows, Wp, p, v0, 5, k0, k1, out)
            elif width > 6 and nv == 6:
                _stream_tile(X, s0, rows, Wp, p, v0, 6, k0, k1, out)
            elif width > 7 and nv == 7:
                _stream_tile(X, s0, rows, Wp, p, v0, 7, k0, k1, out)
    return panel_rows


_group_rows = _panel_rows_of(SAMPLE_GROUP)
_rows2, _rows3, _rows4, _rows5, _rows6, _rows7 = (_panel_rows_of(rows) for rows in range(2, 8))  # fewer than a group


@njit(fastmath=CONTRACT, **JIT)
def matvec(x, Wp, out):
    """out = x @ W: x (D,), W (D, M) as its vector panels Wp (P, D, PANEL) (P >= M / PANEL, zero
    past column M) -> out (M,), float32, each sum a chain in row order. Reference: numpy's x @ W."""
    for p in range((out.shape[0] + PANEL - 1) // PANEL):
        _panel_into(x, Wp, p, 0, x.shape[0], out)


# ---------------------------------------------------------------- kernels: the head and the draw
@njit(**JIT)
def head_kernel(h, W, b, logits):
    """logits = h @ W + b: h (H,), W (H, V) as its vector panels, b (V,) -> logits (V,)."""
    matvec(h, W, logits)
    for j in range(logits.shape[0]):
        logits[j] += b[j]


@njit(**JIT)
def kth_largest(z, k, top):
    """The k-th largest value of z (V,), counting repeats, as np.partition(z, -k)[-k]: an insertion
    sort of the k largest into top (V,) scratch. (Loops, not np.sort: they compile in a fraction
    of the time.)"""
    n = 0  # top[:n] holds the largest values seen so far, descending
    for j in range(z.shape[0]):
        v = z[j]
        if n == k and not v > top[k - 1]:
            continue
        i = n if n < k else k - 1  # the slot freed at the end
        while i > 0 and top[i - 1] < v:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
        n = min(n + 1, k)
    return top[k - 1]


@njit(**JIT)
def pick_kernel(logits, u, temperature, top_k, top_p, argmax, z, top, cdf):
    """charnn.sampling.pick with its uniform draw u in [0, 1) given: logits (V,) float32 -> id.
    top_k <= 0 means no top-k, top_p >= 1 no top-p; z, top, cdf (V,) float64 are scratch."""
    V = logits.shape[0]
    if argmax:
        best = 0
        for j in range(1, V):
            if logits[j] > logits[best]:  # strict: the first of equal maxima, as np.argmax
                best = j
        return best
    zmax = -np.inf
    for j in range(V):
        z[j] = np.float64(logits[j]) / temperature
        zmax = max(zmax, z[j])  # the max is always kept, so this is also the max of the kept values
    kth = -np.inf
    if 0 < top_k < V:
        kth = kth_largest(z, top_k, top)  # ties with it are kept (z >= kth), as in pick
    total = 0.0
    for j in range(V):
        if z[j] >= kth:
            total += np.exp(z[j] - zmax)  # subtracting the max keeps exp finite at low temperature
        cdf[j] = total  # a dropped character adds exp(-inf) = 0: the same sequential cumsum
    if top_p < 1.0:
        total = nucleus_kernel(z, kth, zmax, total * top_p, top, cdf)
    target = u * total
    i = 0
    while i < V - 1 and cdf[i] <= target:  # searchsorted(cdf, target, side="right"), clamped to V-1
        i += 1
    return i


@njit(**JIT)
def nucleus_kernel(z, kth, zmax, mass, w, cdf):
    """charnn.sampling.nucleus on the weights p[j] = exp(z[j] - zmax) where z[j] >= kth, else 0:
    take the heaviest not yet taken (the lowest id of equal weights), adding their weights in that
    order, until the sum reaches mass; then cdf (V,) = the cumulative sum of the taken weights in id
    order. Returns cdf[-1]. z (V,) is overwritten with the weights, w (V,) is scratch. Selection,
    not a sort: the nucleus is usually a few characters, so this costs a few passes over V."""
    V = z.shape[0]
    for j in range(V):
        z[j] = np.exp(z[j] - zmax) if z[j] >= kth else 0.0  # (V,) the weights pick draws from
        w[j] = z[j]
    taken, acc = 0, 0.0
    while taken < V:
        best = -1
        for j in range(V):
            if w[j] >= 0.0 and (best < 0 or w[j] > w[best]):  # strict: the lowest id of equal weights
                best = j
        acc += w[best]  # as np.cumsum(p[order]) adds them
        w[best] = -1.0  # taken (weights are >= 0)
        taken += 1
        if acc >= mass:
            break
    total = 0.0
    for j in range(V):
        if w[j] < 0.0:
            total += z[j]
        cdf[j] = total
    return total


# ---------------------------------------------------------------- kernels: threads waiting for each other
# Atomic operations on int64 counters, for threads that share one parallel region (sample_steps):
# numba has none on the CPU, so they are LLVM's own instructions. Acquire / release order: what a
# thread wrote before it adds to a counter is seen by a thread that has read the sum.
@intrinsic
def atomic_load(typingctx, a, i):
    """a[i], read atomically (acquire)."""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_pointer(context, builder, signature.args[0], args[0], [args[1]]), "acquire", 8)
    return types.int64(a, i), codegen


@intrinsic
def atomic_add(typingctx, a, i, n):
    """a[i] += n atomically (acquire and release); returns the old a[i]."""
    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "acq_rel")
    return types.int64(a, i, types.int64), codegen


@intrinsic
def _compare_exchange(typingctx, a, i, expected):
    """a[i] = expected + 1 if a[i] == expected, atomically; whether it was."""
    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], [args[1]])
        swapped = builder.cmpxchg(ptr, args[2], builder.add(args[2], ir.Constant(args[2].type, 1)), "acq_rel", "acquire")
        return builder.extract_value(swapped, 1)
    return types.boolean(a, i, types.int64), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _pause(typingctx):
    """x86's pause: a spinning core yields its pipeline to the other hardware thread and leaves the
    loop without a memory-order stall when the value changes; nothing on other CPUs."""
    def codegen(context, builder, signature, args):
        if _X86:
            builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                        "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()
    return types.void(), codegen


@njit(inline="always")
def claim(a, i, n):
    """Take unit i, whose a[i] counts its claims so far, for its (n+1)-th run: True for the one
    thread that moves a[i] from n to n + 1."""
    return atomic_load(a, i) == n and _compare_exchange(a, i, n)


@njit(inline="always")
def wait_until(a, i, n):
    """Spin until a[i] >= n."""
    while atomic_load(a, i) < n:
        _pause()


# ---------------------------------------------------------------- kernels: whole blocks
@njit(**JIT)
def lstm_block_forward(xa, ha, c, h_next):
    """lstm_row_forward for sampling, where no cache is kept: xa, ha (4w,), c (w,) updated in place,
    h_next (w,). Its own kernel because the row kernel's eight arrays (c read and written through
    two of them) sampled at ~0.7x this one (bench/README.md, "One cell kernel")."""
    w = c.shape[0]
    J = w - w % LANES  # full vectors, then the rest (see "explicit vectors")
    _lstm_block_lanes(xa, ha, c, h_next, 0, J, LANES)
    _lstm_block_lanes(xa, ha, c, h_next, J, w, w - J)


@njit(inline="always", error_model="numpy")
def _lstm_block_lanes(xa, ha, c, h_next, j0, j1, n):
    """lstm_block_forward over units j0 .. j1-1, n at a time."""
    w = c.shape[0]
    for j in range(j0, j1, LANES):
        i = sigmoid(lanes(xa, j, n) + lanes(ha, j, n))
        f = sigmoid(lanes(xa, w + j, n) + lanes(ha, w + j, n))
        o = sigmoid(lanes(xa, 2 * w + j, n) + lanes(ha, 2 * w + j, n))
        g = tanh(lanes(xa, 3 * w + j, n) + lanes(ha, 3 * w + j, n))
        c_new = f * lanes(c, j, n) + i * g
        put(c, j, n, c_new)
        put(h_next, j, n, o * tanh(c_new))


@njit(**JIT)
def layer_block_kernel(net, l, x_id, blk, below, prev, c, h_next, xa, ha, zero, gates, aux):
    """Layer l's step for the units of block blk: its xa[blk], ha[blk] (GB,), then the cell's row
    kernel on the block (bias already in xa: zero (GB,) stands in; gates (NB, GB) and aux (NB, w)
    take the cache values training keeps). below (Hp,) is layer l - 1's new state (unused at
    l = 0: the input is id x_id), prev (Hp,) layer l's previous one; writes the block's units of
    h_next (Hp,) and of c[l] (L, Hp)."""
    xa_b, ha_b = xa[blk], ha[blk]  # (GB,)
    if l == 0:
        copy_row(xa_b, net.x0[blk, x_id])  # embed.W[x_id] @ Wx0 + b0, tabulated
    else:
        matvec(below, net.Wx[l - 1, blk], xa_b)  # the layer below, already stepped
        for j in range(xa_b.shape[0]):
            xa_b[j] += net.b[l - 1, blk, j]
    matvec(prev, net.Wh[l, blk], ha_b)  # h_prev @ Wh
    w = aux.shape[1]
    j0, j1 = blk * w, (blk + 1) * w  # the block's units
    if net.cell == LSTM:
        lstm_block_forward(xa_b, ha_b, c[l, j0:j1], h_next[j0:j1])
    elif net.cell == GRU:
        gru_row_forward(xa_b, zero, ha_b, prev[j0:j1], h_next[j0:j1], gates[blk], aux[blk])
    else:
        rnn_row_forward(xa_b, zero, ha_b, h_next[j0:j1], net.act)


# The blocks of a step run on threads that stay in one parallel region for the whole call, and
# wait for each other at shared counters: starting a parallel region per layer and step cost ~3 us
# each (bench/README.md), as much as a small layer's work. Every unit of work (a layer's block of
# units, or a block of the head's columns) is claimed by exactly one thread, whichever gets it
# first (each starts with its own block, so its share of the weights stays in its core's cache); a
# thread that finds nothing left to claim waits until every unit of the phase is done, and the
# thread that finishes the head's last block makes the draw. So the ids never depend on which
# thread ran what, and a thread that starts late, or not at all, only leaves more to the others:
# nothing waits on a thread that has not claimed work.
SYNC_LINE = 8  # int64 counters 64 bytes apart: one cache line each, no false sharing
DONE = 0  # sync[DONE]: units finished in this call, all phases together


@njit(inline="always")
def head_block_width(net):
    """Vb: the head's columns per block of a RecurrentNet, ceil(V / NB)."""
    NB = net.head_W.shape[0]
    return (net.head_b.shape[0] + NB - 1) // NB


@njit(**JIT)
def head_block_kernel(h, net, blk, logits):
    """logits[blk*Vb : (blk+1)*Vb] = h @ net.head_W[blk] + head.b (the bias on the columns < V):
    head column block blk of RecurrentNet, h (Hp,), logits (NB * Vb,)."""
    V = net.head_b.shape[0]
    Vb = head_block_width(net)
    part = logits[blk * Vb : (blk + 1) * Vb]
    matvec(h, net.head_W[blk], part)
    for j in range(min(Vb, V - blk * Vb)):
        part[j] += net.head_b[blk * Vb + j]


@njit(**JIT)
def sample_steps(tid, net, hs, c, feed, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates, aux,
                 logits):
    """One thread's part of recurrent_sample_kernel: for each step s of S = M - 1 + N (feed (M,),
    out (N,)), each layer's NB blocks, then (once feed is used up) the head's NB column blocks and
    the draw of out[s - M + 1], made by the thread that finishes the head's last block.
    hs (2, L, Hp): step s reads hs[s % 2] and writes hs[(s + 1) % 2]. sync (SYNC_LINE * (2NB + 1),):
    DONE, then at (k + 1) * SYNC_LINE the claims so far of unit k (layer block k < NB, head block
    k - NB). logits (NB * Vb,). tid: the thread's first block to try."""
    L = hs.shape[1]
    NB = xa.shape[0]
    M = feed.shape[0]
    V = net.head_b.shape[0]
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    for s in range(M - 1 + out.shape[0]):
        x_id = feed[s] if s < M else out[s - M]  # read after the wait that follows the draw
        new, old = hs[(s + 1) % 2], hs[s % 2]
        done = s * L * NB + max(0, s - (M - 1)) * (NB + 1)  # units of the steps before this one
        for l in range(L):
            for k in range(NB):
                blk = (tid + k) % NB
                if claim(sync, (blk + 1) * SYNC_LINE, s * L + l):
                    layer_block_kernel(net, l, x_id, np.int64(blk), new[max(l - 1, 0)], old[l], c, new[l], xa, ha,
                                       zero, gates, aux)
                    atomic_add(sync, DONE, 1)
            done += NB
            wait_until(sync, DONE, done)
        if s >= M - 1:
            t = s - (M - 1)
            for k in range(NB):
                blk = (tid + k) % NB
                if claim(sync, (NB + blk + 1) * SYNC_LINE, t):
                    head_block_kernel(new[L - 1], net, np.int64(blk), logits)
                    if atomic_add(sync, DONE, 1) == done + NB - 1:  # the head's last block: every logit is in
                        out[t] = pick_kernel(logits[:V], u[t], temperature, top_k, top_p, argmax, z, top, cdf)
                        atomic_add(sync, DONE, 1)
            wait_until(sync, DONE, done + NB + 1)


@njit(**JIT)
def sample_scratch(net):
    """sample_steps' shared arrays for a RecurrentNet of NB blocks of GB gate columns and w units:
    sync (SYNC_LINE * (2NB + 1),) zeros, xa, ha, gates (NB, GB), zero (GB,) zeros, aux (NB, w),
    logits (NB * Vb,)."""
    NB, Hp, GB = net.Wh.shape[1], net.Wh.shape[3], net.x0.shape[2]
    sync = np.zeros((2 * NB + 1) * SYNC_LINE, dtype=np.int64)
    zero = np.zeros(GB, dtype=np.float32)  # the bias the row kernels add: already in xa
    xa, ha, gates = np.empty((NB, GB), np.float32), np.empty((NB, GB), np.float32), np.empty((NB, GB), np.float32)
    return sync, xa, ha, zero, gates, np.empty((NB, Hp // NB), np.float32), np.empty(NB * head_block_width(net), np.float32)


@njit(parallel=True, **JIT)
def sample_threads(net, hs, c, feed, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates, aux,
                   logits):
    """sample_steps on net.threads threads in one parallel region."""
    for tid in prange(net.threads):  # (tid as int64, the serial call's type: one compiled sample_steps)
        sample_steps(np.int64(tid), net, hs, c, feed, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates, aux,
                     logits)


@njit(**JIT)
def recurrent_sample_kernel(net, h, c, feed, u, temperature, top_k, top_p, argmax, out):
    """Step through feed (M,) ids, then sample N = len(out) ids into out, each step's input the
    previous step's output; u (N,) float64 holds one uniform per sampled id (unused if argmax).
    feed[:-1] only warms the state (prime text); the first id sampled follows feed[-1].
    h, c (L, Hp) float32 are the carried state, updated in place (c unused but for the lstm).
    The NB unit blocks of a layer run one after another if net.threads is 1, else on net.threads
    threads (sample_steps). Returns the logits (V,) of the last step."""
    L, Hp = h.shape
    hs = np.empty((2, L, Hp), dtype=np.float32)  # the state before and after a step
    copy_into(hs[0], h)
    sync, xa, ha, zero, gates, aux, logits = sample_scratch(net)
    if net.threads == 1 or net.Wh.shape[1] == 1:  # no parallel region to start
        sample_steps(np.int64(0), net, hs, c, feed, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates, aux,
                     logits)
    else:
        sample_threads(net, hs, c, feed, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates, aux,
                       logits)
    copy_into(h, hs[(feed.shape[0] - 1 + out.shape[0]) % 2])
    return logits[: net.head_b.shape[0]]


@njit(**JIT)
def mlp_input_layer(net, window, x_id, a, h):
    """Shift x_id into window (K,) (the last K ids, padding id V before the text) and run the first
    dense layer: h (H,) = act(emb(window) @ W0 + b0); a (H,) scratch."""
    K = window.shape[0]
    for j in range(K - 1):
        window[j] = window[j + 1]
    window[K - 1] = x_id
    a[:] = 0.0
    for j in range(K):  # emb(window) @ W0 as the sum of the K tabulated blocks
        row = net.x0[j, window[j]]  # (H,)
        for m in range(a.shape[0]):
            a[m] += row[m]
    for m in range(a.shape[0]):
        a[m] += net.b[0, m]
    activate_row(a, h, net.act)


@njit(**JIT)
def mlp_step_kernel(net, window, x_id, a, h):
    """Shift x_id into window (K,) and run the dense layers: h (H,) gets the last layer's output;
    a (H,) scratch."""
    mlp_input_layer(net, window, x_id, a, h)
    H = a.shape[0]
    for l in range(1, net.b.shape[0]):
        matvec(h, net.W[l - 1], a)  # (H,) h @ W; a and h are distinct arrays
        for m in range(H):
            a[m] += net.b[l, m]
        activate_row(a, h, net.act)


@njit(**JIT)
def mlp_sample_kernel(net, window, feed, u, temperature, top_k, top_p, argmax, out):
    """`recurrent_sample_kernel` for the MLP: the carried state is window (K,) int64, updated in place."""
    H = net.b.shape[1]
    V = net.head_b.shape[0]
    a = np.empty(H, dtype=np.float32)
    h = np.empty(H, dtype=np.float32)
    logits = np.empty(V, dtype=np.float32)
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    for t in range(feed.shape[0] - 1):
        mlp_step_kernel(net, window, feed[t], a, h)
    current = feed[feed.shape[0] - 1]
    for t in range(out.shape[0]):
        mlp_step_kernel(net, window, current, a, h)
        head_kernel(h, net.head_W, net.head_b, logits)
        current = pick_kernel(logits, u[t], temperature, top_k, top_p, argmax, z, top, cdf)
        out[t] = current
    return logits


# ---------------------------------------------------------------- kernels: batches of streams
# S streams sampled together: each weight row is read once per step for all of them (batch_matvec),
# and every stream's numbers are those of the batch-1 kernels above, bit for bit: the same sums in
# the same order, the same row kernels, the same pick, in the batch-1 layout (any NB of the same Hp).
# On several threads, the threads share each layer's unit blocks as batch-1 sampling's do, so each
# weight is read once a step by one core; with fewer blocks than threads (NB = 1: small models),
# the streams run in groups on threads of their own instead, each group on its own copy of its
# state. A stream's numbers depend on neither.
@njit(fastmath=CONTRACT, **JIT)
def batch_matvec(X, Wp, out):
    """out[s] = X[s] @ W for every stream s: X (S, D), W (D, M) as its vector panels Wp -> out
    (S, M), float32; each row is matvec's, bit for bit (the same chains). A panel's rows are taken
    KC at a time (32 KB, in L1 while every group of streams uses them), the streams SAMPLE_GROUP at
    a time (each vector of W loaded once for the group); the sums are carried in out from one block
    of rows to the next."""
    S, D = X.shape
    for p in range((out.shape[1] + PANEL - 1) // PANEL):
        for k0 in range(0, max(D, 1), KC):  # D = 0 still assigns the zero product
            k1 = min(D, k0 + KC)
            s0 = 0
            while s0 + SAMPLE_GROUP <= S:
                _group_rows(X, s0, Wp, p, k0, k1, out)
                s0 += SAMPLE_GROUP
            rest = S - s0  # fewer streams than a group: each count a constant
            if rest == 1:
                _panel_into(X[s0], Wp, p, k0, k1, out[s0])
            elif rest == 2 and SAMPLE_GROUP > 2:
                _rows2(X, s0, Wp, p, k0, k1, out)
            elif rest == 3 and SAMPLE_GROUP > 3:
                _rows3(X, s0, Wp, p, k0, k1, out)
            elif rest == 4 and SAMPLE_GROUP > 4:
                _rows4(X, s0, Wp, p, k0, k1, out)
            elif rest == 5 and SAMPLE_GROUP > 5:
                _rows5(X, s0, Wp, p, k0, k1, out)
            elif rest == 6 and SAMPLE_GROUP > 6:
                _rows6(X, s0, Wp, p, k0, k1, out)
            elif rest == 7 and SAMPLE_GROUP > 7:
                _rows7(X, s0, Wp, p, k0, k1, out)


@njit(**JIT)
def batch_pick(head_W, head_b, h_top, ids, logits, u, t, temperature, top_k, top_p, argmax, z, top, cdf, out):
    """The head and the draw for every stream: logits (S, V) = h_top (S, H) @ head.W (H, V) + head_b,
    head.W as its vector panels head_W; then ids[s] = out[s, t] = pick with uniform u[s, t]."""
    batch_matvec(h_top, head_W, logits)
    for s in range(ids.shape[0]):
        for j in range(logits.shape[1]):
            logits[s, j] += head_b[j]
        ids[s] = pick_kernel(logits[s], u[s, t], temperature, top_k, top_p, argmax, z, top, cdf)
        out[s, t] = ids[s]


@njit(**JIT)
def batch_block_kernel(net, l, ids, blk, below, prev, c, h_next, xa, ha, zero, gates, aux):
    """layer_block_kernel for S streams at once: layer l's step for the units of block blk, each
    weight vector of the block read once for all the streams (batch_matvec). ids (S,) the inputs
    (used at l = 0); below, prev, h_next (S, Hp); c (L, S, Hp); xa, ha (NB, S, GB); zero (GB,)
    zeros; gates (NB, GB), aux (NB, w) scratch for the GRU."""
    xa_b, ha_b = xa[blk], ha[blk]  # (S, GB)
    S, GB = xa_b.shape
    if l == 0:
        for s in range(S):
            copy_row(xa_b[s], net.x0[blk, ids[s]])  # embed.W[id] @ Wx0 + b0, tabulated
    else:
        batch_matvec(below, net.Wx[l - 1, blk], xa_b)  # the layer below, already stepped
        for s in range(S):
            for j in range(GB):
                xa_b[s, j] += net.b[l - 1, blk, j]
    batch_matvec(prev, net.Wh[l, blk], ha_b)  # h_prev @ Wh
    w = aux.shape[1]
    j0, j1 = blk * w, (blk + 1) * w  # the block's units
    for s in range(S):
        if net.cell == LSTM:
            lstm_block_forward(xa_b[s], ha_b[s], c[l, s, j0:j1], h_next[s, j0:j1])
        elif net.cell == GRU:
            gru_row_forward(xa_b[s], zero, ha_b[s], prev[s, j0:j1], h_next[s, j0:j1], gates[blk], aux[blk])
        else:
            rnn_row_forward(xa_b[s], zero, ha_b[s], h_next[s, j0:j1], net.act)


@njit(**JIT)
def batch_head_group(net, k, h_top, ids, logits, row, u, t, temperature, top_k, top_p, argmax, z, top, cdf, out):
    """The head and the draws of the streams in group k of NB, s0 = k*S // NB to s1 = (k+1)*S // NB:
    logits[blk, s] (NB, S, Vb) = h_top[s] (S, Hp) @ the head's column block blk, for every block;
    then each stream's V logits plus head.b gathered into row (V,) and ids[s] = out[s, t] = pick
    with uniform u[s, t]: head_block_kernel's sums and pick, stream by stream."""
    NB = net.head_W.shape[0]
    S = h_top.shape[0]
    s0, s1 = k * S // NB, (k + 1) * S // NB
    if s1 == s0:
        return
    V = net.head_b.shape[0]
    Vb = head_block_width(net)
    for blk in range(NB):
        batch_matvec(h_top[s0:s1], net.head_W[blk], logits[blk, s0:s1])
    for s in range(s0, s1):
        for blk in range(NB):
            for j in range(min(Vb, V - blk * Vb)):
                row[blk * Vb + j] = logits[blk, s, j] + net.head_b[blk * Vb + j]
        ids[s] = pick_kernel(row, u[s, t], temperature, top_k, top_p, argmax, z, top, cdf)
        out[s, t] = ids[s]


@njit(**JIT)
def batch_sample_steps(tid, net, hs, c, ids, u, temperature, top_k, top_p, argmax, out, sync, xa, ha, zero, gates,
                       aux, logits):
    """One thread's part of recurrent_batch_sample_kernel: sample_steps for S streams stepped together. For
    each step t < n (out (S, n)): each layer's NB unit blocks (batch_block_kernel), then the head
    and the draws in NB groups of streams (batch_head_group); every unit is claimed by one thread
    and each phase waits for all of its units, as in sample_steps. hs (2, L, S, Hp): step t reads
    hs[t % 2] and writes hs[(t + 1) % 2]; ids (S,) the streams' inputs, then their draws. sync
    (SYNC_LINE * (2NB + 1),): DONE, then the claims of layer block k at (k + 1) * SYNC_LINE and of
    head group k at (NB + k + 1) * SYNC_LINE. tid: the thread's first block to try."""
    L = hs.shape[1]
    NB = xa.shape[0]
    V = net.head_b.shape[0]
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    row = np.empty(V, dtype=np.float32)
    for t in range(out.shape[1]):
        new, old = hs[(t + 1) % 2], hs[t % 2]
        done = t * (L + 1) * NB  # units of the steps before this one
        for l in range(L):
            for k in range(NB):
                blk = (tid + k) % NB
                if claim(sync, (blk + 1) * SYNC_LINE, t * L + l):
                    batch_block_kernel(net, l, ids, np.int64(blk), new[max(l - 1, 0)], old[l], c, new[l], xa, ha, zero,
                                       gates, aux)
                    atomic_add(sync, DONE, 1)
            done += NB
            wait_until(sync, DONE, done)
        for k in range(NB):
            group = (tid + k) % NB
            if claim(sync, (NB + group + 1) * SYNC_LINE, t):
                batch_head_group(net, np.int64(group), new[L - 1], ids, logits, row, u, t, temperature, top_k, top_p,
                                 argmax, z, top, cdf, out)
                atomic_add(sync, DONE, 1)
        wait_until(sync, DONE, done + NB)  # every draw is in ids before the next step reads them


@njit(**JIT)
def batch_scratch(net, h, first):
    """What batch_sample_steps shares between its threads, for the streams of h (L, S, Hp): hs (2, L,
    S, Hp) with hs[0] = h, ids = first (S,) copied, sync zeros, xa, ha (NB, S, GB), zero (GB,) zeros,
    gates (NB, GB), aux (NB, w), logits (NB, S, Vb)."""
    L, S, Hp = h.shape
    NB, GB = net.x0.shape[0], net.x0.shape[2]
    hs = np.empty((2, L, S, Hp), dtype=np.float32)  # the states before and after a step
    copy_into(hs[0], h)
    sync = np.zeros((2 * NB + 1) * SYNC_LINE, dtype=np.int64)
    xa, ha = np.empty((NB, S, GB), np.float32), np.empty((NB, S, GB), np.float32)
    zero = np.zeros(GB, dtype=np.float32)  # the bias the row kernels add: already in xa
    gates, aux = np.empty((NB, GB), np.float32), np.empty((NB, Hp // NB), np.float32)
    logits = np.empty((NB, S, head_block_width(net)), np.float32)
    return hs, first.copy(), sync, xa, ha, zero, gates, aux, logits


@njit(parallel=True, **JIT)
def recurrent_batch_sample_kernel(net, h, c, first, u, temperature, top_k, top_p, argmax, out, parts):
    """Sample n = out.shape[1] ids for each of S streams into out (S, n), stream s continuing from
    input id first[s] (S,); u (S, n) float64 one uniform per sampled id (unused if argmax).
    h, c (L, S, Hp) float32 are the streams' carried states, updated in place. parts: threads.
    Where the layout has a unit block for each thread (parts <= NB; one thread takes them all), the
    threads share each layer's blocks and the streams step together, so each weight is read once a
    step, by one thread; else the streams run in `parts` groups, each group on a thread of its own
    with its own copy of its state, reading every weight."""
    parts = max(1, parts)
    shared = parts <= net.x0.shape[0]
    hs, ids, sync, xa, ha, zero, gates, aux, logits = batch_scratch(net, h, first)  # shared by the threads
    S = h.shape[1]
    for p in prange(parts):
        if shared:
            batch_sample_steps(np.int64(p), net, hs, c, ids, u, temperature, top_k, top_p, argmax, out, sync, xa, ha,
                               zero, gates, aux, logits)
        else:
            s0, s1 = p * S // parts, (p + 1) * S // parts
            if s1 > s0:  # the group's streams, alone
                cg = np.ascontiguousarray(c[:, s0:s1])
                hs_g, ids_g, sync_g, xa_g, ha_g, zero_g, gates_g, aux_g, logits_g = batch_scratch(
                    net, np.ascontiguousarray(h[:, s0:s1]), first[s0:s1])
                batch_sample_steps(np.int64(0), net, hs_g, cg, ids_g, u[s0:s1], temperature, top_k, top_p, argmax,
                                   out[s0:s1], sync_g, xa_g, ha_g, zero_g, gates_g, aux_g, logits_g)
                copy_into(h[:, s0:s1], hs_g[out.shape[1] % 2])
                copy_into(c[:, s0:s1], cg)
    if shared:
        copy_into(h, hs[out.shape[1] % 2])


@njit(parallel=True, **JIT)
def mlp_batch_sample_kernel(net, window, first, u, temperature, top_k, top_p, argmax, out, parts):
    """`recurrent_batch_sample_kernel` for the MLP: the carried states are window (S, K) int64."""
    if parts <= 1:
        mlp_batch_steps(net, window, first, u, temperature, top_k, top_p, argmax, out)
        return
    S = window.shape[0]
    for p in prange(parts):
        s0, s1 = p * S // parts, (p + 1) * S // parts
        if s1 > s0:
            wg = np.ascontiguousarray(window[s0:s1])
            mlp_batch_steps(net, wg, first[s0:s1], u[s0:s1], temperature, top_k, top_p, argmax, out[s0:s1])
            copy_into(window[s0:s1], wg)


@njit(**JIT)
def mlp_batch_steps(net, window, first, u, temperature, top_k, top_p, argmax, out):
    """mlp_batch_sample_kernel's streams on this thread: window (S, K), out (S, n)."""
    S = window.shape[0]
    H = net.b.shape[1]
    V = net.head_b.shape[0]
    a = np.empty((S, H), dtype=np.float32)
    h = np.empty((S, H), dtype=np.float32)
    logits = np.empty((S, V), dtype=np.float32)
    z, top, cdf = np.empty(V), np.empty(V), np.empty(V)
    ids = first.copy()
    for t in range(out.shape[1]):
        for s in range(S):
            mlp_input_layer(net, window[s], ids[s], a[s], h[s])
        for l in range(1, net.b.shape[0]):
            batch_matvec(h, net.W[l - 1], a)  # (S, H) h @ W; a and h are distinct arrays
            for s in range(S):
                for m in range(H):
                    a[s, m] += net.b[l, m]
                activate_row(a[s], h[s], net.act)
        batch_pick(net.head_W, net.head_b, h, ids, logits, u, t, temperature, top_k, top_p, argmax, z, top, cdf, out)
