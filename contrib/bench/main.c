/*
 * main.c — stanzad-bench: command line, set-up, the phase clock, and the one result line.
 *
 * The main thread parses the options, refuses anything but a loopback target, spreads clients
 * over the worker threads (both ends of a chat pair on the same one; the presence workload's hub
 * and contacts all on one), and then only keeps time:
 * it waits on the barrier the workers reach after logging in, starts the measured phase's clock,
 * reads the server's RSS where asked, and after the workers are done adds up their counters and
 * prints exactly one "RESULT key=value ..." line on stdout. Progress and diagnostics go to
 * stderr. Every run is bounded: by its phases' own time limits, and behind those by an alarm
 * that prints a failing result line and exits.
 *
 * Exit status: 0 a clean run; 1 a run that lost, duplicated or reordered messages, or saw failed
 * logins, disconnects or protocol errors; 2 bad usage or set-up trouble; 3 the watchdog fired.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct options opt;
struct run run;
gnutls_certificate_credentials_t tls_cred;

static const char *workload_name(enum workload w)
{
    static const char *const names[] = {"connect", "login", "chat", "presence"};
    return names[w];
}

static void usage(FILE *f)
{
    fputs("usage: stanzad-bench --workload connect|login|chat|presence [options]\n"
          "       stanzad-bench --echo-server [--host H] [--port P] [--domain D] [--duration S]\n"
          "\n"
          "target (loopback only):\n"
          "  --host H            server address (127.0.0.1)\n"
          "  --port P            server port (5222)\n"
          "  --domain D          XMPP domain (localhost)\n"
          "  --tls               use STARTTLS (any certificate is accepted)\n"
          "  --mech M            auto|PLAIN|SCRAM-SHA-1|SCRAM-SHA-256 (auto: strongest offered)\n"
          "accounts (they must exist; contrib/bench/mkusers creates them):\n"
          "  --user-prefix P     account i is <P><i>@<domain> (bench)\n"
          "  --password PW       the accounts' password (bench)\n"
          "  --first N           number of the first account (0)\n"
          "  --users N           accounts to cycle through (default: one per client; login:\n"
          "                      the concurrency)\n"
          "  --no-scram-cache    derive SCRAM keys (PBKDF2) on every login instead of once per\n"
          "                      account, and skip the untimed key warm-up pass (connect, chat)\n"
          "load:\n"
          "  -n, --clients N     connect: clients (100)\n"
          "  --pairs N           chat: pairs (100)\n"
          "  --contacts C        presence: the hub's contacts (200); the hub is account\n"
          "                      --first, the contacts the C accounts after it\n"
          "  --window W          chat: messages in flight per pair; presence: updates whose\n"
          "                      broadcast is incomplete; 1..1024 (10)\n"
          "  --peer pair|self    chat: pairs of two clients, or each client its own peer (for\n"
          "                      the echo server, which reflects messages to their sender)\n"
          "  --concurrency C     login: logins in flight; connect, chat: during ramp-up (50)\n"
          "  --count N           login: stop after N logins; presence: after N updates (the\n"
          "                      duration, 600 s by default then, is only the upper bound)\n"
          "  -t, --threads T     worker threads, each with its own epoll (1; presence: 1)\n"
          "time:\n"
          "  --duration S        measured seconds (10)\n"
          "  --warmup S          seconds before measuring: chat (2), presence (1; none with\n"
          "                      --count)\n"
          "  --drain S           chat, presence: seconds to wait for what is in flight at the\n"
          "                      end (5)\n"
          "  --login-timeout S   per login (30)\n"
          "  --ramp-timeout S    connect, chat, presence: for logging every client in, and for\n"
          "                      the presence subscriptions (120)\n"
          "other:\n"
          "  --pid PID           the server's process: connect: its RSS per connection is\n"
          "                      reported; chat, presence: its CPU use while measuring\n"
          "\n"
          "Ends with one line \"RESULT workload=... status=ok|fail\" on stdout.\n",
          f);
}

static double parse_num(const char *name, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "stanzad-bench: %s: expected a number from %g to %g, got '%s'\n", name, lo,
                hi, s);
        exit(2);
    }
    return v;
}

static long read_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* CPU time of the whole generator (every thread), in microseconds. */
static uint64_t cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* CPU time of process pid (all its threads), in clock ticks; -1 when unreadable. */
static long long proc_cpu_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static char watchdog_line[200];

