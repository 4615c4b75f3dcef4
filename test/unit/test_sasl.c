/* unit-sources: core/sasl.c core/scram.c core/jid.c core/mem.c core/log.c */
/*
 * test_sasl.c — our SASL server side driven by Cyrus libsasl2's own client side in the same
 * process (scram and plain client plugins), with no network: mechanism lists, successful and
 * failed SCRAM (with and without channel binding) and PLAIN, unknown accounts, malformed input,
 * authorization identities, re-use of a connection, and what reaches the log.
 */
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>

#include "log.h"
#include "sasl.h"
#include "unit.h"

#define HOST "example.org"

static const unsigned char cb_ours[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char cb_other[32] = "0123456789abcdef0123456789abcdeX";

/* ------------------------------------------------------------------ accounts */

struct account {
    const char *name, *password;
    bool sha1, sha256;
};

static const struct account accounts[] = {
    {"alice", "wonderland", true, true},
    {"bob", "builder", true, false},
    {"carol", "c4rol!", false, true},
};

/* What the connection layer does after the peek: fetch the verifiers (none if unknown). */
static void give_credentials(struct sasl_conn *sc, const char *name)
{
    struct scram_verifier v[2];
    size_t n = 0;
    for (size_t i = 0; i < sizeof accounts / sizeof accounts[0]; i++) {
        if (strcmp(accounts[i].name, name) != 0)
            continue;
        if (accounts[i].sha256)
            UNIT_ASSERT_INT_EQ(
                scram_new_verifier(SCRAM_SHA_256, accounts[i].password, 4096, &v[n++]), 0);
        if (accounts[i].sha1)
            UNIT_ASSERT_INT_EQ(scram_new_verifier(SCRAM_SHA_1, accounts[i].password, 4096, &v[n++]),
                               0);
    }
    sasl_conn_set_credentials(sc, v, n);
}

/* ------------------------------------------------------------------ Cyrus client side */

struct client {
    sasl_conn_t *conn;
    const char *authname, *authzid, *password;
    sasl_secret_t *secret;
    sasl_callback_t cbs[4];
    sasl_channel_binding_t cb;
};

static int cl_simple(void *context, int id, const char **result, unsigned *len)
{
    struct client *cl = context;
    *result = id == SASL_CB_AUTHNAME ? cl->authname : (cl->authzid ? cl->authzid : "");
    if (len)
        *len = (unsigned)strlen(*result);
    return SASL_OK;
}

static int cl_pass(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
    struct client *cl = context;
    size_t n = strlen(cl->password);
    free(cl->secret);
    cl->secret = calloc(1, sizeof(sasl_secret_t) + n);
    cl->secret->len = n;
    memcpy(cl->secret->data, cl->password, n);
    *psecret = cl->secret;
    return SASL_OK;
}

#define CB(f) ((sasl_callback_ft)(void (*)(void))(f))

static void client_init(struct client *cl, const char *authname, const char *password,
                        const char *authzid, const unsigned char *cb_data)
{
    memset(cl, 0, sizeof *cl);
    cl->authname = authname;
    cl->password = password;
    cl->authzid = authzid;
    cl->cbs[0] = (sasl_callback_t){SASL_CB_AUTHNAME, CB(cl_simple), cl};
    cl->cbs[1] = (sasl_callback_t){SASL_CB_USER, CB(cl_simple), cl};
    cl->cbs[2] = (sasl_callback_t){SASL_CB_PASS, CB(cl_pass), cl};
    cl->cbs[3] = (sasl_callback_t){SASL_CB_LIST_END, NULL, NULL};
    UNIT_ASSERT_INT_EQ(
        sasl_client_new("xmpp", HOST, NULL, NULL, cl->cbs, SASL_SUCCESS_DATA, &cl->conn), SASL_OK);
    if (cb_data) {
        cl->cb = (sasl_channel_binding_t){"tls-exporter", 0, 32, cb_data};
        UNIT_ASSERT_INT_EQ(sasl_setprop(cl->conn, SASL_CHANNEL_BINDING, &cl->cb), SASL_OK);
    }
}

static void client_done(struct client *cl)
{
    sasl_dispose(&cl->conn);
    free(cl->secret);
    cl->secret = NULL;
}

/* ------------------------------------------------------------------ set-up */

static void setup(void)
{
    char err[256] = "";
    if (sasl_global_init(err, sizeof err) != 0)
        UNIT_FAIL("sasl_global_init: %s", err);
    UNIT_ASSERT_INT_EQ(sasl_client_init(NULL), SASL_OK);
}

static void teardown(void)
{
    sasl_client_done();
    sasl_global_done();
}

/* Peeks a response that must name an account; the name itself is not needed. */
static void peek_ok(struct sasl_conn *sc, const char *mech, const char *in, size_t len)
{
    char *name = sasl_peek_authcid(sc, mech, (const unsigned char *)in, len, NULL);
    UNIT_ASSERT(name != NULL);
    free(name);
}

/* ------------------------------------------------------------------ one exchange */

struct outcome {
    enum sasl_result result;
    const char *failure;
    int failed_at;        /* 0: peek, 1: start, 2+: step n-1 */
    char *username;       /* on success */
    bool server_verified; /* the client accepted the server's final message */
};

static struct outcome run(struct sasl_conn *sc, struct client *cl, const char *mech)
{
    struct outcome o = {SASLR_FAIL, NULL, 0, NULL, false};
    const char *cout = NULL, *chosen = NULL;
    unsigned coutlen = 0;
    int crc = sasl_client_start(cl->conn, mech, NULL, &cout, &coutlen, &chosen);
    if (crc != SASL_OK && crc != SASL_CONTINUE)
        UNIT_FAIL("client start for %s: %s", mech, sasl_errdetail(cl->conn));
    if (strchr(mech, ' ')) {
        /* The client chose from a list (and so signals channel-binding support with "y"). */
        mech = chosen;
    } else {
        /* libsasl2's client names the base mechanism even when it runs the -PLUS variant. */
        UNIT_ASSERT(chosen != NULL && strncmp(mech, chosen, strlen(chosen)) == 0);
    }

    char *name = sasl_peek_authcid(sc, mech, (const unsigned char *)cout, coutlen, &o.failure);
    if (name == NULL)
        return o;
    give_credentials(sc, name);
    free(name);

    const unsigned char *sout = NULL;
    size_t soutlen = 0;
    o.failed_at = 1;
    enum sasl_result r = sasl_conn_start(sc, mech, (const unsigned char *)cout, coutlen, &sout,
                                         &soutlen, &o.failure);
    while (r == SASLR_CONTINUE) {
        crc = sasl_client_step(cl->conn, (const char *)sout, (unsigned)soutlen, NULL, &cout,
                               &coutlen);
        if (crc != SASL_OK && crc != SASL_CONTINUE)
            UNIT_FAIL("client step for %s: %s", mech, sasl_errdetail(cl->conn));
        o.failed_at++;
        r = sasl_conn_step(sc, (const unsigned char *)cout, coutlen, &sout, &soutlen, &o.failure);
    }
    o.result = r;
    if (r == SASLR_OK) {
        o.failure = NULL;
        o.username = strdup(sasl_conn_username(sc));
        if (soutlen > 0) {
            crc = sasl_client_step(cl->conn, (const char *)sout, (unsigned)soutlen, NULL, &cout,
                                   &coutlen);
            o.server_verified = crc == SASL_OK;
        } else {
            o.server_verified = true; /* PLAIN: nothing to verify */
        }
    }
    return o;
}

static void expect_success(const char *mech, bool tls, bool server_cb, const char *authname,
                           const char *password, const char *authzid, const unsigned char *cl_cb,
                           const char *expect_user)
{
    struct sasl_conn *sc = sasl_conn_new(HOST, tls, server_cb ? "tls-exporter" : NULL,
                                         server_cb ? cb_ours : NULL, server_cb ? 32 : 0);
    UNIT_ASSERT(sc != NULL);
    struct client cl;
    client_init(&cl, authname, password, authzid, cl_cb);
    struct outcome o = run(sc, &cl, mech);
    if (o.result != SASLR_OK)
        UNIT_FAIL("%s as %s: failed with %s at %d", mech, authname, o.failure, o.failed_at);
    UNIT_ASSERT_STR_EQ(o.username, expect_user);
    UNIT_ASSERT(o.server_verified);
    free(o.username);
    client_done(&cl);
    sasl_conn_free(&sc);
    UNIT_ASSERT(sc == NULL);
}

static void expect_failure(const char *mech, bool tls, bool server_cb, const char *authname,
                           const char *password, const char *authzid, const unsigned char *cl_cb,
                           const char *failure, int failed_at)
{
    struct sasl_conn *sc = sasl_conn_new(HOST, tls, server_cb ? "tls-exporter" : NULL,
                                         server_cb ? cb_ours : NULL, server_cb ? 32 : 0);
    UNIT_ASSERT(sc != NULL);
    struct client cl;
    client_init(&cl, authname, password, authzid, cl_cb);
    struct outcome o = run(sc, &cl, mech);
    if (o.result != SASLR_FAIL)
        UNIT_FAIL("%s as %s/%s: expected %s, got success", mech, authname, password, failure);
    UNIT_ASSERT_STR_EQ(o.failure, failure);
    UNIT_ASSERT_INT_EQ(o.failed_at, failed_at);
    UNIT_ASSERT(sasl_conn_username(sc) == NULL);
    client_done(&cl);
    sasl_conn_free(&sc);
}

/* ------------------------------------------------------------------ tests */

static void expect_mechs(struct sasl_conn *sc, const char *const *want)
{
    const char *const *got = sasl_conn_mechanisms(sc);
    size_t i = 0;
    for (; want[i]; i++) {
        if (got[i] == NULL)
            UNIT_FAIL("mechanism %zu: expected %s, list ended", i, want[i]);
        UNIT_ASSERT_STR_EQ(got[i], want[i]);
    }
    if (got[i] != NULL)
        UNIT_FAIL("unexpected extra mechanism %s", got[i]);
}

static void test_mechanism_lists(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, false, NULL, NULL, 0);
    expect_mechs(sc, (const char *[]){"SCRAM-SHA-256", "SCRAM-SHA-1", NULL});
    UNIT_ASSERT(sasl_conn_cb_name(sc) == NULL);
    sasl_conn_free(&sc);

    sc = sasl_conn_new(HOST, true, NULL, NULL, 0);
    expect_mechs(sc, (const char *[]){"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", NULL});
    sasl_conn_free(&sc);

    sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
    expect_mechs(sc, (const char *[]){"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                      "SCRAM-SHA-1", "PLAIN", NULL});
    UNIT_ASSERT_STR_EQ(sasl_conn_cb_name(sc), "tls-exporter");
    sasl_conn_free(&sc);

    /* Channel binding without TLS is odd but keeps PLAIN out. */
    sc = sasl_conn_new(HOST, false, "tls-unique", cb_ours, 12);
    expect_mechs(sc, (const char *[]){"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                      "SCRAM-SHA-1", NULL});
    sasl_conn_free(&sc);

    /* An invalid host name gives no context. */
    UNIT_ASSERT(sasl_conn_new("exa mple.org", true, NULL, NULL, 0) == NULL);
    teardown();
}

static void test_scram_success(void)
{
    setup();
    expect_success("SCRAM-SHA-1", false, false, "alice", "wonderland", NULL, NULL, "alice");
    expect_success("SCRAM-SHA-256", false, false, "alice", "wonderland", NULL, NULL, "alice");
    expect_success("SCRAM-SHA-1", true, false, "bob", "builder", NULL, NULL, "bob");
    expect_success("SCRAM-SHA-256", true, false, "carol", "c4rol!", NULL, NULL, "carol");
    /* The name is prepared: the account is found and the result is the prepared localpart. */
    expect_success("SCRAM-SHA-256", true, false, "ALICE", "wonderland", NULL, NULL, "alice");
    teardown();
}

static void test_scram_plus_success(void)
{
    setup();
    expect_success("SCRAM-SHA-1-PLUS", true, true, "alice", "wonderland", NULL, cb_ours, "alice");
    expect_success("SCRAM-SHA-256-PLUS", true, true, "alice", "wonderland", NULL, cb_ours, "alice");
    /* Non-PLUS still works when the server has channel binding and the client has none. */
    expect_success("SCRAM-SHA-256", true, true, "alice", "wonderland", NULL, NULL, "alice");
    teardown();
}

static void test_scram_plus_mismatch(void)
{
    setup();
    expect_failure("SCRAM-SHA-256-PLUS", true, true, "alice", "wonderland", NULL, cb_other,
                   "not-authorized", 2);
    expect_failure("SCRAM-SHA-1-PLUS", true, true, "alice", "wonderland", NULL, cb_other,
                   "not-authorized", 2);
    /* Downgrade: a client that can bind ("y", it negotiates from a list without -PLUS, as if a
     * man in the middle had removed them) while the server does offer -PLUS. */
    expect_failure("SCRAM-SHA-256 PLAIN", true, true, "alice", "wonderland", NULL, cb_ours,
                   "not-authorized", 1);
    /* The same client against a server without channel binding is fine. */
    expect_success("SCRAM-SHA-256 PLAIN", true, false, "alice", "wonderland", NULL, cb_ours,
                   "alice");
    /* -PLUS is not offered without channel binding. */
    expect_failure("SCRAM-SHA-256-PLUS", true, false, "alice", "wonderland", NULL, cb_ours,
                   "invalid-mechanism", 0);
    teardown();
}

/* Channel-binding negotiation failures are flagged as such (not counted as password guesses);
 * a wrong proof is not. */
static void test_binding_failure_flag(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
    const unsigned char *out;
    size_t outlen;
    const char *failure = NULL;
    static const char unique[] = "p=tls-unique,,n=alice,r=abcdefgh";
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-256-PLUS", (const unsigned char *)unique,
                                       strlen(unique), &out, &outlen, &failure),
                       SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(failure, "not-authorized");
    UNIT_ASSERT(sasl_conn_binding_failure(sc));
    static const char yflag[] = "y,,n=alice,r=abcdefgh";
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-1", (const unsigned char *)yflag,
                                       strlen(yflag), &out, &outlen, &failure),
                       SASLR_FAIL);
    UNIT_ASSERT(sasl_conn_binding_failure(sc));
    static const char good[] = "p=tls-exporter,,n=alice,r=abcdefgh";
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-256-PLUS", (const unsigned char *)good,
                                       strlen(good), &out, &outlen, &failure),
                       SASLR_CONTINUE);
    UNIT_ASSERT(!sasl_conn_binding_failure(sc));
    sasl_conn_free(&sc);
    teardown();
}

