/* The fused route call through the C API, against the three calls it replaces
 * (tkr_score, tkr_topk_f32 / tkr_threshold_f32, tkr_gather_rows), and its error paths. */
#include <math.h>

#include "check.h"

enum { N = 300, D = 19, CAP = 310 };

static float h[N * D], w[D];

static void fill(void) {
    uint32_t x = 12345u;
    int i;
    for (i = 0; i < N * D; i++) {
        x = x * 1664525u + 1013904223u;
        h[i] = (float)((int)(x >> 9) % 2001 - 1000) / 500.0f;
    }
    for (i = 0; i < D; i++) w[i] = (float)(i % 5 - 2) * 0.1f;
    /* Two identical rows (a tie) and one NaN score. */
    memcpy(h + 7 * D, h + 3 * D, D * sizeof(float));
    h[11 * D] = NAN;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

static void test_topk_matches_separate_calls(void) {
    static float scores[N], want_rows[CAP * D], got_rows[CAP * D], want_sel[CAP], got_sel[CAP];
    static uint32_t want_idx[CAP], got_idx[CAP];
    unsigned char mask[N];
    const float bias = 0.25f;
    size_t count = 0, want_count = 0, ws_bytes = 0;
    int i;
    tkr_route_options ro;
    tkr_topk_options to;
    for (i = 0; i < N; i++) mask[i] = (unsigned char)(i % 50 == 9);
    CHECK_STATUS(tkr_route_options_init(&ro), TKR_STATUS_OK);
    CHECK_STATUS(tkr_topk_options_init(&to), TKR_STATUS_OK);
    ro.flags = to.flags = TKR_TOPK_ORDER_SCORE;
    ro.keep_first = to.keep_first = 2;
    ro.keep_mask = to.keep_mask = mask;
    to.out_scores = want_sel;
    to.out_scores_row_stride = 100;

    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, D, w, 1, D, &bias, TKR_ACT_SIGMOID, scores, 1), TKR_STATUS_OK);
    CHECK_STATUS(tkr_topk_f32(scores, 1, N, N, 100, &to, want_idx, 100, &want_count, NULL, 0), TKR_STATUS_OK);
    CHECK_STATUS(tkr_gather_rows(4, D, h, N, D, want_idx, 100, want_rows, D), TKR_STATUS_OK);

    CHECK_STATUS(tkr_route_workspace_size(N, &ws_bytes), TKR_STATUS_OK);
    CHECK(ws_bytes == 16 * N);
    {
        uint64_t *ws = (uint64_t *)malloc(ws_bytes);
        CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, &bias, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 100, 0.0f, &ro,
                               got_idx, got_sel, got_rows, D, CAP, &count, ws, ws_bytes),
                     TKR_STATUS_OK);
        free(ws);
    }
    CHECK(count == 100 && want_count == 100);
    CHECK(same_bits(got_idx, want_idx, 100 * sizeof(uint32_t)));
    CHECK(same_bits(got_sel, want_sel, 100 * sizeof(float)));
    CHECK(same_bits(got_rows, want_rows, 100 * D * sizeof(float)));
    /* The same through the thread's own workspace (NULL, 0) and without scores. */
    memset(got_rows, 0, sizeof got_rows);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, &bias, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 100, 0.0f, &ro,
                           got_idx, NULL, got_rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(same_bits(got_rows, want_rows, 100 * D * sizeof(float)));
    /* out_idx = NULL (not wanted, as documented): the same scores and rows, through a
     * caller workspace of tkr_route_workspace_size bytes and through the thread's own. */
    memset(got_rows, 0, sizeof got_rows);
    memset(got_sel, 0, sizeof got_sel);
    {
        uint64_t *ws = (uint64_t *)malloc(ws_bytes);
        CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, &bias, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 100, 0.0f, &ro,
                               NULL, got_sel, got_rows, D, CAP, &count, ws, ws_bytes),
                     TKR_STATUS_OK);
        free(ws);
    }
    CHECK(count == 100);
    CHECK(same_bits(got_sel, want_sel, 100 * sizeof(float)));
    CHECK(same_bits(got_rows, want_rows, 100 * D * sizeof(float)));
    memset(got_rows, 0, sizeof got_rows);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, &bias, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 100, 0.0f, &ro,
                           NULL, NULL, got_rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(same_bits(got_rows, want_rows, 100 * D * sizeof(float)));
}

