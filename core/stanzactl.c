/*
 * stanzactl.c — the administration tool: accounts and their passwords, straight in the database.
 *
 * It reads the server's own configuration file (config_load, so hosts and the connection string
 * are exactly the server's), connects synchronously, brings the core schema up to date and runs
 * one command with plain PQexecParams on the statements of accounts.h — the same SQL the server
 * runs. Every write is one statement, atomic by itself; adduser and deluser notify running
 * servers in that same statement (delivered on commit), with this process's own token, so they
 * raise the account events and a deleted account's sessions end.
 *
 * Passwords never come from the command line (other users can read argv in /proc): they are read
 * from the terminal with echo off, twice, or as one line from standard input when that is not a
 * terminal (scripts, tests). They are turned into SCRAM-SHA-1 and SCRAM-SHA-256 verifiers at once
 * and the buffer is wiped; neither the password nor the verifiers are ever printed.
 *
 * Exit status: 0 success; 1 the user's mistake (usage, bad JID, unknown host, account exists or
 * not found, wrong password for check-password); 2 configuration or database trouble.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "accounts.h"
#include "config.h"
#include "db.h"
#include "jid.h"
#include "log.h"
#include "scram.h"

enum { EXIT_USER = 1, EXIT_SYSTEM = 2 };

#define DEFAULT_CONFIG "/etc/stanzad/stanzad.conf"
#define PASSWORD_MAX   1023
/* Seconds to wait for the database, at most: a CLI should not hang for the server's db_timeout. */
#define CONNECT_TIMEOUT 10

static const char usage_text[] =
    "usage: stanzactl [-c FILE] COMMAND [ARGUMENT]\n"
    "\n"
    "Commands:\n"
    "  adduser USER@HOST         create an account\n"
    "  passwd USER@HOST          set a new password for an account\n"
    "  deluser USER@HOST         delete an account and everything stored for it\n"
    "  list [HOST]               list the accounts of one host, or of all hosts\n"
    "  check-password USER@HOST  exit 0 if the password given matches the account's, else 1\n"
    "\n"
    "The password is read from the terminal (echo off; asked twice when setting it), or as one\n"
    "line from standard input when that is not a terminal. It is never taken from arguments.\n"
    "\n"
    "Options:\n"
    "  -c FILE        configuration file (default: $STANZAD_CONFIG, else " DEFAULT_CONFIG ")\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "Exit status: 0 success; 1 bad usage, JID or host, account exists or not found, password\n"
    "mismatch; 2 configuration or database error.\n";

static void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("stanzactl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- reading the password ---- */

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

/* A signal while echo is off must not leave the terminal blind. */
static void restore_tty_and_die(int sig)
{
    if (tty_changed)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

/*
 * Reads one line into buf (byte by byte with read(2), so no copy stays behind in a stdio
 * buffer). Returns its length without the line end, -1 on a read error, -2 when longer than
 * PASSWORD_MAX, -3 when it holds a NUL byte.
 */
static long read_line(char *buf)
{
    size_t n = 0;
    int status = 0;
    for (;;) {
        char ch;
        ssize_t r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || ch == '\n')
            break;
        if (ch == '\0')
            status = -3;
        if (n < PASSWORD_MAX)
            buf[n++] = ch;
        else if (status == 0)
            status = -2;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return status ? status : (long)n;
}

static long prompt_line(const char *prompt, char *buf)
{
    fputs(prompt, stderr);
    fflush(stderr);
    long n = read_line(buf);
    fputc('\n', stderr);
    return n;
}

/* Fills buf (PASSWORD_MAX + 1 bytes) with the password. Returns 0 or an exit status. */
static int read_password(const char *jid, bool confirm, char *buf)
{
    long n;
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX + 1];
        char prompt[256];
        struct termios quiet;
        if (tcgetattr(STDIN_FILENO, &saved_tty) < 0) {
            fail_msg("cannot read the terminal settings: %s", strerror(errno));
            return EXIT_SYSTEM;
        }
        quiet = saved_tty;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], restore_tty_and_die);
        tty_changed = 1;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        snprintf(prompt, sizeof prompt, "Password for %s: ", jid);
        n = prompt_line(prompt, buf);
        long m = n;
        if (n > 0 && confirm) {
            m = prompt_line("Repeat the password: ", again);
            if (m >= 0 && strcmp(buf, again) != 0)
                m = -4;
        }
        explicit_bzero(again, sizeof again);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
        tty_changed = 0;
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        if (m < 0)
            n = m;
    } else {
        n = read_line(buf);
    }
    switch (n) {
    case -1:
        fail_msg("cannot read the password: %s", strerror(errno));
        return EXIT_SYSTEM;
    case -2:
        fail_msg("the password is too long (at most %d bytes)", PASSWORD_MAX);
        return EXIT_USER;
    case -3:
        fail_msg("the password contains a NUL byte");
        return EXIT_USER;
    case -4:
        fail_msg("the two passwords differ; nothing changed");
        return EXIT_USER;
    case 0:
        fail_msg("an empty password is refused");
        return EXIT_USER;
    default:
        return 0;
    }
}

