/* Token compaction through the C API, exactly as a C99 user calls it: gather, scatter,
 * gated scatter-add, in-place compaction of rows and side arrays, KV-cache compaction,
 * and every bad input leaving the buffers untouched. */
#include "check.h"

static uint16_t bf16_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return (uint16_t)(b >> 16); /* exact for the small values used here */
}

static float f32_of_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static void test_gather_scatter(void) {
    enum { ROWS = 6, COLS = 5, SS = 7, DS = 6 };
    float src[ROWS * SS], dst[3 * DS], back[ROWS * SS];
    const uint32_t idx[3] = {4, 0, 4};
    int i, j, c;
    for (i = 0; i < ROWS * SS; i++) src[i] = (float)i;
    for (i = 0; i < 3 * DS; i++) dst[i] = -1.0f;
    CHECK_STATUS(tkr_gather_rows(sizeof(float), COLS, src, ROWS, SS, idx, 3, dst, DS), TKR_STATUS_OK);
    for (j = 0; j < 3; j++)
        for (c = 0; c < DS; c++)
            CHECK(dst[j * DS + c] == (c < COLS ? src[idx[j] * SS + c] : -1.0f));

    /* Scatter two rows back into a copy (distinct indices, any order). */
    {
        const uint32_t sidx[2] = {5, 1};
        memcpy(back, src, sizeof back);
        CHECK_STATUS(tkr_scatter_rows(sizeof(float), COLS, dst, DS, sidx, 2, back, ROWS, SS), TKR_STATUS_OK);
        for (i = 0; i < ROWS; i++)
            for (c = 0; c < SS; c++) {
                float want = src[i * SS + c];
                if (c < COLS && i == 5) want = dst[0 * DS + c];
                if (c < COLS && i == 1) want = dst[1 * DS + c];
                CHECK(back[i * SS + c] == want);
            }
    }

    /* bf16 rows (uint16_t) and an odd element size (3 bytes), unaligned. */
    {
        uint16_t h[4 * 3], out[2 * 3];
        const uint32_t g[2] = {3, 1};
        unsigned char bytes[1 + 4 * 2 * 3], got[1 + 2 * 2 * 3];
        for (i = 0; i < 12; i++) h[i] = bf16_of((float)i);
        CHECK_STATUS(tkr_gather_rows(2, 3, h, 4, 3, g, 2, out, 3), TKR_STATUS_OK);
        CHECK(f32_of_bf16(out[0]) == 9.0f && f32_of_bf16(out[5]) == 5.0f);
        for (i = 0; i < (int)sizeof bytes; i++) bytes[i] = (unsigned char)i;
        memset(got, 0, sizeof got);
        CHECK_STATUS(tkr_gather_rows(3, 2, bytes + 1, 4, 2, g, 2, got + 1, 2), TKR_STATUS_OK);
        for (i = 0; i < 6; i++) {
            CHECK(got[1 + i] == bytes[1 + 3 * 6 + i]);
            CHECK(got[1 + 6 + i] == bytes[1 + 1 * 6 + i]);
        }
        CHECK(got[0] == 0);
    }
}

