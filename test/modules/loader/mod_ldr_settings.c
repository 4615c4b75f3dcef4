/*
 * mod_ldr_settings — loader test: one setting of every type, with bounds and defaults. load()
 * logs the values it got for the global section and for each host, so a test can check the
 * merge (defaults, then module_settings.ldr_settings, then the host's own section); the
 * negative tests write bad values for these keys.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <stanzad/stanzad.h>

struct ldr_conf {
    int flag;
    int64_t count;
    int64_t size;
    int64_t interval;
    const char *name;
    int mode;
    const char *const *names;
};

static const char *const ldr_modes[] = {"quiet", "normal", "verbose", NULL};

static const sd_setting ldr_settings[] = {
    {"flag", SD_SETTING_BOOL, offsetof(struct ldr_conf, flag), "false", 0, 0, NULL, "a switch"},
    {"count", SD_SETTING_INT, offsetof(struct ldr_conf, count), "5", 1, 100, NULL, "a number"},
    {"size", SD_SETTING_SIZE, offsetof(struct ldr_conf, size), "64K", 1024, 16777216, NULL,
     "a size"},
    {"interval", SD_SETTING_DURATION, offsetof(struct ldr_conf, interval), "5m", 1000, 86400000,
     NULL, "a duration"},
    {"name", SD_SETTING_STRING, offsetof(struct ldr_conf, name), "hello", 0, 0, NULL, "a string"},
    {"mode", SD_SETTING_ENUM, offsetof(struct ldr_conf, mode), "normal", 0, 0, ldr_modes,
     "a choice"},
    {"names", SD_SETTING_STRING_LIST, offsetof(struct ldr_conf, names), "[\"a\", \"b\"]", 0, 0,
     NULL, "a list"},
    SD_SETTINGS_END,
};

static void log_conf(sd_module *m, const char *host)
{
    const struct ldr_conf *c = sd_module_config(m, host);
    char names[256] = "";
    size_t len = 0;
    for (size_t i = 0; c->names && c->names[i] && len < sizeof names; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? "," : "", c->names[i]);
    sd_log(m, SD_LOG_INFO,
           "config %s: flag=%d count=%" PRId64 " size=%" PRId64 " interval=%" PRId64
           " name=%s mode=%s names=%s",
           host ? host : "(global)", c->flag, c->count, c->size, c->interval,
           c->name ? c->name : "(null)", ldr_modes[c->mode], names);
}

static int ldr_load(sd_module *m, const char **error_r)
{
    log_conf(m, NULL);
    for (unsigned i = 0; sd_host_at(i); i++)
        log_conf(m, sd_host_at(i));
    return 0;
}

SD_MODULE(.name = "ldr_settings", .version = "test", .settings = ldr_settings,
          .config_size = sizeof(struct ldr_conf), .load = ldr_load);
