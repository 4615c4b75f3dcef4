/*
 * sasl.c — SASL for client streams on Cyrus libsasl2, fed with our SCRAM verifiers.
 *
 * libsasl2 runs the mechanisms (its scram and plain plugins); this file owns everything around
 * them: the global set-up that pins libsasl2 to those two plugins and to our options (no config
 * file, no sasldb, no saslauthd), an in-process auxprop plugin named "stanzad" that hands the
 * SCRAM plugin the RFC 5803 authPassword values of the connection's verifiers, a checkpass
 * callback that verifies PLAIN against the same verifiers, the parsing of initial responses
 * (to learn the account before any database work), and the mapping of libsasl2 results to the
 * RFC 6120 §6.5 failure conditions.
 *
 * How the plugin finds the connection: each sasl_conn_t gets its own callback list whose
 * SASL_CB_SERVER_USERDB_CHECKPASS entry carries our struct sasl_conn as context. The plugin asks
 * libsasl2 for that callback on sparams->utils->conn and checks that the function is ours, so
 * the lookup needs no global table and no thread-local, and works on any worker thread.
 *
 * Unknown accounts: the lookup serves a decoy verifier whose salt is an HMAC of the user name
 * under a per-process random key, so the exchange looks the same as for a real account (stable
 * salt, same iteration count) and fails at the proof, like a wrong password.
 */
#include "sasl.h"

#include <ctype.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jid.h"
#include "log.h"
#include "mem.h"

#define AUXPROP_NAME  "stanzad"
#define AUTHPW_PROP   "authPassword"
#define SASL_NAME_MAX (4 * JID_PART_MAX)
#define DECOY_KEY_LEN 32

/* Our preference order; what a connection offers is this list filtered by what libsasl2 lists. */
static const char *const mech_order[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                         "SCRAM-SHA-1", "PLAIN"};
#define MECH_COUNT (sizeof mech_order / sizeof mech_order[0])

struct sasl_conn {
    sasl_conn_t *cy;
    char *host; /* prepared domain; also the SASL realm */
    bool tls;
    sasl_callback_t callbacks[4];
    sasl_channel_binding_t cb; /* libsasl2 keeps a pointer to this */
    char *cb_name;
    unsigned char *cb_data;
    const char *mechs[MECH_COUNT + 1];

    /* The attempt in progress. */
    char *peeked; /* prepared localpart named by the last initial response peeked */
    bool have[SCRAM_HASH_COUNT];
    struct scram_verifier cred[SCRAM_HASH_COUNT];
    char mech[24]; /* mechanism started */
    char *gs2;     /* SCRAM GS2 header of the attempt, for the channel-binding check */
    size_t gs2_len;
    bool first_seen;      /* the client's first message has been received */
    int checkpass_rc;     /* our verdict on a PLAIN password (libsasl2 reports another) */
    bool binding_failure; /* the attempt failed on channel-binding negotiation, not secrets */
    char *username;       /* set on success */
};

static unsigned char decoy_key[DECOY_KEY_LEN];
static bool sasl_inited;

/* ---------------------------------------------------------------- helpers */

/* Casting through void (*)(void) is the sanctioned way to store a typed callback in a
 * sasl_callback_t (the cast to the generic type alone trips -Wcast-function-type). */
#define CB(f) ((sasl_callback_ft)(void (*)(void))(f))

static bool is_scram(const char *mech)
{
    return strncmp(mech, "SCRAM-", 6) == 0;
}

static bool is_plus(const char *mech)
{
    size_t n = strlen(mech);
    return n > 5 && strcmp(mech + n - 5, "-PLUS") == 0;
}

static bool offered(const struct sasl_conn *sc, const char *mech)
{
    for (size_t i = 0; sc->mechs[i]; i++)
        if (strcmp(sc->mechs[i], mech) == 0)
            return true;
    return false;
}

/* Why a mechanism the client asked for cannot be used here. */
static const char *not_offered_reason(const struct sasl_conn *sc, const char *mech)
{
    if (mech != NULL && strcmp(mech, "PLAIN") == 0 && !sc->tls)
        return "encryption-required";
    return "invalid-mechanism";
}

/*
 * Decoy verifier for a user name that has no account (or no verifier for this hash): salt and
 * keys are HMAC-SHA-256 of the name under the per-process key, so repeated attempts for the same
 * name see the same salt, as they would for a real account.
 */
