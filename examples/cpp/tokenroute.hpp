// tokenroute.hpp: thin C++17 views over the tokenroute C API (header-only).
//
// - No exceptions: every call returns a tokenroute::Status value ([[nodiscard]]);
//   `if (!st) ...`, `st.name()` ("TKR_STATUS_BAD_STRIDE"), `st.message()` (which argument
//   and which rule failed).
// - Span<T> and Matrix<T> are non-owning views (pointer + sizes + row stride in
//   elements); the element type picks the dtype code (float, tokenroute::f16,
//   tokenroute::bf16), so a dtype can never disagree with its buffer.
// - Option structs are initialised by their constructors (TopkOptions,
//   AttentionOptions); Workspace owns an aligned top-k scratch buffer (RAII).
// - Shapes the views carry are checked against each other before the C call
//   (TKR_STATUS_INVALID_ARGUMENT, or TKR_STATUS_BUFFER_TOO_SMALL for a short output);
//   everything else is checked by the library, and on any error nothing is written.
//
// Covered: score, sigmoid, top-k, gather / scatter / gated scatter-add, attention. The
// rest of the C API is available as declared in tokenroute.h (included here).
#ifndef TOKENROUTE_HPP
#define TOKENROUTE_HPP

#include <tokenroute.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace tokenroute {

