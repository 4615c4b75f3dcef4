/* unit-sources: core/config.c core/jid.c core/mem.c core/log.c */
/*
 * Configuration loading: every value of a full file, the defaults of a minimal one, and one test
 * per class of error with the exact message, file and line. The files are in test/unit/data/
 * (config-*.conf) next to a throw-away certificate and keys (config-test*.{crt,key,pem}).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"
#include "unit.h"

static char err[8192];

static const char *data_dir(void)
{
    static char real[PATH_MAX];
    if (!real[0])
        UNIT_ASSERT(realpath(TEST_DATA_DIR, real) != NULL);
    return real;
}

static struct config *load(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", TEST_DATA_DIR, name);
    return config_load(path, err, sizeof err);
}

/* expected with "{F}" standing for the path of the file as given and "{D}" for the real path of
 * the data directory (the loader makes paths absolute through realpath). */
static void expect_errors(const char *name, const char *expected)
{
    char file[PATH_MAX], want[8192];
    snprintf(file, sizeof file, "%s/%s", TEST_DATA_DIR, name);
    size_t n = 0;
    for (const char *p = expected; *p && n + PATH_MAX < sizeof want;) {
        if (strncmp(p, "{F}", 3) == 0) {
            n += (size_t)snprintf(want + n, sizeof want - n, "%s", file);
            p += 3;
        } else if (strncmp(p, "{D}", 3) == 0) {
            n += (size_t)snprintf(want + n, sizeof want - n, "%s", data_dir());
            p += 3;
        } else {
            want[n++] = *p++;
        }
    }
    want[n] = '\0';

    struct config *c = config_load(file, err, sizeof err);
    if (c)
        config_free(&c);
    UNIT_ASSERT(c == NULL);
    UNIT_ASSERT_STR_EQ(err, want);
}