static void test_gather_scatter_errors(void) {
    float src[4 * 4], dst[4 * 4], keep_dst[4 * 4];
    const uint32_t idx[2] = {1, 3};
    const uint32_t bad[2] = {1, 4};
    const uint32_t dup[3] = {2, 0, 2};
    uint32_t aligned[3] = {0, 1, 2};
    int i;
    for (i = 0; i < 16; i++) {
        src[i] = (float)i;
        dst[i] = -7.0f;
    }
    memcpy(keep_dst, dst, sizeof dst);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 4, bad, 2, dst, 4), TKR_STATUS_OUT_OF_RANGE);
    CHECK_STATUS(tkr_gather_rows(4, 4, NULL, 4, 4, idx, 2, dst, 4), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 4, NULL, 2, dst, 4), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 4, idx, 2, NULL, 4), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_gather_rows(0, 4, src, 4, 4, idx, 2, dst, 4), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 3, idx, 2, dst, 4), TKR_STATUS_BAD_STRIDE);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 4, idx, 2, src + 8, 4), TKR_STATUS_OVERLAP);
    CHECK_STATUS(tkr_gather_rows(4, (size_t)1 << 62, src, 4, (size_t)1 << 62, idx, 2, dst, (size_t)1 << 62),
                 TKR_STATUS_SIZE_OVERFLOW);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, SIZE_MAX / 2, 4, idx, 2, dst, 4), TKR_STATUS_SIZE_OVERFLOW);
    CHECK_STATUS(tkr_gather_rows(4, 4, src, 4, 4, (const uint32_t *)((const char *)aligned + 1), 2, dst, 4),
                 TKR_STATUS_INVALID_ARGUMENT);
    /* The destination may not overlap the index list either. */
    CHECK_STATUS(tkr_gather_rows(4, 1, src, 4, 1, aligned, 3, aligned + 1, 1), TKR_STATUS_OVERLAP);
    CHECK_STATUS(tkr_scatter_rows(4, 4, src, 4, dup, 3, dst, 4, 4), TKR_STATUS_DUPLICATE_INDEX);
    CHECK_STATUS(tkr_scatter_rows(4, 4, src, 4, bad, 2, dst, 4, 4), TKR_STATUS_OUT_OF_RANGE);
    CHECK_STATUS(tkr_scatter_rows(4, 4, src, 4, idx, 2, src, 4, 4), TKR_STATUS_OVERLAP);
    CHECK(memcmp(dst, keep_dst, sizeof dst) == 0);
    CHECK(aligned[1] == 1 && aligned[2] == 2);
    /* Empty: (NULL, 0) everywhere is fine. */
    CHECK_STATUS(tkr_gather_rows(4, 4, NULL, 0, 4, NULL, 0, NULL, 4), TKR_STATUS_OK);
    CHECK_STATUS(tkr_scatter_rows(4, 4, NULL, 4, NULL, 0, NULL, 0, 4), TKR_STATUS_OK);
}

static void test_scatter_add(void) {
    enum { ROWS = 5, D = 19 };
    float h[ROWS * D], y[2 * D], h0[ROWS * D];
    const float gate[2] = {0.5f, 2.0f};
    const uint32_t idx[2] = {3, 1};
    int i, c;
    for (i = 0; i < ROWS * D; i++) h[i] = (float)i;
    for (i = 0; i < 2 * D; i++) y[i] = (float)(i % 7) - 3.0f;
    memcpy(h0, h, sizeof h);
    CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D, idx, 2, y, D, gate), TKR_STATUS_OK);
    for (i = 0; i < ROWS; i++)
        for (c = 0; c < D; c++) {
            float want = h0[i * D + c];
            if (i == 3) want += gate[0] * y[c];
            if (i == 1) want += gate[1] * y[D + c];
            CHECK(h[i * D + c] == want);
        }
    /* NULL gate means 1. */
    memcpy(h, h0, sizeof h);
    CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D, idx, 2, y, D, NULL), TKR_STATUS_OK);
    CHECK(h[3 * D + 4] == h0[3 * D + 4] + y[4]);
    CHECK(h[0] == h0[0]);

    /* bf16: 1 + 2^-8 is a tie and rounds to even (1.0); 1 + 3 * 2^-8 rounds up. */
    {
        uint16_t hb[2] = {bf16_of(1.0f), bf16_of(1.0f)};
        uint16_t yb[2] = {bf16_of(0.00390625f), bf16_of(0.01171875f)};
        const uint32_t one[1] = {0};
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_BF16, 2, hb, 1, 2, one, 1, yb, 2, NULL), TKR_STATUS_OK);
        CHECK(hb[0] == bf16_of(1.0f));
        CHECK(hb[1] == 0x3f82); /* 1 + 2^-6 */
    }
    /* f16: 1.0 (0x3c00) + 2^-11 (0x1000) is a tie, rounds to even. */
    {
        uint16_t hf[1] = {0x3c00}, yf[1] = {0x1000};
        const uint32_t one[1] = {0};
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F16, 1, hf, 1, 1, one, 1, yf, 1, NULL), TKR_STATUS_OK);
        CHECK(hf[0] == 0x3c00);
    }
    /* Errors: nothing written. */
    {
        const uint32_t dup[2] = {2, 2};
        memcpy(h, h0, sizeof h);
        CHECK_STATUS(tkr_scatter_add_rows(9, D, h, ROWS, D, idx, 2, y, D, gate), TKR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D, dup, 2, y, D, gate),
                     TKR_STATUS_DUPLICATE_INDEX);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D, idx, 2, h + D, D, gate), TKR_STATUS_OVERLAP);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D, idx, 2, y, D, (const float *)h),
                     TKR_STATUS_OVERLAP);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, 3, D, idx, 2, y, D, gate), TKR_STATUS_OUT_OF_RANGE);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, h, ROWS, D - 1, idx, 2, y, D, gate),
                     TKR_STATUS_BAD_STRIDE);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, (char *)h + 2, ROWS - 1, D, idx, 2, y, D, gate),
                     TKR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_F32, D, NULL, ROWS, D, idx, 2, y, D, gate),
                     TKR_STATUS_NULL_POINTER);
        CHECK(memcmp(h, h0, sizeof h) == 0);
        CHECK_STATUS(tkr_scatter_add_rows(TKR_DTYPE_BF16, D, NULL, 0, D, NULL, 0, NULL, D, NULL), TKR_STATUS_OK);
    }
}

