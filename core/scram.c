/*
 * scram.c — SCRAM verifiers (RFC 5802, RFC 7677) and the small pieces around them.
 *
 * This file owns the arithmetic of credentials: SASLprep of a password (libidn's "SASLprep"
 * profile, as a query string, as RFC 5802 §2.2 asks), PBKDF2 / HMAC / H through GnuTLS, the
 * StoredKey/ServerKey verifier, the check of a plaintext password against a verifier (for PLAIN
 * over TLS), and the RFC 5803 "authPassword" rendering that Cyrus libsasl2's SCRAM plugin parses.
 * It also has the strict standard-alphabet base64 used for salts and keys. No state, no locks:
 * every function may be called from any thread.
 */
#include "scram.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#include "mem.h"

size_t scram_hash_len(enum scram_hash h)
{
    return h == SCRAM_SHA_256 ? 32 : 20;
}

const char *scram_mech_name(enum scram_hash h)
{
    return h == SCRAM_SHA_256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
}

int scram_hash_from_name(const char *mech)
{
    if (mech == NULL)
        return -1;
    if (strcmp(mech, "SCRAM-SHA-1") == 0)
        return SCRAM_SHA_1;
    if (strcmp(mech, "SCRAM-SHA-256") == 0)
        return SCRAM_SHA_256;
    return -1;
}

static gnutls_mac_algorithm_t mac_of(enum scram_hash h)
{
    return h == SCRAM_SHA_256 ? GNUTLS_MAC_SHA256 : GNUTLS_MAC_SHA1;
}

static gnutls_digest_algorithm_t dig_of(enum scram_hash h)
{
    return h == SCRAM_SHA_256 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1;
}

char *scram_saslprep(const char *password)
{
    if (password == NULL)
        return NULL;
    /* Pure printable ASCII is left unchanged by SASLprep (no mapping, no prohibited character,
     * NFKC is the identity); skip libidn for the common case. */
    const unsigned char *p = (const unsigned char *)password;
    while (*p >= 0x20 && *p < 0x7f)
        p++;
    if (*p == '\0')
        return xstrdup(password);
    char *out = NULL;
    if (stringprep_profile(password, &out, "SASLprep", 0) != STRINGPREP_OK) {
        free(out);
        return NULL;
    }
    return out;
}

int scram_salted_password(enum scram_hash h, const char *password, const unsigned char *salt,
                          size_t salt_len, unsigned iterations, unsigned char *out)
{
    if ((unsigned)h >= SCRAM_HASH_COUNT || iterations == 0 || salt_len == 0)
        return -1;
    char *prepped = scram_saslprep(password);
    if (prepped == NULL)
        return -1;
    size_t plen = strlen(prepped);
    gnutls_datum_t key = {(unsigned char *)prepped, (unsigned)plen};
    gnutls_datum_t s = {(unsigned char *)salt, (unsigned)salt_len};
    int rc = gnutls_pbkdf2(mac_of(h), &key, &s, iterations, out, scram_hash_len(h));
    gnutls_memset(prepped, 0, plen);
    free(prepped);
    return rc == 0 ? 0 : -1;
}

/* StoredKey and ServerKey from SaltedPassword (RFC 5802 §3). */
static int keys_from_salted(enum scram_hash h, const unsigned char *salted,
                            unsigned char *stored_key, unsigned char *server_key)
{
    size_t n = scram_hash_len(h);
    unsigned char client_key[SCRAM_MAX_HASH_LEN];
    int rc = gnutls_hmac_fast(mac_of(h), salted, n, "Client Key", 10, client_key);
    if (rc == 0)
        rc = gnutls_hash_fast(dig_of(h), client_key, n, stored_key);
    if (rc == 0)
        rc = gnutls_hmac_fast(mac_of(h), salted, n, "Server Key", 10, server_key);
    gnutls_memset(client_key, 0, sizeof client_key);
    return rc == 0 ? 0 : -1;
}