static char *in_data(const char *rel)
{
    static char buf[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    int n = snprintf(buf[i], sizeof buf[i], "%s/%s", data_dir(), rel);
    UNIT_ASSERT(n > 0 && (size_t)n < sizeof buf[i]);
    return buf[i];
}

static void test_full(void)
{
    struct config *c = load("config-full.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT_STR_EQ(c->path, TEST_DATA_DIR "/config-full.conf");
    UNIT_ASSERT_INT_EQ(c->workers, 4);
    UNIT_ASSERT_INT_EQ(config_worker_count(c), 4);
    UNIT_ASSERT_STR_EQ(c->data_dir, in_data("state"));
    UNIT_ASSERT_STR_EQ(c->pid_file, "/run/stanzad-test.pid");
    UNIT_ASSERT_STR_EQ(c->user, "root");
    UNIT_ASSERT_INT_EQ(c->log_level, LOGL_DEBUG);
    UNIT_ASSERT_STR_EQ(c->log_target, "syslog");
    UNIT_ASSERT_STR_EQ(c->db_conninfo, "host=/run/postgresql dbname=xmpp");
    UNIT_ASSERT_INT_EQ(c->db_connections, 4);
    UNIT_ASSERT_INT_EQ(c->db_timeout, 30);
    UNIT_ASSERT_STR_EQ(c->tls_priority, "NORMAL:-VERS-ALL:+VERS-TLS1.3");
    UNIT_ASSERT(!c->c2s_require_tls);
    UNIT_ASSERT_INT_EQ(c->max_stanza_size, 65536);
    UNIT_ASSERT_INT_EQ(c->connect_timeout, 30);
    UNIT_ASSERT_INT_EQ(c->idle_timeout, 600);
    UNIT_ASSERT_INT_EQ(c->max_connections_per_ip, 20);
    UNIT_ASSERT_INT_EQ(c->max_output_buffer, 2097152);
    UNIT_ASSERT_INT_EQ(c->auth_failure_delay, 1000);
    UNIT_ASSERT_INT_EQ(c->max_auth_failures, 0);
    UNIT_ASSERT_INT_EQ(c->conflict, CONFLICT_RANDOM);
    UNIT_ASSERT_INT_EQ(c->max_sessions_per_account, 1);

    UNIT_ASSERT_INT_EQ(c->n_listeners, 2);
    UNIT_ASSERT_INT_EQ(c->listeners[0].kind, LISTEN_C2S);
    UNIT_ASSERT_STR_EQ(c->listeners[0].address, "::1");
    UNIT_ASSERT_INT_EQ(c->listeners[0].port, 5222);
    UNIT_ASSERT_INT_EQ(c->listeners[0].tls, LISTEN_TLS_STARTTLS);
    UNIT_ASSERT_INT_EQ(c->listeners[1].kind, LISTEN_C2S);
    UNIT_ASSERT_STR_EQ(c->listeners[1].address, "*");
    UNIT_ASSERT_INT_EQ(c->listeners[1].port, 5223);
    UNIT_ASSERT_INT_EQ(c->listeners[1].tls, LISTEN_TLS_DIRECT);

    UNIT_ASSERT_INT_EQ(c->n_hosts, 2);
    UNIT_ASSERT_STR_EQ(c->hosts[0].name, "example.org"); /* prepared */
    UNIT_ASSERT_STR_EQ(c->hosts[0].certificate, in_data("config-test.crt"));
    UNIT_ASSERT_STR_EQ(c->hosts[0].key, in_data("config-test.key"));
    UNIT_ASSERT_STR_EQ(c->hosts[1].name, "localhost");

    UNIT_ASSERT_INT_EQ(c->n_modules, 2);
    UNIT_ASSERT_STR_EQ(c->modules[0], "roster");
    UNIT_ASSERT_STR_EQ(c->modules[1], "disco");
    UNIT_ASSERT(c->modules[2] == NULL);

    config_free(&c);
    UNIT_ASSERT(c == NULL);
    config_free(&c); /* NULL-safe */
}

static void test_minimal_defaults(void)
{
    struct config *c = load("config-minimal.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT_INT_EQ(c->workers, 0);
    UNIT_ASSERT_INT_EQ(config_worker_count(c), sysconf(_SC_NPROCESSORS_ONLN));
    UNIT_ASSERT_STR_EQ(c->data_dir, in_data("var"));
    UNIT_ASSERT(c->pid_file == NULL);
    UNIT_ASSERT(c->user == NULL);
    UNIT_ASSERT_INT_EQ(c->log_level, LOGL_INFO);
    UNIT_ASSERT_STR_EQ(c->log_target, "stderr");
    UNIT_ASSERT_STR_EQ(c->db_conninfo, "dbname=stanzad");
    UNIT_ASSERT_INT_EQ(c->db_connections, 2);
    UNIT_ASSERT_INT_EQ(c->db_timeout, 10);
    UNIT_ASSERT_STR_EQ(c->tls_priority, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
    UNIT_ASSERT(c->c2s_require_tls);
    UNIT_ASSERT_INT_EQ(c->max_stanza_size, 262144);
    UNIT_ASSERT_INT_EQ(c->connect_timeout, 60);
    UNIT_ASSERT_INT_EQ(c->idle_timeout, 0);
    UNIT_ASSERT_INT_EQ(c->max_connections_per_ip, 100);
    UNIT_ASSERT_INT_EQ(c->max_output_buffer, 1048576);
    UNIT_ASSERT_INT_EQ(c->auth_failure_delay, 500);
    UNIT_ASSERT_INT_EQ(c->max_auth_failures, 10);
    UNIT_ASSERT_INT_EQ(c->conflict, CONFLICT_REPLACE);
    UNIT_ASSERT_INT_EQ(c->max_sessions_per_account, 0);
    UNIT_ASSERT_INT_EQ(c->n_listeners, 1);
    UNIT_ASSERT_INT_EQ(c->listeners[0].kind, LISTEN_C2S);
    UNIT_ASSERT_STR_EQ(c->listeners[0].address, "127.0.0.1");
    UNIT_ASSERT_INT_EQ(c->listeners[0].port, 5222);
    UNIT_ASSERT_INT_EQ(c->listeners[0].tls, LISTEN_TLS_STARTTLS);
    UNIT_ASSERT_INT_EQ(c->n_hosts, 1);
    UNIT_ASSERT_INT_EQ(c->n_modules, 0);
    UNIT_ASSERT(c->modules != NULL && c->modules[0] == NULL);
    UNIT_ASSERT_STR_EQ(c->module_dir, STANZAD_MODULE_DIR);
    UNIT_ASSERT(c->module_settings == NULL);
    UNIT_ASSERT_INT_EQ(c->hosts[0].n_modules, 0);
    UNIT_ASSERT(c->hosts[0].modules != NULL && c->hosts[0].modules[0] == NULL);
    UNIT_ASSERT(c->hosts[0].module_settings == NULL);
    config_free(&c);
}

static void test_find_host(void)
{
    struct config *c = load("config-full.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    const struct config_host *h = config_find_host(c, "example.org");
    UNIT_ASSERT(h == &c->hosts[0]);
    UNIT_ASSERT(config_find_host(c, "EXAMPLE.org") == &c->hosts[0]);
    UNIT_ASSERT(config_find_host(c, "localhost") == &c->hosts[1]);
    UNIT_ASSERT(config_find_host(c, "example.com") == NULL);
    config_free(&c);
}

/* The libconfig tree stays available for settings read later (modules). */
static void test_tree_kept(void)
{
    struct config *c = load("config-full.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT(c->lc != NULL);
    int v = 0;
    UNIT_ASSERT(config_lookup_int(c->lc, "limits.idle_timeout", &v) == CONFIG_TRUE);
    UNIT_ASSERT_INT_EQ(v, 600);
    config_free(&c);
}

static void test_sizes_with_suffixes(void)
{
    struct config *c = load("config-sizes.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT_INT_EQ(c->max_stanza_size, 256 * 1024);
    UNIT_ASSERT_INT_EQ(c->max_output_buffer, 16 * 1024 * 1024);
    config_free(&c);
}

static void test_relative_paths(void)
{
    struct config *c = load("config-relative.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT_STR_EQ(c->data_dir, in_data("../var"));
    UNIT_ASSERT_STR_EQ(c->pid_file, in_data("run/stanzad.pid"));
    UNIT_ASSERT_STR_EQ(c->log_target, in_data("log/stanzad.log"));
    UNIT_ASSERT_STR_EQ(c->hosts[0].certificate, in_data("./config-test.crt"));
    UNIT_ASSERT_STR_EQ(c->hosts[0].key, in_data("config-test.key"));
    /* A relative socket directory in the connection string is made absolute too (libpq takes
     * only absolute ones for sockets); the string is rebuilt with libpq quoting. */
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "user='o\\'neil' dbname='stanzad' host='%s,/abs/socket'",
             in_data("pg/socket"));
    UNIT_ASSERT_STR_EQ(c->db_conninfo, want);
    config_free(&c);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    UNIT_ASSERT(in != NULL && out != NULL);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        UNIT_ASSERT(fwrite(buf, 1, n, out) == n);
    fclose(in);
    UNIT_ASSERT(fclose(out) == 0);
}

/* The shipped sample must stay loadable: it is copied into a scratch directory next to a var/
 * holding the test certificate under the names the sample uses. */
static void test_sample_config(void)
{
    char dir[] = "/tmp/stanzad-test-config-XXXXXX", p[4][PATH_MAX];
    UNIT_ASSERT(mkdtemp(dir) != NULL);
    snprintf(p[0], sizeof p[0], "%s/var", dir);
    snprintf(p[1], sizeof p[1], "%s/var/localhost.crt", dir);
    snprintf(p[2], sizeof p[2], "%s/var/localhost.key", dir);
    snprintf(p[3], sizeof p[3], "%s/stanzad.conf", dir);
    UNIT_ASSERT(mkdir(p[0], 0700) == 0);
    copy_file(TEST_DATA_DIR "/config-test.crt", p[1]);
    copy_file(TEST_DATA_DIR "/config-test.key", p[2]);
    copy_file(TEST_DATA_DIR "/../../../etc/stanzad.conf", p[3]);
    struct config *c = config_load(p[3], err, sizeof err);
    unlink(p[1]);
    unlink(p[2]);
    unlink(p[3]);
    rmdir(p[0]);
    rmdir(dir);
    if (!c)
        UNIT_FAIL("%s", err);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "dbname='stanzad' host='%s/var/pg/socket'", dir);
    UNIT_ASSERT_STR_EQ(c->db_conninfo, want);
    UNIT_ASSERT_STR_EQ(c->hosts[0].name, "localhost");
    UNIT_ASSERT_STR_EQ(c->hosts[0].certificate, p[1]);
    UNIT_ASSERT_INT_EQ(c->max_stanza_size, 262144);
    UNIT_ASSERT_INT_EQ(c->max_output_buffer, 1048576);
    UNIT_ASSERT_INT_EQ(c->n_listeners, 1);
    UNIT_ASSERT_INT_EQ(c->n_modules, 9);
    UNIT_ASSERT_STR_EQ(c->modules[0], "disco");
    UNIT_ASSERT_STR_EQ(c->modules[5], "roster");
    UNIT_ASSERT_STR_EQ(c->modules[8], "search");
    config_free(&c);
}

static void test_missing_file(void)
{
    expect_errors("config-does-not-exist.conf",
                  "{F}: cannot open configuration file: No such file or directory");
}

static void test_syntax_error(void)
{
    expect_errors("config-syntax.conf", "{F}:3: syntax error: syntax error");
}

static void test_unknown_keys(void)
{
    expect_errors("config-unknown.conf",
                  "{F}:2: limit: unknown key (did you mean 'limits'?)\n"
                  "{F}:4: limits.max_stanz_size: unknown key (did you mean 'max_stanza_size'?)\n"
                  "{F}:5: limits.frobnicate: unknown key\n"
                  "{F}:7: listen.[0].prot: unknown key (did you mean 'port'?)\n"
                  "{F}:9: extra: unknown key");
}

static void test_wrong_types(void)
{
    expect_errors(
        "config-type.conf",
        "{F}:1: storage.connections: expected an integer, got a float\n"
        "{F}:2: server: expected a group, got an integer\n"
        "{F}:3: tls.require_c2s: expected a boolean, got a string\n"
        "{F}:5: limits.connect_timeout: expected an integer, got a string\n"
        "{F}:6: limits.max_stanza_size: expected an integer or a size string, got a boolean\n"
        "{F}:7: limits.max_output_buffer: expected a size such as 262144, \"256K\" or \"16M\", "
        "got \"1.5M\"\n"
        "{F}:9: listen.[0]: expected a group, got a string\n"
        "{F}:9: listen.[1].port: expected an integer, got a string\n"
        "{F}:11: modules.[1]: expected a string, got an integer");
}

static void test_out_of_range(void)
{
    expect_errors(
        "config-range.conf",
        "{F}:1: storage.timeout: must be between 1 and 3600, got 0\n"
        "{F}:2: server.workers: must be between 0 and 256, got 300\n"
        "{F}:4: limits.max_stanza_size: must be between 1024 and 16777216, got 10\n"
        "{F}:5: limits.max_output_buffer: must be between 16384 and 268435456, got \"1K\" (1024)\n"
        "{F}:6: limits.idle_timeout: must be between 0 and 604800, got -1\n"
        "{F}:7: limits.auth_failure_delay: must be between 0 and 60000, got 60001\n"
        "{F}:9: listen.[1].port: must be between 1 and 65535, got 70000");
}

static void test_bad_enum(void)
{
    expect_errors("config-enum.conf",
                  "{F}:2: sessions.conflict: must be one of replace, refuse, random, got \"kick\"\n"
                  "{F}:3: log.level: must be one of error, warn, info, debug, got \"verbose\"\n"
                  "{F}:4: listen.[0].type: must be one of c2s, got \"s2s\"\n"
                  "{F}:4: listen.[0].tls: must be one of starttls, direct, got \"ssl\"");
}

/* Keys missing with their whole section are reported at line 1, the others at the line of the
 * group that should hold them. */
static void test_missing_required(void)
{
    expect_errors("config-missing.conf", "{F}:3: hosts.[0].key: required key is missing\n"
                                         "{F}:1: storage.conninfo: required key is missing\n"
                                         "{F}:1: listen: required key is missing");
    expect_errors("config-missing-inner.conf", "{F}:2: storage.conninfo: required key is missing\n"
                                               "{F}:5: listen: must have at least one entry\n"
                                               "{F}:6: hosts.[0].name: required key is missing");
}

static void test_certificate_missing(void)
{
    expect_errors("config-cert-missing.conf",
                  "{F}:4: hosts.[0].certificate: cannot read {D}/no-such-file.crt: No such file "
                  "or directory\n"
                  "{F}:5: hosts.[0].key: cannot read /nonexistent/no-such-file.key: No such file "
                  "or directory");
}

static void test_certificate_unreadable(void)
{
    expect_errors("config-cert-unreadable.conf",
                  "{F}:4: hosts.[0].certificate: cannot read {D}/.: Is a directory");

    /* Permissions do not stop root, so this half only runs for other users. */
    if (geteuid() == 0)
        return;
    char dir[] = "/tmp/stanzad-test-config-XXXXXX", conf[PATH_MAX], crt[PATH_MAX];
    UNIT_ASSERT(mkdtemp(dir) != NULL);
    snprintf(crt, sizeof crt, "%s/unreadable.crt", dir);
    snprintf(conf, sizeof conf, "%s/stanzad.conf", dir);
    FILE *f = fopen(crt, "w");
    UNIT_ASSERT(f != NULL);
    fclose(f);
    UNIT_ASSERT(chmod(crt, 0) == 0);
    f = fopen(conf, "w");
    UNIT_ASSERT(f != NULL);
    fprintf(f,
            "storage = { conninfo = \"dbname=x\"; };\n"
            "listen = ( { port = 5222; } );\n"
            "hosts = ( { name = \"localhost\"; certificate = \"unreadable.crt\";\n"
            "            key = \"%s\"; } );\n",
            in_data("config-test.key"));
    fclose(f);
    struct config *c = config_load(conf, err, sizeof err);
    char want[PATH_MAX * 3];
    snprintf(want, sizeof want, "%s:3: hosts.[0].certificate: cannot read %s: Permission denied",
             conf, crt);
    unlink(crt);
    unlink(conf);
    rmdir(dir);
    UNIT_ASSERT(c == NULL);
    UNIT_ASSERT_STR_EQ(err, want);
}

static void test_certificate_and_key_not_pem(void)
{
    expect_errors("config-cert-invalid.conf",
                  "{F}:4: hosts.[0].certificate: {D}/config-test-garbage.pem is not a valid PEM "
                  "certificate: no certificate found in it\n"
                  "{F}:5: hosts.[1].key: {D}/config-test-garbage.pem is not a valid PEM private "
                  "key: no private key found in it");
}

static void test_key_mismatch(void)
{
    expect_errors("config-cert-mismatch.conf",
                  "{F}:5: hosts.[0].key: {D}/config-test-other.key does not match the "
                  "certificate {D}/config-test.crt");
}

static void test_bad_priority(void)
{
    expect_errors("config-priority.conf",
                  "{F}:2: tls.priority: invalid GnuTLS priority string at offset 7 "
                  "(\"+VERS-TLS9.9\"): The request is invalid.");
}

static void test_listen_duplicates(void)
{
    expect_errors(
        "config-duplicates.conf",
        "{F}:9: listen.[6].address: must be an IPv4 or IPv6 address or \"*\", got \"localhost\"\n"
        "{F}:5: listen.[2]: 127.0.0.1 port 5222 is already used by listen.[0] at line 3\n"
        "{F}:6: listen.[3]: 0.0.0.0 port 5222 overlaps 127.0.0.1 port 5222 of listen.[0] at "
        "line 3\n"
        "{F}:8: listen.[5]: :: port 5223 overlaps * port 5223 of listen.[4] at line 7\n"
        "{F}:13: hosts.[1].name: duplicate host \"localhost\" (also hosts.[0] at line 12)");
}

static void test_bad_host_name(void)
{
    expect_errors("config-hostname.conf",
                  "{F}:4: hosts.[0].name: invalid domain name \"bad..name\": domainpart has an "
                  "empty label\n"
                  "{F}:5: hosts.[1].name: must not be empty");
}

static void test_several_errors(void)
{
    expect_errors("config-several.conf",
                  "{F}:1: server.user: no such user \"no-such-user-stanzad-test\"\n"
                  "{F}:2: storage.conninfo: invalid connection string: invalid connection "
                  "option \"bogus\"\n"
                  "{F}:3: limits.max_stanza_size: must be between 1024 and 16777216, got 10\n"
                  "{F}:4: sessions.conflict: must be one of replace, refuse, random, got \"kick\"\n"
                  "{F}:5: listen.[0].adress: unknown key (did you mean 'address'?)\n"
                  "{F}:6: hosts.[0].key: {D}/config-test-other.key does not match the "
                  "certificate {D}/config-test.crt\n"
                  "{F}:7: modules.[1]: module \"roster\" is listed twice\n"
                  "{F}:7: modules.[2]: must not be empty");
}

/* A file pulled in with @include is found in the configuration directory and named in full. */
static void test_include(void)
{
    expect_errors("config-include.conf",
                  "{D}/config-include-part.conf:3: hosts.[0].bogus: unknown key");
}

static void test_problem_limit(void)
{
    expect_errors("config-many.conf", "{F}:5: limits.k01: unknown key\n"
                                      "{F}:5: limits.k02: unknown key\n"
                                      "{F}:5: limits.k03: unknown key\n"
                                      "{F}:5: limits.k04: unknown key\n"
                                      "{F}:5: limits.k05: unknown key\n"
                                      "{F}:5: limits.k06: unknown key\n"
                                      "{F}:6: limits.k07: unknown key\n"
                                      "{F}:6: limits.k08: unknown key\n"
                                      "{F}:6: limits.k09: unknown key\n"
                                      "{F}:6: limits.k10: unknown key\n"
                                      "{F}: 2 more problems not shown");
}

/* A short buffer gets a truncated, terminated message and nothing written past it. */
static void test_short_error_buffer(void)
{
    char small[24];
    memset(small, 'x', sizeof small);
    struct config *c = config_load(TEST_DATA_DIR "/config-many.conf", small, sizeof small - 4);
    UNIT_ASSERT(c == NULL);
    UNIT_ASSERT_INT_EQ(strlen(small), sizeof small - 5);
    UNIT_ASSERT_MEM_EQ(small + sizeof small - 4, "xxxx", 4);
    UNIT_ASSERT(config_load(TEST_DATA_DIR "/config-many.conf", NULL, 0) == NULL);
}

/* Module lists (global and per host), server.module_dir, and module_settings kept as libconfig
 * settings with their lines for the loader. */
static void test_modules(void)
{
    struct config *c = load("config-modules.conf");
    if (!c)
        UNIT_FAIL("%s", err);
    UNIT_ASSERT_STR_EQ(c->module_dir, in_data("mods"));
    UNIT_ASSERT_INT_EQ(c->n_modules, 2);
    UNIT_ASSERT_STR_EQ(c->modules[0], "disco");
    UNIT_ASSERT_STR_EQ(c->modules[1], "ping");
    UNIT_ASSERT(c->modules[2] == NULL);

    UNIT_ASSERT_INT_EQ(c->hosts[0].n_modules, 0);
    UNIT_ASSERT(c->hosts[0].modules[0] == NULL);
    UNIT_ASSERT(c->hosts[0].module_settings == NULL);
    UNIT_ASSERT_INT_EQ(c->hosts[1].n_modules, 2); /* disco is global too: allowed */
    UNIT_ASSERT_STR_EQ(c->hosts[1].modules[0], "muc");
    UNIT_ASSERT_STR_EQ(c->hosts[1].modules[1], "disco");
    UNIT_ASSERT(c->hosts[1].modules[2] == NULL);

    const config_setting_t *top = c->module_settings;
    UNIT_ASSERT(top != NULL);
    UNIT_ASSERT_INT_EQ(config_setting_length(top), 2);
    const config_setting_t *ping = config_setting_get_member((config_setting_t *)top, "ping");
    UNIT_ASSERT(ping != NULL && config_setting_is_group(ping));
    const config_setting_t *hs = c->hosts[1].module_settings;
    UNIT_ASSERT(hs != NULL);
    const config_setting_t *iv = config_setting_lookup((config_setting_t *)hs, "ping.interval");
    UNIT_ASSERT(iv != NULL);
    UNIT_ASSERT_STR_EQ(config_setting_get_string(iv), "1m");

    /* The loader's problem lines start exactly like config_load's. */
    char where[PATH_MAX + 256], want[PATH_MAX + 256];
    config_where(c, iv, NULL, where, sizeof where);
    snprintf(want, sizeof want, "%s/config-modules.conf:9: hosts.[1].module_settings.ping.interval",
             TEST_DATA_DIR);
    UNIT_ASSERT_STR_EQ(where, want);
    config_where(c, ping, "timeout", where, sizeof where);
    snprintf(want, sizeof want, "%s/config-modules.conf:14: module_settings.ping.timeout",
             TEST_DATA_DIR);
    UNIT_ASSERT_STR_EQ(where, want);
    config_free(&c);
}

static void test_modules_wrong_shapes(void)
{
    expect_errors(
        "config-modules-bad.conf",
        "{F}:2: server.module_dir: expected a string, got an integer\n"
        "{F}:6: hosts.[0].modules: expected a list of strings, got a string\n"
        "{F}:7: hosts.[0].module_settings: expected a group, got a list\n"
        "{F}:9: hosts.[1].modules.[1]: invalid module name \"Bad-Name\": only a-z, 0-9 and _, "
        "at most 64 characters\n"
        "{F}:9: hosts.[1].modules.[2]: module \"ok\" is listed twice\n"
        "{F}:9: hosts.[1].modules.[3]: must not be empty\n"
        "{F}:10: hosts.[1].module_settings.ping: expected a group of settings for module "
        "\"ping\", got an integer\n"
        "{F}:12: modules.[0]: invalid module name \"../escape\": only a-z, 0-9 and _, at most "
        "64 characters\n"
        "{F}:12: modules.[1]: invalid module name "
        "\"x23456789012345678901234567890123456789012345678901234567890123456\": only a-z, 0-9 "
        "and _, at most 64 characters\n"
        "{F}:13: module_settings.roster: expected a group of settings for module \"roster\", got "
        "a string");
    expect_errors("config-modules-empty.conf",
                  "{F}:2: server.module_dir: must not be empty\n"
                  "{F}:5: module_settings: expected a group, got an integer");
}

static void test_module_names(void)
{
    UNIT_ASSERT(config_module_name_ok("disco"));
    UNIT_ASSERT(config_module_name_ok("a"));
    UNIT_ASSERT(config_module_name_ok("test_2"));
    UNIT_ASSERT(
        config_module_name_ok("a234567890123456789012345678901234567890123456789012345678901234"));
    UNIT_ASSERT(!config_module_name_ok(
        "a2345678901234567890123456789012345678901234567890123456789012345"));
    UNIT_ASSERT(!config_module_name_ok(""));
    UNIT_ASSERT(!config_module_name_ok("Disco"));
    UNIT_ASSERT(!config_module_name_ok("a-b"));
    UNIT_ASSERT(!config_module_name_ok("a/b"));
    UNIT_ASSERT(!config_module_name_ok(".."));
    UNIT_ASSERT(!config_module_name_ok("a.so"));
}

/* The helpers the loader shares. */
static void test_shared_helpers(void)
{
    long long v = 0;
    UNIT_ASSERT(config_parse_size("64K", &v));
    UNIT_ASSERT_INT_EQ(v, 65536);
    UNIT_ASSERT(!config_parse_size("64KB", &v));
    UNIT_ASSERT_INT_EQ(config_edit_distance("intervall", "interval"), 1);
    UNIT_ASSERT_INT_EQ(config_edit_distance("abc", "abc"), 0);
}

UNIT_MAIN(UNIT_TEST(test_full), UNIT_TEST(test_minimal_defaults), UNIT_TEST(test_find_host),
          UNIT_TEST(test_tree_kept), UNIT_TEST(test_sizes_with_suffixes),
          UNIT_TEST(test_relative_paths), UNIT_TEST(test_missing_file),
          UNIT_TEST(test_syntax_error), UNIT_TEST(test_unknown_keys), UNIT_TEST(test_wrong_types),
          UNIT_TEST(test_out_of_range), UNIT_TEST(test_bad_enum), UNIT_TEST(test_missing_required),
          UNIT_TEST(test_certificate_missing), UNIT_TEST(test_certificate_unreadable),
          UNIT_TEST(test_certificate_and_key_not_pem), UNIT_TEST(test_key_mismatch),
          UNIT_TEST(test_bad_priority), UNIT_TEST(test_listen_duplicates),
          UNIT_TEST(test_bad_host_name), UNIT_TEST(test_several_errors),
          UNIT_TEST(test_problem_limit), UNIT_TEST(test_short_error_buffer),
          UNIT_TEST(test_sample_config), UNIT_TEST(test_include), UNIT_TEST(test_modules),
          UNIT_TEST(test_modules_wrong_shapes), UNIT_TEST(test_module_names),
          UNIT_TEST(test_shared_helpers))
