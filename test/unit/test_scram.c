/* unit-sources: core/scram.c core/mem.c */
/*
 * test_scram.c — SCRAM verifiers against the published examples (RFC 5802 §5 for SHA-1,
 * RFC 7677 §3 for SHA-256), the authPassword rendering, password checks, base64 edge cases.
 */
#include <gnutls/crypto.h>
#include <stdint.h>

#include "scram.h"
#include "unit.h"

/* Computes the client proof and server signature of an exchange from the verifier alone (the
 * way a server checks it) and from the password (the way a client builds it). */
static void run_example(enum scram_hash h, const char *salt_b64, const char *client_first_bare,
                        const char *server_first, const char *client_final_wo_proof,
                        const char *expect_proof, const char *expect_sig)
{
    unsigned char salt[64];
    long salt_len = b64_decode(salt_b64, strlen(salt_b64), salt, sizeof salt);
    UNIT_ASSERT(salt_len > 0);
    size_t n = scram_hash_len(h);
    gnutls_mac_algorithm_t mac = h == SCRAM_SHA_256 ? GNUTLS_MAC_SHA256 : GNUTLS_MAC_SHA1;

    struct scram_verifier v;
    UNIT_ASSERT_INT_EQ(scram_make_verifier(h, "pencil", salt, (size_t)salt_len, 4096, &v), 0);
    UNIT_ASSERT_INT_EQ(v.iterations, 4096);
    UNIT_ASSERT_INT_EQ(v.salt_len, salt_len);

    char auth_message[512];
    snprintf(auth_message, sizeof auth_message, "%s,%s,%s", client_first_bare, server_first,
             client_final_wo_proof);
    size_t am_len = strlen(auth_message);

    unsigned char salted[32], client_key[32], client_sig[32], proof[32], server_sig[32];
    UNIT_ASSERT_INT_EQ(scram_salted_password(h, "pencil", salt, (size_t)salt_len, 4096, salted), 0);
    UNIT_ASSERT_INT_EQ(gnutls_hmac_fast(mac, salted, n, "Client Key", 10, client_key), 0);
    UNIT_ASSERT_INT_EQ(gnutls_hmac_fast(mac, v.stored_key, n, auth_message, am_len, client_sig), 0);
    for (size_t i = 0; i < n; i++)
        proof[i] = client_key[i] ^ client_sig[i];
    UNIT_ASSERT_INT_EQ(gnutls_hmac_fast(mac, v.server_key, n, auth_message, am_len, server_sig), 0);

    char *p = b64_encode(proof, n);
    char *s = b64_encode(server_sig, n);
    UNIT_ASSERT_STR_EQ(p, expect_proof);
    UNIT_ASSERT_STR_EQ(s, expect_sig);
    free(p);
    free(s);
}

