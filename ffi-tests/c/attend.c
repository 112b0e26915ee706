/* Sparse attention, merge and Quest bounds through the C API, as a C99 user calls it. */
#include <math.h>

#include "check.h"

enum { NQ = 5, HQ = 4, HKV = 2, D = 24, NK = 70 };

static float q[NQ * HQ * D], k[NK * HKV * D], v[NK * HKV * D];
static uint32_t qpos[NQ], kpos[NK];

static unsigned long long rng_state = 88172645463325252ull;
static float rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static uint16_t bf16_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

static float f32_of_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* The reference's scale (0: 1 / sqrt(D)) and logit softcap (0: none). */
static double ref_scale = 0.0, ref_softcap = 0.0;
/* NULL, or the reference's ALiBi slopes (one per query head). */
static const float *ref_alibi = NULL;
/* NULL, or the reference's bias [HQ][NQ][NK]. */
static const float *ref_bias = NULL;

/* Reference attention of row (i, h) over keys sel[0..n) (visible by causal positions
 * when causal), into out[D]; returns the log-sum-exp. */
static double reference(int i, int h, const uint32_t *sel, int n, int causal, const float *kk,
                        const float *vv, double *out) {
    int g = h / (HQ / HKV);
    double m = -INFINITY, l = 0.0, x[NK];
    for (int e = 0; e < D; e++) out[e] = 0.0;
    for (int j = 0; j < n; j++) {
        int t = (int)sel[j];
        x[j] = -INFINITY;
        if (causal && kpos[t] > qpos[i]) continue;
        double dot = 0.0;
        for (int e = 0; e < D; e++) dot += (double)q[(i * HQ + h) * D + e] * kk[(t * HKV + g) * D + e];
        x[j] = ref_scale != 0.0 ? dot * ref_scale : dot / sqrt((double)D);
        if (ref_softcap != 0.0) x[j] = ref_softcap * tanh(x[j] / ref_softcap);
        if (ref_alibi) x[j] -= ref_alibi[h] * fabs((double)qpos[i] - (double)kpos[t]);
        if (ref_bias) x[j] += ref_bias[(h * NQ + i) * NK + t];
        if (x[j] == -INFINITY) continue;
        if (x[j] > m) m = x[j];
    }
    if (m == -INFINITY) return -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] == -INFINITY) continue;
        double p = exp(x[j] - m);
        l += p;
        for (int e = 0; e < D; e++) out[e] += p * vv[((int)sel[j] * HKV + g) * D + e];
    }
    for (int e = 0; e < D; e++) out[e] /= l;
    return m + log(l);
}

static tkr_status attend(uint32_t dtype, const void *qq, const void *kk, const void *vv,
                         const tkr_attention_keys *keys, const tkr_attention_options *opts,
                         void *out) {
    return tkr_attention(dtype, qq, NQ, HQ, D, HQ * D, D, kk, vv, NK, HKV, HKV * D, D, HKV * D, D,
                         keys, opts, out, HQ * D, D);
}

