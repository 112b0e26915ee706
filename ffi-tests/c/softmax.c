/* tkr_softmax through the C header: values against a double reference within the
 * documented bound, bias (broadcast and per row), f16/bf16 in and out, in place, the
 * special rows (masked, empty, NaN), bit-identity across every supported level in one
 * process, and every bad-input status with nothing written and the argument named. */
#include <math.h>
#include <stdint.h>

#include "check.h"

enum { R = 5, N = 77, S = 80 };

static float x[R * S], bias[R * S], out[R * S], ref[R * S];

#define CHECK_MESSAGE(call, want, needle)                                                    \
    do {                                                                                     \
        tkr_status got_ = (call);                                                            \
        const char *msg_ = tkr_last_error_message();                                         \
        if (got_ != (want) || strstr(msg_, (needle)) == NULL) {                              \
            fprintf(stderr, "%s:%d: %s returned %s (\"%s\"), want %s naming \"%s\"\n", __FILE__, \
                    __LINE__, #call, tkr_status_string(got_), msg_, tkr_status_string(want),  \
                    (needle));                                                               \
            tkr_test_failures++;                                                             \
        }                                                                                    \
    } while (0)

static uint32_t bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* float -> f16 / bf16 bit patterns (nearest even; finite inputs in range). */
static uint16_t to_bf16(float f) {
    uint32_t b = bits(f);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static float from_f16(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Checks out (row stride S) against the double reference of logits
 * scale * xs + bias (bias_stride 0: broadcast; NULL: none), with relative slack u_out
 * and absolute slack e_out for the output type. */
static void check_rows(const float *xs, const float *b, size_t b_stride, float scale, const float *got,
                       double u_out, double e_out) {
    int r, j;
    for (r = 0; r < R; r++) {
        double t[N], m = -INFINITY, a = 0, sum = 0;
        for (j = 0; j < N; j++) {
            t[j] = (double)scale * xs[r * S + j] + (b ? b[r * b_stride + j] : 0.0);
            if (t[j] > m) m = t[j];
            if (isfinite(t[j]) && fabs(t[j]) > a) a = fabs(t[j]);
        }
        for (j = 0; j < N; j++) sum += exp(t[j] - m);
        for (j = 0; j < N; j++) {
            double want = exp(t[j] - m) / sum;
            double bound = (ldexp(1.0, -19) * (2.0 + a + N / 256.0) + u_out) * want + ldexp(1.0, -124) + e_out;
            if (!(fabs(got[r * S + j] - want) <= bound)) {
                fprintf(stderr, "row %d elem %d: got %g want %g (bound %g)\n", r, j, got[r * S + j], want, bound);
                tkr_test_failures++;
                return;
            }
        }
    }
}

static void fill(void) {
    uint32_t s = 99u;
    int i;
    for (i = 0; i < R * S; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 9) % 4001 - 2000) / 100.0f; /* [-20, 20] */
        s = s * 1664525u + 1013904223u;
        bias[i] = (float)((int)(s >> 9) % 401 - 200) / 100.0f;
    }
    bias[3] = -INFINITY; /* a masked element of the broadcast bias (and row 0's) */
}