static void on_alarm(int sig)
{
    (void)sig;
    ssize_t r = write(STDOUT_FILENO, watchdog_line, strlen(watchdog_line));
    (void)r;
    _exit(3);
}

enum {
    O_HOST = 256,
    O_PORT,
    O_DOMAIN,
    O_TLS,
    O_MECH,
    O_PREFIX,
    O_PASSWORD,
    O_FIRST,
    O_USERS,
    O_NOCACHE,
    O_PAIRS,
    O_CONTACTS,
    O_WINDOW,
    O_PEER,
    O_CONC,
    O_COUNT,
    O_DURATION,
    O_WARMUP,
    O_DRAIN,
    O_LOGIN_TO,
    O_RAMP_TO,
    O_PID,
    O_ECHO,
    O_WORKLOAD,
};

static const struct option longopts[] = {
    {"workload", required_argument, NULL, O_WORKLOAD},
    {"host", required_argument, NULL, O_HOST},
    {"port", required_argument, NULL, O_PORT},
    {"domain", required_argument, NULL, O_DOMAIN},
    {"tls", no_argument, NULL, O_TLS},
    {"mech", required_argument, NULL, O_MECH},
    {"user-prefix", required_argument, NULL, O_PREFIX},
    {"password", required_argument, NULL, O_PASSWORD},
    {"first", required_argument, NULL, O_FIRST},
    {"users", required_argument, NULL, O_USERS},
    {"no-scram-cache", no_argument, NULL, O_NOCACHE},
    {"clients", required_argument, NULL, 'n'},
    {"pairs", required_argument, NULL, O_PAIRS},
    {"contacts", required_argument, NULL, O_CONTACTS},
    {"window", required_argument, NULL, O_WINDOW},
    {"peer", required_argument, NULL, O_PEER},
    {"concurrency", required_argument, NULL, O_CONC},
    {"count", required_argument, NULL, O_COUNT},
    {"threads", required_argument, NULL, 't'},
    {"duration", required_argument, NULL, O_DURATION},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"drain", required_argument, NULL, O_DRAIN},
    {"login-timeout", required_argument, NULL, O_LOGIN_TO},
    {"ramp-timeout", required_argument, NULL, O_RAMP_TO},
    {"pid", required_argument, NULL, O_PID},
    {"echo-server", no_argument, NULL, O_ECHO},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct totals {
    struct wstats s;
    struct hist login_h, lat_h;
    uint64_t lost;
};

static void add_up(struct worker *ws, unsigned nw, struct totals *t)
{
    memset(t, 0, sizeof *t);
    hist_init(&t->login_h);
    hist_init(&t->lat_h);
    for (unsigned i = 0; i < nw; i++) {
        struct worker *w = &ws[i];
        const struct wstats *s = &w->s;
        t->s.msgs += s->msgs;
        t->s.sent += s->sent;
        t->s.received += s->received;
        t->s.dup += s->dup;
        t->s.reordered += s->reordered;
        t->s.bounced += s->bounced;
        t->s.bad += s->bad;
        t->s.wrong_sender += s->wrong_sender;
        t->s.logins += s->logins;
        t->s.logins_measured += s->logins_measured;
        t->s.login_failed += s->login_failed;
        t->s.disconnects += s->disconnects;
        t->s.close_timeouts += s->close_timeouts;
        if (s->last_login_ns > t->s.last_login_ns)
            t->s.last_login_ns = s->last_login_ns;
        hist_merge(&t->login_h, &w->login_h);
        hist_merge(&t->lat_h, &w->lat_h);
        if ((opt.workload == WL_CHAT || opt.workload == WL_PRESENCE) && !run.abort)
            for (unsigned k = 0; k < w->n; k++) {
                struct client *c = &w->clients[k];
                if (c->peer && c->peer->seq_out > c->recv_distinct)
                    t->lost += c->peer->seq_out - c->recv_distinct;
            }
        for (unsigned k = 0; k < w->notes_n; k++)
            fprintf(stderr, "stanzad-bench: %s\n", w->notes[k]);
        if (w->notes_dropped)
            fprintf(stderr, "stanzad-bench: (thread %u: %u more problems not shown)\n", i,
                    w->notes_dropped);
    }
}

