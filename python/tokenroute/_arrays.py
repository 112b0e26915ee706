"""numpy array checks shared by the family modules.

Inputs: an array whose layout the C API cannot describe (inner stride not one element,
negative or unaligned strides, rows that overlap, misaligned data) is copied into a
C-contiguous array first; its values are what the caller passed, so this is always
correct (and documented as a copy). Outputs are never copied: an output the C API cannot
write in place raises :class:`TokenrouteError` before any call.

Empty arrays are passed as NULL pointers with a zero size ((NULL, 0) is a valid empty
buffer in the C API).
"""

from __future__ import annotations

from typing import Optional, Tuple

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


def _ptr(a: np.ndarray) -> Optional[int]:
    return None if a.size == 0 else a.ctypes.data


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
    return a, _ptr(a), rows, cols, _row_stride(a)


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
    return a, _ptr(a)


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
    return _ptr(out), _row_stride(out)


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
    return _ptr(out)


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
        return _ptr(out), 1
    s = out.strides[0]
    if s <= 0 or s % out.itemsize != 0:
        raise TokenrouteError(
            TKR_STATUS_BAD_STRIDE,
            function,
            f"{name} needs a positive stride of whole elements (strides {out.strides})",
        )
    return _ptr(out), s // out.itemsize