/* SCRAM-SHA-1 and SCRAM-SHA-256 verifiers of the password read for jid. Returns 0 or a status. */
static int make_verifiers(const char *jid, struct scram_verifier v[SCRAM_HASH_COUNT])
{
    char pw[PASSWORD_MAX + 1];
    int rc = read_password(jid, true, pw);
    for (int h = 0; rc == 0 && h < SCRAM_HASH_COUNT; h++) {
        if (scram_new_verifier((enum scram_hash)h, pw, SCRAM_DEFAULT_ITERATIONS, &v[h]) < 0) {
            fail_msg("the password is not acceptable (it must be valid UTF-8 and pass SASLprep, "
                     "RFC 4013)");
            rc = EXIT_USER;
        }
    }
    explicit_bzero(pw, sizeof pw);
    return rc;
}

/* ---- the database ---- */

static PGresult *run(PGconn *c, const struct db_stmt *s, const struct db_params *p)
{
    return PQexecParams(c, s->sql, p->n, NULL, p->values, p->lengths, p->binary, 0);
}

static PGresult *run2(PGconn *c, const struct db_stmt *s, const char *a, const char *b)
{
    const char *values[2] = {a, b};
    struct db_params p = {s->nparams, values, NULL, NULL};
    return run(c, s, &p);
}

/* True when r succeeded; otherwise prints "what: message", clears r. */
static bool ok_or_report(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return true;
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char clean[512];
    db_clean_message(NULL, m ? m : PQerrorMessage(c), clean, sizeof clean);
    fail_msg("%s: %s", what, clean);
    PQclear(r);
    return false;
}

/* ---- commands ---- */

struct target {
    struct jid *jid;
    const char *user;
    const char *host;
};

/*
 * adduser (create) and passwd (!create): the account must not exist / must exist. That is
 * checked first, so nobody types a password for nothing; the password is then read and turned
 * into verifiers, and one statement (accounts.h) creates the account with its verifiers and
 * notifies running servers, or replaces the verifiers. A change made meanwhile by someone else
 * is noticed (no row) instead of overwritten.
 */
static int write_password(PGconn *c, const struct target *t, bool create)
{
    PGresult *r = run2(c, &db_stmt_account_exists, t->host, t->user);
    if (!ok_or_report(c, r, "cannot look the account up"))
        return EXIT_SYSTEM;
    bool exists = PQntuples(r) > 0;
    PQclear(r);
    if (exists == create) {
        fail_msg(create ? "%s already exists" : "no such account: %s", t->jid->bare);
        return EXIT_USER;
    }

    struct scram_verifier v[SCRAM_HASH_COUNT];
    int rc = make_verifiers(t->jid->bare, v);
    if (rc)
        return rc;

    char payload[ACCOUNTS_PAYLOAD_MAX];
    struct accounts_write_params p;
    accounts_write_params(
        &p, t->host, t->user,
        create ? accounts_notify_payload(payload, sizeof payload, true, t->host, t->user) : NULL,
        v);
    r = run(c, create ? &db_stmt_account_create : &db_stmt_account_set_password, &p.params);
    explicit_bzero(v, sizeof v);
    if (!ok_or_report(c, r, create ? "cannot create the account" : "cannot store the password"))
        return EXIT_SYSTEM;
    bool written = PQntuples(r) > 0;
    PQclear(r);
    if (!written) {
        /* Someone created (or deleted) it between our look-up and now. */
        fail_msg(create ? "%s already exists" : "no such account: %s (deleted meanwhile)",
                 t->jid->bare);
        return EXIT_USER;
    }
    printf(create ? "created %s\n" : "password changed for %s\n", t->jid->bare);
    return 0;
}

