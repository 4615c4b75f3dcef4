/*
 * mod_ldr_cycle_a — loader test: requires ldr_cycle_b, which requires this one.
 */
#include <stanzad/stanzad.h>

static const char *const cycle_a_requires[] = {"ldr_cycle_b", NULL};

SD_MODULE(.name = "ldr_cycle_a", .version = "test", .requires = cycle_a_requires);
