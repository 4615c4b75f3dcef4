/*
 * config.c — loads the libconfig file, checks it against the schema and fills struct config.
 *
 * The schema is a set of tables: one per group (server, log, storage, tls, limits, sessions) and
 * one per kind of list entry (listen, hosts). A row names a key, its kind, where the value goes
 * (an offset into struct config or into the entry struct), its bounds or choices and its default.
 * Loading fills every default first, then walks the settings of the file in file order and
 * checks each one against its row, so unknown keys, wrong types and bad values all come out of
 * one pass with their file, line and dotted key path; required keys are looked for afterwards in
 * the group that should hold them. Problems are collected (up to MAX_PROBLEMS) rather than
 * stopping at the first, so one run shows everything there is to fix.
 *
 * Modules are named here (the global `modules` list and each host's) but described by the modules
 * themselves, so this file checks only the shape of what belongs to them: module names are
 * [a-z0-9_] words, and `module_settings` (top level and per host) is a group of groups. Those
 * groups are kept as libconfig settings, with their file and line, for module_loader.c, which
 * checks every key against the module's own settings table and reports it in the same
 * "file:line: key: message" form through config_where().
 *
 * Values whose validity depends on the outside world are checked here too — certificate and key
 * files (read and matched with GnuTLS), the GnuTLS priority string, the libpq connection string,
 * the user to drop root to — because a bad one must stop start-up before any port is bound.
 * Relative paths, including a relative Unix-socket directory in the connection string's host,
 * are made absolute against the directory of the configuration file, so that the meaning of the
 * file does not depend on the directory the server was started from.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <libconfig.h>
#include <libpq-fe.h>

#include "jid.h"
#include "log.h"
#include "mem.h"

#ifndef STANZAD_MODULE_DIR
#error "the build defines STANZAD_MODULE_DIR, the installed module directory (server.module_dir)"
#endif

/* Enough to see a pattern in a badly broken file without drowning the first problem. */
#define MAX_PROBLEMS 10
/* Certificates and keys are small; a bigger file is almost certainly the wrong file. */
#define MAX_PEM_FILE (1024 * 1024)
#define KEYPATH_MAX  256

struct loader {
    const char *path; /* the configuration file as given */
    char *dir;        /* its directory, absolute when it could be resolved */
    char *err;
    size_t errlen;
    size_t used;       /* bytes written to err */
    size_t n_problems; /* including those not shown */
};

enum kind {
    K_INT,      /* int; libconfig int or int64 */
    K_SIZE,     /* size_t; an integer or a string with a K/M/G suffix */
    K_BOOL,     /* bool */
    K_ENUM,     /* int: the index of the string in choices */
    K_LEVEL,    /* int: enum log_level, parsed by log_level_parse */
    K_STRING,   /* char * */
    K_PATH,     /* char *, made absolute against the configuration directory */
    K_TARGET,   /* char *: "stderr", "syslog", or a path as K_PATH */
    K_MODULES,  /* char **, NULL-terminated module names; the count goes to count_offset */
    K_SECTIONS, /* const config_setting_t *: a group of groups, kept for module_loader.c */
};

#define F_REQUIRED   0x1u /* no default: the key must be present */
#define F_EMPTY_NONE 0x2u /* "" stores NULL */
#define F_NONEMPTY   0x4u /* "" is an error */

/* A check for a string value beyond its type: reports the problem and returns false, or returns
 * true after possibly replacing *value (a malloc'd string) with its prepared form. */
typedef bool (*check_fn)(struct loader *ld, const config_setting_t *s, char **value);

struct key {
    const char *name;
    enum kind kind;
    unsigned flags;
    size_t offset;
    long long min, max;         /* K_INT, K_SIZE */
    long long def;              /* K_INT, K_SIZE, K_BOOL, K_ENUM, K_LEVEL */
    const char *def_str;        /* K_STRING, K_PATH, K_TARGET; NULL with F_REQUIRED */
    const char *const *choices; /* K_ENUM, NULL-terminated */
    check_fn check;
    size_t count_offset; /* K_MODULES: where the size_t count goes */
};

/* ---- problems ---------------------------------------------------------------------------- */

static void append(struct loader *ld, const char *fmt, va_list ap)
{
    if (ld->errlen == 0 || ld->used + 1 >= ld->errlen)
        return;
    if (ld->used > 0)
        ld->err[ld->used++] = '\n';
    int n = vsnprintf(ld->err + ld->used, ld->errlen - ld->used, fmt, ap);
    if (n > 0)
        ld->used += (size_t)n;
    if (ld->used >= ld->errlen)
        ld->used = ld->errlen - 1;
}