static void test_scram_wrong_password(void)
{
    setup();
    expect_failure("SCRAM-SHA-1", true, false, "alice", "wonderlanD", NULL, NULL, "not-authorized",
                   2);
    expect_failure("SCRAM-SHA-256", true, false, "alice", "", NULL, NULL, "not-authorized", 2);
    expect_failure("SCRAM-SHA-256-PLUS", true, true, "alice", "x", NULL, cb_ours, "not-authorized",
                   2);
    teardown();
}

/* Reads the salt and iteration count of a server-first-message. */
static void server_first_of(const char *mech, const char *user, char *out, size_t outlen)
{
    struct sasl_conn *sc = sasl_conn_new(HOST, true, NULL, NULL, 0);
    char cf[128];
    snprintf(cf, sizeof cf, "n,,n=%s,r=abcdefghijklmnop", user);
    peek_ok(sc, mech, cf, strlen(cf));
    give_credentials(sc, user);
    const unsigned char *sout = NULL;
    size_t soutlen = 0;
    const char *failure = NULL;
    UNIT_ASSERT_INT_EQ(
        sasl_conn_start(sc, mech, (const unsigned char *)cf, strlen(cf), &sout, &soutlen, &failure),
        SASLR_CONTINUE);
    /* Skip r=<nonce>, keep ",s=...,i=..." */
    const char *s = memchr(sout, ',', soutlen);
    UNIT_ASSERT(s != NULL);
    snprintf(out, outlen, "%.*s", (int)(soutlen - (size_t)(s - (const char *)sout)), s);
    sasl_conn_free(&sc);
}