static void test_values(void) {
    tkr_softmax_options o;
    int i;
    CHECK_STATUS(tkr_softmax_options_init(&o), TKR_STATUS_OK);
    CHECK(o.struct_size == sizeof o && o.scale == 0.0f && o.bias == NULL && o.out_dtype == 0);
    /* Defaults (NULL options): scale 1, no bias, f32 out. */
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, NULL, out, S), TKR_STATUS_OK);
    check_rows(x, NULL, 0, 1.0f, out, 0, ldexp(1.0, -150));
    /* Scale and a broadcast bias. */
    o.scale = 0.37f;
    o.bias = bias;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_OK);
    check_rows(x, bias, 0, 0.37f, out, 0, ldexp(1.0, -150));
    CHECK(bits(out[3]) == 0 && bits(out[S + 3]) == 0); /* masked by the bias: +0 */
    /* Per-row bias. */
    o.bias_row_stride = S;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_OK);
    check_rows(x, bias, S, 0.37f, out, 0, ldexp(1.0, -150));
    /* In place equals out of place, bit for bit (the gaps between rows untouched). */
    memcpy(ref, out, sizeof out);
    memcpy(out, x, sizeof x);
    out[N] = 42.0f;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, out, R, N, S, &o, out, S), TKR_STATUS_OK);
    for (i = 0; i < R; i++) CHECK(memcmp(out + i * S, ref + i * S, N * sizeof(float)) == 0);
    CHECK(out[N] == 42.0f);
    /* bf16 in, bf16 and f16 out. */
    {
        static uint16_t xb[R * S], ob[R * S];
        static float xf[R * S], of[R * S];
        for (i = 0; i < R * S; i++) {
            xb[i] = to_bf16(x[i]);
            xf[i] = from_bf16(xb[i]);
        }
        o.out_dtype = 0;
        CHECK_STATUS(tkr_softmax(TKR_DTYPE_BF16, xb, R, N, S, &o, ob, S), TKR_STATUS_OK);
        for (i = 0; i < R * S; i++) of[i] = from_bf16(ob[i]);
        check_rows(xf, bias, S, 0.37f, of, ldexp(1.0, -8), ldexp(1.0, -134));
        o.out_dtype = TKR_DTYPE_F16;
        CHECK_STATUS(tkr_softmax(TKR_DTYPE_BF16, xb, R, N, S, &o, ob, S), TKR_STATUS_OK);
        for (i = 0; i < R * S; i++) of[i] = from_f16(ob[i]);
        check_rows(xf, bias, S, 0.37f, of, ldexp(1.0, -11), ldexp(1.0, -25));
        o.out_dtype = TKR_DTYPE_F32;
        CHECK_STATUS(tkr_softmax(TKR_DTYPE_BF16, xb, R, N, S, &o, of, S), TKR_STATUS_OK);
        check_rows(xf, bias, S, 0.37f, of, 0, ldexp(1.0, -150));
    }
}

static void test_special_rows_and_levels(void) {
    static float xs[3 * 70], want[3 * 70], got[3 * 70];
    uint16_t h_out[3 * 70];
    uint32_t isa, active = tkr_get_isa(), mask = tkr_supported_isas();
    tkr_softmax_options o;
    int i;
    for (i = 0; i < 70; i++) {
        xs[i] = -INFINITY;                   /* row 0: sees nothing */
        xs[70 + i] = (float)(i % 9) - 4.0f;  /* row 1: ordinary, with a NaN below */
        xs[140 + i] = (float)(i % 13) * 0.5f; /* row 2: ordinary, one masked entry */
    }
    xs[140 + 5] = -INFINITY;
    memcpy(got, xs, sizeof xs);
    got[70 + 33] = -NAN;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, got, 3, 70, 70, NULL, want, 70), TKR_STATUS_OK);
    for (i = 0; i < 70; i++) {
        CHECK(bits(want[i]) == 0);
        CHECK(bits(want[70 + i]) == 0x7fc00000u);
    }
    CHECK(bits(want[140 + 5]) == 0);
    CHECK_STATUS(tkr_softmax_options_init(&o), TKR_STATUS_OK);
    o.out_dtype = TKR_DTYPE_F16;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, got, 3, 70, 70, &o, h_out, 70), TKR_STATUS_OK);
    CHECK(h_out[0] == 0 && h_out[70] == 0x7e00 && h_out[139] == 0x7e00);
    /* Every supported level gives the same bits in this process. */
    for (isa = 1; isa < 32; isa++) {
        if (!(mask & (1u << isa))) continue;
        CHECK_STATUS(tkr_set_isa(isa), TKR_STATUS_OK);
        memset(ref, 0, sizeof ref);
        CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, got, 3, 70, 70, NULL, ref, 70), TKR_STATUS_OK);
        CHECK(memcmp(ref, want, sizeof want) == 0);
    }
    CHECK_STATUS(tkr_set_isa(active), TKR_STATUS_OK);
}

