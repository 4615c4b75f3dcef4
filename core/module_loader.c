/*
 * module_loader.c — finds the modules named in the configuration, checks that they were built for
 * this ABI, orders them by their dependencies, validates and fills their settings, applies their
 * schema migrations and calls their load() (core/modules.h).
 *
 * It works in phases, and each phase reports every problem it finds (up to MAX_PROBLEMS lines)
 * before start-up stops, so one run of --check-config shows everything there is to fix:
 *   1. open: for each name in the global list, then in each host's list (each name once), find
 *      server.module_dir/mod_<name>.so, refuse a world-writable file or directory, dlopen it with
 *      RTLD_NOW | RTLD_LOCAL (every symbol resolved now, none visible to other modules), call
 *      sd_module_v1() and check magic, ABI major, ABI minor and the two struct sizes before any
 *      other field of the descriptor is read; then the name, the settings table and migrations.
 *      When RTLD_NOW fails (a symbol this core lacks), the file is opened again with RTLD_LAZY
 *      only to read its descriptor, so that a module built for a newer ABI minor is refused with
 *      the ABI numbers rather than a bare "undefined symbol"; when even that fails because the
 *      module needs a version node this library lacks (STANZAD_1.N), the numbers come from the
 *      dynamic linker's message.
 *   2. order: every `requires` must be configured and enabled wherever its dependant is; a cycle
 *      is reported with its path; the load order is a depth-first post-order over the configured
 *      order, so dependencies come first and the operator's order decides otherwise.
 *   3. settings: module_settings.<name> (global) and hosts.[i].module_settings.<name> (per host)
 *      are checked key by key against the module's sd_setting table, and one struct per host
 *      plus one global is filled: defaults, then the global section, then the host's. Strings
 *      and lists in those structs are the core's, freed at unload.
 *   4. with a database connection: migrations (one transaction per module, owner = its name),
 *      then load() in order. A failing load() has everything it registered removed and its
 *      file closed, the modules loaded before it are unloaded, and start-up stops.
 * Problems with the configuration are "file:line: key: message" lines (config_where), problems
 * with a module file are "module NAME (PATH): message" lines.
 *
 * Loaded modules are never dlclose()d: callbacks, strings and descriptors in them may still be
 * referenced until the process exits. Only files whose load() never ran are closed, and the
 * one whose load() failed, once everything it registered is gone (before the workers start, so
 * it cannot have a timer or a job in flight).
 */
#include "modules.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "mem.h"

struct sd_module **modules;
size_t n_modules;

/* As config.c: enough to see a pattern without drowning the first problem. */
#define MAX_PROBLEMS 10
/* Walking tables in a module: a runaway walk means a missing terminator. */
#define MAX_SETTINGS   1000
#define MAX_REQUIRES   64
#define MAX_MIGRATIONS 10000

/* The sizes of the ABI 1.0 structs, up to the end of their last 1.0 field: a module's
 * desc_size and setting_size must be at least these (later minors only append fields). */
#define DESC_SIZE_1_0    (offsetof(sd_module_desc, unload) + sizeof(void (*)(sd_module *)))
#define SETTING_SIZE_1_0 (offsetof(sd_setting, help) + sizeof(const char *))

#define WHERE_MAX (PATH_MAX + 512)

/* ---- problems ------------------------------------------------------------------------------ */

struct report {
    char *err;
    size_t errlen, used;
    size_t n; /* problems, including those not written */
};

static void report_v(struct report *r, bool count, const char *fmt, va_list ap)
{
    if (count && ++r->n > MAX_PROBLEMS)
        return;
    if (r->errlen == 0 || r->used + 1 >= r->errlen)
        return;
    if (r->used > 0)
        r->err[r->used++] = '\n';
    int n = vsnprintf(r->err + r->used, r->errlen - r->used, fmt, ap);
    if (n > 0)
        r->used += (size_t)n;
    if (r->used >= r->errlen)
        r->used = r->errlen - 1;
}

static void report(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(r, true, fmt, ap);
    va_end(ap);
}

/* A line that is not a problem of its own. */
static void note(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_v(r, false, fmt, ap);
    va_end(ap);
}

