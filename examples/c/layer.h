/*
 * The routed layer of the tokenroute examples (examples/c, examples/cpp): its sizes,
 * its deterministic weights and hidden states, and the engine's own matrix product.
 * Everything here is plain C99 that also compiles as C++; none of it calls tokenroute.
 */
#ifndef TOKENROUTE_EXAMPLE_LAYER_H
#define TOKENROUTE_EXAMPLE_LAYER_H

#include <stddef.h>
#include <stdint.h>

enum {
    N_TOKENS = 48,              /* tokens in the sequence */
    D_MODEL = 32,               /* hidden size */
    N_HEADS_Q = 4,              /* query heads */
    N_HEADS_KV = 2,             /* key/value heads (GQA: 2 query heads per KV head) */
    HEAD_DIM = 8,               /* N_HEADS_Q * HEAD_DIM == D_MODEL */
    KV_DIM = N_HEADS_KV * HEAD_DIM,
    N_KEEP = 16                 /* tokens the router keeps, the first token included */
};

/* The layer's parameters and the sequence's hidden states. */
struct example_layer {
    float h[N_TOKENS * D_MODEL];     /* hidden states [N_TOKENS, D_MODEL] */
    float router_w[D_MODEL];         /* router weights (one router) */
    float router_b;                  /* router bias */
    float wq[D_MODEL * D_MODEL];     /* [D_MODEL, N_HEADS_Q * HEAD_DIM] */
    float wk[D_MODEL * KV_DIM];      /* [D_MODEL, N_HEADS_KV * HEAD_DIM] */
    float wv[D_MODEL * KV_DIM];
    float wo[D_MODEL * D_MODEL];     /* [N_HEADS_Q * HEAD_DIM, D_MODEL] */
};

/* Uniform in [-scale, scale), from a 32-bit linear congruential generator. */
static inline float example_uniform(uint32_t *state, float scale) {
    *state = *state * 1664525u + 1013904223u;
    return scale * ((float)(*state >> 8) / 8388608.0f - 1.0f);
}

static inline void example_layer_init(struct example_layer *L) {
    uint32_t s = 12345u;
    size_t i;
    for (i = 0; i < (size_t)N_TOKENS * D_MODEL; i++) L->h[i] = example_uniform(&s, 1.0f);
    for (i = 0; i < (size_t)D_MODEL; i++) L->router_w[i] = example_uniform(&s, 0.5f);
    L->router_b = 0.25f;
    for (i = 0; i < (size_t)D_MODEL * D_MODEL; i++) L->wq[i] = example_uniform(&s, 0.35f);
    for (i = 0; i < (size_t)D_MODEL * KV_DIM; i++) L->wk[i] = example_uniform(&s, 0.35f);
    for (i = 0; i < (size_t)D_MODEL * KV_DIM; i++) L->wv[i] = example_uniform(&s, 0.35f);
    for (i = 0; i < (size_t)D_MODEL * D_MODEL; i++) L->wo[i] = example_uniform(&s, 0.35f);
}

/* The engine's own GEMM (tokenroute does not multiply matrices):
 * c[m, n] = a[m, k] * b[k, n], row-major, f32 accumulation in index order. */
static inline void example_matmul(const float *a, const float *b, float *c, size_t m, size_t k,
                                  size_t n) {
    size_t i, j, t;
    for (i = 0; i < m; i++) {
        for (j = 0; j < n; j++) {
            float acc = 0.0f;
            for (t = 0; t < k; t++) acc += a[i * k + t] * b[t * n + j];
            c[i * n + j] = acc;
        }
    }
}

#endif /* TOKENROUTE_EXAMPLE_LAYER_H */