/* Counts a problem and writes its line while fewer than MAX_PROBLEMS have been written. */
static void add_line(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_line(struct loader *ld, const char *fmt, ...)
{
    if (++ld->n_problems > MAX_PROBLEMS)
        return;
    va_list ap;
    va_start(ap, fmt);
    append(ld, fmt, ap);
    va_end(ap);
}

/* Writes a line that is not a problem of its own (the count of those not shown). */
static void add_note(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_note(struct loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append(ld, fmt, ap);
    va_end(ap);
}

/* The dotted path of s ("limits.max_stanza_size", "listen.[1].port"); "" for the root. */
static void key_path(const config_setting_t *s, char *buf, size_t n)
{
    buf[0] = '\0';
    if (s == NULL || config_setting_parent(s) == NULL)
        return;
    key_path(config_setting_parent(s), buf, n);
    size_t len = strlen(buf);
    const char *name = config_setting_name(s);
    if (name)
        snprintf(buf + len, n - len, "%s%s", len ? "." : "", name);
    else
        snprintf(buf + len, n - len, "%s[%d]", len ? "." : "", config_setting_index(s));
}

/*
 * "file:line: key.path" of setting s, or of key `sub` inside it when sub is not NULL. path is the
 * configuration file as given, dir its directory.
 */
static void locate(const char *path, const char *dir, const config_setting_t *s, const char *sub,
                   char *buf, size_t n)
{
    char keys[KEYPATH_MAX];
    key_path(s, keys, sizeof keys);
    if (sub) {
        size_t len = strlen(keys);
        snprintf(keys + len, sizeof keys - len, "%s%s", len ? "." : "", sub);
    }
    const char *file = s ? config_setting_source_file(s) : NULL;
    unsigned line = s ? config_setting_source_line(s) : 0;
    if (!file)
        file = path;
    /* libconfig names an @include'd file as written in the directive, though it found it in
     * the configuration directory; say where it really is. */
    if (file[0] != '/' && strcmp(file, path) != 0)
        snprintf(buf, n, "%s/%s:%u: %s", dir, file, line ? line : 1, keys);
    else
        snprintf(buf, n, "%s:%u: %s", file, line ? line : 1, keys);
}

/*
 * Reports a problem about setting s, or about key `sub` inside it when sub is not NULL (a missing
 * required key is reported at the line of the group that should have held it; the root has no
 * line, so line 1 stands for "the file").
 */
static void problem(struct loader *ld, const config_setting_t *s, const char *sub, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

static void problem(struct loader *ld, const config_setting_t *s, const char *sub, const char *fmt,
                    ...)
{
    char where[KEYPATH_MAX + PATH_MAX + 32], what[1024];
    locate(ld->path, ld->dir, s, sub, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    add_line(ld, "%s: %s", where, what);
}

void config_where(const struct config *c, const void *setting, const char *sub, char *buf, size_t n)
{
    locate(c->path, c->dir, setting, sub, buf, n);
}

/* ---- values ------------------------------------------------------------------------------ */

const char *config_type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "nothing";
    }
}

static bool expect_type(struct loader *ld, const config_setting_t *s, int type, const char *want)
{
    if (config_setting_type(s) == type)
        return true;
    problem(ld, s, NULL, "expected %s, got %s", want, config_type_name(config_setting_type(s)));
    return false;
}

bool config_is_integer(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

/*
 * "262144", "256K", "16M", "1G": decimal digits and an optional binary suffix. Anything else
 * (spaces, signs, fractions, "KB") is refused rather than guessed at.
 */
bool config_parse_size(const char *s, long long *v)
{
    unsigned long long n = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (unsigned long long)LLONG_MAX / 10)
            return false;
        n = n * 10 + (unsigned long long)(*p - '0');
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return false;
    }
    if (shift && p[1] != '\0')
        return false;
    if (n > ((unsigned long long)LLONG_MAX >> shift))
        return false;
    *v = (long long)(n << shift);
    return true;
}

static bool in_range(struct loader *ld, const config_setting_t *s, const struct key *k, long long v)
{
    if (v >= k->min && v <= k->max)
        return true;
    if (config_setting_type(s) == CONFIG_TYPE_STRING)
        problem(ld, s, NULL, "must be between %lld and %lld, got \"%s\" (%lld)", k->min, k->max,
                config_setting_get_string(s), v);
    else
        problem(ld, s, NULL, "must be between %lld and %lld, got %lld", k->min, k->max, v);
    return false;
}

static char *join_dir(const char *dir, const char *rel)
{
    size_t a = strlen(dir), b = strlen(rel);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, rel, b + 1);
    return p;
}

static char *resolve_path(const struct loader *ld, const char *p)
{
    return p[0] == '/' ? xstrdup(p) : join_dir(ld->dir, p);
}

/* The stored form of a string value: NULL for "" where that means "none", paths made absolute. */
static char *string_value(const struct loader *ld, const struct key *k, const char *raw)
{
    if (raw[0] == '\0' && (k->flags & F_EMPTY_NONE))
        return NULL;
    if (k->kind == K_PATH && raw[0] != '\0')
        return resolve_path(ld, raw);
    if (k->kind == K_TARGET && strcmp(raw, "stderr") != 0 && strcmp(raw, "syslog") != 0)
        return resolve_path(ld, raw);
    return xstrdup(raw);
}

static void apply_defaults(const struct loader *ld, const struct key *keys, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        const struct key *k = &keys[i];
        void *field = (char *)base + k->offset;
        switch (k->kind) {
        case K_INT:
        case K_ENUM:
        case K_LEVEL:
            *(int *)field = (int)k->def;
            break;
        case K_SIZE:
            *(size_t *)field = (size_t)k->def;
            break;
        case K_BOOL:
            *(bool *)field = k->def != 0;
            break;
        case K_STRING:
        case K_PATH:
        case K_TARGET:
            *(char **)field = k->def_str ? string_value(ld, k, k->def_str) : NULL;
            break;
        case K_MODULES:
            *(char ***)field = xcalloc(1, sizeof(char *));
            *(size_t *)((char *)base + k->count_offset) = 0;
            break;
        case K_SECTIONS:
            *(const config_setting_t **)field = NULL;
            break;
        }
    }
}

static void free_names(char ***names)
{
    for (size_t i = 0; *names && (*names)[i]; i++)
        free((*names)[i]);
    free(*names);
    *names = NULL;
}