static void test_dense_indices_causal_lse_mass(void) {
    static float out[NQ * HQ * D];
    float lse[NQ * HQ], mass[NK];
    uint32_t sel[40];
    double want[D];
    for (int j = 0; j < 40; j++) sel[j] = (uint32_t)((j * 7) % NK);

    tkr_attention_keys keys;
    tkr_attention_options opts;
    tkr_attention_keys_init(&keys);
    tkr_attention_options_init(&opts);
    CHECK(keys.struct_size == sizeof keys && keys.kind == TKR_KEYS_DENSE);
    CHECK(opts.struct_size == sizeof opts && opts.flags == 0 && opts.scale == 0.0f);

    /* Dense, no options. */
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, NULL, NULL, out), TKR_STATUS_OK);
    uint32_t all[NK];
    for (int j = 0; j < NK; j++) all[j] = (uint32_t)j;
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            reference(i, h, all, NK, 0, k, v, want);
            for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
        }

    /* Selected keys, causal by positions, log-sum-exp and attention mass. */
    keys.kind = TKR_KEYS_INDICES;
    keys.indices = sel;
    keys.n_indices = 40;
    opts.flags = TKR_ATTENTION_CAUSAL;
    opts.q_positions = qpos;
    opts.k_positions = kpos;
    opts.lse = lse;
    memset(mass, 0, sizeof mass);
    opts.mass = mass;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, out), TKR_STATUS_OK);
    double total = 0.0;
    int rows = 0;
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            double l = reference(i, h, sel, 40, 1, k, v, want);
            if (l == -INFINITY) {
                CHECK(lse[i * HQ + h] == -INFINITY);
                for (int e = 0; e < D; e++) CHECK(out[(i * HQ + h) * D + e] == 0.0f);
                continue;
            }
            rows++;
            CHECK(fabs(lse[i * HQ + h] - l) < 1e-5 * (1.0 + fabs(l)));
            for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
        }
    for (int j = 0; j < NK; j++) total += mass[j];
    CHECK(fabs(total - rows) < 1e-4);
    CHECK(rows > 0 && rows < NQ * HQ); /* query 0 sees nothing */

    /* Bad input: causal without positions, indices out of range, heads not dividing. */
    for (int e = 0; e < NQ * HQ * D; e++) out[e] = 7.0f;
    opts.q_positions = NULL;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, out), TKR_STATUS_NULL_POINTER);
    opts.q_positions = qpos;
    sel[3] = NK;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, out), TKR_STATUS_OUT_OF_RANGE);
    sel[3] = 0;
    CHECK_STATUS(tkr_attention(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, k, v, NK, 3, HKV * D, D,
                               HKV * D, D, NULL, NULL, out, HQ * D, D),
                 TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_attention(TKR_DTYPE_F32, q, NQ, HQ, 0, HQ * D, D, k, v, NK, HKV, HKV * D, D,
                               HKV * D, D, NULL, NULL, out, HQ * D, D),
                 TKR_STATUS_INVALID_ARGUMENT);
    opts.lse = (float *)out;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, out), TKR_STATUS_OVERLAP);
    for (int e = 0; e < NQ * HQ * D; e++) CHECK(out[e] == 7.0f);
    /* Without an lse output its token stride is not looked at (any value is fine);
     * found by fuzzing ffi_args: it gave TKR_STATUS_SIZE_OVERFLOW. */
    opts.lse = NULL;
    opts.lse_token_stride = SIZE_MAX;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, out), TKR_STATUS_OK);
    opts.lse_token_stride = 0;
}