static void test_unknown_user(void)
{
    setup();
    /* The exchange goes on past the first message and fails at the proof, like a wrong
     * password, with the same condition. */
    expect_failure("SCRAM-SHA-1", true, false, "nobody", "x", NULL, NULL, "not-authorized", 2);
    expect_failure("SCRAM-SHA-256", true, false, "nobody", "x", NULL, NULL, "not-authorized", 2);
    expect_failure("SCRAM-SHA-256-PLUS", true, true, "nobody", "x", NULL, cb_ours, "not-authorized",
                   2);
    /* An account without a verifier for the hash asked for behaves the same. */
    expect_failure("SCRAM-SHA-256", true, false, "bob", "builder", NULL, NULL, "not-authorized", 2);
    expect_failure("SCRAM-SHA-1", true, false, "carol", "c4rol!", NULL, NULL, "not-authorized", 2);

    /* The decoy salt is stable per name, differs between names and hashes, and looks like a
     * real one (16 bytes, 4096 iterations). */
    char a1[128], a2[128], b[128], c[128];
    server_first_of("SCRAM-SHA-256", "nobody", a1, sizeof a1);
    server_first_of("SCRAM-SHA-256", "nobody", a2, sizeof a2);
    server_first_of("SCRAM-SHA-256", "somebody", b, sizeof b);
    server_first_of("SCRAM-SHA-1", "nobody", c, sizeof c);
    UNIT_ASSERT_STR_EQ(a1, a2);
    UNIT_ASSERT(strcmp(a1, b) != 0);
    UNIT_ASSERT(strcmp(a1, c) != 0);
    UNIT_ASSERT(strncmp(a1, ",s=", 3) == 0);
    UNIT_ASSERT_INT_EQ(strlen(a1), strlen(",s=") + 24 + strlen(",i=4096"));
    UNIT_ASSERT(strcmp(a1 + strlen(a1) - 7, ",i=4096") == 0);
    /* A real account's salt is its own. */
    char r[128];
    server_first_of("SCRAM-SHA-256", "alice", r, sizeof r);
    UNIT_ASSERT_INT_EQ(strlen(r), strlen(a1));
    teardown();
}