int scram_make_verifier(enum scram_hash h, const char *password, const unsigned char *salt,
                        size_t salt_len, unsigned iterations, struct scram_verifier *out)
{
    if (salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN)
        return -1;
    unsigned char salted[SCRAM_MAX_HASH_LEN];
    memset(out, 0, sizeof *out);
    int rc = scram_salted_password(h, password, salt, salt_len, iterations, salted);
    if (rc == 0)
        rc = keys_from_salted(h, salted, out->stored_key, out->server_key);
    gnutls_memset(salted, 0, sizeof salted);
    if (rc != 0)
        return -1;
    out->hash = h;
    out->iterations = iterations;
    out->salt_len = salt_len;
    memcpy(out->salt, salt, salt_len);
    return 0;
}

int scram_new_verifier(enum scram_hash h, const char *password, unsigned iterations,
                       struct scram_verifier *out)
{
    unsigned char salt[SCRAM_SALT_LEN];
    if (gnutls_rnd(GNUTLS_RND_NONCE, salt, sizeof salt) != 0)
        return -1;
    return scram_make_verifier(h, password, salt, sizeof salt, iterations, out);
}

bool scram_check_password(const struct scram_verifier *v, const char *password)
{
    if (v == NULL || password == NULL || (unsigned)v->hash >= SCRAM_HASH_COUNT ||
        v->salt_len == 0 || v->salt_len > SCRAM_MAX_SALT_LEN)
        return false;
    unsigned char salted[SCRAM_MAX_HASH_LEN], stored[SCRAM_MAX_HASH_LEN],
        server[SCRAM_MAX_HASH_LEN];
    bool ok = false;
    if (scram_salted_password(v->hash, password, v->salt, v->salt_len, v->iterations, salted) ==
            0 &&
        keys_from_salted(v->hash, salted, stored, server) == 0)
        ok = gnutls_memcmp(stored, v->stored_key, scram_hash_len(v->hash)) == 0;
    gnutls_memset(salted, 0, sizeof salted);
    gnutls_memset(stored, 0, sizeof stored);
    gnutls_memset(server, 0, sizeof server);
    return ok;
}

char *scram_auth_password(const struct scram_verifier *v)
{
    if (v == NULL || (unsigned)v->hash >= SCRAM_HASH_COUNT || v->salt_len == 0 ||
        v->salt_len > SCRAM_MAX_SALT_LEN)
        return NULL;
    size_t n = scram_hash_len(v->hash);
    char *salt = b64_encode(v->salt, v->salt_len);
    char *stored = b64_encode(v->stored_key, n);
    char *server = b64_encode(v->server_key, n);
    size_t len =
        strlen(scram_mech_name(v->hash)) + 12 + strlen(salt) + strlen(stored) + strlen(server) + 4;
    char *out = xmalloc(len);
    snprintf(out, len, "%s$%u:%s$%s:%s", scram_mech_name(v->hash), v->iterations, salt, stored,
             server);
    free(salt);
    free(stored);
    free(server);
    return out;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const unsigned char *p, size_t n)
{
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Strict: length a multiple of 4, padding only at the end, no whitespace, and the unused bits of
 * the last group zero — so that every byte string has exactly one accepted encoding (SCRAM
 * compares encoded values, e.g. the c= attribute, byte for byte).
 */
long b64_decode(const char *s, size_t len, unsigned char *out, size_t outcap)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad)
                return -1; /* data after '=' */
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t nbytes = 3 - (size_t)pad;
        if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
            return -1; /* non-canonical trailing bits */
        if (o + nbytes > outcap)
            return -1;
        out[o++] = (unsigned char)(w >> 16);
        if (nbytes > 1)
            out[o++] = (unsigned char)(w >> 8);
        if (nbytes > 2)
            out[o++] = (unsigned char)w;
    }
    return (long)o;
}