static void test_bf16_blocks(void) {
    static uint16_t qb[NQ * HQ * D], kb[NK * HKV * D], vb[NK * HKV * D];
    static float kf[NK * HKV * D], vf[NK * HKV * D], qkeep[NQ * HQ * D];
    static uint16_t out[NQ * HQ * D];
    double want[D];
    memcpy(qkeep, q, sizeof q);
    for (int e = 0; e < NQ * HQ * D; e++) {
        qb[e] = bf16_of(q[e]);
        q[e] = f32_of_bf16(qb[e]);
    }
    for (int e = 0; e < NK * HKV * D; e++) {
        kb[e] = bf16_of(k[e]);
        vb[e] = bf16_of(v[e]);
        kf[e] = f32_of_bf16(kb[e]);
        vf[e] = f32_of_bf16(vb[e]);
    }
    /* Two query blocks of 3 queries; blocks of 16 keys: {0, 4} and {2}. */
    size_t offsets[3] = {0, 2, 3};
    uint32_t ids[3] = {0, 4, 2};
    tkr_attention_keys keys;
    tkr_attention_keys_init(&keys);
    keys.kind = TKR_KEYS_BLOCKS;
    keys.block_size = 16;
    keys.query_block_size = 3;
    keys.block_offsets = offsets;
    keys.block_ids = ids;
    keys.n_block_ids = 3;
    CHECK_STATUS(attend(TKR_DTYPE_BF16, qb, kb, vb, &keys, NULL, out), TKR_STATUS_OK);
    uint32_t sel0[22], sel1[16];
    for (int j = 0; j < 16; j++) sel0[j] = (uint32_t)j;
    for (int j = 0; j < 6; j++) sel0[16 + j] = (uint32_t)(64 + j); /* the last block is partial */
    for (int j = 0; j < 16; j++) sel1[j] = (uint32_t)(32 + j);
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            if (i < 3)
                reference(i, h, sel0, 22, 0, kf, vf, want);
            else
                reference(i, h, sel1, 16, 0, kf, vf, want);
            for (int e = 0; e < D; e++) {
                float got = f32_of_bf16(out[(i * HQ + h) * D + e]);
                CHECK(fabs(got - want[e]) <= 1e-5 + fabs(want[e]) / 256.0);
            }
        }
    ids[1] = 5; /* ceil(70 / 16) = 5 blocks: id 5 is out of range */
    CHECK_STATUS(attend(TKR_DTYPE_BF16, qb, kb, vb, &keys, NULL, out), TKR_STATUS_OUT_OF_RANGE);
    memcpy(q, qkeep, sizeof q);
}

static void test_merge(void) {
    /* Two chunks of keys, each with its lse, merge into the full call. */
    static float full[NQ * HQ * D], parts[2 * NQ * HQ * D], merged[NQ * HQ * D];
    float lse_full[NQ * HQ], lses[2 * NQ * HQ], lse_m[NQ * HQ];
    uint32_t a[30], b[NK - 30];
    for (int j = 0; j < 30; j++) a[j] = (uint32_t)j;
    for (int j = 30; j < NK; j++) b[j - 30] = (uint32_t)j;
    tkr_attention_options opts;
    tkr_attention_options_init(&opts);
    tkr_attention_keys keys;
    tkr_attention_keys_init(&keys);
    opts.lse = lse_full;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, full), TKR_STATUS_OK);
    keys.kind = TKR_KEYS_INDICES;
    keys.indices = a;
    keys.n_indices = 30;
    opts.lse = lses;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, parts), TKR_STATUS_OK);
    keys.indices = b;
    keys.n_indices = NK - 30;
    opts.lse = lses + NQ * HQ;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, &opts, parts + NQ * HQ * D), TKR_STATUS_OK);
    CHECK_STATUS(tkr_attention_merge(TKR_DTYPE_F32, parts, 2, NQ * HQ, D, NQ * HQ * D, D, lses,
                                     NQ * HQ, merged, D, lse_m),
                 TKR_STATUS_OK);
    for (int e = 0; e < NQ * HQ * D; e++) CHECK(fabs(merged[e] - full[e]) < 2e-6);
    for (int r = 0; r < NQ * HQ; r++) CHECK(fabs(lse_m[r] - lse_full[r]) < 1e-5);
    CHECK_STATUS(tkr_attention_merge(0, parts, 2, NQ * HQ, D, NQ * HQ * D, D, lses, NQ * HQ,
                                     merged, D, lse_m),
                 TKR_STATUS_INVALID_ARGUMENT);
}

