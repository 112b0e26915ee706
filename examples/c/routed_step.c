/*
 * One routed transformer layer step through the tokenroute C API:
 *
 *   1. score every token with a router:      s_i = sigmoid(w . h_i + b)   (tkr_score)
 *   2. keep the top N_KEEP, token 0 forced:  idx = top-k(s)                (tkr_topk_f32)
 *   3. gather the kept rows:                 x = h[idx]                    (tkr_gather_rows)
 *   4. the layer on the kept rows only: q, k, v projections (the engine's GEMM), causal
 *      attention of the kept queries over the kept keys by their ORIGINAL positions
 *      (tkr_attention), the output projection
 *   5. write back with a gated residual:     h[idx] += s[idx] * y          (tkr_scatter_add_rows)
 *
 * Tokens that were not kept skip the layer and keep their hidden state (Mixture-of-
 * Depths). Every call's status is checked. Prints the kept indices and the final hidden
 * states as exact hexadecimal floats.
 *
 * Build against the installed library (one command):
 *   cc -std=c99 routed_step.c $(pkg-config --cflags --libs tokenroute) -o routed_step
 * or with CMake (examples/CMakeLists.txt):
 *   cmake -S examples -B build -DCMAKE_PREFIX_PATH=<prefix> && cmake --build build
 */
#include <stdio.h>
#include <stdlib.h>

#include <tokenroute.h>

#include "layer.h"

/* Checks a tokenroute status; on error prints the status, which argument and which
 * rule failed (tkr_last_error_message), and exits. */
#define CHECK(call)                                                                  \
    do {                                                                             \
        tkr_status st_ = (call);                                                     \
        if (st_ != TKR_STATUS_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call, \
                    tkr_status_string(st_), tkr_last_error_message());               \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

int main(void) {
    static struct example_layer L;
    static float scores[N_TOKENS];
    static uint32_t idx[N_KEEP];
    static float gate[N_KEEP];
    static float x[N_KEEP * D_MODEL];
    static float q[N_KEEP * D_MODEL], k[N_KEEP * KV_DIM], v[N_KEEP * KV_DIM];
    static float attn[N_KEEP * D_MODEL], y[N_KEEP * D_MODEL];
    size_t i, j;

    example_layer_init(&L);
    if (tkr_abi_version() != TKR_ABI_VERSION) {
        fprintf(stderr, "libtokenroute has ABI %u, tokenroute.h is ABI %u\n",
                (unsigned)tkr_abi_version(), (unsigned)TKR_ABI_VERSION);
        return 1;
    }

    /* README-BEGIN: route */
    /* 1. Router scores of the n tokens (one router, E = 1): s = sigmoid(h . w + b). */
    CHECK(tkr_score(TKR_DTYPE_F32, L.h, N_TOKENS, D_MODEL, /*h_row_stride=*/D_MODEL,
                    L.router_w, /*n_routers=*/1, /*w_row_stride=*/D_MODEL, &L.router_b,
                    TKR_ACT_SIGMOID, scores, /*scores_row_stride=*/1));

    /* 2. Exact top-k by score, the first token always kept (it counts within k).
     *    idx gets the kept positions in ascending order, gate their scores. */
    tkr_topk_options topk;
    CHECK(tkr_topk_options_init(&topk));
    topk.keep_first = 1;
    topk.out_scores = gate;
    CHECK(tkr_topk_f32(scores, /*batch=*/1, N_TOKENS, /*scores_row_stride=*/N_TOKENS,
                       N_KEEP, &topk, idx, /*out_row_stride=*/N_KEEP, /*out_counts=*/NULL,
                       /*workspace=*/NULL, 0));

    /* 3. The kept rows, compacted: x[j] = h[idx[j]]. */
    CHECK(tkr_gather_rows(sizeof(float), D_MODEL, L.h, N_TOKENS, D_MODEL, idx, N_KEEP,
                          x, D_MODEL));
    /* README-END: route */

    /* 4. The layer on the kept rows: projections (the engine's own GEMM) ... */
    example_matmul(x, L.wq, q, N_KEEP, D_MODEL, D_MODEL);
    example_matmul(x, L.wk, k, N_KEEP, D_MODEL, KV_DIM);
    example_matmul(x, L.wv, v, N_KEEP, D_MODEL, KV_DIM);

    /* ... causal attention of the kept queries over the kept keys, masked by the
     * tokens' original positions (idx), GQA with N_HEADS_Q / N_HEADS_KV query heads
     * per KV head. Tensors are [tokens, heads, HEAD_DIM], strides in elements. */
    tkr_attention_options ao;
    CHECK(tkr_attention_options_init(&ao));
    ao.flags = TKR_ATTENTION_CAUSAL;
    ao.q_positions = idx;
    ao.k_positions = idx;
    CHECK(tkr_attention(TKR_DTYPE_F32, q, N_KEEP, N_HEADS_Q, HEAD_DIM,
                        /*q_token_stride=*/D_MODEL, /*q_head_stride=*/HEAD_DIM,
                        k, v, N_KEEP, N_HEADS_KV,
                        /*k strides=*/KV_DIM, HEAD_DIM, /*v strides=*/KV_DIM, HEAD_DIM,
                        /*keys: dense over the kept rows=*/NULL, &ao,
                        attn, /*out strides=*/D_MODEL, HEAD_DIM));
    example_matmul(attn, L.wo, y, N_KEEP, D_MODEL, D_MODEL);

    /* 5. Gated residual write-back: h[idx[j]] += gate[j] * y[j]; the other tokens
     *    skipped the layer and keep their state. */
    CHECK(tkr_scatter_add_rows(TKR_DTYPE_F32, D_MODEL, L.h, N_TOKENS, D_MODEL, idx, N_KEEP,
                               y, D_MODEL, gate));

    printf("kept");
    for (j = 0; j < N_KEEP; j++) printf(" %u", (unsigned)idx[j]);
    printf("\n");
    for (i = 0; i < N_TOKENS; i++) {
        printf("h%zu", i);
        for (j = 0; j < D_MODEL; j++) printf(" %a", (double)L.h[i * D_MODEL + j]);
        printf("\n");
    }
    return 0;
}
