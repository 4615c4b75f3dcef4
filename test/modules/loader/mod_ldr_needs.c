/*
 * mod_ldr_needs — loader test: requires a module that no configuration lists.
 */
#include <stanzad/stanzad.h>

static const char *const needs_requires[] = {"ldr_absent", NULL};

SD_MODULE(.name = "ldr_needs", .version = "test", .requires = needs_requires);
