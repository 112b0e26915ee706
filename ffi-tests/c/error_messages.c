/* tkr_last_error_message(): after a failing call it names the argument (as the header
 * names it) and the rule that failed, one family after another; the causes of one
 * status in one function give distinct messages (tkr_attention's INVALID_ARGUMENT
 * causes); a successful call leaves the message as it was; before any failure it is "". */
#include "check.h"

/* The call must fail with `want`, and the message must contain `needle`. */
#define CHECK_MESSAGE(call, want, needle)                                                \
    do {                                                                                 \
        tkr_status got_ = (call);                                                        \
        const char *msg_ = tkr_last_error_message();                                     \
        if (got_ != (want) || msg_ == NULL || strstr(msg_, (needle)) == NULL) {          \
            fprintf(stderr, "%s:%d: %s returned %s with message \"%s\"; want %s naming \"%s\"\n", \
                    __FILE__, __LINE__, #call, tkr_status_string(got_), msg_ ? msg_ : "(null)", \
                    tkr_status_string(want), (needle));                                  \
            tkr_test_failures++;                                                         \
        }                                                                                \
    } while (0)

static float x[256], y[256];
static uint32_t idx[16];
static size_t counts[8];

/* The message of one failing call, copied (it changes with the next failure). */
static void copy_message(char *dst, tkr_status st) {
    CHECK(st == TKR_STATUS_INVALID_ARGUMENT);
    strncpy(dst, tkr_last_error_message(), 199);
    dst[199] = 0;
}

