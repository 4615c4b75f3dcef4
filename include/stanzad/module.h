/*
 * stanzad/module.h — what a module is: its descriptor, its settings, its schema steps.
 *
 * A module is a shared object mod_<name>.so that exports one function, sd_module_v1(),
 * returning a descriptor. Write it with the SD_MODULE() macro:
 *
 *   struct motd_conf { const char *text; int64_t delay_ms; };
 *   static const sd_setting motd_settings[] = {
 *       {"text", SD_SETTING_STRING, offsetof(struct motd_conf, text), "Welcome!", 0, 0, NULL,
 *        "message sent after login"},
 *       SD_SETTINGS_END,
 *   };
 *   static int motd_load(sd_module *m, const char **error_r) { ... register hooks ...; return 0; }
 *   SD_MODULE(.name = "motd", .version = "1.0", .settings = motd_settings,
 *             .config_size = sizeof(struct motd_conf), .load = motd_load);
 *
 * The loader checks magic, ABI major and minor and the descriptor size before it reads any other
 * field, so a module built for another ABI is refused with a message instead of crashing.
 *
 * Lifecycle: load() runs once, on the main thread, before the workers start and after the
 * settings were validated and the migrations applied (sd_worker_count() already tells how many
 * workers there will be). Everything a module registers in load() (hooks, features,
 * statements) belongs to it: if load() fails, or at shutdown, the core removes all of it; a
 * module never writes unregistration code. What a module creates at run time on a worker
 * (timers, memory in its worker slot or session data) is its own to free: session data through
 * its free function, the rest on that worker, e.g. when its last session closes. unload()
 * (optional) runs at shutdown after the workers stopped, to free module globals. Modules are
 * never unloaded while running.
 *
 * Threads: hooks run on worker threads, several at once. Module globals must be read-only after
 * load(); mutable state belongs in per-worker slots (sd_worker_slot), per-session data
 * (sd_session_set_data), or behind the module's own locks.
 */
#ifndef STANZAD_MODULE_H
#define STANZAD_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded module (opaque). */
typedef struct sd_module sd_module;

/* ---- settings ---- */

typedef enum sd_setting_type {
    SD_SETTING_BOOL = 1,     /* int: 0 or 1 */
    SD_SETTING_INT = 2,      /* int64_t, within [min, max] */
    SD_SETTING_SIZE = 3,     /* int64_t bytes; the file may say 1024 or "64K", "16M" */
    SD_SETTING_DURATION = 4, /* int64_t milliseconds; the file may say 30 or "30s", "5m", "250ms"
                              * (a bare number is seconds) */
    SD_SETTING_STRING = 5,   /* const char *, owned by the core */
    SD_SETTING_ENUM = 6,     /* int: index into choices */
    SD_SETTING_STRING_LIST = 7, /* const char *const *, NULL-terminated, owned by the core */
} sd_setting_type;

/*
 * One setting: the key in the module's section of the configuration, its type, where it goes in
 * the module's config struct, its default (written as it would be in the file; NULL means 0,
 * false, NULL or the empty list), bounds for numbers, choices for enums, and one line of help.
 * Keys, types, bounds and choices are checked before any port is bound; errors name the file,
 * the line and the key ("stanzad.conf:40: module_settings.ping.interval: must be between ...").
 */
typedef struct sd_setting {
    const char *key;
    sd_setting_type type;
    size_t offset;
    const char *def;
    int64_t min, max; /* SD_SETTING_INT, SIZE, DURATION; min == max == 0: unbounded */
    const char *const *choices; /* SD_SETTING_ENUM: NULL-terminated */
    const char *help;
} sd_setting;

#define SD_SETTINGS_END {NULL, (sd_setting_type)0, 0, NULL, 0, 0, NULL, NULL}

/*
 * The module's settings for a virtual host (the global section overlaid by the host's own
 * section), or the global ones when host is NULL or not served. The struct is config_size bytes
 * laid out by the module; it is immutable and lives until shutdown. NULL when the module has no
 * settings. Any thread.
 */
SD_API const void *sd_module_config(const sd_module *m, const char *host);

/* ---- schema ---- */

/*
 * An ordered schema step. Tables of a module are prefixed with its name ("motd_seen"). Missing
 * steps are applied at start, in one transaction per module, and recorded in
 * schema_versions(owner, version). Steps are never edited once released: add a new one.
 * The list ends with SD_MIGRATIONS_END. Per-account rows should reference the core's
 * accounts(id) with ON DELETE CASCADE: then an account deleted by stanzactl (another process,
 * where no SD_EV_ACCOUNT_DELETED can be raised) takes them along.
 */
typedef struct sd_migration {
    int version; /* 1, 2, 3, ... */
    const char *sql;
} sd_migration;

#define SD_MIGRATIONS_END {0, NULL}

/* ---- the descriptor ---- */

#define SD_MODULE_MAGIC 0x5344414dU /* "SDAM" */

typedef struct sd_module_desc {
    /* Filled by SD_MODULE(); checked first. */
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t desc_size;    /* sizeof(sd_module_desc) the module was built with */
    uint32_t setting_size; /* sizeof(sd_setting) the module was built with */

    /* Filled by the author. */
    const char *name;    /* = file mod_<name>.so = config section = log prefix = table prefix */
    const char *version; /* the module's own version, for logs */
    const char *const *requires; /* NULL-terminated names of modules that must load first */
    const sd_setting *settings;  /* ends with SD_SETTINGS_END; NULL: none */
    size_t config_size;          /* size of the struct the settings fill */
    const sd_migration *migrations; /* ends with SD_MIGRATIONS_END; NULL: none */
    /* Registers hooks, features, statements. 0 on success; otherwise -1 and a static English
     * message in *error_r. Main thread, before the workers start. */
    int (*load)(sd_module *m, const char **error_r);
    /* Optional: frees module globals at shutdown, after the workers stopped. */
    void (*unload)(sd_module *m);
} sd_module_desc;

/* The entry point's name carries the ABI generation; a future major gets a new name. */
#define SD_MODULE_ENTRY sd_module_v1

#define SD_MODULE(...)                                                                             \
    SD_MODULE_EXPORT const sd_module_desc *SD_MODULE_ENTRY(void);                                  \
    SD_MODULE_EXPORT const sd_module_desc *SD_MODULE_ENTRY(void)                                   \
    {                                                                                              \
        static const sd_module_desc sd_desc_ = {.magic = SD_MODULE_MAGIC,                          \
                                                 .abi_major = SD_ABI_MAJOR,                        \
                                                 .abi_minor = SD_ABI_MINOR,                        \
                                                 .desc_size = sizeof(sd_module_desc),              \
                                                 .setting_size = sizeof(sd_setting),               \
                                                 __VA_ARGS__};                                     \
        return &sd_desc_;                                                                          \
    }

/* ---- about the module and the server ---- */

/* The module's name. Any thread. */
SD_API const char *sd_module_name(const sd_module *m);
/* The running core's ABI minor (modules built for an older minor may test for newer calls). */
SD_API unsigned sd_abi_minor(void);
/* The server's release, e.g. "0.1.0". */
SD_API const char *sd_server_version(void);
/* Virtual hosts served (prepared domain names); index from 0 while non-NULL. Any thread. */
SD_API const char *sd_host_at(unsigned index);
/* Is this module enabled for host? (The core only calls a module's hooks for such hosts.) */
SD_API int sd_module_enabled(const sd_module *m, const char *host);

#ifdef __cplusplus
}
#endif

#endif