static int cmd_adduser(PGconn *c, const struct target *t)
{
    return write_password(c, t, true);
}

static int cmd_passwd(PGconn *c, const struct target *t)
{
    return write_password(c, t, false);
}

static int cmd_deluser(PGconn *c, const struct target *t)
{
    /* One statement: the account, everything that cascades from it, and the notification that
     * makes running servers end its sessions (delivered only when it commits). */
    char payload[ACCOUNTS_PAYLOAD_MAX];
    const char *values[3] = {
        t->host, t->user,
        accounts_notify_payload(payload, sizeof payload, false, t->host, t->user)};
    struct db_params p = {3, values, NULL, NULL};
    PGresult *r = run(c, &db_stmt_account_delete, &p);
    if (!ok_or_report(c, r, "cannot delete the account"))
        return EXIT_SYSTEM;
    bool deleted = PQntuples(r) > 0;
    PQclear(r);
    if (!deleted) {
        fail_msg("no such account: %s", t->jid->bare);
        return EXIT_USER;
    }
    printf("deleted %s\n", t->jid->bare);
    return 0;
}

static int cmd_check_password(PGconn *c, const struct target *t)
{
    PGresult *r = run2(c, &db_stmt_fetch_credentials, t->host, t->user);
    if (!ok_or_report(c, r, "cannot read the credentials"))
        return EXIT_SYSTEM;
    struct scram_verifier v[SCRAM_HASH_COUNT];
    size_t n = accounts_verifiers_from_result(r, v, SCRAM_HASH_COUNT);
    PQclear(r);
    if (n == 0) {
        fail_msg("no such account (or no credentials): %s", t->jid->bare);
        return EXIT_USER;
    }
    char pw[PASSWORD_MAX + 1];
    int rc = read_password(t->jid->bare, false, pw);
    if (rc)
        return rc;
    /* Every stored verifier must agree: one that does not would fail some clients' logins. */
    bool all = true;
    for (size_t i = 0; i < n; i++)
        if (!scram_check_password(&v[i], pw))
            all = false;
    explicit_bzero(pw, sizeof pw);
    if (!all) {
        fail_msg("the password does not match for %s", t->jid->bare);
        return EXIT_USER;
    }
    printf("the password matches for %s\n", t->jid->bare);
    return 0;
}

