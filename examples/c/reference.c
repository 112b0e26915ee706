/*
 * The oracle of the routed layer step: the same step as routed_step.c in plain loops
 * and double precision, without tokenroute. Reads a step's output (routed_step or
 * routed_step_cpp) on stdin and checks it:
 *   - the kept tokens are exactly the reference's (top N_KEEP scores with token 0
 *     forced, ties to the lower index, ascending);
 *   - every hidden state is within 1e-5 * (1 + |ref|) of the reference (f32 vs f64
 *     rounding), and tokens that were not kept are bit for bit unchanged.
 * Exits 0 and prints "reference: ok" when the output agrees, 1 otherwise.
 *
 *   ./routed_step | ./routed_step_reference
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

static double ref_h[N_TOKENS * D_MODEL];

/* c[m, n] = a[m, k] * b[k, n] in double. */
static void matmul_f64(const double *a, const float *b, double *c, size_t m, size_t k,
                       size_t n) {
    size_t i, j, t;
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            double acc = 0.0;
            for (t = 0; t < k; t++) acc += a[i * k + t] * (double)b[t * n + j];
            c[i * n + j] = acc;
        }
}

static int fail(const char *what) {
    fprintf(stderr, "reference: mismatch: %s\n", what);
    return 1;
}

int main(void) {
    static struct example_layer L;
    static double s[N_TOKENS], x[N_KEEP * D_MODEL], q[N_KEEP * D_MODEL];
    static double k[N_KEEP * KV_DIM], v[N_KEEP * KV_DIM], attn[N_KEEP * D_MODEL];
    static double y[N_KEEP * D_MODEL], p[N_KEEP];
    static int kept[N_TOKENS];
    uint32_t idx[N_KEEP];
    size_t i, j, t, n_kept = 0;
    double worst = 0.0;

    example_layer_init(&L);

    /* 1. Scores. */
    for (i = 0; i < N_TOKENS; i++) {
        double z = L.router_b;
        for (j = 0; j < D_MODEL; j++) z += (double)L.h[i * D_MODEL + j] * L.router_w[j];
        s[i] = 1.0 / (1.0 + exp(-z));
    }
    /* 2. Token 0, then the best others until N_KEEP (ties to the lower index); the
     *    step is only meaningful if the choice is not decided by rounding. */
    kept[0] = 1;
    for (n_kept = 1; n_kept < N_KEEP; n_kept++) {
        size_t best = N_TOKENS;
        for (i = 0; i < N_TOKENS; i++)
            if (!kept[i] && (best == N_TOKENS || s[i] > s[best])) best = i;
        kept[best] = 1;
    }
    for (i = 0, n_kept = 0; i < N_TOKENS; i++)
        if (kept[i]) idx[n_kept++] = (uint32_t)i;
    for (i = 1; i < N_TOKENS; i++)
        for (j = 1; j < N_TOKENS; j++)
            if (kept[i] && !kept[j] && s[i] - s[j] < 1e-6) return fail("scores too close to call");

    /* 3.-4. Gather, projections, causal GQA attention by original positions. */
    for (j = 0; j < N_KEEP; j++)
        for (t = 0; t < D_MODEL; t++) x[j * D_MODEL + t] = L.h[idx[j] * D_MODEL + t];
    matmul_f64(x, L.wq, q, N_KEEP, D_MODEL, D_MODEL);
    matmul_f64(x, L.wk, k, N_KEEP, D_MODEL, KV_DIM);
    matmul_f64(x, L.wv, v, N_KEEP, D_MODEL, KV_DIM);
    for (i = 0; i < N_KEEP; i++) {
        size_t h;
        for (h = 0; h < N_HEADS_Q; h++) {
            size_t g = h / (N_HEADS_Q / N_HEADS_KV);
            double m = -INFINITY, sum = 0.0;
            for (j = 0; j < N_KEEP; j++) {
                double dot = 0.0;
                if (idx[j] > idx[i]) continue;
                for (t = 0; t < HEAD_DIM; t++)
                    dot += q[i * D_MODEL + h * HEAD_DIM + t] * k[j * KV_DIM + g * HEAD_DIM + t];
                p[j] = dot / sqrt((double)HEAD_DIM);
                if (p[j] > m) m = p[j];
            }
            for (t = 0; t < HEAD_DIM; t++) attn[i * D_MODEL + h * HEAD_DIM + t] = 0.0;
            for (j = 0; j < N_KEEP; j++) {
                double w;
                if (idx[j] > idx[i]) continue;
                w = exp(p[j] - m);
                sum += w;
                for (t = 0; t < HEAD_DIM; t++)
                    attn[i * D_MODEL + h * HEAD_DIM + t] += w * v[j * KV_DIM + g * HEAD_DIM + t];
            }
            for (t = 0; t < HEAD_DIM; t++) attn[i * D_MODEL + h * HEAD_DIM + t] /= sum;
        }
    }
    matmul_f64(attn, L.wo, y, N_KEEP, D_MODEL, D_MODEL);
    /* 5. Gated residual. */
    for (i = 0; i < (size_t)N_TOKENS * D_MODEL; i++) ref_h[i] = L.h[i];
    for (j = 0; j < N_KEEP; j++)
        for (t = 0; t < D_MODEL; t++) ref_h[idx[j] * D_MODEL + t] += s[idx[j]] * y[j * D_MODEL + t];

    /* Compare with the output on stdin. */
    {
        char word[64];
        if (scanf("%63s", word) != 1 || strcmp(word, "kept") != 0) return fail("no 'kept' line");
        for (j = 0; j < N_KEEP; j++) {
            unsigned got;
            if (scanf("%u", &got) != 1 || got != idx[j]) return fail("kept tokens differ");
        }
        for (i = 0; i < N_TOKENS; i++) {
            if (scanf("%63s", word) != 1 || word[0] != 'h') return fail("missing hidden-state row");
            for (t = 0; t < D_MODEL; t++) {
                double got, want = ref_h[i * D_MODEL + t], err;
                if (scanf("%63s", word) != 1) return fail("short hidden-state row");
                got = strtod(word, NULL);
                if (!kept[i] && got != (double)L.h[i * D_MODEL + t])
                    return fail("a token that was not kept changed");
                err = fabs(got - want) / (1.0 + fabs(want));
                if (!(err <= 1e-5)) {
                    fprintf(stderr, "h[%zu][%zu] = %.9g, reference %.9g\n", i, t, got, want);
                    return fail("hidden state outside the tolerance");
                }
                if (err > worst) worst = err;
            }
        }
    }
    printf("reference: ok (%d kept tokens identical, largest relative error %.2e)\n",
           N_KEEP, worst);
    return 0;
}