static void free_strings(const struct key *keys, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].kind == K_STRING || keys[i].kind == K_PATH || keys[i].kind == K_TARGET) {
            char **field = (char **)((char *)base + keys[i].offset);
            free(*field);
            *field = NULL;
        } else if (keys[i].kind == K_MODULES) {
            free_names((char ***)((char *)base + keys[i].offset));
        }
}

/* ---- modules ----------------------------------------------------------------------------- */

bool config_module_name_ok(const char *name)
{
    size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_");
    return n > 0 && n <= CONFIG_MODULE_NAME_MAX && name[n] == '\0';
}

/* A list (or array) of module names: strings, valid names, none twice. Replaces *names. */
static void load_module_list(struct loader *ld, const config_setting_t *l, char ***names,
                             size_t *count)
{
    if (config_setting_type(l) != CONFIG_TYPE_LIST && config_setting_type(l) != CONFIG_TYPE_ARRAY) {
        problem(ld, l, NULL, "expected a list of strings, got %s",
                config_type_name(config_setting_type(l)));
        return;
    }
    size_t n = (size_t)config_setting_length(l);
    free_names(names);
    *names = xcalloc(n + 1, sizeof **names);
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(l, (unsigned)i);
        if (!expect_type(ld, s, CONFIG_TYPE_STRING, "a string"))
            continue;
        const char *name = config_setting_get_string(s);
        if (name[0] == '\0') {
            problem(ld, s, NULL, "must not be empty");
            continue;
        }
        if (!config_module_name_ok(name)) {
            problem(ld, s, NULL,
                    "invalid module name \"%s\": only a-z, 0-9 and _, at most %d characters", name,
                    CONFIG_MODULE_NAME_MAX);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < *count && !dup; j++)
            dup = strcmp((*names)[j], name) == 0;
        if (dup) {
            problem(ld, s, NULL, "module \"%s\" is listed twice", name);
            continue;
        }
        (*names)[(*count)++] = xstrdup(name);
    }
}

/* module_settings: a group holding one group per module. Returns whether it has that shape. */
static bool check_sections(struct loader *ld, const config_setting_t *s)
{
    if (!expect_type(ld, s, CONFIG_TYPE_GROUP, "a group"))
        return false;
    bool ok = true;
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(m) != CONFIG_TYPE_GROUP) {
            problem(ld, m, NULL, "expected a group of settings for module \"%s\", got %s",
                    config_setting_name(m), config_type_name(config_setting_type(m)));
            ok = false;
        }
    }
    return ok;
}

/* "a, b, c" from a NULL-terminated list of names. */
void config_join_choices(const char *const *choices, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; choices[i] && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", choices[i]);
}

static void set_value(struct loader *ld, const config_setting_t *s, const struct key *k, void *base)
{
    void *field = (char *)base + k->offset;
    long long v = 0;
    char list[256];

    switch (k->kind) {
    case K_INT:
        if (!config_is_integer(s)) {
            problem(ld, s, NULL, "expected an integer, got %s",
                    config_type_name(config_setting_type(s)));
            return;
        }
        v = config_setting_get_int64(s);
        if (in_range(ld, s, k, v))
            *(int *)field = (int)v;
        return;

    case K_SIZE:
        if (config_is_integer(s)) {
            v = config_setting_get_int64(s);
        } else if (config_setting_type(s) == CONFIG_TYPE_STRING) {
            if (!config_parse_size(config_setting_get_string(s), &v)) {
                problem(ld, s, NULL,
                        "expected a size such as 262144, \"256K\" or \"16M\", got \"%s\"",
                        config_setting_get_string(s));
                return;
            }
        } else {
            problem(ld, s, NULL, "expected an integer or a size string, got %s",
                    config_type_name(config_setting_type(s)));
            return;
        }
        if (in_range(ld, s, k, v))
            *(size_t *)field = (size_t)v;
        return;

    case K_BOOL:
        if (expect_type(ld, s, CONFIG_TYPE_BOOL, "a boolean"))
            *(bool *)field = config_setting_get_bool(s) != 0;
        return;

    case K_ENUM:
        if (!expect_type(ld, s, CONFIG_TYPE_STRING, "a string"))
            return;
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(k->choices[i], config_setting_get_string(s)) == 0) {
                *(int *)field = i;
                return;
            }
        config_join_choices(k->choices, list, sizeof list);
        problem(ld, s, NULL, "must be one of %s, got \"%s\"", list, config_setting_get_string(s));
        return;

    case K_LEVEL: {
        if (!expect_type(ld, s, CONFIG_TYPE_STRING, "a string"))
            return;
        int level = log_level_parse(config_setting_get_string(s));
        if (level >= 0) {
            *(int *)field = level;
            return;
        }
        const char *names[] = {log_level_name(LOGL_ERROR), log_level_name(LOGL_WARN),
                               log_level_name(LOGL_INFO), log_level_name(LOGL_DEBUG), NULL};
        config_join_choices(names, list, sizeof list);
        problem(ld, s, NULL, "must be one of %s, got \"%s\"", list, config_setting_get_string(s));
        return;
    }

    case K_STRING:
    case K_PATH:
    case K_TARGET: {
        if (!expect_type(ld, s, CONFIG_TYPE_STRING, "a string"))
            return;
        const char *raw = config_setting_get_string(s);
        if (raw[0] == '\0' && (k->flags & F_NONEMPTY)) {
            problem(ld, s, NULL, "must not be empty");
            return;
        }
        char *value = string_value(ld, k, raw);
        if (value && k->check && !k->check(ld, s, &value)) {
            free(value);
            return;
        }
        free(*(char **)field);
        *(char **)field = value;
        return;
    }

    case K_MODULES:
        load_module_list(ld, s, (char ***)field, (size_t *)((char *)base + k->count_offset));
        return;

    case K_SECTIONS:
        if (check_sections(ld, s))
            *(const config_setting_t **)field = s;
        return;
    }
}