static void test_plain(void)
{
    setup();
    expect_success("PLAIN", true, false, "alice", "wonderland", NULL, NULL, "alice");
    expect_success("PLAIN", true, false, "bob", "builder", NULL, NULL, "bob");
    expect_success("PLAIN", true, true, "carol", "c4rol!", NULL, NULL, "carol");
    expect_success("PLAIN", true, false, "Alice", "wonderland", NULL, NULL, "alice");
    expect_failure("PLAIN", true, false, "alice", "wonderlan", NULL, NULL, "not-authorized", 1);
    expect_failure("PLAIN", true, false, "nobody", "wonderland", NULL, NULL, "not-authorized", 1);

    /* Never without TLS: not offered, and refused as such if tried. */
    struct sasl_conn *sc = sasl_conn_new(HOST, false, NULL, NULL, 0);
    static const char resp[] = "\0alice\0wonderland";
    const char *failure = NULL;
    UNIT_ASSERT(sasl_peek_authcid(sc, "PLAIN", (const unsigned char *)resp, sizeof resp - 1,
                                  &failure) == NULL);
    UNIT_ASSERT_STR_EQ(failure, "encryption-required");
    const unsigned char *out = NULL;
    size_t outlen = 0;
    failure = NULL;
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "PLAIN", (const unsigned char *)resp, sizeof resp - 1,
                                       &out, &outlen, &failure),
                       SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(failure, "encryption-required");
    sasl_conn_free(&sc);
    teardown();
}

