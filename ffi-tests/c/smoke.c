/* Foundation and scoring through the C API, exactly as a C99 user calls it. */
#include <math.h>

#include "check.h"

static float canary(void) {
    float f;
    uint32_t bits = 0x7fa5a5a5u;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int is_canary(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits == 0x7fa5a5a5u;
}

/* f16 / bf16 encodings of small integers and halves, exact. */
static uint16_t bf16_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return (uint16_t)(b >> 16);
}

static uint16_t f16_of(float f) {
    /* Only for values exactly representable as normal f16 (the test uses k/4). */
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    uint32_t sign = (b >> 16) & 0x8000u;
    if ((b & 0x7fffffffu) == 0) return (uint16_t)sign;
    int32_t exp = (int32_t)((b >> 23) & 0xff) - 127 + 15;
    uint32_t man = (b >> 13) & 0x3ffu;
    return (uint16_t)(sign | ((uint32_t)exp << 10) | man);
}

static double sigmoid_ref(double x) { return 1.0 / (1.0 + exp(-x)); }

static void test_versions(void) {
    CHECK(tkr_version_number() == TKR_VERSION_NUMBER);
    CHECK(tkr_abi_version() == TKR_ABI_VERSION);
    CHECK(TKR_VERSION_NUMBER == TKR_VERSION_MAJOR * 10000 + TKR_VERSION_MINOR * 100 + TKR_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TKR_VERSION_MAJOR, TKR_VERSION_MINOR, TKR_VERSION_PATCH);
    CHECK(strcmp(tkr_version_string(), want) == 0);
}

