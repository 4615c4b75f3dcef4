/*
 * mod_ldr_badtable — loader test: a settings table whose default is not one of its choices
 * (a bug of the module's author, reported against the module file).
 */
#include <stddef.h>

#include <stanzad/stanzad.h>

struct badtable_conf {
    int level;
};

static const char *const badtable_levels[] = {"low", "high", NULL};

static const sd_setting badtable_settings[] = {
    {"level", SD_SETTING_ENUM, offsetof(struct badtable_conf, level), "loud", 0, 0, badtable_levels,
     "how loud"},
    SD_SETTINGS_END,
};

SD_MODULE(.name = "ldr_badtable", .version = "test", .settings = badtable_settings,
          .config_size = sizeof(struct badtable_conf));