static int cmd_list(PGconn *c, const char *host)
{
    const char *values[1] = {host};
    struct db_params p = {1, values, NULL, NULL};
    PGresult *r = run(c, &db_stmt_list_accounts, &p);
    if (!ok_or_report(c, r, "cannot list the accounts"))
        return EXIT_SYSTEM;
    for (int i = 0; i < PQntuples(r); i++)
        printf("%s@%s\n", PQgetvalue(r, i, 1), PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

/* ---- arguments ---- */

/* Parses an account JID for cfg; prints why and returns EXIT_USER when it is not acceptable. */
static int parse_target(const struct config *cfg, const char *s, struct target *t)
{
    const char *why = NULL;
    t->jid = jid_parse(NULL, s, strlen(s), &why);
    if (!t->jid) {
        fail_msg("invalid JID '%s': %s", s, why ? why : "malformed");
        return EXIT_USER;
    }
    if (!t->jid->local) {
        fail_msg("'%s' names no account: expected user@host", s);
        return EXIT_USER;
    }
    if (t->jid->resource) {
        fail_msg("'%s' has a resource; give the bare JID user@host", s);
        return EXIT_USER;
    }
    if (!config_find_host(cfg, t->jid->domain)) {
        char hosts[512] = "";
        size_t len = 0;
        for (size_t i = 0; i < cfg->n_hosts && len < sizeof hosts; i++) {
            int m = snprintf(hosts + len, sizeof hosts - len, "%s%s", i ? ", " : "",
                             cfg->hosts[i].name);
            if (m > 0)
                len += (size_t)m;
        }
        fail_msg("%s is not a host of this server (%s has: %s)", t->jid->domain, cfg->path,
                 cfg->n_hosts ? hosts : "none");
        return EXIT_USER;
    }
    t->user = t->jid->local;
    t->host = t->jid->domain;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *path = getenv("STANZAD_CONFIG");
    if (!path || !*path)
        path = DEFAULT_CONFIG;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'V':
            printf("stanzactl %s\n", STANZAD_VERSION);
            return 0;
        default:
            fputs(usage_text, stderr);
            return EXIT_USER;
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return EXIT_USER;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char *const *args = argv + optind + 1;
    bool is_list = strcmp(cmd, "list") == 0;
    bool is_account_cmd = strcmp(cmd, "adduser") == 0 || strcmp(cmd, "passwd") == 0 ||
                          strcmp(cmd, "deluser") == 0 || strcmp(cmd, "check-password") == 0;
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!is_list && !is_account_cmd) {
        fail_msg("unknown command '%s' (see stanzactl --help)", cmd);
        return EXIT_USER;
    }
    if ((is_account_cmd && nargs != 1) || (is_list && nargs > 1)) {
        fail_msg("%s takes %s (see stanzactl --help)", cmd,
                 is_list ? "at most one HOST" : "one USER@HOST");
        return EXIT_USER;
    }

    /* Only warnings (a damaged verifier row) should reach the terminal from core code. */
    log_current_level = LOGL_WARN;

    char err[1024];
    struct config *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "stanzactl: %s\n", err);
        return EXIT_SYSTEM;
    }

    int rc = 0;
    struct target t = {0};
    char *list_host = NULL;
    PGconn *c = NULL;
    if (is_account_cmd) {
        rc = parse_target(cfg, args[0], &t);
    } else if (nargs == 1) {
        const char *why = NULL;
        list_host = jid_prep_domain(NULL, args[0], &why);
        if (!list_host) {
            fail_msg("invalid host '%s': %s", args[0], why ? why : "malformed");
            rc = EXIT_USER;
        }
    }
    if (rc)
        goto out;

    int timeout = cfg->db_timeout < CONNECT_TIMEOUT ? cfg->db_timeout : CONNECT_TIMEOUT;
    if (timeout < 1)
        timeout = 1;
    c = db_connect_blocking(cfg->db_conninfo, timeout, err, sizeof err);
    if (!c) {
        fprintf(stderr, "stanzactl: %s\n", err);
        rc = EXIT_SYSTEM;
        goto out;
    }
    if (db_migrate(c, "core", db_core_migrations, db_core_migrations_count, err, sizeof err) < 0) {
        fprintf(stderr, "stanzactl: %s\n", err);
        rc = EXIT_SYSTEM;
        goto out;
    }

    if (is_list)
        rc = cmd_list(c, list_host);
    else if (strcmp(cmd, "adduser") == 0)
        rc = cmd_adduser(c, &t);
    else if (strcmp(cmd, "passwd") == 0)
        rc = cmd_passwd(c, &t);
    else if (strcmp(cmd, "deluser") == 0)
        rc = cmd_deluser(c, &t);
    else
        rc = cmd_check_password(c, &t);

out:
    if (c)
        PQfinish(c);
    jid_free(&t.jid);
    free(list_host);
    config_free(&cfg);
    if (fflush(stdout) != 0 && rc == 0)
        rc = EXIT_SYSTEM;
    return rc;
}