static void test_quest(void) {
    enum { B = 8, NB = (NK + B - 1) / B };
    static float kmin[NB * HKV * D], kmax[NB * HKV * D], bound[NQ * HQ * NB];
    CHECK_STATUS(tkr_key_block_summary(TKR_DTYPE_F32, k, NK, HKV, D, HKV * D, D, B, 0, NB, kmin, kmax),
                 TKR_STATUS_OK);
    CHECK_STATUS(tkr_key_block_bound(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, kmin, kmax, NB, HKV,
                                     bound, NB),
                 TKR_STATUS_OK);
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++)
            for (int b = 0; b < NB; b++) {
                int g = h / (HQ / HKV);
                double best = -INFINITY;
                for (int t = b * B; t < (b + 1) * B && t < NK; t++) {
                    double dot = 0.0;
                    for (int e = 0; e < D; e++) dot += (double)q[(i * HQ + h) * D + e] * k[(t * HKV + g) * D + e];
                    if (dot > best) best = dot;
                }
                CHECK(bound[(i * HQ + h) * NB + b] >= best);
            }
    CHECK_STATUS(tkr_key_block_summary(TKR_DTYPE_F32, k, NK, HKV, D, HKV * D, D, B, 0, NB + 1, kmin, kmax),
                 TKR_STATUS_OUT_OF_RANGE);

    /* Top-4 blocks per query and head (block 0 and the last one forced), then attention
     * over them. */
    enum { KB = 4 };
    static uint32_t ids[NQ * HQ * KB];
    static size_t offs[NQ * HQ + 1];
    static float out[NQ * HQ * D];
    size_t k_eff = 0;
    CHECK_STATUS(tkr_quest_select_blocks(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, kmin, kmax, NB, HKV, KB,
                                         1, 1, ids, offs, &k_eff),
                 TKR_STATUS_OK);
    CHECK(k_eff == KB);
    for (int l = 0; l < NQ * HQ; l++) {
        CHECK(offs[l] == (size_t)l * KB);
        CHECK(ids[l * KB] == 0 && ids[l * KB + KB - 1] == NB - 1);
        for (int j = 1; j < KB; j++) CHECK(ids[l * KB + j] > ids[l * KB + j - 1]);
    }
    tkr_attention_keys keys;
    tkr_attention_keys_init(&keys);
    keys.kind = TKR_KEYS_BLOCKS;
    keys.block_lists = TKR_BLOCK_LISTS_PER_Q_HEAD;
    keys.block_size = B;
    keys.query_block_size = 1;
    keys.block_offsets = offs;
    keys.block_ids = ids;
    keys.n_block_ids = NQ * HQ * KB;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, &keys, NULL, out), TKR_STATUS_OK);
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            uint32_t sel[KB * B];
            int n = 0;
            const uint32_t *l = ids + (h * NQ + i) * KB;
            for (int j = 0; j < KB; j++)
                for (int t = (int)l[j] * B; t < ((int)l[j] + 1) * B && t < NK; t++) sel[n++] = (uint32_t)t;
            double want[D];
            reference(i, h, sel, n, 0, k, v, want);
            for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
        }
    CHECK_STATUS(tkr_quest_select_blocks(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, kmin, kmax, NB, HKV, 2, 2,
                                         1, ids, offs, NULL),
                 TKR_STATUS_INVALID_ARGUMENT);
}

/* Logit softcap: against the reference; bad values refused with nothing written; an
 * older caller's 104-byte struct (no softcap field, garbage in its padding) still works. */
static void test_softcap(void) {
    static float out[NQ * HQ * D], plain[NQ * HQ * D];
    double want[D];
    tkr_attention_options opts;
    CHECK(TKR_STATUS_OK == tkr_attention_options_init(&opts));
    opts.scale = 3.0f;
    opts.softcap = 1.5f;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out));
    uint32_t all[NK];
    for (int t = 0; t < NK; t++) all[t] = (uint32_t)t;
    ref_scale = 3.0;
    ref_softcap = 1.5;
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            reference(i, h, all, NK, 0, k, v, want);
            for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
        }
    ref_scale = ref_softcap = 0.0;
    const float bad[] = {-1.0f, NAN, INFINITY, -INFINITY};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        for (int e = 0; e < NQ * HQ * D; e++) out[e] = 7.0f;
        opts.softcap = bad[b];
        CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out) == TKR_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(tkr_last_error_message(), "softcap") != NULL);
        for (int e = 0; e < NQ * HQ * D; e++) CHECK(out[e] == 7.0f);
    }
    /* An older caller: struct_size 104 (the size before softcap), the 4 padding bytes
     * after window_right set to garbage, softcap past its struct: neither is read. */
    opts.softcap = NAN;
    opts.reserved0 = 0xdeadbeefu;
    opts.v_head_dim = 3 * D; /* past the old struct too */
    opts.struct_size = 104;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out));
    opts.softcap = 0.0f;
    opts.v_head_dim = 0;
    opts.struct_size = sizeof opts;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, plain));
    CHECK(memcmp(out, plain, sizeof out) == 0);
}