/* ---- unknown keys ------------------------------------------------------------------------ */

/* Levenshtein distance, good enough for key names; long strings are "far". */
size_t config_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* names: an array of n strings, each at `stride` bytes from the previous (the name field of a
 * table row), so the same code serves the key tables and the section table. */
static void unknown_key(struct loader *ld, const config_setting_t *s, const void *names, size_t n,
                        size_t stride)
{
    const char *name = config_setting_name(s);
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < n; i++) {
        const char *cand = *(const char *const *)((const char *)names + i * stride);
        size_t d = config_edit_distance(name, cand);
        /* A distance as large as the name itself would suggest any short key for any typo. */
        if (d < best_d && d < strlen(name)) {
            best = cand;
            best_d = d;
        }
    }
    if (best)
        problem(ld, s, NULL, "unknown key (did you mean '%s'?)", best);
    else
        problem(ld, s, NULL, "unknown key");
}

/* Checks every setting of group g against keys and stores the values into base. */
static void load_group(struct loader *ld, const config_setting_t *g, const struct key *keys,
                       size_t n, void *base)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const struct key *k = NULL;
        for (size_t j = 0; j < n && !k; j++)
            if (strcmp(keys[j].name, config_setting_name(s)) == 0)
                k = &keys[j];
        if (k)
            set_value(ld, s, k, base);
        else
            unknown_key(ld, s, keys, n, sizeof keys[0]);
    }
    for (size_t j = 0; j < n; j++)
        if ((keys[j].flags & F_REQUIRED) &&
            config_setting_get_member((config_setting_t *)g, keys[j].name) == NULL)
            problem(ld, g, keys[j].name, "required key is missing");
}

/* ---- checks of single values ------------------------------------------------------------- */

static bool check_user(struct loader *ld, const config_setting_t *s, char **value)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    int rc = getpwnam_r(*value, &pw, buf, sizeof buf, &found);
    if (found)
        return true;
    if (rc != 0)
        problem(ld, s, NULL, "cannot look up user \"%s\": %s", *value, strerror(rc));
    else
        problem(ld, s, NULL, "no such user \"%s\"", *value);
    return false;
}

static bool check_priority(struct loader *ld, const config_setting_t *s, char **value)
{
    gnutls_priority_t prio;
    const char *at = NULL;
    int rc = gnutls_priority_init(&prio, *value, &at);
    if (rc >= 0) {
        gnutls_priority_deinit(prio);
        return true;
    }
    if (at && at >= *value && at < *value + strlen(*value))
        problem(ld, s, NULL, "invalid GnuTLS priority string at offset %td (\"%s\"): %s",
                at - *value, at, gnutls_strerror(rc));
    else
        problem(ld, s, NULL, "invalid GnuTLS priority string: %s", gnutls_strerror(rc));
    return false;
}

static bool check_address(struct loader *ld, const config_setting_t *s, char **value)
{
    unsigned char bin[16];
    if (strcmp(*value, "*") == 0 || inet_pton(AF_INET, *value, bin) == 1 ||
        inet_pton(AF_INET6, *value, bin) == 1)
        return true;
    problem(ld, s, NULL, "must be an IPv4 or IPv6 address or \"*\", got \"%s\"", *value);
    return false;
}

static bool check_domain(struct loader *ld, const config_setting_t *s, char **value)
{
    const char *why = NULL;
    char *prepared = jid_prep_domain(NULL, *value, &why);
    if (!prepared) {
        problem(ld, s, NULL, "invalid domain name \"%s\": %s", *value, why ? why : "rejected");
        return false;
    }
    free(*value);
    *value = prepared;
    return true;
}

/* Appends keyword='value' to the growing string *out (libpq's quoting: \ and ' escaped). */
static void conninfo_append(char **out, size_t *len, const char *keyword, const char *value)
{
    size_t need = strlen(keyword) + 2 * strlen(value) + 5;
    *out = xrealloc(*out, *len + need);
    char *p = *out + *len;
    if (*len)
        *p++ = ' ';
    p += sprintf(p, "%s='", keyword);
    for (const char *v = value; *v; v++) {
        if (*v == '\\' || *v == '\'')
            *p++ = '\\';
        *p++ = *v;
    }
    *p++ = '\'';
    *p = '\0';
    *len = (size_t)(p - *out);
}

/*
 * The host of a connection string may be a Unix-socket directory, which libpq recognises only
 * when it is absolute; a relative one ("host=var/pg/socket", as the quick start uses) would be
 * looked up as a host name. Such entries of the (comma-separated) host list are made absolute
 * against the configuration directory. Returns a new host list, or NULL when nothing changes.
 */
