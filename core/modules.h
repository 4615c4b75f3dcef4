/*
 * modules.h — loaded modules as the core sees them (the struct behind the public sd_module).
 *
 * module_loader.c finds, checks, orders and loads them; dispatch.c and module_api.c keep what
 * each one registers (hooks, features, statements, timers) and remove it all when a module's
 * load() fails or at shutdown.
 */
#ifndef STANZAD_MODULES_H
#define STANZAD_MODULES_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "stanzad/module.h"

struct config;

struct sd_module {
    const sd_module_desc *desc; /* in the .so; read only the fields desc_size covers */
    char *name;
    char *path;     /* the file it came from */
    void *dl;       /* dlopen handle */
    int index;      /* load order 0..n-1: indexes per-worker slots and per-session data */
    bool *enabled;  /* [n_hosts]: is the module in this host's module list? */
    void **configs; /* [n_hosts + 1]: the settings struct per host, [n_hosts] = global */
    bool loaded;    /* load() returned 0 */
};

/* Modules in load order (dependencies first). */
extern struct sd_module **modules;
extern size_t n_modules;

/*
 * Finds mod_<name>.so for every name in the configuration's global and per-host module lists,
 * checks its descriptor (magic, ABI major/minor, sizes, name), orders by dependencies, and
 * validates each module's settings (module_settings sections, global and per host). With
 * pg != NULL also applies each module's migrations and calls load() in order. Returns 0, or -1
 * with "file:line: key: message" lines (configuration) or "module NAME (PATH): message" lines in
 * err. On failure nothing a module registered stays behind.
 */
int modules_load(const struct config *cfg, PGconn *pg, char *err, size_t errlen);
/* Calls unload() of loaded modules in reverse order, removes their registrations, frees them.
 * Does not dlclose (code may still be referenced by pending callbacks until exit). */
void modules_unload(void);

/* Removes everything m registered (hooks, features, statements, timers): dispatch.c. */
void module_registrations_remove(struct sd_module *m);

#endif