/* ALiBi slopes with explicit positions and no causal masking, with a softcap too;
 * a NaN slope and missing positions are refused with nothing written. */
static void test_alibi(void) {
    static float out[NQ * HQ * D];
    const float slopes[HQ] = {0.5f, 0.25f, 0.125f, 0.0625f};
    double want[D];
    uint32_t all[NK];
    for (int t = 0; t < NK; t++) all[t] = (uint32_t)t;
    tkr_attention_options opts;
    CHECK(TKR_STATUS_OK == tkr_attention_options_init(&opts));
    opts.alibi_slopes = slopes;
    opts.q_positions = qpos;
    opts.k_positions = kpos;
    for (int capped = 0; capped < 2; capped++) {
        opts.softcap = capped ? 2.0f : 0.0f;
        CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out));
        ref_softcap = opts.softcap;
        ref_alibi = slopes;
        for (int i = 0; i < NQ; i++)
            for (int h = 0; h < HQ; h++) {
                reference(i, h, all, NK, 0, k, v, want);
                for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
            }
        ref_softcap = 0.0;
        ref_alibi = NULL;
    }
    const float nan_slopes[HQ] = {0.5f, NAN, 0.125f, 0.0625f};
    for (int e = 0; e < NQ * HQ * D; e++) out[e] = 7.0f;
    opts.alibi_slopes = nan_slopes;
    CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out) == TKR_STATUS_INVALID_ARGUMENT);
    opts.alibi_slopes = slopes;
    opts.q_positions = NULL;
    CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out) == TKR_STATUS_NULL_POINTER);
    for (int e = 0; e < NQ * HQ * D; e++) CHECK(out[e] == 7.0f);
}

/* A bias tensor [HQ][NQ][NK] (one query row of head 0 fully -inf: an empty row), with
 * a ragged batch it is UNSUPPORTED; a bias overlapping out is OVERLAP. */
