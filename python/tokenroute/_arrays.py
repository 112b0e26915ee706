"""numpy array checks shared by the family modules.

Every wrapper has a fast path for the common case (arrays of the exact dtype, C-contiguous
and aligned, default options): a few O(1) checks, then the C call. Anything else takes the
general path below, which gives the same results and errors as before:

Inputs: an array whose layout the C API cannot describe (inner stride not one element,
negative or unaligned strides, rows that overlap, misaligned data) is copied into a
C-contiguous array first; its values are what the caller passed, so this is always
correct (and documented as a copy). Outputs are never copied: an output the C API cannot
write in place raises :class:`TokenrouteError` before any call.

Empty arrays are passed as NULL pointers with a zero size ((NULL, 0) is a valid empty
buffer in the C API) on the general path, and as their (valid, unused) data pointer on the
fast path.

Data pointers and flags are read from numpy's array header (:func:`addr`, :func:`flags`):
the ``data`` and ``flags`` fields that every numpy extension reads through
``PyArray_DATA`` / ``PyArray_FLAGS`` (numpy's C ABI), at the address CPython documents
``id()`` to be. ``arr.ctypes.data`` and ``arr.__array_interface__`` build Python objects
and cost about a microsecond each, more than many kernels; this costs about as much as an
attribute. The reader is checked at import against ``__array_interface__`` and
``.flags`` on arrays of every kind; on any other interpreter, or any disagreement, the
package uses those slower documented attributes instead (``FAST_HEADER`` is False).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Callable, Optional, Tuple

import numpy as np

from ._ffi import (
    TKR_DTYPE_BF16,
    TKR_DTYPE_F16,
    TKR_DTYPE_F32,
    TKR_STATUS_BAD_STRIDE,
    TKR_STATUS_INVALID_ARGUMENT,
    TokenrouteError,
)

try:  # bf16 arrays as ml_dtypes.bfloat16; without ml_dtypes, pass uint16 bit patterns.
    import ml_dtypes

    BFLOAT16: Optional[np.dtype] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    BFLOAT16 = None

#: dtype names accepted by the ``dtype=`` arguments, with their C codes.
DTYPE_CODES = {"f32": TKR_DTYPE_F32, "f16": TKR_DTYPE_F16, "bf16": TKR_DTYPE_BF16}

NDARRAY = np.ndarray
F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
U8 = np.dtype(np.uint8)
U16 = np.dtype(np.uint16)
U32 = np.dtype(np.uint32)
BOOL = np.dtype(np.bool_)
UINTP = np.dtype(np.uintp)
#: The largest size_t.
SIZE_MAX = ctypes.c_size_t(-1).value

#: TKR_DTYPE_* of an array's own element type (the fast paths look its dtype up here).
ELEMENT_CODES = {F32: TKR_DTYPE_F32, F16: TKR_DTYPE_F16}
if BFLOAT16 is not None:
    ELEMENT_CODES[BFLOAT16] = TKR_DTYPE_BF16

# numpy's flag bits (NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_ALIGNED, NPY_ARRAY_WRITEABLE).
C_CONTIGUOUS = 0x1
ALIGNED = 0x100
WRITEABLE = 0x400
#: flags(a) & CA == CA: an input the fast paths pass as it is (see cptr).
CA = C_CONTIGUOUS | ALIGNED
#: flags(a) & CAW == CAW: an output the fast paths write as it is.
CAW = CA | WRITEABLE


def _documented_addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _documented_flags(a: np.ndarray) -> int:
    f = a.flags
    return (
        (C_CONTIGUOUS if f.c_contiguous else 0)
        | (ALIGNED if f.aligned else 0)
        | (WRITEABLE if f.writeable else 0)
    )


def _probe_arrays():
    """Arrays of every kind the header reader must agree on."""
    base = np.arange(64, dtype=np.float32)
    ro = base.copy()
    ro.flags.writeable = False
    raw = np.zeros(64, np.uint8)
    out = [
        base, base[3:40], base[::2], base.reshape(8, 8).T, base.reshape(8, 8)[:, 1:5], ro,
        np.frombuffer(raw.data, dtype=np.float32, count=8, offset=1),  # misaligned
        np.zeros(0, np.float32), np.zeros((0, 5), np.float64), np.array(3.0),
        np.ones((2, 3, 4), np.bool_), np.ones(5, np.uint16)[::-1],
        np.broadcast_to(base[:4], (3, 4)),
    ]
    if BFLOAT16 is not None:
        out.append(base.astype(BFLOAT16)[1:])
    return out


def _header_reader() -> Optional[Tuple[Callable[[np.ndarray], int], Callable[[np.ndarray], int]]]:
    """(addr, flags) reading numpy's PyArrayObject header, or None when this interpreter
    or numpy does not lay it out as expected."""
    if sys.implementation.name != "cpython":
        return None

    class Header(ctypes.Structure):
        # PyArrayObject_fields (numpy/ndarraytypes.h) after CPython's PyObject header.
        _fields_ = [
            ("ob_base", ctypes.c_byte * object.__basicsize__),
            ("data", ctypes.c_void_p),
            ("nd", ctypes.c_int),
            ("dimensions", ctypes.c_void_p),
            ("strides", ctypes.c_void_p),
            ("base", ctypes.c_void_p),
            ("descr", ctypes.c_void_p),
            ("flags", ctypes.c_int),
        ]

    word = ctypes.sizeof(ctypes.c_void_p)
    off_data, off_flags = Header.data.offset, Header.flags.offset
    if word not in (4, 8) or off_data % word or off_flags % 4:
        return None
    # The address space seen from the data field and from the flags field of an array
    # at address 0: element id(a) >> shift of `datas` is the data pointer of the array
    # at id(a) (objects are word-aligned, checked below), element id(a) >> 2 of `flagss`
    # its flags.
    datas = (ctypes.c_size_t * (sys.maxsize // word - 1)).from_address(off_data)
    flagss = (ctypes.c_int * (sys.maxsize // 4 - 1)).from_address(off_flags)
    shift = word.bit_length() - 1

    def addr(a, _d=datas, _s=shift):
        return _d[id(a) >> _s]

    def flags(a, _f=flagss):
        return _f[id(a) >> 2]

    def cptr(a, _d=datas, _f=flagss, _s=shift):
        i = id(a)
        return _d[i >> _s] if _f[i >> 2] & CA == CA else 0

    def wptr(a, _d=datas, _f=flagss, _s=shift):
        i = id(a)
        return _d[i >> _s] if _f[i >> 2] & CAW == CAW else 0

    for a in _probe_arrays():
        if id(a) % word or addr(a) != _documented_addr(a):
            return None
        if flags(a) & CAW != _documented_flags(a):
            return None
        if cptr(a) != (addr(a) if flags(a) & CA == CA else 0) or addr(a) == 0:
            return None
        if wptr(a) != (addr(a) if flags(a) & CAW == CAW else 0):
            return None
    return addr, flags, cptr, wptr


def _documented_cptr(a: np.ndarray) -> int:
    return _documented_addr(a) if _documented_flags(a) & CA == CA else 0


def _documented_wptr(a: np.ndarray) -> int:
    return _documented_addr(a) if _documented_flags(a) & CAW == CAW else 0


_reader = _header_reader()
#: True when :func:`addr`, :func:`flags`, :func:`cptr` and :func:`wptr` read numpy's
#: header (see the module doc).
FAST_HEADER = _reader is not None
if _reader is not None:
    addr, flags, cptr, wptr = _reader
else:  # pragma: no cover - other interpreters
    addr, flags = _documented_addr, _documented_flags
    cptr, wptr = _documented_cptr, _documented_wptr
addr.__doc__ = "The data address of an ndarray (an int; valid while the array lives)."
flags.__doc__ = "numpy's flag bits of an ndarray (C_CONTIGUOUS, ALIGNED, WRITEABLE, ...)."
cptr.__doc__ = """The data address of a C-contiguous, aligned ndarray (an input the fast
paths pass as it is), else 0 (numpy's data pointer is never NULL). Only for ndarrays."""
wptr.__doc__ = """The data address of a C-contiguous, aligned, writeable ndarray (an output
the fast paths write as it is), else 0. Only for ndarrays."""


def index(value, function: str, name: str) -> int:
    """A size or count argument as a non-negative Python int: ints and integer-likes
    (numpy integers; anything with ``__index__``), never floats, bools or negatives."""
    if type(value) is int and 0 <= value <= SIZE_MAX:
        return value
    try:
        if isinstance(value, bool):
            raise TypeError
        v = value.__index__()
    except (AttributeError, TypeError):
        raise invalid(function, f"{name} must be an integer, got {value!r}") from None
    if v < 0:
        raise invalid(function, f"{name} must be >= 0, got {v}")
    if v > SIZE_MAX:
        raise invalid(function, f"{name} = {v} does not fit in a size_t")
    return v


def invalid(function: str, detail: str) -> TokenrouteError:
    return TokenrouteError(TKR_STATUS_INVALID_ARGUMENT, function, detail)


def element_code(a: np.ndarray, dtype: Optional[str], function: str, name: str) -> int:
    """The TKR_DTYPE_* of an input array: float32, float16, ml_dtypes.bfloat16, or
    uint16 bit patterns with ``dtype="f16"`` / ``"bf16"``. ``dtype`` (when given) must
    agree with the array's own type."""
    if dtype is not None and dtype not in DTYPE_CODES:
        raise invalid(function, f"dtype must be one of {sorted(DTYPE_CODES)}, not {dtype!r}")
    dt = a.dtype
    if dt == np.float32:
        own = "f32"
    elif dt == np.float16:
        own = "f16"
    elif BFLOAT16 is not None and dt == BFLOAT16:
        own = "bf16"
    elif dt == np.uint16:
        if dtype not in ("f16", "bf16"):
            raise invalid(
                function,
                f"{name} holds uint16 bit patterns: say dtype='f16' or dtype='bf16'",
            )
        return DTYPE_CODES[dtype]
    else:
        raise invalid(
            function,
            f"{name} has dtype {dt}; expected float32, float16, bfloat16 or uint16 bit patterns",
        )
    if dtype is not None and dtype != own:
        raise invalid(function, f"{name} is {own} but dtype={dtype!r}")
    return DTYPE_CODES[own]


def ptr_or_null(a: Optional[np.ndarray]) -> Optional[int]:
    """The data address of an array, or None (NULL) for None or an empty array."""
    return None if a is None or a.size == 0 else addr(a)


def _row_layout_ok(a: np.ndarray) -> bool:
    """Rows of unit inner stride, non-negative row stride that is a whole number of
    elements and at least a row (or a single row), aligned data."""
    item = a.itemsize
    rows, cols = a.shape
    if not a.flags.aligned:
        return False
    if cols > 1 and a.strides[1] != item:
        return False
    if rows > 1:
        rs = a.strides[0]
        if rs < 0 or rs % item != 0 or rs // item < cols:
            return False
    return True


def _row_stride(a: np.ndarray) -> int:
    rows, cols = a.shape
    if rows <= 1:
        return cols
    return a.strides[0] // a.itemsize


def input_matrix(
    a: np.ndarray, function: str, name: str
) -> Tuple[np.ndarray, Optional[int], int, int, int]:
    """(array kept alive, pointer, rows, cols, row stride in elements) of a 2-D input,
    copied to C order when the C API cannot describe its layout."""
    if a.ndim != 2:
        raise invalid(function, f"{name} must be 2-D, got shape {a.shape}")
    if not _row_layout_ok(a):
        a = np.require(a, requirements=["C", "A"])
    rows, cols = a.shape
    return a, ptr_or_null(a), rows, cols, _row_stride(a)


def input_vector(
    a: np.ndarray, function: str, name: str, length: int, dtype: np.dtype
) -> Tuple[np.ndarray, Optional[int]]:
    """A 1-D input of exactly ``length`` elements of ``dtype`` (copied when strided)."""
    if a.dtype != dtype:
        raise invalid(function, f"{name} must be {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != (length,):
        raise invalid(function, f"{name} must have shape ({length},), got {a.shape}")
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = np.require(a, requirements=["C", "A"])
    return a, ptr_or_null(a)


def output_matrix(
    out: np.ndarray, function: str, name: str, rows: int, cols: int, dtype: np.dtype
) -> Tuple[Optional[int], int]:
    """(pointer, row stride in elements) of a caller's 2-D output, checked: ndarray,
    exact dtype and shape, writeable, rows of unit inner stride, non-negative row stride
    of whole elements, at least a row apart."""
    if not isinstance(out, np.ndarray):
        raise invalid(function, f"{name} must be a numpy array")
    if out.dtype != dtype:
        raise invalid(function, f"{name} must be {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != (rows, cols):
        raise invalid(function, f"{name} must have shape {(rows, cols)}, got {out.shape}")
    if not out.flags.writeable:
        raise invalid(function, f"{name} is read-only")
    if out.size and not out.flags.aligned:
        raise invalid(function, f"{name} is not aligned for {out.dtype}")
    if out.size and not _row_layout_ok(out):
        raise TokenrouteError(
            TKR_STATUS_BAD_STRIDE,
            function,
            f"{name} needs rows of contiguous elements at a non-negative row stride of at "
            f"least one row (strides {out.strides})",
        )
    return ptr_or_null(out), _row_stride(out)


def output_vector(
    out: np.ndarray, function: str, name: str, shape: Tuple[int, ...], dtype: np.dtype
) -> Optional[int]:
    """Pointer of a caller's C-contiguous output of exactly ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise invalid(function, f"{name} must be a numpy array")
    if out.dtype != dtype:
        raise invalid(function, f"{name} must be {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise invalid(function, f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise invalid(function, f"{name} is read-only")
    if out.size and not out.flags.c_contiguous:
        raise TokenrouteError(
            TKR_STATUS_BAD_STRIDE, function, f"{name} must be C-contiguous (strides {out.strides})"
        )
    if out.size and not out.flags.aligned:
        raise invalid(function, f"{name} is not aligned for {out.dtype}")
    return ptr_or_null(out)


def output_column(
    out: np.ndarray, function: str, name: str, rows: int, dtype: np.dtype
) -> Tuple[Optional[int], int]:
    """(pointer, row stride in elements) of a caller's 1-D output used as a ``[rows, 1]``
    matrix: exact dtype and shape, writeable, aligned, a positive stride of whole
    elements (any stride when ``rows <= 1``)."""
    if not isinstance(out, np.ndarray):
        raise invalid(function, f"{name} must be a numpy array")
    if out.dtype != dtype:
        raise invalid(function, f"{name} must be {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != (rows,):
        raise invalid(function, f"{name} must have shape {(rows,)}, got {out.shape}")
    if not out.flags.writeable:
        raise invalid(function, f"{name} is read-only")
    if out.size and not out.flags.aligned:
        raise invalid(function, f"{name} is not aligned for {out.dtype}")
    if rows <= 1:
        return ptr_or_null(out), 1
    s = out.strides[0]
    if s <= 0 or s % out.itemsize != 0:
        raise TokenrouteError(
            TKR_STATUS_BAD_STRIDE,
            function,
            f"{name} needs a positive stride of whole elements (strides {out.strides})",
        )
    return ptr_or_null(out), s // out.itemsize


def options(cls):
    """A zeroed options struct with ``struct_size`` set: the defaults, exactly what the
    C ``*_options_init`` functions fill (a test compares them), built without a C call."""
    o = cls()
    o.struct_size = ctypes.sizeof(cls)
    return o


#: A result whose buffer would keep at least this many unused bytes is shrunk to its
#: length (ndarray.resize: realloc, no copy); a smaller one is returned as a view.
SHRINK_BYTES = 1 << 16


def exact(buf: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows of a fresh buffer the wrapper allocated (and passed to C
    only by address), as an array of exactly that many rows: the buffer shrunk in place
    (realloc, no copy) when that frees at least SHRINK_BYTES, else a view."""
    rows = len(buf)
    if count == rows:
        return buf
    if (rows - count) * (buf.nbytes // rows) >= SHRINK_BYTES:
        # No view of ``buf`` exists, so resizing without numpy's reference check is safe.
        buf.resize((count,) + buf.shape[1:], refcheck=False)
        return buf
    return buf[:count]


_TLS = threading.local()


def slots() -> Tuple[ctypes.c_size_t, int, ctypes.c_float, int]:
    """This thread's scratch for the small C arguments a wrapper would otherwise allocate
    on every call: ``(count, address of count, bias, address of bias)``, a ``size_t``
    out-parameter and a ``float`` input. No other thread touches them while a call
    runs; read ``count.value`` after the call."""
    try:
        return _TLS.slots
    except AttributeError:
        count, bias = ctypes.c_size_t(), ctypes.c_float()
        _TLS.slots = v = (count, ctypes.addressof(count), bias, ctypes.addressof(bias))
        return v