static char *absolute_socket_hosts(const struct loader *ld, const char *hosts)
{
    bool changed = false;
    size_t cap = 1, len = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    for (const char *p = hosts;;) {
        size_t n = strcspn(p, ",");
        char *one = xstrndup(p, n);
        char *use = one;
        if (one[0] != '/' && strchr(one, '/')) {
            use = join_dir(ld->dir, one);
            changed = true;
        }
        size_t add = strlen(use) + 1;
        out = xrealloc(out, cap += add);
        len += (size_t)sprintf(out + len, "%s%s", len ? "," : "", use);
        if (use != one)
            free(use);
        free(one);
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    if (!changed) {
        free(out);
        return NULL;
    }
    return out;
}

static bool check_conninfo(struct loader *ld, const config_setting_t *s, char **value)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(*value, &msg);
    if (!opts) {
        if (msg) {
            size_t n = strlen(msg);
            while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
        }
        problem(ld, s, NULL, "invalid connection string: %s", msg ? msg : "out of memory");
        PQfreemem(msg);
        return false;
    }
    char *hosts = NULL;
    for (PQconninfoOption *o = opts; o->keyword && !hosts; o++)
        if (strcmp(o->keyword, "host") == 0 && o->val)
            hosts = absolute_socket_hosts(ld, o->val);
    if (hosts) {
        /* Rebuilt from the parsed options (the parser gives back only those that were set). */
        char *out = NULL;
        size_t len = 0;
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (o->val)
                conninfo_append(&out, &len, o->keyword,
                                strcmp(o->keyword, "host") == 0 ? hosts : o->val);
        free(hosts);
        /* The old string may hold a password. */
        explicit_bzero(*value, strlen(*value));
        free(*value);
        *value = out;
    }
    PQconninfoFree(opts);
    return true;
}

/* ---- the schema -------------------------------------------------------------------------- */

#define CFG(f)   offsetof(struct config, f)
#define LST(f)   offsetof(struct config_listener, f)
#define HST(f)   offsetof(struct config_host, f)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(sizeof(enum conflict_policy) == sizeof(int), "enums are stored through int *");
_Static_assert(sizeof(enum listener_kind) == sizeof(int), "enums are stored through int *");
_Static_assert(sizeof(enum listener_tls) == sizeof(int), "enums are stored through int *");

static const char *const conflict_choices[] = {"replace", "refuse", "random", NULL};
_Static_assert(CONFLICT_REPLACE == 0 && CONFLICT_REFUSE == 1 && CONFLICT_RANDOM == 2,
               "conflict_choices follows enum conflict_policy");
static const char *const listen_type_choices[] = {"c2s", NULL};
_Static_assert(LISTEN_C2S == 0, "listen_type_choices follows enum listener_kind");
static const char *const listen_tls_choices[] = {"starttls", "direct", NULL};
_Static_assert(LISTEN_TLS_STARTTLS == 0 && LISTEN_TLS_DIRECT == 1,
               "listen_tls_choices follows enum listener_tls");

/* One row of a key table per kind; the columns not named are zero. */
#define INT_KEY(n, off, fl, lo, hi, d)                                                             \
    {                                                                                              \
        .name = n, .kind = K_INT, .flags = fl, .offset = off, .min = lo, .max = hi, .def = d       \
    }
#define SIZE_KEY(n, off, lo, hi, d)                                                                \
    {                                                                                              \
        .name = n, .kind = K_SIZE, .offset = off, .min = lo, .max = hi, .def = d                   \
    }
#define BOOL_KEY(n, off, d)                                                                        \
    {                                                                                              \
        .name = n, .kind = K_BOOL, .offset = off, .def = d                                         \
    }
#define ENUM_KEY(n, off, ch, d)                                                                    \
    {                                                                                              \
        .name = n, .kind = K_ENUM, .offset = off, .choices = ch, .def = d                          \
    }
#define LEVEL_KEY(n, off, d)                                                                       \
    {                                                                                              \
        .name = n, .kind = K_LEVEL, .offset = off, .def = d                                        \
    }
#define STR_KEY(n, k, off, fl, d, chk)                                                             \
    {                                                                                              \
        .name = n, .kind = k, .flags = fl, .offset = off, .def_str = d, .check = chk               \
    }

static const struct key server_keys[] = {
    INT_KEY("workers", CFG(workers), 0, 0, 256, 0),
    STR_KEY("data_dir", K_PATH, CFG(data_dir), F_NONEMPTY, "var", NULL),
    STR_KEY("pid_file", K_PATH, CFG(pid_file), F_EMPTY_NONE, "", NULL),
    STR_KEY("user", K_STRING, CFG(user), F_EMPTY_NONE, "", check_user),
    STR_KEY("module_dir", K_PATH, CFG(module_dir), F_NONEMPTY, STANZAD_MODULE_DIR, NULL),
};

static const struct key log_keys[] = {
    LEVEL_KEY("level", CFG(log_level), LOGL_INFO),
    STR_KEY("target", K_TARGET, CFG(log_target), F_NONEMPTY, "stderr", NULL),
};

static const struct key storage_keys[] = {
    STR_KEY("conninfo", K_STRING, CFG(db_conninfo), F_REQUIRED, NULL, check_conninfo),
    INT_KEY("connections", CFG(db_connections), 0, 1, 64, 2),
    INT_KEY("timeout", CFG(db_timeout), 0, 1, 3600, 10),
};

static const struct key tls_keys[] = {
    STR_KEY("priority", K_STRING, CFG(tls_priority), F_NONEMPTY,
            "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", check_priority),
    BOOL_KEY("require_c2s", CFG(c2s_require_tls), 1),
};

static const struct key limits_keys[] = {
    SIZE_KEY("max_stanza_size", CFG(max_stanza_size), 1024, 16777216, 262144),
    INT_KEY("connect_timeout", CFG(connect_timeout), 0, 1, 3600, 60),
    INT_KEY("idle_timeout", CFG(idle_timeout), 0, 0, 604800, 0),
    INT_KEY("max_connections_per_ip", CFG(max_connections_per_ip), 0, 0, 1000000, 100),
    SIZE_KEY("max_output_buffer", CFG(max_output_buffer), 16384, 268435456, 1048576),
    INT_KEY("auth_failure_delay", CFG(auth_failure_delay), 0, 0, 60000, 500),
    INT_KEY("max_auth_failures", CFG(max_auth_failures), 0, 0, 1000000, 10),
};