static void test_bias(void) {
    static float out[NQ * HQ * D], bias[HQ * NQ * NK], lse[NQ * HQ];
    double want[D];
    uint32_t all[NK];
    for (int t = 0; t < NK; t++) all[t] = (uint32_t)t;
    for (int e = 0; e < HQ * NQ * NK; e++) bias[e] = (e % 5 == 2) ? -INFINITY : rnd();
    for (int t = 0; t < NK; t++) bias[1 * NK + t] = -INFINITY; /* head 0, query 1 */
    tkr_attention_options opts;
    CHECK(TKR_STATUS_OK == tkr_attention_options_init(&opts));
    opts.bias = bias;
    opts.bias_head_stride = NQ * NK;
    opts.bias_query_stride = NK;
    opts.lse = lse;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out));
    ref_bias = bias;
    for (int i = 0; i < NQ; i++)
        for (int h = 0; h < HQ; h++) {
            double l = reference(i, h, all, NK, 0, k, v, want);
            if (l == -INFINITY) {
                CHECK(i == 1 && h == 0);
                CHECK(lse[i * HQ + h] == -INFINITY);
                for (int e = 0; e < D; e++) CHECK(out[(i * HQ + h) * D + e] == 0.0f);
                continue;
            }
            for (int e = 0; e < D; e++) CHECK(fabs(out[(i * HQ + h) * D + e] - want[e]) < 1e-5);
        }
    ref_bias = NULL;
    /* A bf16 bias (bias_dtype) gives the bits of the float bias with the same values. */
    static uint16_t bias16[HQ * NQ * NK];
    static float bias_r[HQ * NQ * NK], out_f[NQ * HQ * D], out_b[NQ * HQ * D];
    for (int e = 0; e < HQ * NQ * NK; e++) {
        bias16[e] = bf16_of(bias[e]);
        bias_r[e] = f32_of_bf16(bias16[e]);
    }
    opts.lse = NULL;
    opts.bias = bias_r;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out_f));
    opts.bias = bias16;
    opts.bias_dtype = TKR_DTYPE_BF16;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out_b));
    CHECK(memcmp(out_f, out_b, sizeof out_f) == 0);
    /* An unknown bias_dtype is refused, nothing written; a struct older than the field
     * (160 bytes, up to v_head_dim) means float whatever follows it. */
    for (int e = 0; e < NQ * HQ * D; e++) out_b[e] = 7.0f;
    opts.bias_dtype = 9;
    CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out_b) == TKR_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tkr_last_error_message(), "bias_dtype") != NULL);
    for (int e = 0; e < NQ * HQ * D; e++) CHECK(out_b[e] == 7.0f);
    opts.struct_size = 160;
    opts.bias = bias_r;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out_b));
    CHECK(memcmp(out_f, out_b, sizeof out_f) == 0);
    opts.struct_size = sizeof opts;
    opts.bias_dtype = 0;
    opts.lse = lse;
    opts.bias = bias;
    for (int e = 0; e < NQ * HQ * D; e++) out[e] = 7.0f;
    size_t cu_q[2] = {0, NQ}, cu_k[2] = {0, NK};
    tkr_attention_batch batch;
    CHECK(TKR_STATUS_OK == tkr_attention_batch_init(&batch));
    batch.n_seqs = 1;
    batch.cu_seqlens_q = cu_q;
    batch.cu_seqlens_k = cu_k;
    opts.batch = &batch;
    CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out) == TKR_STATUS_UNSUPPORTED);
    opts.batch = NULL;
    opts.bias = out;
    opts.bias_head_stride = 0;
    opts.bias_query_stride = 0;
    CHECK(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out) == TKR_STATUS_OVERLAP);
    for (int e = 0; e < NQ * HQ * D; e++) CHECK(out[e] == 7.0f);
}

/* A V head size different from head_dim (options->v_head_dim, multi-head latent
 * attention): v [NK][HKV][dv] and out [NQ][HQ][dv] against the reference for dv below and
 * above D, causal with lse; 0 means head_dim; an older caller's 152-byte struct (no
 * v_head_dim, garbage past it) gets head_dim; a dv that v's or out's strides cannot hold
 * is BAD_STRIDE with nothing written. */