static void test_compact(void) {
    enum { N = 10, C = 3 };
    float rows[N * C];
    int32_t pos[N];
    unsigned char mask[N];
    const uint32_t keep[4] = {0, 3, 4, 8};
    size_t new_len = 0;
    int i, c;
    for (i = 0; i < N * C; i++) rows[i] = (float)i;
    for (i = 0; i < N; i++) {
        pos[i] = i * 10;
        mask[i] = (unsigned char)(i + 1);
    }
    CHECK_STATUS(tkr_compact_rows(sizeof(float), C, rows, N, C, keep, 4, &new_len), TKR_STATUS_OK);
    CHECK(new_len == 4);
    CHECK_STATUS(tkr_compact_rows(sizeof(int32_t), 1, pos, N, 1, keep, 4, NULL), TKR_STATUS_OK);
    CHECK_STATUS(tkr_compact_rows(1, 1, mask, N, 1, keep, 4, &new_len), TKR_STATUS_OK);
    for (i = 0; i < 4; i++) {
        for (c = 0; c < C; c++) CHECK(rows[i * C + c] == (float)(keep[i] * C + (uint32_t)c));
        CHECK(pos[i] == (int32_t)keep[i] * 10);
        CHECK(mask[i] == keep[i] + 1);
    }
    /* The tail keeps its old contents. */
    CHECK(pos[4] == 40 && pos[9] == 90);
    {
        const uint32_t unsorted[3] = {1, 5, 2};
        const uint32_t dup[3] = {1, 5, 5};
        const uint32_t oor[2] = {1, 10};
        int32_t before[N];
        memcpy(before, pos, sizeof pos);
        new_len = 77;
        CHECK_STATUS(tkr_compact_rows(4, 1, pos, N, 1, unsorted, 3, &new_len), TKR_STATUS_UNSORTED_INDEX);
        CHECK_STATUS(tkr_compact_rows(4, 1, pos, N, 1, dup, 3, &new_len), TKR_STATUS_DUPLICATE_INDEX);
        CHECK_STATUS(tkr_compact_rows(4, 1, pos, N, 1, oor, 2, &new_len), TKR_STATUS_OUT_OF_RANGE);
        CHECK_STATUS(tkr_compact_rows(4, 1, pos, N, 1, (const uint32_t *)pos, 2, &new_len), TKR_STATUS_OVERLAP);
        CHECK_STATUS(tkr_compact_rows(4, 1, pos, N, 1, keep, 4, (size_t *)(void *)pos), TKR_STATUS_OVERLAP);
        CHECK_STATUS(tkr_compact_rows(4, 2, pos, 5, 1, keep, 4, &new_len), TKR_STATUS_BAD_STRIDE);
        CHECK_STATUS(tkr_compact_rows(4, 1, NULL, N, 1, keep, 4, &new_len), TKR_STATUS_NULL_POINTER);
        CHECK(memcmp(pos, before, sizeof pos) == 0);
        CHECK(new_len == 77);
    }
}

