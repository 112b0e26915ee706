/* Tiny assertion helpers shared by the C and C++ test programs. */
#ifndef TKR_TEST_CHECK_H
#define TKR_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenroute.h"

static int tkr_test_failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            tkr_test_failures++;                                                 \
        }                                                                        \
    } while (0)

#define CHECK_STATUS(call, want)                                                 \
    do {                                                                         \
        tkr_status got_ = (call);                                                \
        if (got_ != (want)) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %s, want %s\n", __FILE__, __LINE__, \
                    #call, tkr_status_string(got_), tkr_status_string(want));    \
            tkr_test_failures++;                                                 \
        }                                                                        \
    } while (0)

/* The level the harness asked for (TKR_EXPECT_ISA, a TKR_ISA_* id) must be the active
 * one: the "did this program really dispatch where we think" check. */
static void check_expected_isa(void) {
    const char *want = getenv("TKR_EXPECT_ISA");
    if (want == NULL) {
        fprintf(stderr, "TKR_EXPECT_ISA is not set\n");
        tkr_test_failures++;
        return;
    }
    uint32_t got = tkr_get_isa();
    if (got != (uint32_t)atoi(want)) {
        fprintf(stderr, "active ISA is %u (%s), expected %s\n", got, tkr_isa_name(got), want);
        tkr_test_failures++;
    }
}

static int finish_tests(const char *name) {
    if (tkr_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, tkr_test_failures);
        return 1;
    }
    printf("%s: ok on %s\n", name, tkr_isa_name(tkr_get_isa()));
    return 0;
}

#endif
