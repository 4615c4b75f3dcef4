/*
 * config.h — the server configuration, loaded from a libconfig file and validated against a
 * schema before anything else happens. Every error names the file, the line and the key:
 *
 *   /etc/stanzad/stanzad.conf:12: limits.max_stanza_size: expected an integer, got a string
 *
 * Unknown keys are errors (a typo must not silently become a default). Certificates and keys are
 * read and parsed at load time so an unreadable one stops start-up before any port is bound.
 */
#ifndef STANZAD_CONFIG_H
#define STANZAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum listener_kind { LISTEN_C2S = 0 };
enum listener_tls { LISTEN_TLS_STARTTLS = 0, LISTEN_TLS_DIRECT = 1 };

struct config_listener {
    enum listener_kind kind;
    enum listener_tls tls;
    char *address; /* "127.0.0.1", "::", "*" */
    int port;
};

struct config_host {
    char *name;        /* prepared domain */
    char *certificate; /* PEM file path */
    char *key;         /* PEM file path */

    /* Modules enabled for this host only, on top of the global list (NULL-terminated, never
     * NULL; a module may be in both). */
    char **modules;
    size_t n_modules;
    /* hosts.[i].module_settings as read (a config_setting_t * group of groups, one per module),
     * or NULL: module_loader.c checks it against each module's settings table. */
    const void *module_settings;
};

enum conflict_policy {
    CONFLICT_REPLACE = 0, /* new login with the same resource kicks the old one (default) */
    CONFLICT_REFUSE = 1,  /* new login with a used resource gets <conflict/> at bind */
    CONFLICT_RANDOM = 2,  /* new login gets a server-generated resource instead */
};

struct config {
    char *path; /* the file it came from */

    /* server */
    int workers;    /* 0 = number of CPUs */
    char *data_dir; /* for the private quick-start cluster and generated certificate */
    char *pid_file; /* NULL = none */
    char *user;     /* drop root to this user after binding; NULL = stay */

    /* log */
    int log_level; /* enum log_level */
    char *log_target;

    /* storage */
    char *db_conninfo;
    int db_connections; /* per worker */
    int db_timeout;     /* seconds before a queued query fails when the database is down */

    /* tls */
    char *tls_priority;
    bool c2s_require_tls;

    /* limits */
    size_t max_stanza_size; /* bytes */
    int connect_timeout;    /* seconds from accept to authenticated session */
    int idle_timeout;       /* seconds without input before the stream is closed; 0 = off */
    int max_connections_per_ip;
    size_t max_output_buffer; /* bytes queued to a client before it is disconnected */
    int auth_failure_delay;   /* ms added per recent failure from one address */
    int max_auth_failures;    /* failures per address per minute before refusing outright */

    /* sessions */
    int conflict;                 /* enum conflict_policy */
    int max_sessions_per_account; /* 0 = unlimited; 1 = one account, one place */

    struct config_listener *listeners;
    size_t n_listeners;
    struct config_host *hosts;
    size_t n_hosts;

    /* modules: enabled on every host, in this order (NULL-terminated, never NULL). */
    char **modules;
    size_t n_modules;
    char *module_dir; /* server.module_dir: where mod_<name>.so files are */
    /* The top-level module_settings group as read (config_setting_t *), or NULL. Only its shape
     * (a group of groups) is checked here; the keys belong to the modules. */
    const void *module_settings;

    void *lc;  /* the libconfig tree, kept for module settings (config_t *) */
    char *dir; /* the directory of the file: relative paths and @include are resolved there */
};

/*
 * Loads and validates path. Returns a config, or NULL and writes one "file:line: key: message"
 * line per problem (at most a few) into err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config **c);
/* The host entry for a domain, or NULL. */
const struct config_host *config_find_host(const struct config *c, const char *domain);
/* Number of CPUs when workers = 0. */
int config_worker_count(const struct config *c);

/* ---- for checks made after config_load (module settings: module_loader.c) ---- */

/* The longest module name accepted. */
#define CONFIG_MODULE_NAME_MAX 64
/* Is name a valid module name: 1..CONFIG_MODULE_NAME_MAX of [a-z0-9_]? */
bool config_module_name_ok(const char *name);
/*
 * Writes "file:line: key.path" for a setting of c's tree (a const config_setting_t *), with
 * ".sub" appended when sub is not NULL, exactly as config_load() starts its problem lines.
 */
void config_where(const struct config *c, const void *setting, const char *sub, char *buf,
                  size_t n);
/* "262144", "256K", "16M", "1G" into bytes; false when s is not such a size. */
bool config_parse_size(const char *s, long long *v);
/* Levenshtein distance of two key names, SIZE_MAX for long ones (for "did you mean"). */
size_t config_edit_distance(const char *a, const char *b);
/* For messages about libconfig settings, shared with the module loader: "an integer", "a
 * string"...; whether a setting is an integer (int or int64); "a, b, c" from a NULL-terminated
 * list of choices. */
const char *config_type_name(int type);
struct config_setting_t;
bool config_is_integer(const struct config_setting_t *s);
void config_join_choices(const char *const *choices, char *buf, size_t n);

#endif
