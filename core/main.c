/*
 * main.c — the stanzad daemon: start-up in a fixed order, then signal handling.
 *
 * Order: parse arguments; load and validate the configuration, with the modules it names and
 * their settings (nothing else happens when it is wrong, and --check-config stops here); open the
 * log; load TLS credentials; initialise SASL; connect to the database and apply migrations, the
 * core's then each module's, and load the modules; bind every listening socket; drop root if
 * asked; start the workers. Each step that fails prints why and exits non-zero before any client
 * could connect.
 *
 * Signals are blocked in every thread and taken synchronously by the main thread with
 * sigwaitinfo(): SIGTERM/SIGINT end every stream with <system-shutdown/> and exit cleanly, SIGHUP
 * reloads certificates and log settings from the configuration file.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "accounts.h"
#include "addrlimit.h"
#include "c2s.h"
#include "config.h"
#include "db.h"
#include "dispatch.h"
#include "listener.h"
#include "log.h"
#include "modules.h"
#include "sasl.h"
#include "server.h"
#include "session.h"
#include "tls.h"
#include "worker.h"

/* Multi-line problem reports (configuration, modules) as one log line each. */
static void log_error_lines(const char *text)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        log_error(0, "%.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: stanzad [-c FILE] [--check-config] [--version]\n"
               "  -c, --config FILE   configuration file (default $STANZAD_CONFIG or "
               "/etc/stanzad/stanzad.conf)\n"
               "      --check-config  validate the configuration and exit\n"
               "  -V, --version       print the version and exit\n");
}

/* Runs on each worker as it stops: streams get <system-shutdown/>, queued queries fail now. */
static void stop_worker(struct worker *w)
{
    c2s_shutdown_worker(w);
    db_worker_stop(w);
}

static int drop_privileges(const char *user)
{
    if (!user || !*user || getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_error(0, "server.user: no such user \"%s\"", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        log_error(0, "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    log_info(0, "running as user %s", user);
    return 0;
}

/* Each connection is a descriptor: use all the descriptors the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void write_pid_file(const char *path)
{
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        log_warn(0, "cannot write pid file %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
}

/* SIGHUP: certificates and log settings from a fresh read of the file; the rest stays. */
static void reload(const char *path)
{
    char err[4096];
    struct config *fresh = config_load(path, err, sizeof err);
    if (!fresh) {
        log_error(0, "reload failed, keeping the running configuration:\n%s", err);
        return;
    }
    if (log_open(fresh->log_target, (enum log_level)fresh->log_level) < 0)
        log_error(0, "reload: cannot open log %s: %s", fresh->log_target, strerror(errno));
    if (tls_reload(fresh, err, sizeof err) < 0)
        log_error(0, "reload: %s", err);
    else
        log_info(0, "reloaded certificates and log settings");
    config_free(&fresh);
}

int main(int argc, char **argv)
{
    const char *path = getenv("STANZAD_CONFIG");
    bool check_only = false;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'V':
            printf("stanzad %s\n", STANZAD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!path)
        path = "/etc/stanzad/stanzad.conf";

    char err[8192];
    struct config *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        return 1;
    }
    if (check_only) {
        /* The modules too: their files, ABI, dependencies and settings (no load()). */
        int bad = modules_load(cfg, NULL, err, sizeof err);
        modules_unload();
        if (bad < 0) {
            fprintf(stderr, "%s\n", err);
            config_free(&cfg);
            return 1;
        }
        printf("%s: configuration is valid\n", path);
        config_free(&cfg);
        return 0;
    }
    server_config = cfg;

    if (log_open(cfg->log_target, (enum log_level)cfg->log_level) < 0) {
        fprintf(stderr, "%s: log.target: cannot open %s: %s\n", path, cfg->log_target,
                strerror(errno));
        return 1;
    }

    /* Every thread inherits this mask; the main thread takes the signals itself. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    if (tls_init(cfg, err, sizeof err) < 0) {
        log_error(0, "%s", err);
        goto out_cfg;
    }
    if (sasl_global_init(err, sizeof err) < 0) {
        log_error(0, "SASL: %s", err);
        goto out_tls;
    }
    PGconn *pg = db_connect_blocking(cfg->db_conninfo, cfg->db_timeout, err, sizeof err);
    if (!pg) {
        log_error(0, "%s", err);
        goto out_sasl;
    }
    if (db_migrate(pg, "core", db_core_migrations, db_core_migrations_count, err, sizeof err) < 0) {
        log_error(0, "database migration failed: %s", err);
        PQfinish(pg);
        goto out_sasl;
    }
    /* Before any port is bound: a module that cannot load stops start-up here. */
    if (modules_load(cfg, pg, err, sizeof err) < 0) {
        log_error_lines(err);
        PQfinish(pg);
        goto out_sasl;
    }
    PQfinish(pg);

    raise_fd_limit();
    int n_workers = config_worker_count(cfg);
    if (listeners_open(cfg, n_workers, err, sizeof err) < 0) {
        log_error(0, "%s", err);
        goto out_modules;
    }
    if (drop_privileges(cfg->user) < 0)
        goto out_listeners;
    write_pid_file(cfg->pid_file);

    addrlimit_init();
    sessions_init(64);
    if (workers_create(n_workers) < 0)
        goto out_sessions;
    if (db_init(cfg) < 0 || accounts_events_init() < 0) {
        log_error(0, "cannot set up the database pools");
        goto out_workers;
    }
    offload_start(2);
    workers_on_start(dispatch_worker_init);
    workers_on_start(c2s_worker_init);
    workers_on_start(listeners_attach);
    if (workers_start() < 0)
        goto out_offload;

    for (size_t i = 0; i < cfg->n_listeners; i++)
        log_info(0, "listening on %s port %d (c2s, %s)", cfg->listeners[i].address,
                 cfg->listeners[i].port,
                 cfg->listeners[i].tls == LISTEN_TLS_DIRECT ? "direct TLS" : "STARTTLS");
    log_info(0, "stanzad %s ready with %d worker%s", STANZAD_VERSION, n_workers,
             n_workers == 1 ? "" : "s");

    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&sigs, &si);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            log_error(0, "sigwaitinfo: %s", strerror(errno));
            break;
        }
        if (sig == SIGHUP) {
            reload(path);
            continue;
        }
        log_info(0, "%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    workers_stop(stop_worker);
    for (int i = 0; i < n_workers; i++) {
        c2s_worker_done(worker_at(i));
        dispatch_worker_done(worker_at(i));
    }
    rc = 0;

out_offload:
    offload_stop();
    db_shutdown();
out_workers:
    workers_destroy();
out_sessions:
    sessions_destroy();
    addrlimit_destroy();
    if (cfg->pid_file && *cfg->pid_file)
        unlink(cfg->pid_file);
out_listeners:
    listeners_close();
out_modules:
    modules_unload();
out_sasl:
    sasl_global_done();
out_tls:
    tls_shutdown();
out_cfg:
    if (rc == 0)
        log_info(0, "stopped");
    server_config = NULL;
    config_free(&cfg);
    log_close();
    return rc;
}