enum { DVMAX = 40 };
static void test_v_head_dim(void) {
    static float vw[NK * HKV * DVMAX], out[NQ * HQ * DVMAX], plain[NQ * HQ * D];
    static float lse[NQ * HQ];
    for (int e = 0; e < NK * HKV * DVMAX; e++) vw[e] = rnd();
    const size_t dvs[] = {10, 40, 1};
    tkr_attention_options opts;
    CHECK(TKR_STATUS_OK == tkr_attention_options_init(&opts));
    CHECK(opts.v_head_dim == 0);
    for (size_t c = 0; c < sizeof dvs / sizeof dvs[0]; c++) {
        size_t dv = dvs[c];
        opts.v_head_dim = dv;
        opts.flags = TKR_ATTENTION_CAUSAL;
        opts.q_positions = qpos;
        opts.k_positions = kpos;
        opts.lse = lse;
        CHECK_STATUS(tkr_attention(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, k, vw, NK, HKV, HKV * D, D,
                                   HKV * dv, dv, NULL, &opts, out, HQ * dv, dv),
                     TKR_STATUS_OK);
        int seen = 0;
        for (int i = 0; i < NQ; i++)
            for (int h = 0; h < HQ; h++) {
                int g = h / (HQ / HKV);
                double m = -INFINITY, l = 0.0, x[NK], want[DVMAX] = {0};
                for (int t = 0; t < NK; t++) {
                    x[t] = -INFINITY;
                    if (kpos[t] > qpos[i]) continue;
                    double dot = 0.0;
                    for (int e = 0; e < D; e++)
                        dot += (double)q[(i * HQ + h) * D + e] * k[(t * HKV + g) * D + e];
                    x[t] = dot / sqrt((double)D);
                    if (x[t] > m) m = x[t];
                }
                if (m == -INFINITY) {
                    CHECK(lse[i * HQ + h] == -INFINITY);
                    for (size_t e = 0; e < dv; e++) CHECK(out[(i * HQ + h) * dv + e] == 0.0f);
                    continue;
                }
                seen++;
                for (int t = 0; t < NK; t++) {
                    if (x[t] == -INFINITY) continue;
                    double p = exp(x[t] - m);
                    l += p;
                    for (size_t e = 0; e < dv; e++) want[e] += p * vw[(t * HKV + g) * dv + e];
                }
                CHECK(fabs(lse[i * HQ + h] - (m + log(l))) < 1e-5 * (1.0 + fabs(m + log(l))));
                for (size_t e = 0; e < dv; e++)
                    CHECK(fabs(out[(i * HQ + h) * dv + e] - want[e] / l) < 1e-5);
            }
        CHECK(seen > 0);
    }
    /* 0 means head_dim; a 152-byte struct (before v_head_dim) with garbage past it too. */
    opts.flags = 0;
    opts.lse = NULL;
    opts.v_head_dim = 0;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, plain));
    opts.v_head_dim = 12345;
    opts.struct_size = 152;
    CHECK(TKR_STATUS_OK == attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out));
    CHECK(memcmp(out, plain, sizeof plain) == 0);
    opts.struct_size = sizeof opts;
    /* dv larger than v's (or out's) head stride holds: BAD_STRIDE, nothing written. */
    for (int e = 0; e < NQ * HQ * DVMAX; e++) out[e] = 7.0f;
    opts.v_head_dim = 30;
    CHECK_STATUS(attend(TKR_DTYPE_F32, q, k, v, NULL, &opts, out), TKR_STATUS_BAD_STRIDE);
    CHECK(strstr(tkr_last_error_message(), "v_token_stride") != NULL);
    CHECK_STATUS(tkr_attention(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, k, vw, NK, HKV, HKV * D, D,
                               HKV * 30, 30, NULL, &opts, out, HQ * D, D),
                 TKR_STATUS_BAD_STRIDE);
    CHECK(strstr(tkr_last_error_message(), "out_token_stride") != NULL);
    /* Values before buffers: heads that do not divide win over the bad stride. */
    CHECK_STATUS(tkr_attention(TKR_DTYPE_F32, q, NQ, HQ, D, HQ * D, D, k, v, NK, 3, HKV * D, D,
                               HKV * D, D, NULL, &opts, out, HQ * D, D),
                 TKR_STATUS_INVALID_ARGUMENT);
    for (int e = 0; e < NQ * HQ * DVMAX; e++) CHECK(out[e] == 7.0f);
}

int main(void) {
    check_expected_isa();
    for (int e = 0; e < NQ * HQ * D; e++) q[e] = rnd();
    for (int e = 0; e < NK * HKV * D; e++) {
        k[e] = rnd();
        v[e] = rnd();
    }
    for (int i = 0; i < NQ; i++) qpos[i] = (uint32_t)(i * 30);
    for (int t = 0; t < NK; t++) kpos[t] = (uint32_t)(2 * t + 1);
    test_dense_indices_causal_lse_mass();
    test_bf16_blocks();
    test_merge();
    test_quest();
    test_softcap();
    test_alibi();
    test_bias();
    test_v_head_dim();
    return finish_tests("attend");
}
