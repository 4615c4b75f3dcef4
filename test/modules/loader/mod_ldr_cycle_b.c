/*
 * mod_ldr_cycle_b — loader test: requires ldr_cycle_a, which requires this one.
 */
#include <stanzad/stanzad.h>

static const char *const cycle_b_requires[] = {"ldr_cycle_a", NULL};

SD_MODULE(.name = "ldr_cycle_b", .version = "test", .requires = cycle_b_requires);