static const struct key sessions_keys[] = {
    ENUM_KEY("conflict", CFG(conflict), conflict_choices, CONFLICT_REPLACE),
    INT_KEY("max_sessions_per_account", CFG(max_sessions_per_account), 0, 0, 1000, 0),
};

static const struct key listen_keys[] = {
    ENUM_KEY("type", LST(kind), listen_type_choices, LISTEN_C2S),
    STR_KEY("address", K_STRING, LST(address), F_NONEMPTY, "127.0.0.1", check_address),
    INT_KEY("port", LST(port), F_REQUIRED, 1, 65535, 0),
    ENUM_KEY("tls", LST(tls), listen_tls_choices, LISTEN_TLS_STARTTLS),
};

static const struct key host_keys[] = {
    STR_KEY("name", K_STRING, HST(name), F_REQUIRED | F_NONEMPTY, NULL, check_domain),
    STR_KEY("certificate", K_PATH, HST(certificate), F_REQUIRED | F_NONEMPTY, NULL, NULL),
    STR_KEY("key", K_PATH, HST(key), F_REQUIRED | F_NONEMPTY, NULL, NULL),
    {.name = "modules", .kind = K_MODULES, .offset = HST(modules), .count_offset = HST(n_modules)},
    {.name = "module_settings", .kind = K_SECTIONS, .offset = HST(module_settings)},
};

enum shape { S_GROUP, S_LISTEN, S_HOSTS, S_MODULES, S_MODULE_SETTINGS };

struct section {
    const char *name;
    enum shape shape;
    const struct key *keys; /* S_GROUP: into struct config; S_LISTEN, S_HOSTS: into each entry */
    size_t n_keys;
    bool required;
};

static const struct section sections[] = {
    {"server", S_GROUP, server_keys, COUNT(server_keys), false},
    {"log", S_GROUP, log_keys, COUNT(log_keys), false},
    {"storage", S_GROUP, storage_keys, COUNT(storage_keys), false},
    {"tls", S_GROUP, tls_keys, COUNT(tls_keys), false},
    {"limits", S_GROUP, limits_keys, COUNT(limits_keys), false},
    {"sessions", S_GROUP, sessions_keys, COUNT(sessions_keys), false},
    {"listen", S_LISTEN, listen_keys, COUNT(listen_keys), true},
    {"hosts", S_HOSTS, host_keys, COUNT(host_keys), true},
    {"modules", S_MODULES, NULL, 0, false},
    {"module_settings", S_MODULE_SETTINGS, NULL, 0, false},
};

/* ---- lists ------------------------------------------------------------------------------- */

/* Loads the entries of list l into a new array of entry_size-byte structs; NULL when empty. */
static void *load_entries(struct loader *ld, const config_setting_t *l, const struct section *sec,
                          size_t entry_size, size_t *n_r)
{
    size_t n = (size_t)config_setting_length(l);
    *n_r = n;
    if (n == 0) {
        problem(ld, l, NULL, "must have at least one entry");
        return NULL;
    }
    char *entries = xcalloc(n, entry_size);
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
        void *entry = entries + i * entry_size;
        apply_defaults(ld, sec->keys, sec->n_keys, entry);
        if (expect_type(ld, e, CONFIG_TYPE_GROUP, "a group"))
            load_group(ld, e, sec->keys, sec->n_keys, entry);
    }
    return entries;
}

enum addr_scope { ADDR_ALL, ADDR_ALL_V4, ADDR_ALL_V6, ADDR_ONE };

struct addr {
    enum addr_scope scope;
    int family;
    unsigned char bin[16];
};

static struct addr addr_parse(const char *s)
{
    struct addr a = {.scope = ADDR_ALL};
    if (strcmp(s, "*") == 0)
        return a;
    a.family = inet_pton(AF_INET, s, a.bin) == 1 ? AF_INET : AF_INET6;
    if (a.family == AF_INET6)
        inet_pton(AF_INET6, s, a.bin);
    static const unsigned char zero[16];
    if (memcmp(a.bin, zero, a.family == AF_INET ? 4 : 16) == 0)
        a.scope = a.family == AF_INET ? ADDR_ALL_V4 : ADDR_ALL_V6;
    else
        a.scope = ADDR_ONE;
    return a;
}

/* Whether two listening addresses would take the same connections on one port: the same
 * address, or a wildcard that covers the other. (A "::" socket may be dual-stack, but whether it
 * is depends on the listener, so only IPv6 addresses count as covered by it.) */
static bool addr_overlap(const struct addr *a, const struct addr *b)
{
    if (a->scope == ADDR_ALL || b->scope == ADDR_ALL)
        return true;
    if (a->family != b->family)
        return false;
    if (a->scope != ADDR_ONE || b->scope != ADDR_ONE)
        return true;
    return memcmp(a->bin, b->bin, a->family == AF_INET ? 4 : 16) == 0;
}

