/*
 * scram.h — SCRAM verifiers (RFC 5802, RFC 7677): the only form in which credentials are stored.
 *
 *   SaltedPassword = PBKDF2(HMAC-H, SASLprep(password), salt, i)
 *   StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
 *   ServerKey      = HMAC(SaltedPassword, "Server Key")
 *
 * The SCRAM exchange itself is run by Cyrus libsasl2's scram plugin; this file makes verifiers
 * (stanzactl, password changes), checks a plaintext password against a verifier (SASL PLAIN over
 * TLS) and renders the RFC 5803 authPassword form that the Cyrus plugin reads.
 */
#ifndef STANZAD_SCRAM_H
#define STANZAD_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

enum scram_hash { SCRAM_SHA_1 = 0, SCRAM_SHA_256 = 1 };
#define SCRAM_HASH_COUNT         2
#define SCRAM_MAX_HASH_LEN       32
#define SCRAM_MAX_SALT_LEN       64
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_SALT_LEN           16

struct scram_verifier {
    enum scram_hash hash;
    unsigned iterations;
    size_t salt_len;
    unsigned char salt[SCRAM_MAX_SALT_LEN];
    unsigned char stored_key[SCRAM_MAX_HASH_LEN];
    unsigned char server_key[SCRAM_MAX_HASH_LEN];
};

size_t scram_hash_len(enum scram_hash h);       /* 20 or 32 */
const char *scram_mech_name(enum scram_hash h); /* "SCRAM-SHA-1", "SCRAM-SHA-256" */
/* -1 if the name is not one of ours. */
int scram_hash_from_name(const char *mech);

/* SASLprep of a password (RFC 4013). Returns a malloc'd string or NULL when it is invalid. */
char *scram_saslprep(const char *password);
/* SaltedPassword; out holds scram_hash_len(h) bytes. Returns 0, -1 on error. */
int scram_salted_password(enum scram_hash h, const char *password, const unsigned char *salt,
                          size_t salt_len, unsigned iterations, unsigned char *out);
/* Verifier for password with the given salt. Returns 0, -1 (bad password encoding). */
int scram_make_verifier(enum scram_hash h, const char *password, const unsigned char *salt,
                        size_t salt_len, unsigned iterations, struct scram_verifier *out);
/* Same with a fresh random salt of SCRAM_SALT_LEN bytes. */
int scram_new_verifier(enum scram_hash h, const char *password, unsigned iterations,
                       struct scram_verifier *out);
/* Does password match v? Constant-time comparison of the derived StoredKey. */
bool scram_check_password(const struct scram_verifier *v, const char *password);
/* "SCRAM-SHA-1$4096:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>" (RFC 5803); malloc'd. */
char *scram_auth_password(const struct scram_verifier *v);

/* Base64 helpers (standard alphabet, with padding). Return malloc'd / length or -1. */
char *b64_encode(const unsigned char *p, size_t n);
long b64_decode(const char *s, size_t len, unsigned char *out, size_t outcap);

#endif