static void test_status_and_isa_names(void) {
    CHECK(strcmp(tkr_status_string(TKR_STATUS_OK), "TKR_STATUS_OK") == 0);
    CHECK(strcmp(tkr_status_string(TKR_STATUS_BAD_STRIDE), "TKR_STATUS_BAD_STRIDE") == 0);
    CHECK(strcmp(tkr_status_string(12345), "TKR_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(tkr_isa_name(TKR_ISA_SCALAR), "scalar") == 0);
    CHECK(strcmp(tkr_isa_name(TKR_ISA_AVX512), "avx512") == 0);
    CHECK(strcmp(tkr_isa_name(99), "unknown") == 0);
    uint32_t mask = tkr_supported_isas();
    CHECK(mask & (1u << TKR_ISA_SCALAR));
    CHECK(mask & (1u << tkr_get_isa()));
    CHECK_STATUS(tkr_set_isa(77), TKR_STATUS_INVALID_ARGUMENT);
    /* A level this CPU lacks is refused and leaves the level unchanged. */
    uint32_t active = tkr_get_isa();
    for (uint32_t isa = 1; isa <= 4; isa++) {
        if (!(mask & (1u << isa))) {
            CHECK_STATUS(tkr_set_isa(isa), TKR_STATUS_ISA_UNAVAILABLE);
            CHECK(tkr_get_isa() == active);
        }
    }
}

static void test_sigmoid(void) {
    enum { N = 37 };
    float x[N], y[N + 2];
    for (int i = 0; i < N; i++) x[i] = (float)(i - 18) * 1.7f;
    for (int i = 0; i < N + 2; i++) y[i] = canary();
    CHECK_STATUS(tkr_sigmoid_f32(x, N, y + 1), TKR_STATUS_OK);
    CHECK(is_canary(y[0]) && is_canary(y[N + 1]));
    for (int i = 0; i < N; i++) {
        double want = sigmoid_ref(x[i]);
        CHECK(fabs(y[i + 1] - want) <= 3e-7 * want);
    }
    /* In place. */
    float z[N];
    memcpy(z, x, sizeof z);
    CHECK_STATUS(tkr_sigmoid_f32(z, N, z), TKR_STATUS_OK);
    CHECK(memcmp(z, y + 1, sizeof z) == 0);
    /* Special values. */
    float s[4] = {INFINITY, -INFINITY, NAN, -0.0f};
    CHECK_STATUS(tkr_sigmoid_f32(s, 4, s), TKR_STATUS_OK);
    CHECK(s[0] == 1.0f && s[1] == 0.0f && isnan(s[2]) && s[3] == 0.5f);
    /* Empty, NULL, partial overlap, misalignment. */
    CHECK_STATUS(tkr_sigmoid_f32(NULL, 0, NULL), TKR_STATUS_OK);
    CHECK_STATUS(tkr_sigmoid_f32(NULL, 3, y), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_sigmoid_f32(x, 3, NULL), TKR_STATUS_NULL_POINTER);
    float before[N];
    memcpy(before, x, sizeof x);
    CHECK_STATUS(tkr_sigmoid_f32(x, N - 1, x + 1), TKR_STATUS_OVERLAP);
    CHECK(memcmp(before, x, sizeof x) == 0);
    CHECK_STATUS(tkr_sigmoid_f32((const float *)((const char *)x + 1), 2, y), TKR_STATUS_INVALID_ARGUMENT);
}

/* Score a small case in all three dtypes; values are multiples of 1/4 so every dtype
 * holds them exactly and the f32 result is exact too. */
static void test_score(void) {
    enum { N = 5, D = 19, E = 3, HS = 21, OS = 4 };
    float h[N * HS], w[E * D], bias[E] = {0.25f, -1.0f, 0.0f};
    uint16_t h16[N * HS], hb[N * HS], w16[E * D], wb[E * D];
    for (int i = 0; i < N * HS; i++) {
        h[i] = (float)((i * 7) % 9 - 4) * 0.25f;
        h16[i] = f16_of(h[i]);
        hb[i] = bf16_of(h[i]);
    }
    for (int i = 0; i < E * D; i++) {
        w[i] = (float)((i * 5) % 7 - 3) * 0.25f;
        w16[i] = f16_of(w[i]);
        wb[i] = bf16_of(w[i]);
    }
    const void *hs[3] = {h, h16, hb};
    const void *ws[3] = {w, w16, wb};
    const uint32_t dtypes[3] = {TKR_DTYPE_F32, TKR_DTYPE_F16, TKR_DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        for (int act = 0; act <= 1; act++) {
            float out[N * OS];
            for (int i = 0; i < N * OS; i++) out[i] = canary();
            CHECK_STATUS(tkr_score(dtypes[t], hs[t], N, D, HS, ws[t], E, D, bias, (uint32_t)act, out, OS),
                         TKR_STATUS_OK);
            for (int i = 0; i < N; i++) {
                for (int e = 0; e < E; e++) {
                    double logit = bias[e];
                    for (int j = 0; j < D; j++) logit += (double)h[i * HS + j] * w[e * D + j];
                    double want = act ? sigmoid_ref(logit) : logit;
                    CHECK(fabs(out[i * OS + e] - want) <= 1e-6 * (1 + fabs(want)));
                }
                CHECK(is_canary(out[i * OS + E]));
            }
        }
    }
    /* Bad input: nothing written. */
    float out[N * OS];
    for (int i = 0; i < N * OS; i++) out[i] = canary();
    CHECK_STATUS(tkr_score(9, h, N, D, HS, w, E, D, NULL, TKR_ACT_SIGMOID, out, OS), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, HS, w, E, D, NULL, 7, out, OS), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, D - 1, w, E, D, NULL, TKR_ACT_SIGMOID, out, OS), TKR_STATUS_BAD_STRIDE);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, HS, w, E, D, NULL, TKR_ACT_SIGMOID, out, E - 1), TKR_STATUS_BAD_STRIDE);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, NULL, N, D, HS, w, E, D, NULL, TKR_ACT_SIGMOID, out, OS), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, HS, w, 0, D, NULL, TKR_ACT_SIGMOID, out, OS), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, SIZE_MAX / 2, D, HS, w, E, D, NULL, TKR_ACT_SIGMOID, out, OS), TKR_STATUS_SIZE_OVERFLOW);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, HS, w, E, D, NULL, TKR_ACT_SIGMOID, h + 2, OS), TKR_STATUS_OVERLAP);
    for (int i = 0; i < N * OS; i++) CHECK(is_canary(out[i]));
    /* Empty batch: valid, with or without routers. */
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, NULL, 0, D, D, w, E, D, NULL, TKR_ACT_SIGMOID, NULL, E), TKR_STATUS_OK);
    CHECK_STATUS(tkr_score(TKR_DTYPE_BF16, NULL, 0, D, D, NULL, 0, D, NULL, TKR_ACT_NONE, NULL, 0), TKR_STATUS_OK);
    /* Splitting the rows gives the same bits as one call. */
    float whole[N * E], part[N * E];
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, N, D, HS, w, E, D, bias, TKR_ACT_SIGMOID, whole, E), TKR_STATUS_OK);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h, 2, D, HS, w, E, D, bias, TKR_ACT_SIGMOID, part, E), TKR_STATUS_OK);
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h + 2 * HS, N - 2, D, HS, w, E, D, bias, TKR_ACT_SIGMOID, part + 2 * E, E),
                 TKR_STATUS_OK);
    CHECK(memcmp(whole, part, sizeof whole) == 0);
}

int main(void) {
    if (getenv("TKR_EXPECT_UNAVAILABLE")) {
        /* TOKENROUTE_ISA forced a level this CPU lacks: every kernel call refuses. */
        float x[2] = {0, 1}, y[2];
        CHECK(tkr_get_isa() == TKR_ISA_AUTO);
        CHECK_STATUS(tkr_sigmoid_f32(x, 2, y), TKR_STATUS_ISA_UNAVAILABLE);
        CHECK_STATUS(tkr_score(TKR_DTYPE_F32, x, 1, 2, 2, x, 1, 2, NULL, TKR_ACT_NONE, y, 1), TKR_STATUS_ISA_UNAVAILABLE);
        /* Switching explicitly to a supported level recovers. */
        CHECK_STATUS(tkr_set_isa(TKR_ISA_SCALAR), TKR_STATUS_OK);
        CHECK_STATUS(tkr_sigmoid_f32(x, 2, y), TKR_STATUS_OK);
        return finish_tests("smoke (forced level unavailable)");
    }
    check_expected_isa();
    test_versions();
    test_status_and_isa_names();
    test_sigmoid();
    test_score();
    return finish_tests("smoke");
}