static void test_authzid(void)
{
    setup();
    /* The user's own bare JID is fine (any case), another one is not. */
    expect_success("SCRAM-SHA-256", true, false, "alice", "wonderland", "alice@example.org", NULL,
                   "alice");
    expect_success("SCRAM-SHA-1", true, false, "alice", "wonderland", "Alice@Example.ORG", NULL,
                   "alice");
    expect_success("PLAIN", true, false, "alice", "wonderland", "alice@example.org", NULL, "alice");
    expect_failure("SCRAM-SHA-256", true, false, "alice", "wonderland", "bob@example.org", NULL,
                   "invalid-authzid", 2);
    expect_failure("PLAIN", true, false, "alice", "wonderland", "bob@example.org", NULL,
                   "invalid-authzid", 1);
    /* Not a bare JID with a localpart. */
    expect_failure("SCRAM-SHA-256", true, false, "alice", "wonderland", "example.org", NULL,
                   "invalid-authzid", 1);
    expect_failure("SCRAM-SHA-256", true, false, "alice", "wonderland", "alice@example.org/res",
                   NULL, "invalid-authzid", 1);
    expect_failure("PLAIN", true, false, "alice", "wonderland", "alice", NULL, "invalid-authzid",
                   1);
    expect_failure("SCRAM-SHA-1", true, false, "alice", "wonderland", "alice", NULL,
                   "invalid-authzid", 1);
    teardown();
}

/* Peek and start on hand-made initial responses. */
static const char *peek_failure(struct sasl_conn *sc, const char *mech, const char *in, size_t len)
{
    const char *failure = NULL;
    char *name = sasl_peek_authcid(sc, mech, (const unsigned char *)in, len, &failure);
    if (name) {
        free(name);
        return NULL;
    }
    return failure;
}

static const char *start_failure(struct sasl_conn *sc, const char *mech, const char *in, size_t len)
{
    const unsigned char *out = NULL;
    size_t outlen = 0;
    const char *failure = NULL;
    enum sasl_result r =
        sasl_conn_start(sc, mech, (const unsigned char *)in, len, &out, &outlen, &failure);
    return r == SASLR_FAIL ? failure : NULL;
}

#define MALFORMED(mech, s)                                                                         \
    do {                                                                                           \
        UNIT_ASSERT_STR_EQ(peek_failure(sc, mech, s, sizeof(s) - 1), "malformed-request");         \
        UNIT_ASSERT_STR_EQ(start_failure(sc, mech, s, sizeof(s) - 1), "malformed-request");        \
    } while (0)

static void test_malformed(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
    MALFORMED("SCRAM-SHA-256", "");
    MALFORMED("SCRAM-SHA-256", "n,,");
    MALFORMED("SCRAM-SHA-256", "x,,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=alice");
    MALFORMED("SCRAM-SHA-256", "n,,n=alice,");
    MALFORMED("SCRAM-SHA-256", "n,,n=alice,x=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,r=abcdef,n=alice");
    MALFORMED("SCRAM-SHA-256", "n,,m=ext,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=al=2Xice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=alice=,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=alice=2,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,a=al=ice,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "n,,n=ali\0ce,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "p=,,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256", "p=tls exporter,,n=alice,r=abcdef");
    /* Channel-binding flag must fit the mechanism: 'p' only with -PLUS, and -PLUS needs 'p'. */
    MALFORMED("SCRAM-SHA-256", "p=tls-exporter,,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256-PLUS", "n,,n=alice,r=abcdef");
    MALFORMED("SCRAM-SHA-256-PLUS", "y,,n=alice,r=abcdef");
    MALFORMED("PLAIN", "");
    MALFORMED("PLAIN", "alice");
    MALFORMED("PLAIN", "\0alice");
    MALFORMED("PLAIN", "\0alice\0");
    MALFORMED("PLAIN", "\0\0wonderland");
    MALFORMED("PLAIN", "\0alice\0wonder\0land");
    /* Well-formed but no account can have this name. */
    UNIT_ASSERT_STR_EQ(peek_failure(sc, "SCRAM-SHA-256", "n,,n=al ice,r=abcdef", 20),
                       "not-authorized");
    UNIT_ASSERT_STR_EQ(peek_failure(sc, "PLAIN", "\0al@ice\0pw", 10), "not-authorized");
    /* Unknown or unoffered mechanisms. */
    UNIT_ASSERT_STR_EQ(peek_failure(sc, "DIGEST-MD5", "x", 1), "invalid-mechanism");
    UNIT_ASSERT_STR_EQ(start_failure(sc, "DIGEST-MD5", "x", 1), "invalid-mechanism");
    UNIT_ASSERT_STR_EQ(peek_failure(sc, "scram-sha-1", "n,,n=a,r=b", 10), "invalid-mechanism");
    UNIT_ASSERT_STR_EQ(peek_failure(sc, NULL, "x", 1), "invalid-mechanism");
    UNIT_ASSERT_STR_EQ(start_failure(sc, "ANONYMOUS", NULL, 0), "invalid-mechanism");
    /* A step without a start. */
    const unsigned char *out = NULL;
    size_t outlen = 0;
    const char *failure = NULL;
    struct sasl_conn *fresh = sasl_conn_new(HOST, true, NULL, NULL, 0);
    UNIT_ASSERT_INT_EQ(
        sasl_conn_step(fresh, (const unsigned char *)"x", 1, &out, &outlen, &failure), SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(failure, "malformed-request");
    sasl_conn_free(&fresh);
    sasl_conn_free(&sc);
    teardown();
}

static void test_malformed_final(void)
{
    setup();
    /* A valid first message, then garbage: the exchange fails as malformed. */
    static const char *const finals[] = {"", "c=biws", "x=biws,r=abc,p=xxxx", "c=bi$s,r=a,p=b",
                                         "c=biws,r=wrongnonce,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA="};
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
        struct sasl_conn *sc = sasl_conn_new(HOST, true, NULL, NULL, 0);
        static const char cf[] = "n,,n=alice,r=abcdefghijklmnop";
        peek_ok(sc, "SCRAM-SHA-1", cf, sizeof cf - 1);
        give_credentials(sc, "alice");
        const unsigned char *out = NULL;
        size_t outlen = 0;
        const char *failure = NULL;
        UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-1", (const unsigned char *)cf,
                                           sizeof cf - 1, &out, &outlen, &failure),
                           SASLR_CONTINUE);
        UNIT_ASSERT_INT_EQ(sasl_conn_step(sc, (const unsigned char *)finals[i], strlen(finals[i]),
                                          &out, &outlen, &failure),
                           SASLR_FAIL);
        UNIT_ASSERT_STR_EQ(failure, "malformed-request");
        sasl_conn_free(&sc);
    }
    teardown();
}