static void test_rfc5802_sha1(void)
{
    run_example(SCRAM_SHA_1, "QSXCR+Q6sek8bf92", "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
                "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

static void test_rfc7677_sha256(void)
{
    run_example(SCRAM_SHA_256, "W22ZaJ0SNY7soEsUEjb6gQ==", "n=user,r=rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
                "i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

static void test_names(void)
{
    UNIT_ASSERT_INT_EQ(scram_hash_len(SCRAM_SHA_1), 20);
    UNIT_ASSERT_INT_EQ(scram_hash_len(SCRAM_SHA_256), 32);
    UNIT_ASSERT_STR_EQ(scram_mech_name(SCRAM_SHA_1), "SCRAM-SHA-1");
    UNIT_ASSERT_STR_EQ(scram_mech_name(SCRAM_SHA_256), "SCRAM-SHA-256");
    UNIT_ASSERT_INT_EQ(scram_hash_from_name("SCRAM-SHA-1"), SCRAM_SHA_1);
    UNIT_ASSERT_INT_EQ(scram_hash_from_name("SCRAM-SHA-256"), SCRAM_SHA_256);
    UNIT_ASSERT_INT_EQ(scram_hash_from_name("SCRAM-SHA-256-PLUS"), -1);
    UNIT_ASSERT_INT_EQ(scram_hash_from_name("PLAIN"), -1);
    UNIT_ASSERT_INT_EQ(scram_hash_from_name(NULL), -1);
}

static void test_auth_password_format(void)
{
    unsigned char salt[64];
    long sl = b64_decode("QSXCR+Q6sek8bf92", 16, salt, sizeof salt);
    struct scram_verifier v;
    UNIT_ASSERT_INT_EQ(scram_make_verifier(SCRAM_SHA_1, "pencil", salt, (size_t)sl, 4096, &v), 0);
    char *ap = scram_auth_password(&v);
    /* StoredKey = H(ClientKey) and ServerKey of the RFC 5802 example. */
    char *stored = b64_encode(v.stored_key, 20);
    char *server = b64_encode(v.server_key, 20);
    char expect[256];
    snprintf(expect, sizeof expect, "SCRAM-SHA-1$4096:QSXCR+Q6sek8bf92$%s:%s", stored, server);
    UNIT_ASSERT_STR_EQ(ap, expect);
    free(ap);
    free(stored);
    free(server);

    struct scram_verifier w;
    UNIT_ASSERT_INT_EQ(
        scram_make_verifier(SCRAM_SHA_256, "pencil", (const unsigned char *)"salt", 4, 10000, &w),
        0);
    ap = scram_auth_password(&w);
    UNIT_ASSERT(strncmp(ap, "SCRAM-SHA-256$10000:c2FsdA==$", 29) == 0);
    /* StoredKey and ServerKey are 32 bytes: 44 base64 characters each, separated by ':'. */
    const char *keys = ap + 29;
    UNIT_ASSERT_INT_EQ(strlen(keys), 44 + 1 + 44);
    UNIT_ASSERT(keys[44] == ':');
    free(ap);
}

static void test_check_password(void)
{
    struct scram_verifier v;
    UNIT_ASSERT_INT_EQ(scram_new_verifier(SCRAM_SHA_256, "correct horse", 4096, &v), 0);
    UNIT_ASSERT_INT_EQ(v.salt_len, SCRAM_SALT_LEN);
    UNIT_ASSERT(scram_check_password(&v, "correct horse"));
    UNIT_ASSERT(!scram_check_password(&v, "correct horsf"));
    UNIT_ASSERT(!scram_check_password(&v, ""));
    UNIT_ASSERT(!scram_check_password(&v, NULL));
    UNIT_ASSERT(!scram_check_password(NULL, "x"));

    struct scram_verifier w;
    UNIT_ASSERT_INT_EQ(scram_new_verifier(SCRAM_SHA_1, "pencil", 4096, &w), 0);
    UNIT_ASSERT(scram_check_password(&w, "pencil"));
    UNIT_ASSERT(!scram_check_password(&w, "Pencil"));

    /* Fresh salts differ. */
    struct scram_verifier x;
    UNIT_ASSERT_INT_EQ(scram_new_verifier(SCRAM_SHA_1, "pencil", 4096, &x), 0);
    UNIT_ASSERT(memcmp(x.salt, w.salt, SCRAM_SALT_LEN) != 0);
}

static void test_saslprep(void)
{
    char *s = scram_saslprep("pencil");
    UNIT_ASSERT_STR_EQ(s, "pencil");
    free(s);
    /* RFC 4013 §3 examples: SOFT HYPHEN maps to nothing, U+00AA NFKC to "a", U+2168 to "IX". */
    s = scram_saslprep("I\xc2\xad"
                       "X");
    UNIT_ASSERT_STR_EQ(s, "IX");
    free(s);
    s = scram_saslprep("\xc2\xaa");
    UNIT_ASSERT_STR_EQ(s, "a");
    free(s);
    s = scram_saslprep("\xe2\x85\xa8");
    UNIT_ASSERT_STR_EQ(s, "IX");
    free(s);
    /* Non-ASCII space maps to ASCII space. */
    s = scram_saslprep("a\xc2\xa0"
                       "b");
    UNIT_ASSERT_STR_EQ(s, "a b");
    free(s);
    /* Prohibited: control character; bidi violation (RAL then L). */
    UNIT_ASSERT(scram_saslprep("\x07") == NULL);
    UNIT_ASSERT(scram_saslprep("\xd8\xa7"
                               "1") == NULL);
    UNIT_ASSERT(scram_saslprep(NULL) == NULL);

    /* A password that SASLprep changes gives the verifier of its prepared form. */
    struct scram_verifier v;
    UNIT_ASSERT_INT_EQ(
        scram_make_verifier(SCRAM_SHA_256, "I\xc2\xadX", (const unsigned char *)"s", 1, 4096, &v),
        0);
    UNIT_ASSERT(scram_check_password(&v, "IX"));
    UNIT_ASSERT(
        scram_make_verifier(SCRAM_SHA_256, "\x07", (const unsigned char *)"s", 1, 4096, &v) == -1);
}

static void test_bad_parameters(void)
{
    struct scram_verifier v;
    unsigned char big[SCRAM_MAX_SALT_LEN + 1] = {0};
    UNIT_ASSERT_INT_EQ(scram_make_verifier(SCRAM_SHA_1, "x", big, 0, 4096, &v), -1);
    UNIT_ASSERT_INT_EQ(scram_make_verifier(SCRAM_SHA_1, "x", big, sizeof big, 4096, &v), -1);
    UNIT_ASSERT_INT_EQ(scram_make_verifier(SCRAM_SHA_1, "x", big, 8, 0, &v), -1);
    UNIT_ASSERT_INT_EQ(scram_make_verifier((enum scram_hash)7, "x", big, 8, 4096, &v), -1);
    v.salt_len = 0;
    UNIT_ASSERT(scram_auth_password(&v) == NULL);
}

static void b64_roundtrip(const char *raw, size_t n, const char *enc)
{
    char *e = b64_encode((const unsigned char *)raw, n);
    UNIT_ASSERT_STR_EQ(e, enc);
    unsigned char out[64];
    long m = b64_decode(e, strlen(e), out, sizeof out);
    UNIT_ASSERT_INT_EQ(m, (long)n);
    UNIT_ASSERT_MEM_EQ(out, raw, n);
    free(e);
}

static void test_base64(void)
{
    /* RFC 4648 §10 test vectors. */
    b64_roundtrip("", 0, "");
    b64_roundtrip("f", 1, "Zg==");
    b64_roundtrip("fo", 2, "Zm8=");
    b64_roundtrip("foo", 3, "Zm9v");
    b64_roundtrip("foob", 4, "Zm9vYg==");
    b64_roundtrip("fooba", 5, "Zm9vYmE=");
    b64_roundtrip("foobar", 6, "Zm9vYmFy");
    b64_roundtrip("\xff\xfe\x00\x01", 4, "//4AAQ==");
    b64_roundtrip("n,,", 3, "biws");

    unsigned char out[16];
    /* Wrong length, bad characters, misplaced padding, whitespace. */
    UNIT_ASSERT_INT_EQ(b64_decode("Zg=", 3, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zg", 2, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Z===", 4, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("====", 4, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zg=a", 4, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zg==Zg==", 8, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9v YmFy", 9, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9-", 4, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9_", 4, out, sizeof out), -1);
    /* Non-canonical trailing bits ("Zh==" would also decode to "f"). */
    UNIT_ASSERT_INT_EQ(b64_decode("Zh==", 4, out, sizeof out), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9=", 4, out, sizeof out), -1);
    /* Output capacity is respected. */
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9vYmFy", 8, out, 5), -1);
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9vYmFy", 8, out, 6), 6);
    UNIT_ASSERT_INT_EQ(b64_decode("", 0, out, 0), 0);
    /* len bounds the input: trailing bytes are not read. */
    UNIT_ASSERT_INT_EQ(b64_decode("Zm9v!!!!", 4, out, sizeof out), 3);

    /* Every byte value survives a round trip. */
    unsigned char all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *e = b64_encode(all, sizeof all);
    UNIT_ASSERT_INT_EQ(strlen(e), 344);
    UNIT_ASSERT_INT_EQ(b64_decode(e, strlen(e), back, sizeof back), 256);
    UNIT_ASSERT_MEM_EQ(all, back, 256);
    free(e);
}

UNIT_MAIN(UNIT_TEST(test_rfc5802_sha1), UNIT_TEST(test_rfc7677_sha256), UNIT_TEST(test_names),
          UNIT_TEST(test_auth_password_format), UNIT_TEST(test_check_password),
          UNIT_TEST(test_saslprep), UNIT_TEST(test_bad_parameters), UNIT_TEST(test_base64))