// The outcome of a call: a tkr_status code, plus a description when the C++ layer
// itself refused the call.
class [[nodiscard]] Status {
 public:
  constexpr Status() noexcept = default;
  constexpr Status(tkr_status code, const char* what = nullptr) noexcept  // NOLINT
      : code_(code), what_(what) {}
  constexpr bool ok() const noexcept { return code_ == TKR_STATUS_OK; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  constexpr tkr_status code() const noexcept { return code_; }
  // "TKR_STATUS_OK", "TKR_STATUS_BAD_STRIDE", ... (static, never null).
  const char* name() const noexcept { return tkr_status_string(code_); }
  // What failed: the C++ layer's reason, or the library's, read from
  // tkr_last_error_message() (valid until the next failing call on this thread:
  // read it right after the call). "" on success.
  const char* message() const noexcept {
    if (ok()) return "";
    return what_ != nullptr ? what_ : tkr_last_error_message();
  }

 private:
  tkr_status code_ = TKR_STATUS_OK;
  const char* what_ = nullptr;
};

// 16-bit element types: IEEE binary16 and bfloat16 bit patterns.
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> : std::integral_constant<uint32_t, TKR_DTYPE_F32> {};
template <>
struct dtype_of<f16> : std::integral_constant<uint32_t, TKR_DTYPE_F16> {};
template <>
struct dtype_of<bf16> : std::integral_constant<uint32_t, TKR_DTYPE_BF16> {};
template <class T>
inline constexpr uint32_t dtype_v = dtype_of<std::remove_const_t<T>>::value;

// A contiguous run of elements (the part of C++20's std::span used here).
template <class T>
class Span {
 public:
  constexpr Span() noexcept = default;
  constexpr Span(T* data, size_t size) noexcept : data_(data), size_(size) {}
  template <size_t N>
  constexpr Span(T (&a)[N]) noexcept : data_(a), size_(N) {}  // NOLINT
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  Span(std::vector<U>& v) noexcept : data_(v.data()), size_(v.size()) {}  // NOLINT
  template <class U, class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
  Span(const std::vector<U>& v) noexcept : data_(v.data()), size_(v.size()) {}  // NOLINT
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  constexpr Span(Span<U> s) noexcept : data_(s.data()), size_(s.size()) {}  // NOLINT
  constexpr T* data() const noexcept { return data_; }
  constexpr size_t size() const noexcept { return size_; }
  constexpr T& operator[](size_t i) const noexcept { return data_[i]; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

// rows x cols elements, row r starting row_stride elements after row r - 1.
template <class T>
struct Matrix {
  T* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;
  size_t row_stride = 0;

  constexpr Matrix() noexcept = default;
  constexpr Matrix(T* d, size_t r, size_t c, size_t stride) noexcept
      : data(d), rows(r), cols(c), row_stride(stride) {}
  constexpr Matrix(T* d, size_t r, size_t c) noexcept : Matrix(d, r, c, c) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  constexpr Matrix(Matrix<U> m) noexcept  // NOLINT
      : data(m.data), rows(m.rows), cols(m.cols), row_stride(m.row_stride) {}
};

// [tokens, heads, dim] with strides in elements (attention's tensors).
template <class T>
struct Heads {
  T* data = nullptr;
  size_t tokens = 0;
  size_t heads = 0;
  size_t dim = 0;
  size_t token_stride = 0;
  size_t head_stride = 0;

  constexpr Heads() noexcept = default;
  constexpr Heads(T* d, size_t t, size_t h, size_t e, size_t ts, size_t hs) noexcept
      : data(d), tokens(t), heads(h), dim(e), token_stride(ts), head_stride(hs) {}
  // Dense [tokens, heads, dim].
  constexpr Heads(T* d, size_t t, size_t h, size_t e) noexcept : Heads(d, t, h, e, h * e, e) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  constexpr Heads(Heads<U> x) noexcept  // NOLINT
      : Heads(x.data, x.tokens, x.heads, x.dim, x.token_stride, x.head_stride) {}
};

// Option structs, initialised to the library's defaults by construction.
struct TopkOptions : tkr_topk_options {
  TopkOptions() noexcept : tkr_topk_options() { (void)tkr_topk_options_init(this); }
};
struct AttentionOptions : tkr_attention_options {
  AttentionOptions() noexcept : tkr_attention_options() { (void)tkr_attention_options_init(this); }
};

// Owns the scratch buffer of top-k (8-byte aligned), sized by the library's query.
class Workspace {
 public:
  // Room for rows of up to n tokens; keeps a larger buffer it already has.
  Status reserve_topk(size_t n) noexcept {
    size_t bytes = 0;
    Status st = tkr_topk_workspace_size(n, &bytes);
    if (!st || bytes <= bytes_) return st;
    std::unique_ptr<uint64_t[]> grown(new (std::nothrow) uint64_t[(bytes + 7) / 8]);
    if (!grown) return Status(TKR_STATUS_BUFFER_TOO_SMALL, "workspace allocation failed");
    buf_ = std::move(grown);
    bytes_ = bytes;
    return st;
  }
  void* data() const noexcept { return buf_.get(); }
  size_t size() const noexcept { return bytes_; }

 private:
  std::unique_ptr<uint64_t[]> buf_;
  size_t bytes_ = 0;
};

// Router scores: scores = act(h w^T + bias) (tkr_score); bias: w.rows floats or empty.
template <class T>
Status score(Matrix<const T> h, Matrix<const T> w, Span<const float> bias, uint32_t activation,
             Matrix<float> scores) noexcept {
  if (w.cols != h.cols) return Status(TKR_STATUS_INVALID_ARGUMENT, "w.cols != h.cols");
  if (bias.size() != 0 && bias.size() != w.rows)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "bias.size() is neither 0 nor w.rows");
  if (scores.rows != h.rows || scores.cols != w.rows)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "scores is not h.rows x w.rows");
  return tkr_score(dtype_v<T>, h.data, h.rows, h.cols, h.row_stride, w.data, w.rows,
                   w.row_stride, bias.size() ? bias.data() : nullptr, activation, scores.data,
                   scores.row_stride);
}

// Elementwise sigmoid (tkr_sigmoid_f32); y may be x (in place).
inline Status sigmoid(Span<const float> x, Span<float> y) noexcept {
  if (x.size() != y.size()) return Status(TKR_STATUS_INVALID_ARGUMENT, "x.size() != y.size()");
  return tkr_sigmoid_f32(x.data(), x.size(), y.data());
}

// Exact top-k of every row of scores (tkr_topk_f32): out_idx.rows == scores.rows,
// out_idx.cols >= k. counts: empty or one per row. ws: nullptr for the calling
// thread's own buffer.
inline Status topk(Matrix<const float> scores, size_t k, const TopkOptions& options,
                   Matrix<uint32_t> out_idx, Span<size_t> counts = {},
                   Workspace* ws = nullptr) noexcept {
  if (out_idx.rows != scores.rows)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "out_idx.rows != scores.rows");
  if (counts.size() != 0 && counts.size() != scores.rows)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "counts.size() is neither 0 nor scores.rows");
  return tkr_topk_f32(scores.data, scores.rows, scores.cols, scores.row_stride, k, &options,
                      out_idx.data, out_idx.row_stride, counts.size() ? counts.data() : nullptr,
                      ws ? ws->data() : nullptr, ws ? ws->size() : 0);
}