static void test_peek_decoding(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
    const char *failure = NULL;
    static const char a[] = "n,,n=Jo=2Cn=3Dx,r=abc";
    char *name =
        sasl_peek_authcid(sc, "SCRAM-SHA-1", (const unsigned char *)a, sizeof a - 1, &failure);
    UNIT_ASSERT_STR_EQ(name, "jo,n=x");
    free(name);
    static const char b[] = "p=tls-exporter,a=x=2Cy@example.org,n==3D=3D,r=abc,e=ext";
    name = sasl_peek_authcid(sc, "SCRAM-SHA-256-PLUS", (const unsigned char *)b, sizeof b - 1,
                             &failure);
    UNIT_ASSERT_STR_EQ(name, "==");
    free(name);
    static const char c[] = "y,,n=\xce\xa3,r=abc";
    name = sasl_peek_authcid(sc, "SCRAM-SHA-256", (const unsigned char *)c, sizeof c - 1, &failure);
    UNIT_ASSERT_STR_EQ(name, "\xcf\x83");
    free(name);
    static const char d[] = "authz\0BOB\0secret";
    name = sasl_peek_authcid(sc, "PLAIN", (const unsigned char *)d, sizeof d - 1, &failure);
    UNIT_ASSERT_STR_EQ(name, "bob");
    free(name);
    sasl_conn_free(&sc);
    teardown();
}

/* The connection layer may send an empty challenge first when <auth/> had no initial data. */
static void test_no_initial_response(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, true, NULL, NULL, 0);
    struct client cl;
    client_init(&cl, "alice", "wonderland", NULL, NULL);
    const char *cout = NULL, *chosen = NULL;
    unsigned coutlen = 0;
    UNIT_ASSERT_INT_EQ(sasl_client_start(cl.conn, "SCRAM-SHA-256", NULL, &cout, &coutlen, &chosen),
                       SASL_CONTINUE);
    char *name = sasl_peek_authcid(sc, "SCRAM-SHA-256", (const unsigned char *)cout, coutlen, NULL);
    UNIT_ASSERT_STR_EQ(name, "alice");
    give_credentials(sc, name);
    free(name);
    const unsigned char *sout = NULL;
    size_t soutlen = 0;
    const char *failure = NULL;
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-256", NULL, 0, &sout, &soutlen, &failure),
                       SASLR_CONTINUE);
    UNIT_ASSERT_INT_EQ(soutlen, 0);
    enum sasl_result r =
        sasl_conn_step(sc, (const unsigned char *)cout, coutlen, &sout, &soutlen, &failure);
    UNIT_ASSERT_INT_EQ(r, SASLR_CONTINUE);
    UNIT_ASSERT_INT_EQ(
        sasl_client_step(cl.conn, (const char *)sout, (unsigned)soutlen, NULL, &cout, &coutlen),
        SASL_CONTINUE);
    r = sasl_conn_step(sc, (const unsigned char *)cout, coutlen, &sout, &soutlen, &failure);
    UNIT_ASSERT_INT_EQ(r, SASLR_OK);
    UNIT_ASSERT_STR_EQ(sasl_conn_username(sc), "alice");
    /* The exchange is over: a further step is refused. */
    UNIT_ASSERT_INT_EQ(sasl_conn_step(sc, (const unsigned char *)"x", 1, &sout, &soutlen, &failure),
                       SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(failure, "malformed-request");
    client_done(&cl);

    /* PLAIN the same way; its first message gets the same checks as an initial response. */
    static const char good[] = "\0Alice\0wonderland", empty_pw[] = "\0alice\0",
                      other[] = "bob@example.org\0alice\0wonderland";
    for (int i = 0; i < 3; i++) {
        const char *msg = i == 0 ? good : i == 1 ? empty_pw : other;
        size_t len = i == 0 ? sizeof good - 1 : i == 1 ? sizeof empty_pw - 1 : sizeof other - 1;
        UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "PLAIN", NULL, 0, &sout, &soutlen, &failure),
                           SASLR_CONTINUE);
        UNIT_ASSERT_INT_EQ(soutlen, 0);
        name = sasl_peek_authcid(sc, "PLAIN", (const unsigned char *)msg, len, NULL);
        if (name) {
            give_credentials(sc, name);
            free(name);
        }
        r = sasl_conn_step(sc, (const unsigned char *)msg, len, &sout, &soutlen, &failure);
        if (i == 0) {
            UNIT_ASSERT_INT_EQ(r, SASLR_OK);
            UNIT_ASSERT_STR_EQ(sasl_conn_username(sc), "alice");
        } else {
            UNIT_ASSERT_INT_EQ(r, SASLR_FAIL);
            UNIT_ASSERT_STR_EQ(failure, i == 1 ? "malformed-request" : "invalid-authzid");
        }
    }
    sasl_conn_free(&sc);
    teardown();
}