static void check_listeners(struct loader *ld, const config_setting_t *l, struct config *c)
{
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct config_listener *a = &c->listeners[i];
        if (!a->address || !a->port)
            continue;
        struct addr aa = addr_parse(a->address);
        for (size_t j = 0; j < i; j++) {
            const struct config_listener *b = &c->listeners[j];
            if (!b->address || b->port != a->port)
                continue;
            struct addr bb = addr_parse(b->address);
            if (!addr_overlap(&aa, &bb))
                continue;
            const config_setting_t *ea = config_setting_get_elem(l, (unsigned)i);
            const config_setting_t *eb = config_setting_get_elem(l, (unsigned)j);
            if (strcmp(a->address, b->address) == 0)
                problem(ld, ea, NULL, "%s port %d is already used by listen.[%zu] at line %u",
                        a->address, a->port, j, config_setting_source_line(eb));
            else
                problem(ld, ea, NULL, "%s port %d overlaps %s port %d of listen.[%zu] at line %u",
                        a->address, a->port, b->address, b->port, j,
                        config_setting_source_line(eb));
            break;
        }
    }
}

/* Reads a whole PEM file into d (malloc'd), or reports why it cannot be read. */
static bool read_pem(struct loader *ld, const config_setting_t *s, const char *path,
                     gnutls_datum_t *d)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        problem(ld, s, NULL, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    size_t cap = 4096, len = 0;
    unsigned char *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_PEM_FILE) {
                problem(ld, s, NULL, "cannot read %s: larger than %d bytes", path, MAX_PEM_FILE);
                goto fail;
            }
            buf = xrealloc(buf, cap *= 2);
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            problem(ld, s, NULL, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    d->data = buf;
    d->size = (unsigned)len;
    return true;
fail:
    explicit_bzero(buf, len);
    free(buf);
    close(fd);
    return false;
}

static void free_pem(gnutls_datum_t *d)
{
    if (d->data) {
        /* One of the two is a private key. */
        explicit_bzero(d->data, d->size);
        free(d->data);
    }
    d->data = NULL;
}

/* The certificate and key of a host must be readable, parse, and belong together. */
static void check_credentials(struct loader *ld, const config_setting_t *e,
                              const struct config_host *h)
{
    const config_setting_t *cs = config_setting_get_member((config_setting_t *)e, "certificate");
    const config_setting_t *ks = config_setting_get_member((config_setting_t *)e, "key");
    gnutls_datum_t cert = {NULL, 0}, key = {NULL, 0};
    bool ok = true;
    int rc;

    if (read_pem(ld, cs, h->certificate, &cert)) {
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        rc = gnutls_x509_crt_list_import2(&crts, &n, &cert, GNUTLS_X509_FMT_PEM, 0);
        if (rc < 0) {
            if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND)
                problem(ld, cs, NULL,
                        "%s is not a valid PEM certificate: no certificate found in it",
                        h->certificate);
            else
                problem(ld, cs, NULL, "%s is not a valid PEM certificate: %s", h->certificate,
                        gnutls_strerror(rc));
            ok = false;
        } else {
            for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
            gnutls_free(crts);
        }
    } else {
        ok = false;
    }

    if (read_pem(ld, ks, h->key, &key)) {
        gnutls_x509_privkey_t pk;
        gnutls_x509_privkey_init(&pk);
        rc = gnutls_x509_privkey_import2(pk, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
        gnutls_x509_privkey_deinit(pk);
        /* GnuTLS's own words for the two usual mistakes (some other file given as the key; a
         * key protected by a passphrase) are too vague to act on. */
        if (rc == GNUTLS_E_DECRYPTION_FAILED)
            problem(ld, ks, NULL, "%s is an encrypted private key; an unencrypted one is needed",
                    h->key);
        else if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            problem(ld, ks, NULL, "%s is not a valid PEM private key: no private key found in it",
                    h->key);
        else if (rc < 0)
            problem(ld, ks, NULL, "%s is not a valid PEM private key: %s", h->key,
                    gnutls_strerror(rc));
        if (rc < 0)
            ok = false;
    } else {
        ok = false;
    }

    if (ok) {
        /* The same call the TLS layer makes, on the bytes just read: it checks that the key
         * belongs to the certificate. */
        gnutls_certificate_credentials_t cred;
        rc = gnutls_certificate_allocate_credentials(&cred);
        if (rc >= 0) {
            rc = gnutls_certificate_set_x509_key_mem(cred, &cert, &key, GNUTLS_X509_FMT_PEM);
            gnutls_certificate_free_credentials(cred);
        }
        if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
            problem(ld, ks, NULL, "%s does not match the certificate %s", h->key, h->certificate);
        else if (rc < 0)
            problem(ld, cs, NULL, "cannot use %s with the key %s: %s", h->certificate, h->key,
                    gnutls_strerror(rc));
    }
    free_pem(&cert);
    free_pem(&key);
}

static void check_hosts(struct loader *ld, const config_setting_t *l, struct config *c)
{
    for (size_t i = 0; i < c->n_hosts; i++) {
        const struct config_host *h = &c->hosts[i];
        const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
        if (h->certificate && h->key)
            check_credentials(ld, e, h);
        if (!h->name)
            continue;
        for (size_t j = 0; j < i; j++)
            if (c->hosts[j].name && strcmp(c->hosts[j].name, h->name) == 0) {
                problem(ld, config_setting_get_member((config_setting_t *)e, "name"), NULL,
                        "duplicate host \"%s\" (also hosts.[%zu] at line %u)", h->name, j,
                        config_setting_source_line(config_setting_get_elem(l, (unsigned)j)));
                break;
            }
    }
}

/* ---- loading ----------------------------------------------------------------------------- */

static char *config_dir(const char *path)
{
    char *copy = xstrdup(path);
    char *abs = realpath(dirname(copy), NULL);
    char *dir = abs ? xstrdup(abs) : xstrdup(dirname(strcpy(copy, path)));
    free(abs);
    free(copy);
    return dir;
}

