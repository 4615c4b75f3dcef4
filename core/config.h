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

    char **modules; /* NULL-terminated; module loading arrives with the module ABI */
    size_t n_modules;

    void *lc; /* the libconfig tree, kept for module settings (config_t *) */
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

#endif