/* A failed attempt, then another on the same context: nothing of the first one carries over. */
static void test_reuse_after_failure(void)
{
    setup();
    struct sasl_conn *sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
    struct client cl;

    client_init(&cl, "alice", "nope", NULL, NULL);
    struct outcome o = run(sc, &cl, "SCRAM-SHA-256");
    UNIT_ASSERT_INT_EQ(o.result, SASLR_FAIL);
    client_done(&cl);

    /* Bob with Alice's password must not be checked against Alice's verifier. */
    client_init(&cl, "bob", "wonderland", NULL, NULL);
    o = run(sc, &cl, "SCRAM-SHA-1");
    UNIT_ASSERT_INT_EQ(o.result, SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(o.failure, "not-authorized");
    client_done(&cl);

    client_init(&cl, "alice", "wonderland", NULL, NULL);
    o = run(sc, &cl, "PLAIN");
    UNIT_ASSERT_INT_EQ(o.result, SASLR_OK);
    UNIT_ASSERT_STR_EQ(o.username, "alice");
    free(o.username);
    client_done(&cl);

    /* Even after a success, a new exchange starts afresh. */
    client_init(&cl, "carol", "c4rol!", NULL, cb_ours);
    o = run(sc, &cl, "SCRAM-SHA-256-PLUS");
    UNIT_ASSERT_INT_EQ(o.result, SASLR_OK);
    UNIT_ASSERT_STR_EQ(o.username, "carol");
    free(o.username);
    client_done(&cl);

    /* A step after a failure is refused rather than handed to libsasl2. */
    client_init(&cl, "carol", "wrong", NULL, cb_ours);
    o = run(sc, &cl, "SCRAM-SHA-256-PLUS");
    UNIT_ASSERT_INT_EQ(o.result, SASLR_FAIL);
    client_done(&cl);
    const unsigned char *dummy = NULL;
    size_t dummylen = 0;
    const char *why = NULL;
    UNIT_ASSERT_INT_EQ(
        sasl_conn_step(sc, (const unsigned char *)"c=biws", 6, &dummy, &dummylen, &why),
        SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(why, "malformed-request");

    /* Credentials fetched for the name peeked are not used for another name started with. */
    client_init(&cl, "alice", "wonderland", NULL, NULL);
    const char *cout = NULL, *chosen = NULL;
    unsigned coutlen = 0;
    UNIT_ASSERT_INT_EQ(sasl_client_start(cl.conn, "SCRAM-SHA-1", NULL, &cout, &coutlen, &chosen),
                       SASL_CONTINUE);
    peek_ok(sc, "SCRAM-SHA-1", "n,,n=bob,r=x", 12);
    struct scram_verifier v;
    UNIT_ASSERT_INT_EQ(scram_new_verifier(SCRAM_SHA_1, "wonderland", 4096, &v), 0);
    sasl_conn_set_credentials(sc, &v, 1); /* bob's, with alice's password */
    const unsigned char *sout = NULL;
    size_t soutlen = 0;
    const char *failure = NULL;
    UNIT_ASSERT_INT_EQ(sasl_conn_start(sc, "SCRAM-SHA-1", (const unsigned char *)cout, coutlen,
                                       &sout, &soutlen, &failure),
                       SASLR_CONTINUE);
    UNIT_ASSERT_INT_EQ(
        sasl_client_step(cl.conn, (const char *)sout, (unsigned)soutlen, NULL, &cout, &coutlen),
        SASL_CONTINUE);
    UNIT_ASSERT_INT_EQ(
        sasl_conn_step(sc, (const unsigned char *)cout, coutlen, &sout, &soutlen, &failure),
        SASLR_FAIL);
    UNIT_ASSERT_STR_EQ(failure, "not-authorized");
    client_done(&cl);
    sasl_conn_free(&sc);
    teardown();
}

static void test_log_has_no_secrets(void)
{
    char path[] = "/tmp/stanzad-test-sasl-log-XXXXXX";
    int fd = mkstemp(path);
    UNIT_ASSERT(fd >= 0);
    close(fd);
    UNIT_ASSERT_INT_EQ(log_open(path, LOGL_DEBUG), 0);
    setup();
    expect_failure("PLAIN", true, false, "alice", "Sekr1tPassw0rd", NULL, NULL, "not-authorized",
                   1);
    expect_failure("PLAIN", true, false, "nobody", "Sekr1tPassw0rd", NULL, NULL, "not-authorized",
                   1);
    expect_failure("SCRAM-SHA-256", true, false, "alice", "Sekr1tPassw0rd", NULL, NULL,
                   "not-authorized", 2);
    expect_success("PLAIN", true, false, "alice", "wonderland", NULL, NULL, "alice");
    teardown();
    log_close();
    FILE *f = fopen(path, "r");
    UNIT_ASSERT(f != NULL);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (strstr(line, "Sekr1tPassw0rd") || strstr(line, "wonderland"))
            UNIT_FAIL("password in log: %s", line);
    }
    fclose(f);
    unlink(path);
    UNIT_ASSERT(lines > 0); /* failures are logged at debug level */
}

/* Worker threads authenticate at the same time, each on its own contexts. */
static void *auth_thread(void *arg)
{
    int id = (int)(long)arg;
    for (int i = 0; i < 6; i++) {
        bool good = (i + id) % 2 == 0;
        const char *mech = i % 3 == 0 ? "SCRAM-SHA-1-PLUS" : i % 3 == 1 ? "SCRAM-SHA-256" : "PLAIN";
        struct sasl_conn *sc = sasl_conn_new(HOST, true, "tls-exporter", cb_ours, 32);
        struct client cl;
        client_init(&cl, good ? "alice" : "nobody", "wonderland", NULL, cb_ours);
        struct outcome o = run(sc, &cl, mech);
        if ((o.result == SASLR_OK) != good)
            UNIT_FAIL("thread %d round %d (%s): unexpected %s", id, i, mech,
                      o.failure ? o.failure : "success");
        if (good)
            UNIT_ASSERT_STR_EQ(o.username, "alice");
        free(o.username);
        client_done(&cl);
        sasl_conn_free(&sc);
    }
    return NULL;
}

static void test_threads(void)
{
    setup();
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        UNIT_ASSERT_INT_EQ(pthread_create(&t[i], NULL, auth_thread, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    teardown();
}

static bool mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    UNIT_ASSERT(f != NULL);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    fclose(f);
    return found;
}

static void test_init_twice_and_done(void)
{
    char err[128];
    UNIT_ASSERT_INT_EQ(sasl_global_init(err, sizeof err), 0);
    UNIT_ASSERT_INT_EQ(sasl_global_init(err, sizeof err), 0);
    /* Only the two plugins we use are loaded: no sasldb, no other mechanism. */
    UNIT_ASSERT(mapped("/libscram.so"));
    UNIT_ASSERT(mapped("/libplain.so"));
    UNIT_ASSERT(!mapped("/libsasldb.so"));
    UNIT_ASSERT(!mapped("/libdigestmd5.so"));
    UNIT_ASSERT(!mapped("/liblogin.so"));
    UNIT_ASSERT(!mapped("/libanonymous.so"));
    struct sasl_conn *sc = sasl_conn_new(HOST, true, NULL, NULL, 0);
    UNIT_ASSERT(sc != NULL);
    sasl_conn_free(&sc);
    sasl_conn_free(&sc);
    sasl_conn_free(NULL);
    sasl_global_done();
    sasl_global_done();
    UNIT_ASSERT(sasl_conn_new(HOST, true, NULL, NULL, 0) == NULL);
}

UNIT_MAIN(UNIT_TEST(test_mechanism_lists), UNIT_TEST(test_scram_success),
          UNIT_TEST(test_scram_plus_success), UNIT_TEST(test_scram_plus_mismatch),
          UNIT_TEST(test_binding_failure_flag), UNIT_TEST(test_scram_wrong_password),
          UNIT_TEST(test_unknown_user), UNIT_TEST(test_plain), UNIT_TEST(test_authzid),
          UNIT_TEST(test_malformed), UNIT_TEST(test_malformed_final), UNIT_TEST(test_peek_decoding),
          UNIT_TEST(test_no_initial_response), UNIT_TEST(test_reuse_after_failure),
          UNIT_TEST(test_log_has_no_secrets), UNIT_TEST(test_threads),
          UNIT_TEST(test_init_twice_and_done))