static void load_tree(struct loader *ld, config_t *lc, struct config *c)
{
    const config_setting_t *root = config_root_setting(lc);
    const config_setting_t *seen[COUNT(sections)] = {NULL};

    for (size_t i = 0; i < COUNT(sections); i++)
        if (sections[i].shape == S_GROUP)
            apply_defaults(ld, sections[i].keys, sections[i].n_keys, c);
    c->modules = xcalloc(1, sizeof *c->modules);

    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        size_t si = 0;
        while (si < COUNT(sections) && strcmp(sections[si].name, config_setting_name(s)) != 0)
            si++;
        if (si == COUNT(sections)) {
            unknown_key(ld, s, sections, COUNT(sections), sizeof sections[0]);
            continue;
        }
        const struct section *sec = &sections[si];
        seen[si] = s;
        switch (sec->shape) {
        case S_GROUP:
            if (expect_type(ld, s, CONFIG_TYPE_GROUP, "a group"))
                load_group(ld, s, sec->keys, sec->n_keys, c);
            break;
        case S_LISTEN:
            if (expect_type(ld, s, CONFIG_TYPE_LIST, "a list")) {
                c->listeners = load_entries(ld, s, sec, sizeof *c->listeners, &c->n_listeners);
                check_listeners(ld, s, c);
            }
            break;
        case S_HOSTS:
            if (expect_type(ld, s, CONFIG_TYPE_LIST, "a list")) {
                c->hosts = load_entries(ld, s, sec, sizeof *c->hosts, &c->n_hosts);
                check_hosts(ld, s, c);
            }
            break;
        case S_MODULES:
            load_module_list(ld, s, &c->modules, &c->n_modules);
            break;
        case S_MODULE_SETTINGS:
            if (check_sections(ld, s))
                c->module_settings = s;
            break;
        }
    }

    /* Required keys of absent sections; present ones were checked by load_group. */
    for (size_t i = 0; i < COUNT(sections); i++) {
        if (seen[i])
            continue;
        if (sections[i].required)
            problem(ld, root, sections[i].name, "required key is missing");
        else if (sections[i].shape == S_GROUP)
            for (size_t j = 0; j < sections[i].n_keys; j++)
                if (sections[i].keys[j].flags & F_REQUIRED) {
                    char sub[KEYPATH_MAX];
                    snprintf(sub, sizeof sub, "%s.%s", sections[i].name, sections[i].keys[j].name);
                    problem(ld, root, sub, "required key is missing");
                }
    }
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct loader ld = {.path = path, .err = err, .errlen = errlen};
    if (errlen)
        err[0] = '\0';

    /* libconfig reports only "file I/O error"; opening the file first gives the reason. */
    FILE *f = fopen(path, "r");
    if (!f) {
        add_line(&ld, "%s: cannot open configuration file: %s", path, strerror(errno));
        return NULL;
    }
    fclose(f);

    ld.dir = config_dir(path);
    config_t *lc = xmalloc(sizeof *lc);
    config_init(lc);
    /* @include "x.conf" is found next to the file, like every other relative path in it. */
    config_set_include_dir(lc, ld.dir);
    if (!config_read_file(lc, path)) {
        if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
            add_line(&ld, "%s: cannot open configuration file: %s", path, config_error_text(lc));
        else
            add_line(&ld, "%s:%d: syntax error: %s",
                     config_error_file(lc) ? config_error_file(lc) : path, config_error_line(lc),
                     config_error_text(lc));
        config_destroy(lc);
        free(lc);
        free(ld.dir);
        return NULL;
    }

    struct config *c = xcalloc(1, sizeof *c);
    c->path = xstrdup(path);
    c->lc = lc;
    c->dir = ld.dir;
    load_tree(&ld, lc, c);

    if (ld.n_problems == 0)
        return c;
    if (ld.n_problems > MAX_PROBLEMS)
        add_note(&ld, "%s: %zu more problems not shown", path, ld.n_problems - MAX_PROBLEMS);
    config_free(&c);
    return NULL;
}

void config_free(struct config **cp)
{
    struct config *c = *cp;
    if (!c)
        return;
    /* The connection string may hold a password. */
    if (c->db_conninfo)
        explicit_bzero(c->db_conninfo, strlen(c->db_conninfo));
    for (size_t i = 0; i < COUNT(sections); i++)
        if (sections[i].shape == S_GROUP)
            free_strings(sections[i].keys, sections[i].n_keys, c);
    for (size_t i = 0; c->listeners && i < c->n_listeners; i++)
        free_strings(listen_keys, COUNT(listen_keys), &c->listeners[i]);
    for (size_t i = 0; c->hosts && i < c->n_hosts; i++)
        free_strings(host_keys, COUNT(host_keys), &c->hosts[i]);
    free(c->listeners);
    free(c->hosts);
    free_names(&c->modules);
    if (c->lc) {
        config_destroy(c->lc);
        free(c->lc);
    }
    free(c->path);
    free(c->dir);
    free(c);
    *cp = NULL;
}

const struct config_host *config_find_host(const struct config *c, const char *domain)
{
    /* Host names are stored prepared (lower case); the ASCII case-insensitive comparison spares
     * a caller with an unprepared ASCII name a preparation. */
    for (size_t i = 0; i < c->n_hosts; i++)
        if (strcasecmp(c->hosts[i].name, domain) == 0)
            return &c->hosts[i];
    return NULL;
}

int config_worker_count(const struct config *c)
{
    if (c->workers > 0)
        return c->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 256 ? 256 : n) : 1;
}
