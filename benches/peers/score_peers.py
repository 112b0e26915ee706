"""Router scoring against the peers, single-threaded, in one process.

- elementwise sigmoid over 1M and 16M f32: tkr_sigmoid_f32 vs torch.sigmoid(x, out=y),
  ONNX Runtime Sigmoid (I/O bound to preallocated buffers), numpy 1/(1+exp(-x));
- fused router scores S = sigmoid(H w + b) for H [n, d]: tkr_score vs torch
  (sigmoid(addmm)), ONNX Runtime (Gemm + Sigmoid) and numpy.

Usage: TOKENROUTE_ISA=avx512 python benches/peers/score_peers.py
"""
import ctypes
import sys

import numpy as np
import torch
from onnx import TensorProto, helper

from common import load_library, median_time, ort_session, ptr, set_threads, table

lib = load_library()
lib.tkr_sigmoid_f32.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
lib.tkr_sigmoid_f32.restype = ctypes.c_uint32
lib.tkr_score.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                          ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_uint32,
                          ctypes.c_void_p, ctypes.c_size_t]
lib.tkr_score.restype = ctypes.c_uint32
lib.tkr_get_isa.restype = ctypes.c_uint32
lib.tkr_isa_name.restype = ctypes.c_char_p
set_threads(1)
isa = lib.tkr_isa_name(lib.tkr_get_isa()).decode()

rows = []
for n in (1 << 20, 16 << 20):
    x = (np.random.default_rng(0).standard_normal(n) * 6).astype(np.float32)
    y = np.empty_like(x)
    budget = 1.0 if n < 1 << 22 else 3.0
    t_tkr = median_time(lambda: lib.tkr_sigmoid_f32(ptr(x), ptr(y), n), budget=budget)
    ours = y.copy()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    t_torch = median_time(lambda: torch.sigmoid(tx, out=ty), budget=budget)
    assert np.allclose(ours, y, rtol=1e-5, atol=1e-30)
    g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    io = sess.io_binding()
    io.bind_cpu_input("x", x)
    io.bind_output("y", "cpu", 0, np.float32, [n], y.ctypes.data)
    t_ort = median_time(lambda: sess.run_with_iobinding(io), budget=budget)
    t_np = median_time(lambda: np.divide(1.0, 1.0 + np.exp(-x), out=y), budget=budget, min_reps=3)
    best = min(t_torch, t_ort)
    gbs = lambda t: f"{4 * n / t / 1e9:.2f}"
    rows.append([f"sigmoid f32 {n >> 20}M", f"{t_tkr * 1e3:.3f} ms ({gbs(t_tkr)} GB/s)",
                 f"{t_torch * 1e3:.3f} ms ({gbs(t_torch)})", f"{t_ort * 1e3:.3f} ms ({gbs(t_ort)})",
                 f"{t_np * 1e3:.3f} ms ({gbs(t_np)})", f"{best / t_tkr:.2f}x"])

for (n, d) in ((512, 768), (4096, 4096)):
    rng = np.random.default_rng(1)
    h = rng.standard_normal((n, d)).astype(np.float32)
    w = (rng.standard_normal((1, d)) * 0.05).astype(np.float32)
    b = np.array([0.1], np.float32)
    s = np.empty((n, 1), np.float32)
    t_tkr = median_time(lambda: lib.tkr_score(1, ptr(h), n, d, d, ptr(w), 1, d, ptr(b), 1, ptr(s), 1))
    ours = s.copy()
    th, tw, tb = torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(b)
    ts = torch.empty((n, 1))
    t_torch = median_time(lambda: torch.sigmoid(torch.addmm(tb, th, tw.t(), out=ts), out=ts))
    assert np.allclose(ours, ts.numpy(), rtol=1e-4, atol=1e-6)
    g = helper.make_graph([helper.make_node("Gemm", ["h", "w", "b"], ["z"], transB=1),
                           helper.make_node("Sigmoid", ["z"], ["s"])], "g",
                          [helper.make_tensor_value_info("h", TensorProto.FLOAT, [n, d])],
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, [n, 1])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [1, d], w.ravel().tolist()),
                           helper.make_tensor("b", TensorProto.FLOAT, [1], b.tolist())])
    sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    io = sess.io_binding()
    io.bind_cpu_input("h", h)
    io.bind_output("s", "cpu", 0, np.float32, [n, 1], s.ctypes.data)
    t_ort = median_time(lambda: sess.run_with_iobinding(io))
    t_np = median_time(lambda: 1.0 / (1.0 + np.exp(-(h @ w.T + b))))
    best = min(t_torch, t_ort)
    gbs = lambda t: f"{4 * n * d / t / 1e9:.2f}"
    rows.append([f"score f32 E=1 {n}x{d}", f"{t_tkr * 1e3:.3f} ms ({gbs(t_tkr)} GB/s)",
                 f"{t_torch * 1e3:.3f} ms ({gbs(t_torch)})", f"{t_ort * 1e3:.3f} ms ({gbs(t_ort)})",
                 f"{t_np * 1e3:.3f} ms ({gbs(t_np)})", f"{best / t_tkr:.2f}x"])

print(f"tokenroute level: {isa}; peers single-threaded; GB/s = input bytes / time\n")
print(table(rows, ["workload", "tokenroute", "torch", "onnxruntime", "numpy", "vs best of torch/ORT"]))
