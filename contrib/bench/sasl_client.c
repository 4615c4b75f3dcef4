/*
 * sasl_client.c — the client side of SASL PLAIN (RFC 4616) and SCRAM-SHA-1 / SCRAM-SHA-256
 * (RFC 5802, RFC 7677) without channel binding, on GnuTLS's PBKDF2, HMAC and hash functions.
 *
 * A SCRAM client's expensive step is PBKDF2 over the password. Real clients pay it once and keep
 * ClientKey and ServerKey for the account (RFC 5802 §5.1 suggests exactly that), so this one can
 * too: the caller hands in a per-account struct scram_keys that is reused while the server's
 * salt and iteration count stay the same. Without it, a login benchmark would measure mostly
 * the generator's own PBKDF2.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>

const char *mech_name(enum mech m)
{
    switch (m) {
    case MECH_PLAIN:
        return "PLAIN";
    case MECH_SCRAM_SHA1:
        return "SCRAM-SHA-1";
    case MECH_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    default:
        return "auto";
    }
}

bool mech_parse(const char *s, enum mech *m)
{
    static const enum mech all[] = {MECH_AUTO, MECH_PLAIN, MECH_SCRAM_SHA1, MECH_SCRAM_SHA256};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcasecmp(s, mech_name(all[i])) == 0) {
            *m = all[i];
            return true;
        }
    }
    return false;
}

static void put_b64(struct bbuf *out, const void *data, size_t n)
{
    bbuf_reserve(out, 4 * ((n + 2) / 3) + 1);
    out->len += b64_encode(data, n, out->data + out->len);
}

void sasl_plain(struct bbuf *out, const char *user, const char *password)
{
    char msg[512];
    size_t ul = strlen(user), pl = strlen(password);
    if (ul + pl + 2 > sizeof msg)
        die("user name and password too long");
    msg[0] = '\0';
    memcpy(msg + 1, user, ul);
    msg[1 + ul] = '\0';
    memcpy(msg + 2 + ul, password, pl);
    put_b64(out, msg, ul + pl + 2);
}

static size_t hash_len(enum mech m)
{
    return m == MECH_SCRAM_SHA256 ? 32 : 20;
}

static gnutls_mac_algorithm_t mac_alg(enum mech m)
{
    return m == MECH_SCRAM_SHA256 ? GNUTLS_MAC_SHA256 : GNUTLS_MAC_SHA1;
}

static gnutls_digest_algorithm_t dig_alg(enum mech m)
{
    return m == MECH_SCRAM_SHA256 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1;
}

void scram_first(struct scram *s, enum mech mech, const char *user, struct bbuf *out)
{
    unsigned char rnd[18];
    char nonce[25];
    if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) != 0)
        die("gnutls_rnd failed");
    b64_encode(rnd, sizeof rnd, nonce);
    s->mech = mech;
    /* The user name is a saslname: ',' and '=' are escaped (RFC 5802 §5.1). */
    char name[256];
    size_t n = 0;
    for (const char *p = user; *p && n + 4 < sizeof name; p++) {
        if (*p == ',') {
            memcpy(name + n, "=2C", 3);
            n += 3;
        } else if (*p == '=') {
            memcpy(name + n, "=3D", 3);
            n += 3;
        } else {
            name[n++] = *p;
        }
    }
    name[n] = '\0';
    int len = snprintf(s->client_first_bare, sizeof s->client_first_bare, "n=%s,r=%s", name, nonce);
    s->cfb_len = (size_t)len;
    char msg[sizeof s->client_first_bare + 3];
    memcpy(msg, "n,,", 3);
    memcpy(msg + 3, s->client_first_bare, s->cfb_len);
    put_b64(out, msg, s->cfb_len + 3);
}