static void test_errors(void) {
    tkr_softmax_options o;
    struct {
        tkr_softmax_options o;
        uint64_t extra;
    } newer;
    float nan = NAN;
    int i;
    for (i = 0; i < R * S; i++) out[i] = 7.0f;
    CHECK_STATUS(tkr_softmax_options_init(NULL), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_softmax_options_init(&o), TKR_STATUS_OK);
    CHECK_MESSAGE(tkr_softmax(9, x, R, N, S, NULL, out, S), TKR_STATUS_INVALID_ARGUMENT, "dtype");
    o.out_dtype = 7;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_INVALID_ARGUMENT,
                  "options->out_dtype");
    o.out_dtype = 0;
    o.scale = nan;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_INVALID_ARGUMENT,
                  "options->scale");
    o.scale = INFINITY;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_INVALID_ARGUMENT);
    o.scale = 0.0f;
    o.struct_size = 4;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_INVALID_ARGUMENT, "options");
    memset(&newer, 0, sizeof newer);
    newer.o.struct_size = sizeof newer;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, 1, 4, 4, &newer.o, ref, 4), TKR_STATUS_OK);
    newer.extra = 1;
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &newer.o, out, S), TKR_STATUS_UNSUPPORTED);
    CHECK_STATUS(tkr_softmax_options_init(&o), TKR_STATUS_OK);
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, NULL, R, N, S, NULL, out, S), TKR_STATUS_NULL_POINTER, "x");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, NULL, NULL, S), TKR_STATUS_NULL_POINTER, "out");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, N - 1, NULL, out, S), TKR_STATUS_BAD_STRIDE, "x_row_stride");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, NULL, out, 3), TKR_STATUS_BAD_STRIDE, "out_row_stride");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, (const char *)x + 1, R, N, S, NULL, out, S), TKR_STATUS_INVALID_ARGUMENT,
                  "x");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F16, x, R, N, S, NULL, (char *)out + 1, S), TKR_STATUS_INVALID_ARGUMENT, "out");
    o.bias = bias;
    o.bias_row_stride = N - 1;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_BAD_STRIDE,
                  "options->bias_row_stride");
    o.bias_row_stride = 0;
    o.bias = NULL;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, SIZE_MAX / 2, N, SIZE_MAX / 4, NULL, out, S),
                  TKR_STATUS_SIZE_OVERFLOW, "x_row_stride");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, NULL, x + 1, S), TKR_STATUS_OVERLAP, "out");
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, out, R, N, S, NULL, out, S + 1), TKR_STATUS_OVERLAP, "out");
    o.out_dtype = TKR_DTYPE_BF16;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, out, R, N, S, &o, out, S), TKR_STATUS_OVERLAP, "out");
    o.out_dtype = 0;
    o.bias = out + 10;
    CHECK_MESSAGE(tkr_softmax(TKR_DTYPE_F32, x, R, N, S, &o, out, S), TKR_STATUS_OVERLAP, "out");
    o.bias = NULL;
    /* Precedence: a value error before a buffer error, a buffer error before overlap. */
    CHECK_STATUS(tkr_softmax(9, NULL, R, N, S, NULL, out, S), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, x, R, N, N - 1, NULL, x + 1, S), TKR_STATUS_BAD_STRIDE);
    /* Nothing was written by any failing call. */
    for (i = 0; i < R * S; i++) CHECK(out[i] == 7.0f);
    /* Empty calls: (NULL, 0) buffers are fine and write nothing. */
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F32, NULL, 0, N, N, NULL, NULL, N), TKR_STATUS_OK);
    CHECK_STATUS(tkr_softmax(TKR_DTYPE_F16, NULL, R, 0, 0, NULL, NULL, 0), TKR_STATUS_OK);
}

int main(void) {
    check_expected_isa();
    fill();
    test_values();
    test_special_rows_and_levels();
    test_errors();
    return finish_tests("softmax");
}