int main(void) {
    check_expected_isa();
    CHECK(strcmp(tkr_last_error_message(), "") == 0);
    for (int i = 0; i < 256; i++) x[i] = (float)i / 256.0f;
    for (int i = 0; i < 16; i++) idx[i] = (uint32_t)i;

    /* score */
    CHECK_MESSAGE(tkr_sigmoid_f32(NULL, 4, y), TKR_STATUS_NULL_POINTER, "x: ");
    CHECK_MESSAGE(tkr_sigmoid_f32(x, 4, x + 1), TKR_STATUS_OVERLAP, "y: ");
    CHECK_MESSAGE(tkr_score(TKR_DTYPE_F32, x, 4, 8, 4, x, 1, 8, NULL, TKR_ACT_NONE, y, 1),
                  TKR_STATUS_BAD_STRIDE, "h_row_stride: ");
    CHECK_MESSAGE(tkr_score(9, x, 4, 8, 8, x, 1, 8, NULL, TKR_ACT_NONE, y, 1),
                  TKR_STATUS_INVALID_ARGUMENT, "dtype: ");
    CHECK_MESSAGE(tkr_score(TKR_DTYPE_F32, x, 4, 8, 8, x, 1, 8, NULL, 5, y, 1),
                  TKR_STATUS_INVALID_ARGUMENT, "activation: ");
    CHECK_MESSAGE(tkr_score(TKR_DTYPE_F32, x, 4, 8, 8, NULL, 1, 8, NULL, TKR_ACT_NONE, y, 1),
                  TKR_STATUS_NULL_POINTER, "w: ");
    CHECK_MESSAGE(tkr_score(TKR_DTYPE_F32, x, 4, 8, 8, x, 0, 8, NULL, TKR_ACT_NONE, y, 1),
                  TKR_STATUS_INVALID_ARGUMENT, "n_routers");

    /* A successful call leaves the message unchanged. */
    CHECK_STATUS(tkr_sigmoid_f32(x, 4, y), TKR_STATUS_OK);
    CHECK(strstr(tkr_last_error_message(), "n_routers") != NULL);

    /* select */
    CHECK_MESSAGE(tkr_topk_f32(x, 1, 8, 8, 9, NULL, idx, 16, NULL, NULL, 0),
                  TKR_STATUS_INVALID_ARGUMENT, "k: ");
    CHECK_MESSAGE(tkr_topk_f32(x, 2, 8, 4, 2, NULL, idx, 2, NULL, NULL, 0),
                  TKR_STATUS_BAD_STRIDE, "scores_row_stride: ");
    CHECK_MESSAGE(tkr_topk_f32(x, 1, 8, 8, 2, NULL, NULL, 2, NULL, NULL, 0),
                  TKR_STATUS_NULL_POINTER, "out_idx: ");
    {
        tkr_topk_options o;
        CHECK_STATUS(tkr_topk_options_init(&o), TKR_STATUS_OK);
        o.reserved = 1;
        CHECK_MESSAGE(tkr_topk_f32(x, 1, 8, 8, 2, &o, idx, 2, NULL, NULL, 0),
                      TKR_STATUS_INVALID_ARGUMENT, "options->reserved: ");
        CHECK_MESSAGE(tkr_topk_options_init(NULL), TKR_STATUS_NULL_POINTER, "options: ");
    }
    CHECK_MESSAGE(tkr_threshold_f32(x, 1, 8, 8, 0.5f, NULL, (uint32_t *)(void *)counts, 8,
                                    counts),
                  TKR_STATUS_OVERLAP, "out_idx: ");
    CHECK_MESSAGE(tkr_mask_to_indices((const uint8_t *)x, 8, NULL, NULL),
                  TKR_STATUS_NULL_POINTER, "out_idx: ");

    /* compact */
    CHECK_MESSAGE(tkr_gather_rows(0, 4, x, 8, 4, idx, 2, y, 4), TKR_STATUS_INVALID_ARGUMENT,
                  "elem_size: ");
    CHECK_MESSAGE(tkr_gather_rows(4, 4, x, 8, 4, idx, 2, y, 3), TKR_STATUS_BAD_STRIDE,
                  "dst_row_stride: ");
    idx[1] = 99;
    CHECK_MESSAGE(tkr_gather_rows(4, 4, x, 8, 4, idx, 2, y, 4), TKR_STATUS_OUT_OF_RANGE, "idx: ");
    idx[1] = 0;
    CHECK_MESSAGE(tkr_scatter_rows(4, 4, x, 4, idx, 2, y, 8, 4), TKR_STATUS_DUPLICATE_INDEX,
                  "idx: ");
    idx[1] = 1;
    CHECK_MESSAGE(tkr_scatter_add_rows(TKR_DTYPE_F32, 4, y, 8, 4, idx, 2, y + 2, 4, NULL),
                  TKR_STATUS_OVERLAP, "h: ");
    CHECK_MESSAGE(tkr_compact_rows(4, 4, y, 8, 4, (const uint32_t[]){2, 1}, 2, NULL),
                  TKR_STATUS_UNSORTED_INDEX, "keep: ");
    CHECK_MESSAGE(tkr_kv_compact(7, 4, y, 4, 2, 4, 8, 4, idx, 2, TKR_KV_KEEP_SHARED, NULL),
                  TKR_STATUS_INVALID_ARGUMENT, "layout: ");
    CHECK_MESSAGE(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 4, y, 4, 2, 4, 8, 4, idx, 2, 7, NULL),
                  TKR_STATUS_INVALID_ARGUMENT, "keep_mode: ");

    /* route */
    {
        size_t count = 0;
        CHECK_MESSAGE(tkr_route(TKR_DTYPE_F32, x, 8, 4, 4, x, NULL, TKR_ACT_SIGMOID, 9, 2, 0.0f,
                                NULL, idx, NULL, y, 4, 8, &count, NULL, 0),
                      TKR_STATUS_INVALID_ARGUMENT, "select: ");
        CHECK_MESSAGE(tkr_route(TKR_DTYPE_F32, x, 8, 4, 4, x, NULL, TKR_ACT_SIGMOID,
                                TKR_ROUTE_THRESHOLD, 2, 0.0f, NULL, idx, NULL, y, 4, 8, &count,
                                NULL, 0),
                      TKR_STATUS_INVALID_ARGUMENT, "k: ");
        CHECK_MESSAGE(tkr_route(TKR_DTYPE_F32, x, 8, 4, 2, x, NULL, TKR_ACT_SIGMOID,
                                TKR_ROUTE_TOPK, 2, 0.0f, NULL, idx, NULL, y, 4, 8, &count, NULL,
                                0),
                      TKR_STATUS_BAD_STRIDE, "h_row_stride: ");
    }

    /* isa */
    CHECK_MESSAGE(tkr_set_isa(77), TKR_STATUS_INVALID_ARGUMENT, "isa: ");

    /* attend: every INVALID_ARGUMENT cause of tkr_attention has its own message. */
    {
        enum { CAUSES = 12 };
        static char msgs[CAUSES][200];
        int n = 0;
        tkr_attention_options o;
        tkr_attention_keys k;
        const float *q = x, *kk = x + 64, *v = x + 128;
#define ATTN(dt, hd, hq, hkv, keys, opts) \
    tkr_attention((dt), q, 2, (hq), (hd), 8, 4, kk, v, 2, (hkv), 8, 4, 8, 4, (keys), (opts), y, 8, 4)
        copy_message(msgs[n++], ATTN(9, 4, 2, 2, NULL, NULL));
        CHECK_STATUS(tkr_attention_options_init(&o), TKR_STATUS_OK);
        o.out_dtype = 9;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, NULL, &o));
        CHECK_STATUS(tkr_attention_options_init(&o), TKR_STATUS_OK);
        o.flags = 64;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, NULL, &o));
        CHECK_STATUS(tkr_attention_options_init(&o), TKR_STATUS_OK);
        o.scale = 1.0f / 0.0f;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, NULL, &o));
        CHECK_STATUS(tkr_attention_keys_init(&k), TKR_STATUS_OK);
        k.kind = 9;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, &k, NULL));
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 0, 2, 2, NULL, NULL));
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 0, 2, NULL, NULL));
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 0, NULL, NULL));
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 2, 3, 2, NULL, NULL));
        CHECK_STATUS(tkr_attention_keys_init(&k), TKR_STATUS_OK);
        k.kind = TKR_KEYS_BLOCKS;
        k.block_lists = 9;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, &k, NULL));
        k.block_lists = TKR_BLOCK_LISTS_SHARED;
        k.block_size = 1;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, &k, NULL));
        CHECK_STATUS(tkr_attention_options_init(&o), TKR_STATUS_OK);
        o.struct_size = 1;
        copy_message(msgs[n++], ATTN(TKR_DTYPE_F32, 4, 2, 2, NULL, &o));
