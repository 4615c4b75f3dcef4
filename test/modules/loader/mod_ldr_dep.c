/*
 * mod_ldr_dep — loader test: requires ldr_settings, so it loads after it whatever the order of
 * the modules list.
 */
#include <stanzad/stanzad.h>

static const char *const dep_requires[] = {"ldr_settings", NULL};

static int dep_load(sd_module *m, const char **error_r)
{
    sd_log(m, SD_LOG_INFO, "loaded after its dependency");
    return 0;
}

SD_MODULE(.name = "ldr_dep", .version = "test", .requires = dep_requires, .load = dep_load);