static void decoy_verifier(enum scram_hash h, const char *user, unsigned iterations,
                           struct scram_verifier *v)
{
    unsigned char mac[32];
    size_t ulen = strlen(user);
    char *msg = xmalloc(ulen + 8);
    memset(v, 0, sizeof *v);
    v->hash = h;
    v->iterations = iterations;
    v->salt_len = SCRAM_SALT_LEN;
    static const char *const labels[] = {"salt", "stkey", "svkey"};
    unsigned char *dst[] = {v->salt, v->stored_key, v->server_key};
    size_t dlen[] = {SCRAM_SALT_LEN, scram_hash_len(h), scram_hash_len(h)};
    for (int i = 0; i < 3; i++) {
        int n = snprintf(msg, ulen + 8, "%s%d%s", labels[i], (int)h, user);
        gnutls_hmac_fast(GNUTLS_MAC_SHA256, decoy_key, sizeof decoy_key, msg, (size_t)n, mac);
        memcpy(dst[i], mac, dlen[i]);
    }
    free(msg);
}

/* Is the canonical user ("local@host") the one whose verifiers sc holds? */
static bool user_is_peeked(const struct sasl_conn *sc, const char *user, size_t ulen)
{
    if (sc->peeked == NULL)
        return false;
    size_t pl = strlen(sc->peeked), hl = strlen(sc->host);
    return ulen == pl + 1 + hl && memcmp(user, sc->peeked, pl) == 0 && user[pl] == '@' &&
           memcmp(user + pl + 1, sc->host, hl) == 0;
}

/* The verifier to use for hash h and canonical user: the real one or a decoy. */
static void verifier_for(const struct sasl_conn *sc, enum scram_hash h, const char *user,
                         size_t ulen, struct scram_verifier *out)
{
    unsigned iterations = SCRAM_DEFAULT_ITERATIONS;
    if (user_is_peeked(sc, user, ulen)) {
        if (sc->have[h]) {
            *out = sc->cred[h];
            return;
        }
        /* An account without this hash looks like its other hash's iteration count. */
        for (int k = 0; k < SCRAM_HASH_COUNT; k++)
            if (sc->have[k])
                iterations = sc->cred[k].iterations;
    }
    char *u = xstrndup(user, ulen);
    decoy_verifier(h, u, iterations, out);
    free(u);
}

/* ---------------------------------------------------------------- the auxprop plugin */

static int cb_checkpass(sasl_conn_t *conn, void *context, const char *user, const char *pass,
                        unsigned passlen, struct propctx *propctx);

static struct sasl_conn *conn_of(const sasl_utils_t *utils)
{
    sasl_callback_ft proc = NULL;
    void *ctx = NULL;
    if (utils == NULL || utils->conn == NULL ||
        utils->getcallback(utils->conn, SASL_CB_SERVER_USERDB_CHECKPASS, &proc, &ctx) != SASL_OK ||
        proc != CB(cb_checkpass))
        return NULL;
    return ctx;
}

/*
 * Fills "*authPassword" for the authentication identity with one RFC 5803 value per SCRAM hash.
 * Nothing else is ever provided — in particular never userPassword, so no plugin can fall back to
 * a plaintext comparison. Values left by an earlier attempt on the same connection are always
 * replaced: this plugin is the only source and a stale verifier would belong to another name.
 */
static int auxprop_lookup(void *glob_context, sasl_server_params_t *sparams, unsigned flags,
                          const char *user, unsigned ulen)
{
    if (flags & SASL_AUXPROP_AUTHZID)
        return SASL_OK; /* no properties for authorization identities */
    struct sasl_conn *sc = conn_of(sparams->utils);
    if (sc == NULL)
        return SASL_NOMECH;
    const struct propval *pv = sparams->utils->prop_get(sparams->propctx);
    if (pv == NULL)
        return SASL_NOMEM;
    for (; pv->name; pv++) {
        if (pv->name[0] != '*' || strcasecmp(pv->name + 1, AUTHPW_PROP) != 0)
            continue;
        if (pv->values)
            sparams->utils->prop_erase(sparams->propctx, pv->name);
        for (int h = SCRAM_HASH_COUNT - 1; h >= 0; h--) {
            struct scram_verifier v;
            verifier_for(sc, (enum scram_hash)h, user, ulen, &v);
            char *ap = scram_auth_password(&v);
            sparams->utils->prop_set(sparams->propctx, pv->name, ap, (int)strlen(ap));
            free(ap);
        }
    }
    return SASL_OK;
}