#undef ATTN
        CHECK(n == CAUSES);
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                if (strcmp(msgs[i], msgs[j]) == 0) {
                    fprintf(stderr, "causes %d and %d share the message \"%s\"\n", i, j, msgs[i]);
                    tkr_test_failures++;
                }
        /* Each names its argument. */
        const char *names[CAUSES] = {"dtype", "options->out_dtype", "options->flags", "scale",
                                     "keys->kind", "head_dim", "n_heads_q", "n_heads_kv",
                                     "n_heads_q is not a multiple of n_heads_kv",
                                     "keys->block_lists", "keys->query_block_size", "options"};
        for (int i = 0; i < n; i++) {
            if (strstr(msgs[i], names[i]) == NULL) {
                fprintf(stderr, "cause %d: \"%s\" does not name %s\n", i, msgs[i], names[i]);
                tkr_test_failures++;
            }
        }
    }
    CHECK_MESSAGE(tkr_attention_merge(9, x, 1, 1, 4, 4, 4, x + 8, 1, y, 4, NULL),
                  TKR_STATUS_INVALID_ARGUMENT, "out_dtype: ");
    CHECK_MESSAGE(tkr_key_block_summary(TKR_DTYPE_F32, x, 4, 1, 4, 4, 4, 2, 0, 2, y, y + 4),
                  TKR_STATUS_OVERLAP, "kmin: ");
    CHECK_MESSAGE(tkr_attention_keys_init(NULL), TKR_STATUS_NULL_POINTER, "keys: ");

    return finish_tests("error_messages");
}