static void test_kv(void) {
    /* [T=6, H=2, D=3] token-major and the same data head-major with capacity 8. */
    enum { T = 6, H = 2, D = 3, CAP = 8 };
    uint16_t tm[T * H * D], hm[H * CAP * D];
    const uint32_t shared[3] = {1, 2, 5};
    const uint32_t per_head[2 * 3] = {0, 4, 5, 1, 2, 3};
    size_t n = 0;
    int t, h, c;
    for (t = 0; t < T; t++)
        for (h = 0; h < H; h++)
            for (c = 0; c < D; c++) {
                uint16_t v = (uint16_t)(t * 100 + h * 10 + c);
                tm[(t * H + h) * D + c] = v;
                hm[(h * CAP + t) * D + c] = v;
            }
    CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, T, H, D, H * D, D, shared, 3, TKR_KV_KEEP_SHARED, &n),
                 TKR_STATUS_OK);
    CHECK(n == 3);
    CHECK_STATUS(
        tkr_kv_compact(TKR_KV_HEAD_MAJOR, 2, hm, T, H, D, D, CAP * D, per_head, 3, TKR_KV_KEEP_PER_HEAD, &n),
        TKR_STATUS_OK);
    for (t = 0; t < 3; t++)
        for (h = 0; h < H; h++)
            for (c = 0; c < D; c++) {
                CHECK(tm[(t * H + h) * D + c] == (uint16_t)(shared[t] * 100 + (uint32_t)h * 10 + (uint32_t)c));
                CHECK(hm[(h * CAP + t) * D + c] ==
                      (uint16_t)(per_head[h * 3 + t] * 100 + (uint32_t)h * 10 + (uint32_t)c));
            }
    {
        uint16_t before[T * H * D];
        const uint32_t bad_second[2 * 2] = {0, 1, 3, 2};
        memcpy(before, tm, sizeof tm);
        CHECK_STATUS(tkr_kv_compact(9, 2, tm, T, H, D, H * D, D, shared, 3, TKR_KV_KEEP_SHARED, &n),
                     TKR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, T, H, D, H * D, D, shared, 3, 7, &n),
                     TKR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, T, H, D, H * D, D, bad_second, 2,
                                    TKR_KV_KEEP_PER_HEAD, &n),
                     TKR_STATUS_UNSORTED_INDEX);
        CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, T, H, D, H * D - 1, D, shared, 3,
                                    TKR_KV_KEEP_SHARED, &n),
                     TKR_STATUS_BAD_STRIDE);
        CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, SIZE_MAX, H, D, H * D, D, shared, 3,
                                    TKR_KV_KEEP_SHARED, &n),
                     TKR_STATUS_SIZE_OVERFLOW);
        CHECK_STATUS(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 2, tm, T, H, D, H * D, D, (const uint32_t *)(void *)tm, 3,
                                    TKR_KV_KEEP_SHARED, &n),
                     TKR_STATUS_OVERLAP);
        CHECK(memcmp(tm, before, sizeof tm) == 0);
    }
}

int main(void) {
    check_expected_isa();
    test_gather_scatter();
    test_gather_scatter_errors();
    test_scatter_add();
    test_compact();
    test_kv();
    return finish_tests("compact");
}