static void test_threshold_matches_separate_calls(void) {
    static float scores[N], want_rows[N * D], got_rows[CAP * D], got_sel[CAP];
    static uint32_t want_idx[N], got_idx[CAP];
    uint16_t hb[N * D], wb[D], rows_b[CAP * D], want_b[N * D];
    size_t count = 0, want_count = 0;
    size_t j;
    int i;
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, D, w, 1, D, NULL, TKR_ACT_SIGMOID, scores, 1), TKR_STATUS_OK);
    CHECK_STATUS(tkr_threshold_f32(scores, 1, N, N, 0.5f, NULL, want_idx, N, &want_count), TKR_STATUS_OK);
    CHECK_STATUS(tkr_gather_rows(4, D, h, N, D, want_idx, want_count, want_rows, D), TKR_STATUS_OK);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_THRESHOLD, 0, 0.5f, NULL,
                           got_idx, got_sel, got_rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(count == want_count && count > 0 && count < N);
    CHECK(same_bits(got_idx, want_idx, count * sizeof(uint32_t)));
    CHECK(same_bits(got_rows, want_rows, count * D * sizeof(float)));
    for (j = 0; j < count; j++) CHECK(same_bits(&got_sel[j], &scores[got_idx[j]], sizeof(float)));

    /* bf16 hidden states and router. */
    for (i = 0; i < N * D; i++) {
        uint32_t b;
        memcpy(&b, &h[i], sizeof b);
        hb[i] = (uint16_t)(b >> 16);
    }
    for (i = 0; i < D; i++) {
        uint32_t b;
        memcpy(&b, &w[i], sizeof b);
        wb[i] = (uint16_t)(b >> 16);
    }
    CHECK_STATUS(tkr_score(TKR_DTYPE_BF16, hb, N, D, D, wb, 1, D, NULL, TKR_ACT_NONE, scores, 1), TKR_STATUS_OK);
    CHECK_STATUS(tkr_threshold_f32(scores, 1, N, N, 0.0f, NULL, want_idx, N, &want_count), TKR_STATUS_OK);
    CHECK_STATUS(tkr_gather_rows(2, D, hb, N, D, want_idx, want_count, want_b, D), TKR_STATUS_OK);
    CHECK_STATUS(tkr_route(TKR_DTYPE_BF16, hb, N, D, D, wb, NULL, TKR_ACT_NONE, TKR_ROUTE_THRESHOLD, 0, 0.0f, NULL,
                           got_idx, NULL, rows_b, D, N, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(count == want_count);
    CHECK(same_bits(got_idx, want_idx, count * sizeof(uint32_t)));
    CHECK(same_bits(rows_b, want_b, count * D * sizeof(uint16_t)));
    /* out_idx = NULL: the same rows. */
    memset(rows_b, 0, sizeof rows_b);
    CHECK_STATUS(tkr_route(TKR_DTYPE_BF16, hb, N, D, D, wb, NULL, TKR_ACT_NONE, TKR_ROUTE_THRESHOLD, 0, 0.0f, NULL,
                           NULL, NULL, rows_b, D, N, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(count == want_count);
    CHECK(same_bits(rows_b, want_b, count * D * sizeof(uint16_t)));
}

static void test_errors_write_nothing(void) {
    static float rows[CAP * D], sel[CAP];
    static uint32_t idx[CAP];
    size_t count = 777;
    uint64_t ws[4];
    tkr_route_options ro;
    int i;
    for (i = 0; i < CAP; i++) idx[i] = 0xdeadbeefu;
    memset(rows, 0, sizeof rows);
    CHECK_STATUS(tkr_route_options_init(&ro), TKR_STATUS_OK);
    /* k > n, unknown mode / dtype / activation, capacity too small (threshold needs n). */
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, N + 1, 0.0f, NULL,
                           idx, sel, rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, 9, 1, 0.0f, NULL, idx, sel, rows, D,
                           CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_route(7, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 1, 0.0f, NULL, idx, sel, rows,
                           D, CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, 5, TKR_ROUTE_TOPK, 1, 0.0f, NULL, idx, sel, rows, D,
                           CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_THRESHOLD, 0, 0.5f, NULL,
                           idx, sel, rows, D, N - 1, &count, NULL, 0),
                 TKR_STATUS_BUFFER_TOO_SMALL);
    /* Forced keeps beyond k; a flag with threshold selection; capacity without its flag. */
    ro.keep_first = 10;
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, &ro, idx,
                           sel, rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    ro.keep_first = 0;
    ro.flags = TKR_TOPK_ORDER_SCORE;
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_THRESHOLD, 0, 0.5f, &ro,
                           idx, sel, rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    ro.flags = 0;
    ro.capacity = 0.5;
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, &ro, idx,
                           sel, rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_INVALID_ARGUMENT);
    ro.capacity = 0.0;
    /* Short workspace, NULL count, an output over the input, bad stride. */
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, NULL, idx,
                           sel, rows, D, CAP, &count, ws, sizeof ws),
                 TKR_STATUS_BUFFER_TOO_SMALL);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, NULL, idx,
                           sel, rows, D, CAP, NULL, NULL, 0),
                 TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, NULL, idx,
                           sel, h + D, D, 5, &count, NULL, 0),
                 TKR_STATUS_OVERLAP);
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, h, N, D, D - 1, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5, 0.0f, NULL,
                           idx, sel, rows, D, CAP, &count, NULL, 0),
                 TKR_STATUS_BAD_STRIDE);
    CHECK(count == 777);
    for (i = 0; i < CAP; i++) CHECK(idx[i] == 0xdeadbeefu);
    for (i = 0; i < CAP * D; i++) CHECK(rows[i] == 0.0f);
    /* An empty sequence. */
    CHECK_STATUS(tkr_route(TKR_DTYPE_F32, NULL, 0, D, D, w, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 0, 0.0f, NULL,
                           NULL, NULL, NULL, D, 0, &count, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(count == 0);
}

int main(void) {
    check_expected_isa();
    fill();
    test_topk_matches_separate_calls();
    test_threshold_matches_separate_calls();
    test_errors_write_nothing();
    return finish_tests("route");
}