/* The value of attribute "k=" in a comma-separated SCRAM message, or NULL. */
static const char *scram_attr(const char *msg, char k, size_t *len)
{
    const char *p = msg;
    while (*p) {
        if (p[0] == k && p[1] == '=') {
            const char *v = p + 2;
            const char *e = strchr(v, ',');
            *len = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
        const char *c = strchr(p, ',');
        if (!c)
            break;
        p = c + 1;
    }
    return NULL;
}

const char *scram_final(struct scram *s, const char *password, const char *in, size_t in_len,
                        struct scram_keys *keys, struct bbuf *out)
{
    char sf[1024];
    long sfl = b64_decode(in, in_len, (unsigned char *)sf, sizeof sf - 1);
    if (sfl <= 0)
        return "server-first message is not base64";
    sf[sfl] = '\0';
    if (strncmp(sf, "r=", 2) != 0)
        return "server-first message does not start with r= (extension or error)";
    size_t nl, sl, il;
    const char *nonce = scram_attr(sf, 'r', &nl);
    const char *salt = scram_attr(sf, 's', &sl);
    const char *iter = scram_attr(sf, 'i', &il);
    if (!nonce || !salt || !iter)
        return "server-first message lacks r, s or i";
    const char *cnonce = strstr(s->client_first_bare, ",r=") + 3;
    size_t cnl = strlen(cnonce);
    if (nl <= cnl || memcmp(nonce, cnonce, cnl) != 0)
        return "server nonce does not extend ours";
    char *endp;
    unsigned long it = strtoul(iter, &endp, 10);
    if (endp != iter + il || it == 0 || it > 10000000)
        return "bad iteration count";
    if (sl >= sizeof keys->salt)
        return "salt too long";

    size_t hl = hash_len(s->mech);
    struct scram_keys local;
    struct scram_keys *k = keys ? keys : &local;
    if (!keys || !k->valid || k->mech != s->mech || k->iterations != it || strlen(k->salt) != sl ||
        memcmp(k->salt, salt, sl) != 0) {
        unsigned char salt_raw[128], salted[32];
        long srl = b64_decode(salt, sl, salt_raw, sizeof salt_raw);
        if (srl <= 0)
            return "salt is not base64";
        gnutls_datum_t key = {(unsigned char *)password, (unsigned)strlen(password)};
        gnutls_datum_t sd = {salt_raw, (unsigned)srl};
        if (gnutls_pbkdf2(mac_alg(s->mech), &key, &sd, (unsigned)it, salted, hl) != 0)
            return "PBKDF2 failed";
        if (gnutls_hmac_fast(mac_alg(s->mech), salted, hl, "Client Key", 10, k->client_key) ||
            gnutls_hmac_fast(mac_alg(s->mech), salted, hl, "Server Key", 10, k->server_key) ||
            gnutls_hash_fast(dig_alg(s->mech), k->client_key, hl, k->stored_key))
            return "HMAC failed";
        k->mech = s->mech;
        k->iterations = (unsigned)it;
        memcpy(k->salt, salt, sl);
        k->salt[sl] = '\0';
        k->valid = true;
    }

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    char cfwp[1100];
    int cl = snprintf(cfwp, sizeof cfwp, "c=biws,r=%.*s", (int)nl, nonce);
    if (cl < 0 || (size_t)cl >= sizeof cfwp)
        return "nonce too long";
    char am[2500];
    int al = snprintf(am, sizeof am, "%s,%s,%s", s->client_first_bare, sf, cfwp);
    if (al < 0 || (size_t)al >= sizeof am)
        return "server-first message too long";
    unsigned char sig[32], proof[32];
    if (gnutls_hmac_fast(mac_alg(s->mech), k->stored_key, hl, am, (size_t)al, sig) ||
        gnutls_hmac_fast(mac_alg(s->mech), k->server_key, hl, am, (size_t)al, s->server_signature))
        return "HMAC failed";
    for (size_t i = 0; i < hl; i++)
        proof[i] = k->client_key[i] ^ sig[i];
    char p64[48];
    b64_encode(proof, hl, p64);
    char cf[1200];
    int fl = snprintf(cf, sizeof cf, "%s,p=%s", cfwp, p64);
    put_b64(out, cf, (size_t)fl);
    return NULL;
}

const char *scram_verify(const struct scram *s, const char *in, size_t in_len)
{
    char sf[256];
    long n = b64_decode(in, in_len, (unsigned char *)sf, sizeof sf - 1);
    if (n <= 0)
        return "server-final message is not base64";
    sf[n] = '\0';
    if (strncmp(sf, "e=", 2) == 0)
        return "server-final message carries an error";
    if (strncmp(sf, "v=", 2) != 0)
        return "server-final message lacks v=";
    unsigned char v[64];
    long vl = b64_decode(sf + 2, strcspn(sf + 2, ","), v, sizeof v);
    if (vl != (long)hash_len(s->mech) || memcmp(v, s->server_signature, (size_t)vl) != 0)
        return "server signature does not verify";
    return NULL;
}
