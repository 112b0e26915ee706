// The routed layer step of examples/c/routed_step.c, through tokenroute.hpp (C++17,
// no exceptions): score, top-k with the first token forced, gather, causal attention
// over the kept keys by their original positions, gated scatter-add. Same data, same
// calls: its output is bit for bit the C example's.
//
// Build against the installed library (one command):
//   c++ -std=c++17 -I. routed_step.cpp $(pkg-config --cflags --libs tokenroute) -o routed_step_cpp
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../c/layer.h"
#include "tokenroute.hpp"

namespace tr = tokenroute;

// Prints what failed and exits (the C++ layer never throws).
static void check(tr::Status st, const char* what) {
  if (!st) {
    std::fprintf(stderr, "%s failed: %s: %s\n", what, st.name(), st.message());
    std::exit(1);
  }
}

int main() {
  static example_layer L;
  example_layer_init(&L);
  if (tkr_abi_version() != TKR_ABI_VERSION) {
    std::fprintf(stderr, "libtokenroute has ABI %u, tokenroute.h is ABI %u\n",
                 static_cast<unsigned>(tkr_abi_version()), static_cast<unsigned>(TKR_ABI_VERSION));
    return 1;
  }
  tr::Matrix<float> h(L.h, N_TOKENS, D_MODEL);

  // 1. Router scores, one router.
  std::vector<float> scores(N_TOKENS);
  check(tr::score<float>(h, tr::Matrix<const float>(L.router_w, 1, D_MODEL),
                         tr::Span<const float>(&L.router_b, 1), TKR_ACT_SIGMOID,
                         tr::Matrix<float>(scores.data(), N_TOKENS, 1)),
        "score");

  // 2. Top N_KEEP, token 0 forced (counted within k); the kept scores are the gates.
  std::vector<uint32_t> idx(N_KEEP);
  std::vector<float> gate(N_KEEP);
  tr::TopkOptions topk;
  topk.keep_first = 1;
  topk.out_scores = gate.data();
  tr::Workspace ws;
  check(ws.reserve_topk(N_TOKENS), "reserve_topk");
  check(tr::topk(tr::Matrix<const float>(scores.data(), 1, N_TOKENS), N_KEEP, topk,
                 tr::Matrix<uint32_t>(idx.data(), 1, N_KEEP), {}, &ws),
        "topk");

  // 3. Gather the kept rows.
  std::vector<float> x(N_KEEP * D_MODEL);
  check(tr::gather_rows<float>(h, idx, tr::Matrix<float>(x.data(), N_KEEP, D_MODEL)), "gather");

  // 4. Projections (the engine's GEMM), attention by original positions, output.
  std::vector<float> q(N_KEEP * D_MODEL), k(N_KEEP * KV_DIM), v(N_KEEP * KV_DIM);
  example_matmul(x.data(), L.wq, q.data(), N_KEEP, D_MODEL, D_MODEL);
  example_matmul(x.data(), L.wk, k.data(), N_KEEP, D_MODEL, KV_DIM);
  example_matmul(x.data(), L.wv, v.data(), N_KEEP, D_MODEL, KV_DIM);
  tr::AttentionOptions ao;
  ao.flags = TKR_ATTENTION_CAUSAL;
  ao.q_positions = idx.data();
  ao.k_positions = idx.data();
  std::vector<float> attn(N_KEEP * D_MODEL), y(N_KEEP * D_MODEL);
  check(tr::attention<float>(tr::Heads<const float>(q.data(), N_KEEP, N_HEADS_Q, HEAD_DIM),
                             tr::Heads<const float>(k.data(), N_KEEP, N_HEADS_KV, HEAD_DIM),
                             tr::Heads<const float>(v.data(), N_KEEP, N_HEADS_KV, HEAD_DIM),
                             nullptr, ao,
                             tr::Heads<float>(attn.data(), N_KEEP, N_HEADS_Q, HEAD_DIM)),
        "attention");
  example_matmul(attn.data(), L.wo, y.data(), N_KEEP, D_MODEL, D_MODEL);

  // 5. Gated residual write-back.
  check(tr::scatter_add_rows<float>(tr::Matrix<const float>(y.data(), N_KEEP, D_MODEL), idx, gate,
                                    h),
        "scatter_add_rows");

  // A refused call returns its status as a value and says why.
  tr::Status bad = tr::gather_rows<float>(h, idx, tr::Matrix<float>(x.data(), 2, D_MODEL));
  if (bad.ok() || bad.code() != TKR_STATUS_BUFFER_TOO_SMALL) return 1;

  std::printf("kept");
  for (uint32_t i : idx) std::printf(" %" PRIu32, i);
  std::printf("\n");
  for (size_t i = 0; i < N_TOKENS; i++) {
    std::printf("h%zu", i);
    for (size_t j = 0; j < D_MODEL; j++) std::printf(" %a", static_cast<double>(L.h[i * D_MODEL + j]));
    std::printf("\n");
  }
  return 0;
}