static sasl_auxprop_plug_t auxprop_plug = {
    .auxprop_lookup = auxprop_lookup,
    .name = AUXPROP_NAME,
};

static int auxprop_init(const sasl_utils_t *utils, int max_version, int *out_version,
                        sasl_auxprop_plug_t **plug, const char *plugname)
{
    if (max_version < SASL_AUXPROP_PLUG_VERSION)
        return SASL_BADVERS;
    *out_version = SASL_AUXPROP_PLUG_VERSION;
    *plug = &auxprop_plug;
    return SASL_OK;
}

/* ---------------------------------------------------------------- global callbacks */

static int cb_getopt(void *context, const char *plugin_name, const char *option,
                     const char **result, unsigned *len)
{
    static const struct {
        const char *name, *value;
    } opts[] = {
        /* Only our auxprop plugin is ever consulted. */
        {"auxprop_plugin", AUXPROP_NAME},
        /* libsasl2 offers a -PLUS name when the base plugin is listed and the connection has
         * channel binding; sasl_conn_new() re-orders and filters what it lists. */
        {"mech_list", "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"},
        /* After our checkpass callback refuses, libsasl2 tries pwcheck_method: "auxprop" asks
         * our plugin for userPassword, which it never has, and so fails closed without
         * touching saslauthd or a sasldb file. */
        {"pwcheck_method", "auxprop"},
        {"auto_transition", "no"},
        {"canon_user_plugin", "INTERNAL"},
        {"sasldb_path", "/nonexistent"},
    };
    if (plugin_name != NULL)
        return SASL_FAIL; /* per-plugin options: keep the plugins' defaults */
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(option, opts[i].name) == 0) {
            *result = opts[i].value;
            if (len)
                *len = (unsigned)strlen(opts[i].value);
            return SASL_OK;
        }
    return SASL_FAIL;
}

/* libsasl2 messages never include passwords except at SASL_LOG_PASS, which is dropped; failure
 * texts may quote a user name. Authentication failures are routine, hence debug. */
static int cb_log(void *context, int level, const char *message)
{
    switch (level) {
    case SASL_LOG_NONE:
    case SASL_LOG_PASS:
        break;
    case SASL_LOG_ERR:
    case SASL_LOG_WARN:
        log_warn(0, "sasl: %s", message);
        break;
    default:
        log_debug(0, "sasl: %s", message);
        break;
    }
    return SASL_OK;
}

/* Loads only the scram and plain plugins, and never a configuration or password file. */
static int cb_verifyfile(void *context, const char *file, sasl_verify_type_t type)
{
    if (type != SASL_VRFY_PLUGIN)
        return SASL_CONTINUE;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (strncmp(base, "libscram.", 9) == 0 || strncmp(base, "libplain.", 9) == 0)
        return SASL_OK;
    return SASL_CONTINUE;
}

static void *mutex_alloc(void)
{
    pthread_mutex_t *m = xmalloc(sizeof *m);
    pthread_mutex_init(m, NULL);
    return m;
}