// dst[j] = src[idx[j]] (tkr_gather_rows); any element type, rows copied bit for bit.
template <class T>
Status gather_rows(Matrix<const T> src, Span<const uint32_t> idx, Matrix<T> dst) noexcept {
  static_assert(std::is_trivially_copyable_v<T>, "rows are copied bit for bit");
  if (dst.cols != src.cols) return Status(TKR_STATUS_INVALID_ARGUMENT, "dst.cols != src.cols");
  if (dst.rows < idx.size())
    return Status(TKR_STATUS_BUFFER_TOO_SMALL, "dst has fewer rows than idx has indices");
  return tkr_gather_rows(sizeof(T), src.cols, src.data, src.rows, src.row_stride, idx.data(),
                         idx.size(), dst.data, dst.row_stride);
}

// dst[idx[j]] = src[j] (tkr_scatter_rows); idx distinct.
template <class T>
Status scatter_rows(Matrix<const T> src, Span<const uint32_t> idx, Matrix<T> dst) noexcept {
  static_assert(std::is_trivially_copyable_v<T>, "rows are copied bit for bit");
  if (dst.cols != src.cols) return Status(TKR_STATUS_INVALID_ARGUMENT, "dst.cols != src.cols");
  if (src.rows < idx.size())
    return Status(TKR_STATUS_INVALID_ARGUMENT, "src has fewer rows than idx has indices");
  return tkr_scatter_rows(sizeof(T), src.cols, src.data, src.row_stride, idx.data(), idx.size(),
                          dst.data, dst.rows, dst.row_stride);
}

// Gated residual h[idx[j]] += gate[j] * y[j] (tkr_scatter_add_rows); gate empty = 1.
template <class T>
Status scatter_add_rows(Matrix<const T> y, Span<const uint32_t> idx, Span<const float> gate,
                        Matrix<T> h) noexcept {
  if (y.cols != h.cols) return Status(TKR_STATUS_INVALID_ARGUMENT, "y.cols != h.cols");
  if (y.rows < idx.size())
    return Status(TKR_STATUS_INVALID_ARGUMENT, "y has fewer rows than idx has indices");
  if (gate.size() != 0 && gate.size() != idx.size())
    return Status(TKR_STATUS_INVALID_ARGUMENT, "gate.size() is neither 0 nor idx.size()");
  return tkr_scatter_add_rows(dtype_v<T>, h.cols, h.data, h.rows, h.row_stride, idx.data(),
                              idx.size(), y.data, y.row_stride,
                              gate.size() ? gate.data() : nullptr);
}

// Attention of q over k, v (tkr_attention); keys: nullptr for every key row; out of the
// same element type as q (options.out_dtype left 0).
template <class T>
Status attention(Heads<const T> q, Heads<const T> k, Heads<const T> v,
                 const tkr_attention_keys* keys, const AttentionOptions& options,
                 Heads<T> out) noexcept {
  if (k.tokens != v.tokens || k.heads != v.heads)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "k and v differ in tokens or heads");
  if (k.dim != q.dim || v.dim != q.dim || out.dim != q.dim)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "q, k, v and out differ in dim");
  if (out.tokens != q.tokens || out.heads != q.heads)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "out is not q's tokens x heads");
  if (options.out_dtype != 0 && options.out_dtype != dtype_v<T>)
    return Status(TKR_STATUS_INVALID_ARGUMENT, "options.out_dtype differs from out's type");
  return tkr_attention(dtype_v<T>, q.data, q.tokens, q.heads, q.dim, q.token_stride,
                       q.head_stride, k.data, v.data, k.tokens, k.heads, k.token_stride,
                       k.head_stride, v.token_stride, v.head_stride, keys, &options, out.data,
                       out.token_stride, out.head_stride);
}

}  // namespace tokenroute

#endif  // TOKENROUTE_HPP