static void us_fields(char *out, size_t cap, const char *prefix, const struct hist *h)
{
    snprintf(out, cap, "%sp50_us=%llu %sp90_us=%llu %sp99_us=%llu %smax_us=%llu", prefix,
             (unsigned long long)hist_percentile(h, 0.50), prefix,
             (unsigned long long)hist_percentile(h, 0.90), prefix,
             (unsigned long long)hist_percentile(h, 0.99), prefix, (unsigned long long)h->max);
}

int main(int argc, char **argv)
{
    opt.host = "127.0.0.1";
    opt.port = 5222;
    opt.domain = "localhost";
    opt.user_prefix = "bench";
    opt.password = "bench";
    opt.clients = 100;
    opt.pairs = 100;
    opt.contacts = 200;
    opt.window = 10;
    opt.threads = 1;
    opt.concurrency = 50;
    opt.duration = 10;
    opt.warmup = -1;
    opt.drain = 5;
    opt.login_timeout = 30;
    opt.ramp_timeout = 120;
    opt.scram_cache = true;
    bool echo = false, have_workload = false, have_duration = false;

    int ch;
    while ((ch = getopt_long(argc, argv, "n:t:h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_WORKLOAD:
            have_workload = true;
            if (strcmp(optarg, "connect") == 0)
                opt.workload = WL_CONNECT;
            else if (strcmp(optarg, "login") == 0)
                opt.workload = WL_LOGIN;
            else if (strcmp(optarg, "chat") == 0)
                opt.workload = WL_CHAT;
            else if (strcmp(optarg, "presence") == 0)
                opt.workload = WL_PRESENCE;
            else
                die("--workload: expected connect, login, chat or presence, got '%s'", optarg);
            break;
        case O_HOST:
            opt.host = optarg;
            break;
        case O_PORT:
            opt.port = (int)parse_num("--port", optarg, 1, 65535);
            break;
        case O_DOMAIN:
            opt.domain = optarg;
            break;
        case O_TLS:
            opt.tls = true;
            break;
        case O_MECH:
            if (!mech_parse(optarg, &opt.mech))
                die("--mech: expected auto, PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256");
            break;
        case O_PREFIX:
            opt.user_prefix = optarg;
            break;
        case O_PASSWORD:
            opt.password = optarg;
            break;
        case O_FIRST:
            opt.first = (unsigned)parse_num("--first", optarg, 0, 100000000);
            break;
        case O_USERS:
            opt.users = (unsigned)parse_num("--users", optarg, 1, 10000000);
            break;
        case O_NOCACHE:
            opt.scram_cache = false;
            break;
        case 'n':
            opt.clients = (unsigned)parse_num("--clients", optarg, 1, 200000);
            break;
        case O_PAIRS:
            opt.pairs = (unsigned)parse_num("--pairs", optarg, 1, 100000);
            break;
        case O_CONTACTS:
            opt.contacts = (unsigned)parse_num("--contacts", optarg, 1, 100000);
            break;
        case O_WINDOW:
            opt.window = (unsigned)parse_num("--window", optarg, 1, 1024);
            break;
        case O_PEER:
            if (strcmp(optarg, "self") == 0)
                opt.peer_self = true;
            else if (strcmp(optarg, "pair") != 0)
                die("--peer: expected pair or self");
            break;
        case O_CONC:
            opt.concurrency = (unsigned)parse_num("--concurrency", optarg, 1, 10000);
            break;
        case O_COUNT:
            opt.count = (unsigned long)parse_num("--count", optarg, 1, 1e9);
            break;
        case 't':
            opt.threads = (unsigned)parse_num("--threads", optarg, 1, 64);
            break;
        case O_DURATION:
            opt.duration = parse_num("--duration", optarg, 0.1, 3600);
            have_duration = true;
            break;
        case O_WARMUP:
            opt.warmup = parse_num("--warmup", optarg, 0, 600);
            break;
        case O_DRAIN:
            opt.drain = parse_num("--drain", optarg, 0, 600);
            break;
        case O_LOGIN_TO:
            opt.login_timeout = parse_num("--login-timeout", optarg, 0.1, 600);
            break;
        case O_RAMP_TO:
            opt.ramp_timeout = parse_num("--ramp-timeout", optarg, 1, 3600);
            break;
        case O_PID:
            opt.pid = (int)parse_num("--pid", optarg, 1, 1e9);
            break;
        case O_ECHO:
            echo = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "stanzad-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (echo)
        return echo_server_main(opt.host, opt.port, opt.domain,
                                have_duration ? opt.duration : 3600);
    if (!have_workload) {
        usage(stderr);
        return 2;
    }
    const char *why = NULL;
    if (!resolve_loopback(opt.host, opt.port, &opt.addr, &opt.addr_len, &why))
        die("%s: %s", opt.host, why);
    if (strlen(opt.user_prefix) > 64 || strlen(opt.password) > 200 || strlen(opt.domain) > 200)
        die("user prefix, password or domain too long");
    if (strchr(opt.domain, '\'') || strchr(opt.domain, '<') || strchr(opt.domain, '&'))
        die("--domain: quotes, '<' and '&' are not supported");

    if (opt.workload == WL_CHAT)
        opt.clients = opt.peer_self ? opt.pairs : 2 * opt.pairs;
    if (opt.workload == WL_PRESENCE) {
        /* the hub and its contacts, one account each, all on one thread */
        opt.clients = opt.contacts + 1;
        opt.users = opt.clients;
        if (opt.threads > 1)
            fprintf(stderr, "stanzad-bench: presence: one thread (-t ignored)\n");
        opt.threads = 1;
        if (opt.count && !have_duration)
            opt.duration = 600; /* --count decides; the duration is only the upper bound */
        if (opt.count)
            opt.warmup = 0;
    }
    if (opt.warmup < 0)
        opt.warmup = opt.workload == WL_CHAT ? 2 : opt.workload == WL_PRESENCE ? 1 : 0;
    if (opt.workload != WL_CHAT && opt.workload != WL_PRESENCE)
        opt.warmup = 0;
    if (opt.workload == WL_LOGIN && opt.count && !have_duration)
        opt.duration = 3600; /* --count decides; the duration is only the upper bound */
    if (opt.users == 0)
        opt.users = opt.workload == WL_LOGIN ? opt.concurrency : opt.clients;
    if (opt.threads > (opt.workload == WL_LOGIN ? opt.concurrency : opt.clients))
        opt.threads = opt.workload == WL_LOGIN ? opt.concurrency : opt.clients;
    if (opt.workload == WL_CHAT && opt.threads > opt.pairs)
        opt.threads = opt.pairs;

    raise_nofile_limit();
    long nofile = sysconf(_SC_OPEN_MAX);
    unsigned fds = opt.workload == WL_LOGIN ? opt.concurrency : opt.clients;
    if (nofile > 0 && (long)fds + 16 + 2 * (long)opt.threads > nofile)
        die("%u connections need more open files than this process may have (%ld); use fewer "
            "clients or several generator processes (--first)",
            fds, nofile);

    if (gnutls_global_init() < 0 || gnutls_certificate_allocate_credentials(&tls_cred) < 0)
        die("GnuTLS initialisation failed");
    run.pid_tag = (unsigned)getpid();
    atomic_init(&run.login_claims, 0);
    atomic_init(&run.mech_used, MECH_AUTO);

    /* Clients to workers: chat pairs stay together on one worker. */
    unsigned nw = opt.threads;
    struct worker *ws = xcalloc(nw, sizeof *ws);
    for (unsigned i = 0; i < nw; i++) {
        struct worker *w = &ws[i];
        w->id = i;
        if (opt.workload == WL_LOGIN) {
            w->n = opt.concurrency / nw + (i < opt.concurrency % nw);
        } else if (opt.workload == WL_CHAT) {
            unsigned pairs = opt.pairs / nw + (i < opt.pairs % nw);
            w->n = opt.peer_self ? pairs : 2 * pairs;
        } else {
            w->n = opt.clients / nw + (i < opt.clients % nw);
        }
        w->clients = xcalloc(w->n, sizeof *w->clients);
        w->slot_limit = opt.concurrency / nw + (i < opt.concurrency % nw);
        if (w->slot_limit == 0)
            w->slot_limit = 1;
        worker_setup(w);
        if (opt.workload == WL_LOGIN)
            continue;
        unsigned per = opt.workload == WL_CHAT && !opt.peer_self ? 2 : 1;
        for (unsigned k = 0; k < w->n; k++) {
            struct client *c = &w->clients[k];
            /* Unit u (a pair, or a single client) of this worker is global unit i + u * nw. */
            unsigned unit = i + (k / per) * nw;
            c->idx = unit * per + k % per;
            c->account = opt.first + c->idx % opt.users;
            if (opt.workload == WL_CHAT)
                c->peer = per == 2 ? &w->clients[k ^ 1] : c;
        }
    }

    snprintf(watchdog_line, sizeof watchdog_line,
             "RESULT workload=%s status=fail reason=watchdog\n", workload_name(opt.workload));
    /* key warm-up and ramp-up, then the measured phase and the close */
    double bound = 2 * opt.ramp_timeout + opt.warmup + opt.duration + opt.drain +
                   opt.login_timeout + CLOSE_BOUND_S + 10;
    if (opt.workload == WL_PRESENCE) /* subscriptions, a second login, initial presence */
        bound += 2 * opt.ramp_timeout + 6 * opt.login_timeout + CLOSE_BOUND_S + 20;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)bound);

    if (opt.pid && read_rss_kb(opt.pid) < 0)
        die("--pid %d: cannot read /proc/%d/status", opt.pid, opt.pid);

    if (pthread_barrier_init(&run.barrier, NULL, nw + 1) != 0)
        die("pthread_barrier_init failed");
    bool warmup_keys = opt.workload != WL_LOGIN && opt.scram_cache && opt.mech != MECH_PLAIN;
    if (warmup_keys)
        fprintf(stderr, "stanzad-bench: key warm-up: each account logs in and out once\n");
    for (unsigned i = 0; i < nw; i++)
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
            die("pthread_create failed");
    pthread_barrier_wait(&run.barrier); /* key warm-up done, nothing connected */
    long rss_before = opt.pid ? read_rss_kb(opt.pid) : -1;
    uint64_t t_start = now_ns();
    if (opt.workload != WL_LOGIN)
        fprintf(stderr, "stanzad-bench: logging in %u clients (%u at a time, %u thread%s)\n",
                opt.clients, opt.concurrency, nw, nw == 1 ? "" : "s");
    pthread_barrier_wait(&run.barrier); /* log in */

    pthread_barrier_wait(&run.barrier); /* all logged in (or failed) */
    uint64_t t_ready = now_ns();
    uint64_t failed = 0, ready = 0;
    for (unsigned i = 0; i < nw; i++) {
        failed += ws[i].s.login_failed;
        ready += ws[i].s.logins;
    }
    double ramp_s = (double)(t_ready - t_start) / 1e9;
    if (opt.workload != WL_LOGIN) {
        fprintf(stderr, "stanzad-bench: %llu logged in, %llu failed, in %.2f s%s\n",
                (unsigned long long)ready, (unsigned long long)failed, ramp_s,
                opt.workload == WL_PRESENCE ? " (with the presence set-up)" : "");
        if (failed && opt.workload == WL_CHAT) {
            fprintf(stderr, "stanzad-bench: not starting the chat: logins failed\n");
            run.abort = true;
        }
        if (opt.workload == WL_PRESENCE && (failed || ws[0].pr.setup_failed)) {
            fprintf(stderr, "stanzad-bench: not starting the presence updates: the set-up "
                            "failed\n");
            run.abort = true;
        }
    }
    run.t0 = now_ns();
    run.warm_end = run.t0 + (uint64_t)(opt.warmup * 1e9);
    run.end = run.warm_end + (uint64_t)(opt.duration * 1e9);
    run.hard_end = run.end + (uint64_t)((opt.login_timeout + CLOSE_BOUND_S) * 1e9);
    if (!run.abort && opt.workload == WL_PRESENCE && opt.count)
        fprintf(stderr, "stanzad-bench: presence: measuring %lu updates (%.0f s at most)\n",
                opt.count, opt.duration);
    else if (!run.abort)
        fprintf(stderr, "stanzad-bench: %s: warm-up %.1f s, measuring %.1f s\n",
                workload_name(opt.workload), opt.warmup, opt.duration);
    uint64_t cpu_go = cpu_us();
    long long srv_go = opt.pid ? proc_cpu_ticks(opt.pid) : -1;
    pthread_barrier_wait(&run.barrier); /* go */

    pthread_barrier_wait(&run.barrier); /* measured phase over */
    uint64_t t_end = now_ns();
    long long srv_end = opt.pid ? proc_cpu_ticks(opt.pid) : -1;
    /* With --pid, the server's CPU use in the same time, as a share of one CPU. */
    char srv_cpu[64] = "";
    if (srv_go >= 0 && srv_end >= srv_go && t_end > run.t0 &&
        (opt.workload == WL_CHAT || opt.workload == WL_PRESENCE))
        snprintf(srv_cpu, sizeof srv_cpu, " pid=%d server_cpu_pct=%.0f", opt.pid,
                 (double)(srv_end - srv_go) * 100.0 / (double)sysconf(_SC_CLK_TCK) /
                     ((double)(t_end - run.t0) / 1e9));
    /* The generator's own CPU use in the measured phase (with its warm-up and drain), as a
     * share of one CPU: near 100 per thread, the generator rather than the server may be the
     * limit. */
    double gen_cpu_pct =
        t_end > run.t0 ? (double)(cpu_us() - cpu_go) * 1e5 / (double)(t_end - run.t0) : 0;
    long rss_after = opt.pid ? read_rss_kb(opt.pid) : -1;
    pthread_barrier_wait(&run.barrier); /* close */
    for (unsigned i = 0; i < nw; i++)
        pthread_join(ws[i].th, NULL);
    alarm(0);

    struct totals t;
    add_up(ws, nw, &t);
    uint64_t errors = t.s.bad + t.s.wrong_sender + t.s.bounced + t.s.close_timeouts;
    bool ok = t.s.login_failed == 0 && t.s.disconnects == 0 && errors == 0 && !run.abort;
    char lat[200];
    const char *mech = mech_name((enum mech)atomic_load(&run.mech_used));
    printf("RESULT workload=%s", workload_name(opt.workload));
    switch (opt.workload) {
    case WL_CHAT: {
        ok = ok && t.lost == 0 && t.s.dup == 0 && t.s.reordered == 0;
        us_fields(lat, sizeof lat, "", &t.lat_h);
        printf(" peer=%s pairs=%u clients=%u window=%u threads=%u tls=%d mech=%s warmup=%.1f "
               "duration=%.1f msgs=%llu msgs_per_s=%.0f %s sent=%llu received=%llu lost=%llu "
               "dup=%llu reordered=%llu errors=%llu login_failed=%llu disconnects=%llu "
               "gen_cpu_pct=%.0f%s",
               opt.peer_self ? "self" : "pair", opt.pairs, opt.clients, opt.window, nw, opt.tls,
               mech, opt.warmup, opt.duration, (unsigned long long)t.s.msgs,
               (double)t.s.msgs / opt.duration, lat, (unsigned long long)t.s.sent,
               (unsigned long long)t.s.received, (unsigned long long)t.lost,
               (unsigned long long)t.s.dup, (unsigned long long)t.s.reordered,
               (unsigned long long)errors, (unsigned long long)t.s.login_failed,
               (unsigned long long)t.s.disconnects, gen_cpu_pct, srv_cpu);
        break;
    }
    case WL_PRESENCE: {
        const struct presult *pr = &ws[0].pr;
        /* --count: from the first update to the last one received by every contact */
        double secs = opt.duration;
        if (opt.count)
            secs =
                pr->last_done > pr->first_send ? (double)(pr->last_done - pr->first_send) / 1e9 : 0;
        ok = ok && t.lost == 0 && t.s.dup == 0 && t.s.reordered == 0 && !pr->setup_failed &&
             pr->init_ns > 0 && t.s.msgs > 0 && (!opt.count || t.s.sent == opt.count);
        us_fields(lat, sizeof lat, "", &t.lat_h);
        printf(" contacts=%u window=%u threads=%u tls=%d mech=%s warmup=%.1f duration=%.3f "
               "updates=%llu updates_per_s=%.0f deliveries=%llu deliveries_per_s=%.0f %s "
               "init_us=%llu init_probes_us=%llu init_bcast_us=%llu init_extra=%llu "
               "setup_pairs=%u setup_resent=%u sent=%llu received=%llu lost=%llu dup=%llu "
               "reordered=%llu "
               "errors=%llu login_failed=%llu disconnects=%llu gen_cpu_pct=%.0f%s",
               opt.contacts, opt.window, nw, opt.tls, mech, opt.warmup, secs,
               (unsigned long long)pr->updates, secs > 0 ? (double)pr->updates / secs : 0,
               (unsigned long long)t.s.msgs, secs > 0 ? (double)t.s.msgs / secs : 0, lat,
               (unsigned long long)(pr->init_ns / 1000),
               (unsigned long long)(pr->init_probes_ns / 1000),
               (unsigned long long)(pr->init_bcast_ns / 1000), (unsigned long long)pr->init_extra,
               pr->setup_pairs, pr->setup_resent, (unsigned long long)t.s.sent,
               (unsigned long long)t.s.received, (unsigned long long)t.lost,
               (unsigned long long)t.s.dup, (unsigned long long)t.s.reordered,
               (unsigned long long)errors, (unsigned long long)t.s.login_failed,
               (unsigned long long)t.s.disconnects, gen_cpu_pct, srv_cpu);
        break;
    }
    case WL_CONNECT: {
        us_fields(lat, sizeof lat, "login_", &t.login_h);
        printf(" clients=%u ready=%llu threads=%u tls=%d mech=%s concurrency=%u duration=%.1f "
               "ramp_s=%.2f %s login_failed=%llu disconnects=%llu errors=%llu",
               opt.clients, (unsigned long long)t.s.logins, nw, opt.tls, mech, opt.concurrency,
               (double)(t_end - run.t0) / 1e9, ramp_s, lat, (unsigned long long)t.s.login_failed,
               (unsigned long long)t.s.disconnects, (unsigned long long)errors);
        if (opt.pid && rss_after >= 0 && t.s.logins > 0)
            printf(" pid=%d rss_before_kb=%ld rss_after_kb=%ld rss_per_conn_bytes=%.0f", opt.pid,
                   rss_before, rss_after,
                   (double)(rss_after - rss_before) * 1024.0 / (double)t.s.logins);
        break;
    }
    case WL_LOGIN: {
        double secs = opt.duration;
        if (opt.count && t.s.last_login_ns > run.t0 && atomic_load(&run.login_claims) >= opt.count)
            secs = (double)(t.s.last_login_ns - run.t0) / 1e9;
        us_fields(lat, sizeof lat, "", &t.login_h);
        printf(" concurrency=%u threads=%u tls=%d mech=%s duration=%.1f logins=%llu "
               "logins_per_s=%.0f %s login_failed=%llu errors=%llu",
               opt.concurrency, nw, opt.tls, mech, secs, (unsigned long long)t.s.logins_measured,
               (double)t.s.logins_measured / secs, lat, (unsigned long long)t.s.login_failed,
               (unsigned long long)errors);
        break;
    }
    default:
        break;
    }
    printf(" status=%s\n", ok ? "ok" : "fail");
    fflush(stdout);

    for (unsigned i = 0; i < nw; i++)
        worker_cleanup(&ws[i]);
    free(ws);
    pthread_barrier_destroy(&run.barrier);
    gnutls_certificate_free_credentials(tls_cred);
    gnutls_global_deinit();
    return ok ? 0 : 1;
}