/* A problem with the module file or its descriptor: "module NAME (PATH): ...". */
static void module_problem(struct report *r, const struct sd_module *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void module_problem(struct report *r, const struct sd_module *m, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    report(r, "module %s (%s): %s", m->name, m->path, what);
}

/* A problem with a setting of the file: "file:line: key.path: ...". */
static void setting_problem(struct report *r, const struct config *cfg, const config_setting_t *s,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void setting_problem(struct report *r, const struct config *cfg, const config_setting_t *s,
                            const char *fmt, ...)
{
    char where[WHERE_MAX], what[1024];
    config_where(cfg, s, NULL, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    report(r, "%s: %s", where, what);
}

/* The closest of n names to name, as config.c suggests keys; NULL when none is close. */
static const char *nearest(const char *name, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = config_edit_distance(name, names[i]);
        /* A distance as large as the name itself would suggest anything for any typo. */
        if (d < best_d && d < strlen(name)) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- the loader's view of a module ------------------------------------------------------- */

enum visit { UNSEEN = 0, VISITING, DONE };

struct cand {
    struct sd_module *m;
    sd_module_desc d;            /* the descriptor, zero-padded past the module's desc_size */
    bool ok;                     /* opened and checked */
    bool attempted;              /* load() was called: it may have registered things */
    enum visit visit;            /* dependency walk */
    const sd_setting **settings; /* rows of the table, walked with the module's setting_size */
    size_t n_settings;
};

struct run {
    const struct config *cfg;
    struct report *r;
    struct cand *c; /* configured modules, in configuration order */
    size_t n;
    struct sd_module **order; /* load order */
    size_t n_order;
};

static struct cand *find_cand(struct run *run, const char *name)
{
    for (size_t i = 0; i < run->n; i++)
        if (strcmp(run->c[i].m->name, name) == 0)
            return &run->c[i];
    return NULL;
}

/* ---- settings values --------------------------------------------------------------------- */

/* One parsed value, before it is stored into a config struct. */
struct value {
    int64_t i;   /* BOOL, INT, SIZE, DURATION, ENUM */
    char *s;     /* STRING (malloc'd) */
    char **list; /* STRING_LIST (malloc'd, NULL-terminated) */
};

static void value_free(struct value *v)
{
    free(v->s);
    for (size_t i = 0; v->list && v->list[i]; i++)
        free(v->list[i]);
    free(v->list);
    memset(v, 0, sizeof *v);
}

static size_t field_size(sd_setting_type t)
{
    switch (t) {
    case SD_SETTING_BOOL:
    case SD_SETTING_ENUM:
        return sizeof(int);
    case SD_SETTING_INT:
    case SD_SETTING_SIZE:
    case SD_SETTING_DURATION:
        return sizeof(int64_t);
    case SD_SETTING_STRING:
        return sizeof(const char *);
    case SD_SETTING_STRING_LIST:
        return sizeof(const char *const *);
    }
    return 0;
}

/*
 * "30" (seconds), "30s", "5m", "2h", "1d", "250ms": decimal digits and one optional unit.
 * Anything else (spaces, signs, fractions, "1h30m") is refused rather than guessed at.
 */
static bool parse_duration(const char *s, int64_t *ms)
{
    int64_t n = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (INT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (*p - '0');
    }
    int64_t unit;
    if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
        unit = 1000;
    else if (strcmp(p, "ms") == 0)
        unit = 1;
    else if (strcmp(p, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        unit = 3600 * 1000;
    else if (strcmp(p, "d") == 0)
        unit = 86400 * 1000;
    else
        return false;
    if (n > INT64_MAX / unit)
        return false;
    *ms = n * unit;
    return true;
}

/* A duration in its largest whole unit: "90s", "5m", "250ms". */
static const char *format_duration(int64_t ms, char *buf, size_t n)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, n, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return buf;
        }
    snprintf(buf, n, "%" PRId64 "ms", ms);
    return buf;
}

static bool bounded(const sd_setting *st)
{
    return st->min != 0 || st->max != 0;
}

/* Checks v against the row's bounds; raw is the value as written (NULL: an integer). */
static bool check_range(const sd_setting *st, int64_t v, const char *raw, char *why, size_t n)
{
    char a[32], b[32], c[32];
    if ((st->type == SD_SETTING_SIZE || st->type == SD_SETTING_DURATION) && v < 0) {
        snprintf(why, n, "must not be negative, got %" PRId64, v);
        return false;
    }
    if (!bounded(st) || (v >= st->min && v <= st->max))
        return true;
    if (st->type == SD_SETTING_DURATION) {
        format_duration(st->min, a, sizeof a);
        format_duration(st->max, b, sizeof b);
        if (raw)
            snprintf(why, n, "must be between %s and %s, got \"%s\"", a, b, raw);
        else
            snprintf(why, n, "must be between %s and %s, got %" PRId64 " (%s)", a, b, v / 1000,
                     format_duration(v, c, sizeof c));
    } else if (raw) {
        snprintf(why, n, "must be between %" PRId64 " and %" PRId64 ", got \"%s\" (%" PRId64 ")",
                 st->min, st->max, raw, v);
    } else {
        snprintf(why, n, "must be between %" PRId64 " and %" PRId64 ", got %" PRId64, st->min,
                 st->max, v);
    }
    return false;
}

static bool enum_value(const sd_setting *st, const char *s, struct value *v, char *why, size_t n)
{
    for (int i = 0; st->choices[i]; i++)
        if (strcmp(st->choices[i], s) == 0) {
            v->i = i;
            return true;
        }
    char list[512];
    config_join_choices(st->choices, list, sizeof list);
    snprintf(why, n, "must be one of %s, got \"%s\"", list, s);
    return false;
}

/*
 * Parses a setting of the file (or of a default written in file syntax) for row st. Returns true
 * with v filled, or false with the reason in why and, for a list, *bad_r set to the element at
 * fault.
 */
static bool value_from_setting(const sd_setting *st, const config_setting_t *s, struct value *v,
                               const config_setting_t **bad_r, char *why, size_t n)
{
    int type = config_setting_type(s);
    const char *str = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
    long long ll;

    memset(v, 0, sizeof *v);
    *bad_r = s;
    switch (st->type) {
    case SD_SETTING_BOOL:
        if (type != CONFIG_TYPE_BOOL) {
            snprintf(why, n, "expected a boolean, got %s", config_type_name(type));
            return false;
        }
        v->i = config_setting_get_bool(s) ? 1 : 0;
        return true;

    case SD_SETTING_INT:
        if (!config_is_integer(s)) {
            snprintf(why, n, "expected an integer, got %s", config_type_name(type));
            return false;
        }
        v->i = (int64_t)config_setting_get_int64(s);
        return check_range(st, v->i, NULL, why, n);

    case SD_SETTING_SIZE:
        if (config_is_integer(s)) {
            v->i = (int64_t)config_setting_get_int64(s);
            return check_range(st, v->i, NULL, why, n);
        }
        if (!str) {
            snprintf(why, n, "expected an integer or a size string, got %s",
                     config_type_name(type));
            return false;
        }
        if (!config_parse_size(str, &ll)) {
            snprintf(why, n, "expected a size such as 262144, \"256K\" or \"16M\", got \"%s\"",
                     str);
            return false;
        }
        v->i = ll;
        return check_range(st, v->i, str, why, n);

    case SD_SETTING_DURATION:
        if (config_is_integer(s)) {
            long long secs = config_setting_get_int64(s);
            if (secs > INT64_MAX / 1000 || secs < INT64_MIN / 1000) {
                snprintf(why, n, "%lld seconds is too long", secs);
                return false;
            }
            v->i = (int64_t)secs * 1000;
            return check_range(st, v->i, NULL, why, n);
        }
        if (!str) {
            snprintf(why, n, "expected an integer or a duration string, got %s",
                     config_type_name(type));
            return false;
        }
        if (!parse_duration(str, &v->i)) {
            snprintf(why, n,
                     "expected a duration such as 30 (seconds), \"30s\", \"5m\", \"2h\", \"1d\" "
                     "or \"250ms\", got \"%s\"",
                     str);
            return false;
        }
        return check_range(st, v->i, str, why, n);

    case SD_SETTING_STRING:
        if (!str) {
            snprintf(why, n, "expected a string, got %s", config_type_name(type));
            return false;
        }
        v->s = xstrdup(str);
        return true;

    case SD_SETTING_ENUM:
        if (!str) {
            snprintf(why, n, "expected a string, got %s", config_type_name(type));
            return false;
        }
        return enum_value(st, str, v, why, n);

    case SD_SETTING_STRING_LIST: {
        if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY) {
            snprintf(why, n, "expected a list of strings, got %s", config_type_name(type));
            return false;
        }
        int len = config_setting_length(s);
        v->list = xcalloc((size_t)len + 1, sizeof *v->list);
        for (int i = 0; i < len; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                snprintf(why, n, "expected a string, got %s",
                         config_type_name(config_setting_type(e)));
                *bad_r = e;
                value_free(v);
                return false;
            }
            v->list[i] = xstrdup(config_setting_get_string(e));
        }
        return true;
    }
    }
    snprintf(why, n, "setting of unknown type %d", (int)st->type);
    return false;
}

/* Parses the row's default, written as a value in the file would be (without quotes for strings;
 * a list in libconfig syntax: ["a", "b"]). NULL means 0, false, NULL or the empty list. */
static bool value_from_default(const sd_setting *st, struct value *v, char *why, size_t n)
{
    const char *def = st->def;
    long long ll;

    memset(v, 0, sizeof *v);
    if (!def) {
        if (st->type == SD_SETTING_STRING_LIST)
            v->list = xcalloc(1, sizeof *v->list);
        /* 0 must be within the bounds like any other value. */
        if (st->type == SD_SETTING_INT || st->type == SD_SETTING_SIZE ||
            st->type == SD_SETTING_DURATION)
            return check_range(st, 0, NULL, why, n);
        return true;
    }
    switch (st->type) {
    case SD_SETTING_BOOL:
        if (strcmp(def, "true") == 0 || strcmp(def, "false") == 0) {
            v->i = def[0] == 't';
            return true;
        }
        snprintf(why, n, "expected true or false");
        return false;
    case SD_SETTING_INT: {
        char *end;
        errno = 0;
        ll = strtoll(def, &end, 10);
        if (errno || end == def || *end) {
            snprintf(why, n, "expected an integer");
            return false;
        }
        v->i = ll;
        return check_range(st, v->i, def, why, n);
    }
    case SD_SETTING_SIZE:
        if (!config_parse_size(def, &ll)) {
            snprintf(why, n, "expected a size such as 262144, \"256K\" or \"16M\"");
            return false;
        }
        v->i = ll;
        return check_range(st, v->i, def, why, n);
    case SD_SETTING_DURATION:
        if (!parse_duration(def, &v->i)) {
            snprintf(why, n, "expected a duration such as \"30s\", \"5m\" or \"250ms\"");
            return false;
        }
        return check_range(st, v->i, def, why, n);
    case SD_SETTING_STRING:
        v->s = xstrdup(def);
        return true;
    case SD_SETTING_ENUM:
        return enum_value(st, def, v, why, n);
    case SD_SETTING_STRING_LIST: {
        config_t lc;
        config_init(&lc);
        size_t len = strlen(def) + 8;
        char *text = xmalloc(len);
        snprintf(text, len, "v = %s;", def);
        bool ok = false;
        if (!config_read_string(&lc, text)) {
            snprintf(why, n, "expected a list such as [\"a\", \"b\"]: %s", config_error_text(&lc));
        } else {
            const config_setting_t *bad;
            ok = value_from_setting(st, config_lookup(&lc, "v"), v, &bad, why, n);
        }
        config_destroy(&lc);
        free(text);
        return ok;
    }
    }
    snprintf(why, n, "setting of unknown type %d", (int)st->type);
    return false;
}

/* Stores v (copied) into the config struct at base, freeing what the field held. */
static void store(const sd_setting *st, const struct value *v, void *base)
{
    void *field = (char *)base + st->offset;
    switch (st->type) {
    case SD_SETTING_BOOL:
    case SD_SETTING_ENUM: {
        int i = (int)v->i;
        memcpy(field, &i, sizeof i); /* the module's struct may be packed */
        return;
    }
    case SD_SETTING_INT:
    case SD_SETTING_SIZE:
    case SD_SETTING_DURATION:
        memcpy(field, &v->i, sizeof v->i);
        return;
    case SD_SETTING_STRING: {
        char *old;
        memcpy(&old, field, sizeof old);
        free(old);
        char *s = v->s ? xstrdup(v->s) : NULL;
        memcpy(field, &s, sizeof s);
        return;
    }
    case SD_SETTING_STRING_LIST: {
        char **old;
        memcpy(&old, field, sizeof old);
        for (size_t i = 0; old && old[i]; i++)
            free(old[i]);
        free(old);
        size_t len = 0;
        while (v->list && v->list[len])
            len++;
        char **l = xcalloc(len + 1, sizeof *l);
        for (size_t i = 0; i < len; i++)
            l[i] = xstrdup(v->list[i]);
        memcpy(field, &l, sizeof l);
        return;
    }
    }
}

/* The value of a field as a struct value (borrowing nothing: strings are copied). */
static void load_field(const sd_setting *st, const void *base, struct value *v)
{
    const void *field = (const char *)base + st->offset;
    memset(v, 0, sizeof *v);
    switch (st->type) {
    case SD_SETTING_BOOL:
    case SD_SETTING_ENUM: {
        int i;
        memcpy(&i, field, sizeof i);
        v->i = i;
        return;
    }
    case SD_SETTING_INT:
    case SD_SETTING_SIZE:
    case SD_SETTING_DURATION:
        memcpy(&v->i, field, sizeof v->i);
        return;
    case SD_SETTING_STRING:
        memcpy(&v->s, field, sizeof v->s);
        return;
    case SD_SETTING_STRING_LIST:
        memcpy(&v->list, field, sizeof v->list);
        return;
    }
}

static void free_struct(const struct cand *c, void *base)
{
    if (!base)
        return;
    for (size_t i = 0; i < c->n_settings; i++) {
        const sd_setting *st = c->settings[i];
        struct value v;
        load_field(st, base, &v);
        if (st->type == SD_SETTING_STRING || st->type == SD_SETTING_STRING_LIST)
            value_free(&v); /* the strings in it are the core's */
    }
    free(base);
}

/* ---- phase 1: open and check ------------------------------------------------------------- */

/* glibc's message when a needed symbol version is missing names the version node, which names
 * the ABI minor the module needs: "version `STANZAD_1.3' not found (required by ...)". */
static bool needed_minor(const char *dlerr, unsigned *major, unsigned *minor)
{
    const char *p = strstr(dlerr, "version `STANZAD_");
    return p && sscanf(p, "version `STANZAD_%u.%u'", major, minor) == 2;
}

static bool valid_key(const char *k)
{
    /* What libconfig accepts as a setting name, so the operator can write it. */
    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z')))
        return false;
    return strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
           strlen(k);
}

/* The settings table: terminated, with sane rows that fit into config_size. Fills c->settings. */
static bool check_settings_table(struct report *r, struct cand *c)
{
    const sd_module_desc *d = &c->d;
    if (!d->settings)
        return true;
    bool ok = true;
    size_t n = 0;
    const sd_setting **rows = NULL;
    for (;; n++) {
        if (n == MAX_SETTINGS) {
            module_problem(r, c->m, "settings table has no end (SD_SETTINGS_END) within %d rows",
                           MAX_SETTINGS);
            free(rows);
            return false;
        }
        const sd_setting *st =
            (const sd_setting *)((const char *)d->settings + n * (size_t)d->setting_size);
        if (!st->key)
            break;
        rows = xrealloc(rows, (n + 1) * sizeof *rows);
        rows[n] = st;
    }
    for (size_t i = 0; i < n; i++) {
        const sd_setting *st = rows[i];
        size_t size = field_size(st->type);
        if (!valid_key(st->key)) {
            module_problem(r, c->m, "setting \"%s\": not a valid key name", st->key);
            ok = false;
        } else if (size == 0) {
            module_problem(r, c->m, "setting %s: unknown type %d", st->key, (int)st->type);
            ok = false;
        } else if (st->offset > d->config_size || size > d->config_size - st->offset) {
            module_problem(r, c->m,
                           "setting %s: field at offset %zu (%zu bytes) is outside config_size "
                           "%zu",
                           st->key, st->offset, size, d->config_size);
            ok = false;
        } else if (st->type == SD_SETTING_ENUM && (!st->choices || !st->choices[0])) {
            module_problem(r, c->m, "setting %s: an enum without choices", st->key);
            ok = false;
        } else if (bounded(st) && st->min > st->max) {
            module_problem(r, c->m, "setting %s: min %" PRId64 " is above max %" PRId64, st->key,
                           st->min, st->max);
            ok = false;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(rows[j]->key, st->key) == 0) {
                module_problem(r, c->m, "setting %s is declared twice", st->key);
                ok = false;
                break;
            }
    }
    if (!ok) {
        free(rows);
        return false;
    }
    c->settings = rows;
    c->n_settings = n;
    return true;
}

static bool check_migrations(struct report *r, struct cand *c)
{
    const sd_migration *mg = c->d.migrations;
    int last = 0;
    for (size_t i = 0; mg && mg[i].sql; i++) {
        if (i == MAX_MIGRATIONS) {
            module_problem(r, c->m, "migrations have no end (SD_MIGRATIONS_END)");
            return false;
        }
        if (mg[i].version <= last) {
            module_problem(r, c->m,
                           "migrations: version %d after version %d (versions must increase "
                           "from 1)",
                           mg[i].version, last);
            return false;
        }
        last = mg[i].version;
    }
    return true;
}

/* Opens and checks one module; c->ok tells whether it can be used. */
static void open_module(struct run *run, struct cand *c)
{
    struct report *r = run->r;
    struct sd_module *m = c->m;

    if (!config_module_name_ok(m->name)) {
        report(r, "module %s: invalid name: only a-z, 0-9 and _, at most %d characters", m->name,
               CONFIG_MODULE_NAME_MAX);
        return;
    }
    if (strcmp(m->name, "core") == 0) {
        report(r, "module core: the name is reserved for the server itself");
        return;
    }
    struct stat st;
    if (stat(m->path, &st) < 0) {
        if (errno == ENOENT)
            module_problem(r, m, "no such file (server.module_dir is %s)", run->cfg->module_dir);
        else
            module_problem(r, m, "cannot open: %s", strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        module_problem(r, m, "not a regular file");
        return;
    }
    if (st.st_mode & S_IWOTH) {
        module_problem(r, m, "refusing a world-writable file (mode %04o)",
                       (unsigned)(st.st_mode & 07777));
        return;
    }

    char now_err[1024] = "";
    bool lazy = false;
    dlerror();
    m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->dl) {
        const char *e = dlerror();
        snprintf(now_err, sizeof now_err, "%s", e ? e : "unknown error");
        /* Only to read the descriptor: nothing in it runs but the entry function. */
        m->dl = dlopen(m->path, RTLD_LAZY | RTLD_LOCAL);
        lazy = true;
    }
    if (!m->dl) {
        unsigned major, minor;
        if (needed_minor(now_err, &major, &minor))
            module_problem(r, m, "built for ABI %u.%u, this stanzad has ABI %d.%d (%s)", major,
                           minor, SD_ABI_MAJOR, SD_ABI_MINOR, now_err);
        else
            module_problem(r, m, "cannot load: %s", now_err);
        return;
    }

    const sd_module_desc *(*entry)(void);
    *(void **)&entry = dlsym(m->dl, "sd_module_v1");
    if (!entry) {
        /* A module of another ABI generation exports another entry point. */
        for (int gen = 2; gen <= 4; gen++) {
            char sym[32];
            snprintf(sym, sizeof sym, "sd_module_v%d", gen);
            if (dlsym(m->dl, sym)) {
                module_problem(r, m, "built for ABI %d (it has %s), this stanzad has ABI %d.%d",
                               gen, sym, SD_ABI_MAJOR, SD_ABI_MINOR);
                goto fail;
            }
        }
        module_problem(r, m, "not a stanzad module: no sd_module_v1");
        goto fail;
    }
    const sd_module_desc *d = entry();
    if (!d) {
        module_problem(r, m, "sd_module_v1() returned NULL");
        goto fail;
    }
    /* Nothing but these five fields may be read before they are checked. */
    if (d->magic != SD_MODULE_MAGIC) {
        module_problem(r, m, "not a stanzad module: bad magic 0x%08" PRIx32 " (expected 0x%08x)",
                       d->magic, SD_MODULE_MAGIC);
        goto fail;
    }
    if (d->abi_major != SD_ABI_MAJOR || d->abi_minor > SD_ABI_MINOR) {
        module_problem(r, m, "built for ABI %u.%u, this stanzad has ABI %d.%d",
                       (unsigned)d->abi_major, (unsigned)d->abi_minor, SD_ABI_MAJOR, SD_ABI_MINOR);
        goto fail;
    }
    if (d->desc_size < DESC_SIZE_1_0) {
        module_problem(r, m, "descriptor of %" PRIu32 " bytes, ABI %d.%d needs at least %zu",
                       d->desc_size, SD_ABI_MAJOR, (int)d->abi_minor, (size_t)DESC_SIZE_1_0);
        goto fail;
    }
    if (d->setting_size < SETTING_SIZE_1_0) {
        module_problem(r, m, "settings rows of %" PRIu32 " bytes, ABI %d.%d needs at least %zu",
                       d->setting_size, SD_ABI_MAJOR, (int)d->abi_minor, (size_t)SETTING_SIZE_1_0);
        goto fail;
    }
    if (lazy) {
        /* It claims an ABI this core has, yet something it needs is missing. */
        module_problem(r, m, "cannot load: %s", now_err);
        goto fail;
    }
    memcpy(&c->d, d, d->desc_size < sizeof c->d ? d->desc_size : sizeof c->d);
    m->desc = d;

    if (!c->d.name) {
        module_problem(r, m, "the descriptor has no name");
        goto fail;
    }
    if (strcmp(c->d.name, m->name) != 0) {
        module_problem(r, m, "the descriptor names the module \"%.64s\", but the file is mod_%s.so",
                       c->d.name, m->name);
        goto fail;
    }
    if (!check_settings_table(r, c) || !check_migrations(r, c))
        goto fail;
    c->ok = true;
    return;

fail:
    dlclose(m->dl);
    m->dl = NULL;
    m->desc = NULL;
}

/* ---- phase 2: dependencies ---------------------------------------------------------------- */

static const char *requirement(const struct cand *c, size_t j)
{
    return c->d.requires && j < MAX_REQUIRES ? c->d.requires[j] : NULL;
}

static void visit(struct run *run, struct cand *c, struct cand **stack, size_t depth)
{
    if (c->visit == DONE)
        return;
    if (c->visit == VISITING) {
        /* The cycle is the stack from c's earlier place to here. */
        char path[1024];
        size_t len = 0, from = 0;
        while (stack[from] != c)
            from++;
        path[0] = '\0';
        for (size_t i = from; i < depth && len < sizeof path; i++)
            len += (size_t)snprintf(path + len, sizeof path - len, "%s -> ", stack[i]->m->name);
        if (len < sizeof path)
            snprintf(path + len, sizeof path - len, "%s", c->m->name);
        report(run->r, "modules %s form a dependency cycle", path);
        return;
    }
    c->visit = VISITING;
    stack[depth] = c;
    for (size_t j = 0; requirement(c, j); j++) {
        struct cand *dep = find_cand(run, requirement(c, j));
        if (dep && dep->ok)
            visit(run, dep, stack, depth + 1);
    }
    c->visit = DONE;
    run->order[run->n_order++] = c->m;
}

static void resolve(struct run *run)
{
    const struct config *cfg = run->cfg;
    for (size_t i = 0; i < run->n; i++) {
        struct cand *c = &run->c[i];
        if (!c->ok)
            continue;
        for (size_t j = 0; requirement(c, j); j++) {
            const char *need = requirement(c, j);
            struct cand *dep = find_cand(run, need);
            if (!dep) {
                report(run->r, "module %s requires module %.64s, which is not in the modules list",
                       c->m->name, need);
                continue;
            }
            for (size_t h = 0; h < cfg->n_hosts; h++)
                if (c->m->enabled[h] && !dep->m->enabled[h]) {
                    report(run->r,
                           "module %s requires module %s, which is not enabled for host %s "
                           "(add it to the global modules list or to that host's)",
                           c->m->name, dep->m->name, cfg->hosts[h].name);
                    break;
                }
        }
    }
    struct cand **stack = xcalloc(run->n + 1, sizeof *stack);
    run->order = xcalloc(run->n + 1, sizeof *run->order);
    for (size_t i = 0; i < run->n; i++)
        if (run->c[i].ok)
            visit(run, &run->c[i], stack, 0);
    free(stack);
}

/* ---- phase 3: settings -------------------------------------------------------------------- */

static const sd_setting *find_row(const struct cand *c, const char *key)
{
    for (size_t i = 0; i < c->n_settings; i++)
        if (strcmp(c->settings[i]->key, key) == 0)
            return c->settings[i];
    return NULL;
}

/* Checks the keys of one module section and stores them into base. */
static void apply_section(struct run *run, struct cand *c, const config_setting_t *sec, void *base)
{
    for (int i = 0; i < config_setting_length(sec); i++) {
        const config_setting_t *s = config_setting_get_elem(sec, (unsigned)i);
        const char *key = config_setting_name(s);
        const sd_setting *st = find_row(c, key);
        if (!st) {
            const char **keys = xcalloc(c->n_settings + 1, sizeof *keys);
            for (size_t k = 0; k < c->n_settings; k++)
                keys[k] = c->settings[k]->key;
            const char *near = nearest(key, keys, c->n_settings);
            if (near)
                setting_problem(run->r, run->cfg, s, "unknown key (did you mean '%s'?)", near);
            else if (c->n_settings == 0)
                setting_problem(run->r, run->cfg, s, "unknown key (module %s has no settings)",
                                c->m->name);
            else
                setting_problem(run->r, run->cfg, s, "unknown key");
            free(keys);
            continue;
        }
        struct value v;
        const config_setting_t *bad;
        char why[1024];
        if (!value_from_setting(st, s, &v, &bad, why, sizeof why)) {
            setting_problem(run->r, run->cfg, bad, "%s", why);
            continue;
        }
        if (base)
            store(st, &v, base);
        value_free(&v);
    }
}

static void *copy_struct(const struct cand *c, const void *src)
{
    size_t size = c->d.config_size ? c->d.config_size : 1;
    void *dst = xmalloc(size);
    memcpy(dst, src, size);
    /* Strings and lists are owned per struct: give the copy its own. */
    for (size_t i = 0; i < c->n_settings; i++) {
        const sd_setting *st = c->settings[i];
        if (st->type != SD_SETTING_STRING && st->type != SD_SETTING_STRING_LIST)
            continue;
        struct value v;
        load_field(st, src, &v);
        memset((char *)dst + st->offset, 0, field_size(st->type));
        store(st, &v, dst);
    }
    return dst;
}

/* A module section names a module: it must be one that is loaded (and, for a host section,
 * enabled on that host). Returns the module, or NULL after reporting (or for a module that
 * failed to open, already reported). */
static struct cand *section_module(struct run *run, const config_setting_t *sec, int host)
{
    const char *name = config_setting_name(sec);
    struct cand *c = find_cand(run, name);
    if (!c) {
        const char **names = xcalloc(run->n + 1, sizeof *names);
        for (size_t k = 0; k < run->n; k++)
            names[k] = run->c[k].m->name;
        const char *near = nearest(name, names, run->n);
        if (near)
            setting_problem(run->r, run->cfg, sec,
                            "module \"%s\" is not in the modules list (did you mean '%s'?)", name,
                            near);
        else
            setting_problem(run->r, run->cfg, sec, "module \"%s\" is not in the modules list",
                            name);
        free(names);
        return NULL;
    }
    if (host >= 0 && !c->m->enabled[host]) {
        setting_problem(run->r, run->cfg, sec, "module \"%s\" is not enabled for host %s", name,
                        run->cfg->hosts[host].name);
        return NULL;
    }
    return c->ok ? c : NULL;
}

static void settings(struct run *run)
{
    const struct config *cfg = run->cfg;
    size_t nh = cfg->n_hosts;

    /* Defaults into the global struct. */
    for (size_t i = 0; i < run->n; i++) {
        struct cand *c = &run->c[i];
        if (!c->ok || c->n_settings == 0)
            continue;
        c->m->configs = xcalloc(nh + 1, sizeof *c->m->configs);
        void *g = xcalloc(1, c->d.config_size ? c->d.config_size : 1);
        c->m->configs[nh] = g;
        for (size_t k = 0; k < c->n_settings; k++) {
            const sd_setting *st = c->settings[k];
            struct value v;
            char why[1024];
            if (!value_from_default(st, &v, why, sizeof why)) {
                module_problem(run->r, c->m, "setting %s: bad default \"%s\": %s", st->key,
                               st->def ? st->def : "", why);
                continue;
            }
            store(st, &v, g);
            value_free(&v);
        }
    }

    /* The global sections. */
    const config_setting_t *top = cfg->module_settings;
    for (int i = 0; top && i < config_setting_length(top); i++) {
        const config_setting_t *sec = config_setting_get_elem(top, (unsigned)i);
        struct cand *c = section_module(run, sec, -1);
        if (c)
            apply_section(run, c, sec, c->m->configs ? c->m->configs[nh] : NULL);
    }

    /* Each host: a copy of the global struct, then the host's sections. */
    for (size_t i = 0; i < run->n; i++) {
        struct cand *c = &run->c[i];
        if (c->m->configs)
            for (size_t h = 0; h < nh; h++)
                c->m->configs[h] = copy_struct(c, c->m->configs[nh]);
    }
    for (size_t h = 0; h < nh; h++) {
        const config_setting_t *hs = cfg->hosts[h].module_settings;
        for (int i = 0; hs && i < config_setting_length(hs); i++) {
            const config_setting_t *sec = config_setting_get_elem(hs, (unsigned)i);
            struct cand *c = section_module(run, sec, (int)h);
            if (c)
                apply_section(run, c, sec, c->m->configs ? c->m->configs[h] : NULL);
        }
    }
}

/* ---- freeing ------------------------------------------------------------------------------ */

static void free_configs(struct sd_module *m, size_t n_hosts)
{
    if (!m->configs)
        return;
    /* The rows are needed to find the strings; rebuild the view from the descriptor. */
    struct cand c = {.m = m};
    if (m->desc) {
        memcpy(&c.d, m->desc, m->desc->desc_size < sizeof c.d ? m->desc->desc_size : sizeof c.d);
        const sd_setting *st;
        for (size_t n = 0;
             c.d.settings &&
             (st = (const sd_setting *)((const char *)c.d.settings + n * (size_t)c.d.setting_size))
                 ->key;
             n++) {
            c.settings = xrealloc(c.settings, (n + 1) * sizeof *c.settings);
            c.settings[n] = st;
            c.n_settings = n + 1;
        }
    }
    for (size_t h = 0; h <= n_hosts; h++)
        free_struct(&c, m->configs[h]);
    free(c.settings);
    free(m->configs);
    m->configs = NULL;
}

/* Frees a module; closes its file only when its load() never ran. */
static void free_module(struct sd_module *m, size_t n_hosts, bool may_close)
{
    if (!m)
        return;
    free_configs(m, n_hosts);
    if (may_close && m->dl)
        dlclose(m->dl);
    free(m->name);
    free(m->path);
    free(m->enabled);
    free(m);
}

/* ---- entry points ------------------------------------------------------------------------- */

/* n_hosts of the configuration the modules were loaded with (configs has n_hosts + 1 rows). */
static size_t loaded_n_hosts;
/* Whether load() was called for modules[i] (set in order; the rest were never run). */
static bool *load_called;

static void add_cand(struct run *run, const struct config *cfg, const char *name)
{
    if (find_cand(run, name))
        return;
    struct cand *c = &run->c[run->n++];
    memset(c, 0, sizeof *c);
    c->m = xcalloc(1, sizeof *c->m);
    c->m->name = xstrdup(name);
    size_t len = strlen(cfg->module_dir) + strlen(name) + 16;
    c->m->path = xmalloc(len);
    snprintf(c->m->path, len, "%s/mod_%s.so", cfg->module_dir, name);
    c->m->enabled = xcalloc(cfg->n_hosts ? cfg->n_hosts : 1, sizeof *c->m->enabled);
    c->m->index = -1;
}

/* The module directory must not be writable by everyone: anyone could plant a module there. */
static bool check_module_dir(struct run *run)
{
    const struct config *cfg = run->cfg;
    struct stat st;
    const config_setting_t *s = config_lookup((config_t *)cfg->lc, "server.module_dir");
    char where[WHERE_MAX];
    if (s)
        config_where(cfg, s, NULL, where, sizeof where);
    else
        snprintf(where, sizeof where, "%s:1: server.module_dir", cfg->path);
    if (stat(cfg->module_dir, &st) < 0) {
        report(run->r, "%s: cannot use %s: %s", where, cfg->module_dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        report(run->r, "%s: %s is not a directory", where, cfg->module_dir);
        return false;
    }
    if (st.st_mode & S_IWOTH) {
        report(run->r, "%s: refusing to load modules from %s: it is world-writable", where,
               cfg->module_dir);
        return false;
    }
    return true;
}

static void free_run(struct run *run, bool keep_modules)
{
    for (size_t i = 0; i < run->n; i++) {
        free(run->c[i].settings);
        if (!keep_modules)
            free_module(run->c[i].m, run->cfg->n_hosts, true);
    }
    free(run->c);
    free(run->order);
}

int modules_load(const struct config *cfg, PGconn *pg, char *err, size_t errlen)
{
    struct report r = {.err = err, .errlen = errlen};
    if (errlen)
        err[0] = '\0';
    modules_unload();

    size_t total = cfg->n_modules;
    for (size_t h = 0; h < cfg->n_hosts; h++)
        total += cfg->hosts[h].n_modules;
    struct run run = {.cfg = cfg, .r = &r, .c = xcalloc(total + 1, sizeof *run.c)};

    for (size_t i = 0; i < cfg->n_modules; i++)
        add_cand(&run, cfg, cfg->modules[i]);
    for (size_t h = 0; h < cfg->n_hosts; h++)
        for (size_t i = 0; i < cfg->hosts[h].n_modules; i++)
            add_cand(&run, cfg, cfg->hosts[h].modules[i]);
    for (size_t i = 0; i < run.n; i++) {
        struct cand *c = &run.c[i];
        for (size_t k = 0; k < cfg->n_modules; k++)
            if (strcmp(cfg->modules[k], c->m->name) == 0)
                for (size_t h = 0; h < cfg->n_hosts; h++)
                    c->m->enabled[h] = true;
        for (size_t h = 0; h < cfg->n_hosts; h++)
            for (size_t k = 0; k < cfg->hosts[h].n_modules; k++)
                if (strcmp(cfg->hosts[h].modules[k], c->m->name) == 0)
                    c->m->enabled[h] = true;
    }

    if (run.n > 0 && check_module_dir(&run))
        for (size_t i = 0; i < run.n; i++)
            open_module(&run, &run.c[i]);
    resolve(&run);
    settings(&run);

    if (r.n > 0) {
        if (r.n > MAX_PROBLEMS)
            note(&r, "%s: %zu more problems not shown", cfg->path, r.n - MAX_PROBLEMS);
        free_run(&run, false);
        return -1;
    }

    /* Every module is usable: publish them in load order. */
    n_modules = run.n_order;
    modules = xcalloc(n_modules + 1, sizeof *modules);
    load_called = xcalloc(n_modules + 1, sizeof *load_called);
    loaded_n_hosts = cfg->n_hosts;
    for (size_t i = 0; i < n_modules; i++) {
        modules[i] = run.order[i];
        modules[i]->index = (int)i;
    }
    free_run(&run, true);
    if (!pg)
        return 0;

    for (size_t i = 0; i < n_modules; i++) {
        struct sd_module *m = modules[i];
        const sd_migration *mg = m->desc->migrations;
        size_t n = 0;
        while (mg && mg[n].sql)
            n++;
        if (n == 0)
            continue;
        struct db_migration *steps = xcalloc(n, sizeof *steps);
        for (size_t k = 0; k < n; k++) {
            steps[k].version = mg[k].version;
            steps[k].sql = mg[k].sql;
        }
        char why[1024];
        int rc = db_migrate(pg, m->name, steps, n, why, sizeof why);
        free(steps);
        if (rc < 0) {
            report(&r, "module %s: migration failed: %s", m->name, why);
            modules_unload();
            return -1;
        }
    }

    for (size_t i = 0; i < n_modules; i++) {
        struct sd_module *m = modules[i];
        const char *why = NULL;
        load_called[i] = true;
        if (m->desc->load && m->desc->load(m, &why) != 0) {
            report(&r, "module %s: load failed: %s", m->name,
                   why && *why ? why : "(no reason given)");
            /* Nothing of it stays: its registrations go, its file closes (no code of it can
             * be referenced once they are gone). */
            module_registrations_remove(m);
            free_module(m, loaded_n_hosts, true);
            modules[i] = NULL;
            modules_unload();
            return -1;
        }
        m->loaded = true;
        log_info(0, "module %s %s loaded from %s", m->name,
                 m->desc->version ? m->desc->version : "(no version)", m->path);
    }
    return 0;
}

void modules_unload(void)
{
    for (size_t i = n_modules; i-- > 0;) {
        struct sd_module *m = modules[i];
        if (!m)
            continue;
        bool ran = load_called && load_called[i];
        if (ran) {
            if (m->loaded && m->desc->unload)
                m->desc->unload(m);
            module_registrations_remove(m);
        }
        free_module(m, loaded_n_hosts, !ran);
        modules[i] = NULL;
    }
    free(modules);
    free(load_called);
    modules = NULL;
    load_called = NULL;
    n_modules = 0;
}