static int mutex_lock(void *m)
{
    return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int mutex_unlock(void *m)
{
    return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void mutex_free(void *m)
{
    pthread_mutex_destroy(m);
    free(m);
}

static const sasl_callback_t global_callbacks[] = {
    {SASL_CB_GETOPT, CB(cb_getopt), NULL},
    {SASL_CB_LOG, CB(cb_log), NULL},
    {SASL_CB_VERIFYFILE, CB(cb_verifyfile), NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

int sasl_global_init(char *err, size_t errlen)
{
    if (sasl_inited)
        return 0;
    if (gnutls_rnd(GNUTLS_RND_KEY, decoy_key, sizeof decoy_key) != 0) {
        snprintf(err, errlen, "no random bytes for the SASL decoy key");
        return -1;
    }
    sasl_set_mutex(mutex_alloc, mutex_lock, mutex_unlock, mutex_free);
    int rc = sasl_auxprop_add_plugin(AUXPROP_NAME, auxprop_init);
    if (rc == SASL_OK)
        rc = sasl_server_init(global_callbacks, "stanzad");
    if (rc != SASL_OK) {
        snprintf(err, errlen, "libsasl2 initialisation failed: %s", sasl_errstring(rc, NULL, NULL));
        return -1;
    }
    sasl_inited = true;
    return 0;
}

void sasl_global_done(void)
{
    if (!sasl_inited)
        return;
    sasl_server_done();
    sasl_inited = false;
}

/* ---------------------------------------------------------------- per-connection callbacks */

/*
 * PLAIN: the password is checked against the strongest verifier of the account. An unknown
 * account costs the same PBKDF2 (against a decoy) so that timing does not tell.
 */
static int cb_checkpass(sasl_conn_t *conn, void *context, const char *user, const char *pass,
                        unsigned passlen, struct propctx *propctx)
{
    struct sasl_conn *sc = context;
    size_t ulen = strlen(user);
    bool known =
        user_is_peeked(sc, user, ulen) && (sc->have[SCRAM_SHA_256] || sc->have[SCRAM_SHA_1]);
    struct scram_verifier v;
    verifier_for(sc, sc->have[SCRAM_SHA_256] || !known ? SCRAM_SHA_256 : SCRAM_SHA_1, user, ulen,
                 &v);
    bool ok = strlen(pass) == passlen && scram_check_password(&v, pass);
    sc->checkpass_rc = known ? (ok ? SASL_OK : SASL_BADAUTH) : SASL_NOUSER;
    return sc->checkpass_rc;
}

static bool authzid_is_bare_jid(const char *s)
{
    struct jid *j = jid_parse(NULL, s, strlen(s), NULL);
    bool ok = j && j->local && !j->resource;
    jid_free(&j);
    return ok;
}

/*
 * Canonical names: the authentication identity becomes its Nodeprep'd localpart (libsasl2's
 * internal canonicaliser then appends "@realm", giving the bare JID); an authorization identity
 * must be a bare JID with a localpart and is returned prepared. Anything else is refused here,
 * before any lookup.
 */
static int cb_canon(sasl_conn_t *conn, void *context, const char *in, unsigned inlen,
                    unsigned flags, const char *user_realm, char *out, unsigned out_max,
                    unsigned *out_len)
{
    struct sasl_conn *sc = context;
    if (inlen > SASL_NAME_MAX)
        return (flags & SASL_CU_AUTHID) ? SASL_NOUSER : SASL_NOAUTHZ;
    char *name = xstrndup(in, inlen);
    char *prepared = NULL;
    int rc;
    if (flags & SASL_CU_AUTHID) {
        /* libsasl2 re-canonicalises its own result ("local@host") on some paths. */
        char *at = strrchr(name, '@');
        if (at && strcmp(at + 1, sc->host) == 0)
            *at = '\0';
        prepared = jid_prep_local(NULL, name, NULL);
        rc = prepared ? SASL_OK : SASL_NOUSER;
    } else {
        /* XMPP authorization identities are JIDs; only a bare JID can name an account. */
        struct jid *j = jid_parse(NULL, name, strlen(name), NULL);
        if (j && j->local && !j->resource)
            prepared = xstrdup(j->bare);
        jid_free(&j);
        rc = prepared ? SASL_OK : SASL_NOAUTHZ;
    }
    if (prepared) {
        size_t n = strlen(prepared);
        if (n >= out_max) {
            rc = SASL_BUFOVER;
        } else {
            memcpy(out, prepared, n + 1);
            *out_len = (unsigned)n;
        }
    }
    free(name);
    free(prepared);
    return rc;
}

/* The authorization identity, if given, must be the authenticated user's own bare JID. */
static int cb_authorize(sasl_conn_t *conn, void *context, const char *requested_user, unsigned rlen,
                        const char *auth_identity, unsigned alen, const char *def_realm,
                        unsigned urlen, struct propctx *propctx)
{
    if (rlen == alen && memcmp(requested_user, auth_identity, alen) == 0)
        return SASL_OK;
    sasl_seterror(conn, SASL_NOLOG, "authorization identity not permitted");
    return SASL_NOAUTHZ;
}

/* ---------------------------------------------------------------- connections */

/* A libsasl2 server context with our callbacks, security properties and channel binding. */
static int cy_open(struct sasl_conn *sc)
{
    int rc = sasl_server_new("xmpp", sc->host, sc->host, NULL, NULL, sc->callbacks,
                             SASL_SUCCESS_DATA, &sc->cy);
    sasl_security_properties_t sp = {
        .min_ssf = 0,
        .max_ssf = 0, /* XMPP never uses a SASL security layer */
        .maxbufsize = 0,
        .security_flags = SASL_SEC_NOANONYMOUS | (sc->tls ? 0 : SASL_SEC_NOPLAINTEXT),
    };
    if (rc == SASL_OK)
        rc = sasl_setprop(sc->cy, SASL_SEC_PROPS, &sp);
    if (rc == SASL_OK && sc->cb_name)
        rc = sasl_setprop(sc->cy, SASL_CHANNEL_BINDING, &sc->cb);
    return rc;
}

struct sasl_conn *sasl_conn_new(const char *host, bool tls, const char *cb_name,
                                const unsigned char *cb_data, size_t cb_len)
{
    if (!sasl_inited || host == NULL)
        return NULL;
    struct sasl_conn *sc = xcalloc(1, sizeof *sc);
    sc->host = jid_prep_domain(NULL, host, NULL);
    if (sc->host == NULL) {
        free(sc);
        return NULL;
    }
    sc->tls = tls;
    sc->callbacks[0] = (sasl_callback_t){SASL_CB_SERVER_USERDB_CHECKPASS, CB(cb_checkpass), sc};
    sc->callbacks[1] = (sasl_callback_t){SASL_CB_CANON_USER, CB(cb_canon), sc};
    sc->callbacks[2] = (sasl_callback_t){SASL_CB_PROXY_POLICY, CB(cb_authorize), sc};
    sc->callbacks[3] = (sasl_callback_t){SASL_CB_LIST_END, NULL, NULL};
    if (cb_name && cb_data && cb_len > 0) {
        sc->cb_name = xstrdup(cb_name);
        sc->cb_data = xmalloc(cb_len);
        memcpy(sc->cb_data, cb_data, cb_len);
        sc->cb = (sasl_channel_binding_t){sc->cb_name, 0, cb_len, sc->cb_data};
    }

    int rc = cy_open(sc);
    const char *list = NULL;
    if (rc == SASL_OK)
        rc = sasl_listmech(sc->cy, NULL, " ", " ", " ", &list, NULL, NULL);
    if (rc != SASL_OK) {
        log_warn(0, "sasl: cannot set up a connection for %s: %s", sc->host,
                 sasl_errstring(rc, NULL, NULL));
        sasl_conn_free(&sc);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < MECH_COUNT; i++) {
        const char *m = mech_order[i];
        char word[32];
        snprintf(word, sizeof word, " %s ", m);
        if (strstr(list, word) == NULL)
            continue;
        if (strcmp(m, "PLAIN") == 0 && !tls)
            continue;
        if (is_plus(m) && sc->cb_name == NULL)
            continue;
        sc->mechs[n++] = m;
    }
    sc->mechs[n] = NULL;
    return sc;
}

static void clear_attempt(struct sasl_conn *sc)
{
    free(sc->peeked);
    sc->peeked = NULL;
    gnutls_memset(sc->cred, 0, sizeof sc->cred);
    memset(sc->have, 0, sizeof sc->have);
}

void sasl_conn_free(struct sasl_conn **psc)
{
    if (psc == NULL || *psc == NULL)
        return;
    struct sasl_conn *sc = *psc;
    if (sc->cy)
        sasl_dispose(&sc->cy);
    clear_attempt(sc);
    free(sc->gs2);
    free(sc->username);
    free(sc->cb_name);
    free(sc->cb_data);
    free(sc->host);
    free(sc);
    *psc = NULL;
}

const char *const *sasl_conn_mechanisms(struct sasl_conn *sc)
{
    return sc->mechs;
}

const char *sasl_conn_cb_name(const struct sasl_conn *sc)
{
    return sc->cb_name;
}

bool sasl_conn_binding_failure(const struct sasl_conn *sc)
{
    return sc->binding_failure;
}

/* ---------------------------------------------------------------- initial responses */

/* saslname (RFC 5802 §7): "=2C" and "=3D" stand for ',' and '='; any other '=' is an error. */
static char *decode_saslname(const char *s, size_t len)
{
    if (len == 0 || len > SASL_NAME_MAX)
        return NULL;
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ',') {
            free(out);
            return NULL;
        }
        if (s[i] != '=') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 < len && s[i + 1] == '2' && s[i + 2] == 'C')
            out[o++] = ',';
        else if (i + 2 < len && s[i + 1] == '3' && s[i + 2] == 'D')
            out[o++] = '=';
        else {
            free(out);
            return NULL;
        }
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/*
 * Parses a SCRAM client-first-message far enough to know the GS2 header and the user name:
 *   gs2-cbind-flag "," [ "a=" saslname ] "," "n=" saslname "," "r=" nonce [ "," ext ]
 * Returns the decoded user name (malloc'd) or NULL if malformed; *gs2_len gets the header length
 * including its final comma, *flag the cbind flag ('n', 'y' or 'p').
 */
static char *parse_scram_first(const char *in, size_t len, size_t *gs2_len, char *flag)
{
    if (len == 0 || memchr(in, '\0', len) != NULL)
        return NULL;
    const char *end = in + len, *p = in;
    if (*p == 'n' || *p == 'y') {
        *flag = *p++;
    } else if (*p == 'p' && p + 1 < end && p[1] == '=') {
        *flag = 'p';
        p += 2;
        const char *name = p;
        while (p < end && (isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
            p++;
        if (p == name)
            return NULL;
    } else {
        return NULL;
    }
    if (p >= end || *p++ != ',')
        return NULL;
    if (p + 1 < end && p[0] == 'a' && p[1] == '=') {
        const char *a = p + 2;
        const char *comma = memchr(a, ',', (size_t)(end - a));
        if (comma == NULL)
            return NULL;
        char *authzid = decode_saslname(a, (size_t)(comma - a));
        if (authzid == NULL)
            return NULL;
        free(authzid);
        p = comma;
    }
    if (p >= end || *p++ != ',')
        return NULL;
    *gs2_len = (size_t)(p - in);
    if (end - p < 2 || p[0] != 'n' || p[1] != '=')
        return NULL; /* includes the unsupported mandatory extension "m=" */
    const char *u = p + 2;
    const char *comma = memchr(u, ',', (size_t)(end - u));
    if (comma == NULL || end - comma < 3 || comma[1] != 'r' || comma[2] != '=')
        return NULL;
    return decode_saslname(u, (size_t)(comma - u));
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. Only the authcid is copied out. */
static char *parse_plain(const char *in, size_t len)
{
    const char *nul1 = memchr(in, '\0', len);
    if (nul1 == NULL)
        return NULL;
    const char *authcid = nul1 + 1;
    const char *nul2 = memchr(authcid, '\0', len - (size_t)(authcid - in));
    if (nul2 == NULL || nul2 == authcid)
        return NULL;
    const char *pw = nul2 + 1;
    size_t pwlen = len - (size_t)(pw - in);
    if (pwlen == 0 || memchr(pw, '\0', pwlen) != NULL)
        return NULL;
    return xstrndup(authcid, (size_t)(nul2 - authcid));
}

char *sasl_peek_authcid(struct sasl_conn *sc, const char *mech, const unsigned char *in,
                        size_t inlen, const char **failure_r)
{
    const char *failure = "malformed-request";
    char *raw = NULL;
    clear_attempt(sc);
    if (mech == NULL || !offered(sc, mech)) {
        failure = not_offered_reason(sc, mech);
        goto fail;
    }
    if (in == NULL)
        goto fail;
    if (is_scram(mech)) {
        size_t gs2_len;
        char flag;
        raw = parse_scram_first((const char *)in, inlen, &gs2_len, &flag);
        /* The -PLUS variants require channel binding and the others forbid it (RFC 5802 §6). */
        if (raw && (flag == 'p') != is_plus(mech)) {
            free(raw);
            raw = NULL;
        }
    } else {
        raw = parse_plain((const char *)in, inlen);
    }
    if (raw == NULL)
        goto fail;
    char *name = jid_prep_local(NULL, raw, NULL);
    free(raw);
    if (name == NULL) {
        /* Well-formed, but no account can have this name. */
        failure = "not-authorized";
        goto fail;
    }
    sc->peeked = xstrdup(name);
    return name;
fail:
    if (failure_r)
        *failure_r = failure;
    return NULL;
}

void sasl_conn_set_credentials(struct sasl_conn *sc, const struct scram_verifier *v, size_t n)
{
    memset(sc->have, 0, sizeof sc->have);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)v[i].hash >= SCRAM_HASH_COUNT || sc->have[v[i].hash])
            continue;
        sc->cred[v[i].hash] = v[i];
        sc->have[v[i].hash] = true;
    }
}

/* ---------------------------------------------------------------- the exchange */

static const char *failure_of(int rc)
{
    switch (rc) {
    case SASL_BADAUTH:
    case SASL_NOUSER:
    case SASL_NOVERIFY:
    case SASL_BADBINDING:
    case SASL_TRANS:
    case SASL_WRONGMECH:
        return "not-authorized";
    case SASL_DISABLED:
        return "account-disabled";
    case SASL_EXPIRED:
        return "credentials-expired";
    case SASL_BADPROT:
    case SASL_BADPARAM:
        return "malformed-request";
    case SASL_NOMECH:
        return "invalid-mechanism";
    case SASL_TOOWEAK:
        return "mechanism-too-weak";
    case SASL_ENCRYPT:
        return "encryption-required";
    case SASL_NOAUTHZ:
        return "invalid-authzid";
    default:
        return "temporary-auth-failure";
    }
}

/*
 * In a -PLUS exchange libsasl2 reports channel-binding data that differs from ours as a protocol
 * error; it is an authentication failure (a man in the middle, typically), so we tell the two
 * apart by checking the c= attribute of the client-final-message ourselves.
 */
static bool cb_data_mismatch(const struct sasl_conn *sc, const unsigned char *in, size_t inlen)
{
    if (sc->cb_name == NULL || sc->gs2_len == 0 || sc->gs2[0] != 'p' || inlen < 2 || in[0] != 'c' ||
        in[1] != '=')
        return false;
    const unsigned char *v = in + 2;
    const unsigned char *comma = memchr(v, ',', inlen - 2);
    size_t vlen = comma ? (size_t)(comma - v) : inlen - 2;
    unsigned char *dec = xmalloc(vlen);
    long n = b64_decode((const char *)v, vlen, dec, vlen);
    bool mismatch = n >= (long)sc->gs2_len && memcmp(dec, sc->gs2, sc->gs2_len) == 0 &&
                    ((size_t)n - sc->gs2_len != sc->cb.len ||
                     memcmp(dec + sc->gs2_len, sc->cb_data, sc->cb.len) != 0);
    free(dec);
    return mismatch;
}

static enum sasl_result finish(struct sasl_conn *sc, int rc, const char *sout, unsigned soutlen,
                               const unsigned char **out, size_t *outlen, const char **failure_r,
                               const char *failure)
{
    *out = (const unsigned char *)(sout ? sout : "");
    *outlen = sout ? soutlen : 0;
    if (rc == SASL_CONTINUE)
        return SASLR_CONTINUE;
    if (rc == SASL_OK) {
        const void *authid = NULL;
        if (sasl_getprop(sc->cy, SASL_AUTHUSER, &authid) != SASL_OK || authid == NULL) {
            rc = SASL_FAIL;
        } else {
            /* "local@host" from the canonicaliser; keep the localpart. */
            const char *a = authid;
            const char *at = strrchr(a, '@');
            free(sc->username);
            sc->username = at ? xstrndup(a, (size_t)(at - a)) : xstrdup(a);
            sc->mech[0] = '\0';
            return SASLR_OK;
        }
    }
    *out = NULL;
    *outlen = 0;
    /* After our checkpass refuses, libsasl2 asks pwcheck_method, which answers "no such user"
     * even for a wrong password; report what we found. */
    const char *detail = sasl_errdetail(sc->cy);
    if (sc->checkpass_rc == SASL_BADAUTH && rc == SASL_NOUSER) {
        rc = SASL_BADAUTH;
        detail = "wrong password";
    }
    if (failure_r)
        *failure_r = failure ? failure : failure_of(rc);
    log_debug(0, "sasl: %s failed: %s", sc->mech, detail);
    sc->mech[0] = '\0';
    return SASLR_FAIL;
}

/*
 * Checks the client's first message before libsasl2 sees it, with the rules of
 * sasl_peek_authcid(). SCRAM: well-formed, and with the channel-binding flag the mechanism
 * demands (RFC 5802 §6: 'p' for -PLUS and only there; libsasl2 would accept "n" under a -PLUS
 * name); the GS2 header is kept for cb_data_mismatch(). PLAIN: exactly three fields with a
 * non-empty password (libsasl2 takes an empty one as a password), and an authzid, if any, that
 * is a bare JID — libsasl2 treats an authzid equal to the authcid string ("alice") as none, but
 * SCRAM's a= is held to the bare-JID rule by cb_canon(), and both should agree.
 * Returns NULL or the failure condition.
 */
static const char *check_first(struct sasl_conn *sc, const unsigned char *in, size_t inlen)
{
    if (in == NULL)
        return "malformed-request";
    sc->first_seen = true;
    if (is_scram(sc->mech)) {
        size_t gs2_len = 0;
        char flag = 0;
        char *user = parse_scram_first((const char *)in, inlen, &gs2_len, &flag);
        bool ok = user != NULL && (flag == 'p') == is_plus(sc->mech);
        free(user);
        if (!ok)
            return "malformed-request";
        /* Failures of the channel-binding negotiation itself: a binding type we do not offer
         * (a client asking tls-unique under TLS 1.3), or the 'y' flag while we offer -PLUS,
         * which RFC 5802 §6 makes a failure. Common with clients that do not read XEP-0440,
         * and no guess at a password: the caller does not count them as failed logins. */
        if (flag == 'p') {
            const char *name = (const char *)in + 2;
            size_t nl = strcspn(name, ",");
            if (!sc->cb_name || strlen(sc->cb_name) != nl || strncmp(name, sc->cb_name, nl) != 0) {
                sc->binding_failure = true;
                return "not-authorized";
            }
        } else if (flag == 'y' && sc->cb_name) {
            sc->binding_failure = true;
            return "not-authorized";
        }
        free(sc->gs2);
        sc->gs2 = xstrndup((const char *)in, gs2_len);
        sc->gs2_len = gs2_len;
        return NULL;
    }
    char *authcid = parse_plain((const char *)in, inlen);
    if (authcid == NULL)
        return "malformed-request";
    free(authcid);
    if (in[0] != '\0' && !authzid_is_bare_jid((const char *)in))
        return "invalid-authzid";
    return NULL;
}

/* A failure found before libsasl2 was asked; the attempt is over. */
static enum sasl_result fail_early(struct sasl_conn *sc, const char *failure,
                                   const char **failure_r)
{
    sc->mech[0] = '\0';
    if (failure_r)
        *failure_r = failure;
    return SASLR_FAIL;
}

enum sasl_result sasl_conn_start(struct sasl_conn *sc, const char *mech, const unsigned char *in,
                                 size_t inlen, const unsigned char **out, size_t *outlen,
                                 const char **failure_r)
{
    *out = NULL;
    *outlen = 0;
    sc->gs2_len = 0;
    sc->first_seen = false;
    sc->checkpass_rc = SASL_OK;
    sc->binding_failure = false;
    sc->mech[0] = '\0';
    if (sc->username != NULL) {
        /* libsasl2 does not run a second exchange on a context that succeeded (it keeps its
         * "done" flag); a fresh one makes sasl_conn_start() valid at any time. */
        free(sc->username);
        sc->username = NULL;
        sasl_dispose(&sc->cy);
        if (cy_open(sc) != SASL_OK)
            sasl_dispose(&sc->cy);
    }
    if (sc->cy == NULL)
        return fail_early(sc, "temporary-auth-failure", failure_r);
    if (mech == NULL || !offered(sc, mech))
        return fail_early(sc, not_offered_reason(sc, mech), failure_r);
    snprintf(sc->mech, sizeof sc->mech, "%s", mech);
    const char *failure = in ? check_first(sc, in, inlen) : NULL;
    if (failure)
        return fail_early(sc, failure, failure_r);
    /* Clear whatever an earlier attempt on this connection left in the property context. */
    struct propctx *props = sasl_auxprop_getctx(sc->cy);
    if (props)
        prop_clear(props, 0);
    const char *sout = NULL;
    unsigned soutlen = 0;
    /* libsasl2 maps a -PLUS name to its base plugin. A NULL clientin means "no initial
     * response"; a non-NULL empty one is an empty response. */
    int rc = sasl_server_start(sc->cy, mech, (const char *)in, (unsigned)inlen, &sout, &soutlen);
    return finish(sc, rc, sout, soutlen, out, outlen, failure_r, NULL);
}

enum sasl_result sasl_conn_step(struct sasl_conn *sc, const unsigned char *in, size_t inlen,
                                const unsigned char **out, size_t *outlen, const char **failure_r)
{
    *out = NULL;
    *outlen = 0;
    if (sc->mech[0] == '\0' || sc->cy == NULL)
        return fail_early(sc, "malformed-request", failure_r); /* no exchange in progress */
    bool scram_final = false;
    if (!sc->first_seen) {
        /* There was no initial response: this is the client's first message. */
        const char *failure = check_first(sc, in, inlen);
        if (failure)
            return fail_early(sc, failure, failure_r);
    } else {
        scram_final = is_scram(sc->mech);
    }
    const char *sout = NULL;
    unsigned soutlen = 0;
    int rc = sasl_server_step(sc->cy, in ? (const char *)in : "", (unsigned)inlen, &sout, &soutlen);
    const char *failure = NULL;
    if (rc == SASL_BADPROT && scram_final && cb_data_mismatch(sc, in, inlen))
        failure = "not-authorized";
    return finish(sc, rc, sout, soutlen, out, outlen, failure_r, failure);
}

const char *sasl_conn_username(const struct sasl_conn *sc)
{
    return sc->username;
}
