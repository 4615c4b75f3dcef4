/* unit-sources: core/jid.c core/mem.c */
/*
 * test_jid.c — JID parsing and preparation: the RFC 7622 §3.5 examples, case folding, limits,
 * IP literals, the one-allocation layout, and the ASCII fast path against libidn itself.
 */
#include <stringprep.h>

#include "jid.h"
#include "unit.h"

static struct jid *parse(const char *s)
{
    return jid_parse(NULL, s, strlen(s), NULL);
}

/* Parses s and checks the prepared parts (NULL: absent). */
static void expect_jid(const char *s, const char *local, const char *domain, const char *resource)
{
    const char *why = NULL;
    struct jid *j = jid_parse(NULL, s, strlen(s), &why);
    if (j == NULL)
        UNIT_FAIL("\"%s\" rejected: %s", s, why ? why : "?");
    if (local)
        UNIT_ASSERT_STR_EQ(j->local, local);
    else
        UNIT_ASSERT(j->local == NULL);
    UNIT_ASSERT_STR_EQ(j->domain, domain);
    if (resource)
        UNIT_ASSERT_STR_EQ(j->resource, resource);
    else
        UNIT_ASSERT(j->resource == NULL);

    char bare[4096], full[8192];
    snprintf(bare, sizeof bare, "%s%s%s", local ? local : "", local ? "@" : "", domain);
    snprintf(full, sizeof full, "%s%s%s", bare, resource ? "/" : "", resource ? resource : "");
    UNIT_ASSERT_STR_EQ(j->bare, bare);
    UNIT_ASSERT_STR_EQ(j->full, full);
    jid_free(&j);
    UNIT_ASSERT(j == NULL);
}

static void expect_invalid(const char *s, size_t len, const char *why_expected)
{
    const char *why = NULL;
    struct jid *j = jid_parse(NULL, s, len, &why);
    if (j != NULL)
        UNIT_FAIL("\"%.*s\" accepted as %s", (int)len, s, j->full);
    UNIT_ASSERT(why != NULL);
    if (why_expected)
        UNIT_ASSERT_STR_EQ(why, why_expected);
}

#define INVALID(s, why) expect_invalid((s), strlen(s), (why))

/* RFC 7622 §3.5, table 1 (valid), with the Nodeprep/Resourceprep results. */
static void test_rfc7622_valid(void)
{
    expect_jid("juliet@example.com", "juliet", "example.com", NULL);
    expect_jid("juliet@example.com/foo", "juliet", "example.com", "foo");
    expect_jid("juliet@example.com/foo bar", "juliet", "example.com", "foo bar");
    expect_jid("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar");
    expect_jid("foo\\20bar@example.com", "foo\\20bar", "example.com", NULL);
    expect_jid("fussball@example.com", "fussball", "example.com", NULL);
    /* Stringprep case folding maps ß to "ss" (PRECIS would keep it). */
    expect_jid("fu\xc3\x9f"
               "ball@example.com",
               "fussball", "example.com", NULL);
    expect_jid("\xcf\x80@example.com", "\xcf\x80", "example.com", NULL);
    /* Σ, σ and ς all fold to σ. */
    expect_jid("\xce\xa3@example.com/foo", "\xcf\x83", "example.com", "foo");
    expect_jid("\xcf\x83@example.com/foo", "\xcf\x83", "example.com", "foo");
    expect_jid("\xcf\x82@example.com/foo", "\xcf\x83", "example.com", "foo");
    expect_jid("king@example.com/\xe2\x99\x9a", "king", "example.com", "\xe2\x99\x9a");
    expect_jid("example.com", NULL, "example.com", NULL);
    expect_jid("example.com/foobar", NULL, "example.com", "foobar");
    expect_jid("a.example.com/b@example.net", NULL, "a.example.com", "b@example.net");
}

/* RFC 7622 §3.5, table 2 (invalid), and where stringprep differs from PRECIS. */
static void test_rfc7622_invalid(void)
{
    INVALID("\"juliet\"@example.com", "localpart fails Nodeprep");
    INVALID("foo bar@example.com", "localpart fails Nodeprep");
    INVALID("@example.com/", "empty localpart");
    INVALID("juliet@", "empty domainpart");
    INVALID("/foobar", "empty domainpart");
    /* Example 18 ("juliet@example.com/ foo") is listed as invalid, but neither Resourceprep
     * nor PRECIS OpaqueString prohibits space (RFC errata 4534): accepted, like other servers. */
    expect_jid("juliet@example.com/ foo", "juliet", "example.com", " foo");
    expect_jid("juliet@example.com/ ", "juliet", "example.com", " ");
    /* Examples 20 and 21 are PRECIS rules; Nodeprep maps U+2163 by NFKC and allows U+265A. */
    expect_jid("henry\xe2\x85\xa3@example.com", "henryiv", "example.com", NULL);
    expect_jid("\xe2\x99\x9a@example.com", "\xe2\x99\x9a", "example.com", NULL);
}

static void test_syntax(void)
{
    INVALID("", "empty JID");
    INVALID("@d", "empty localpart");
    INVALID("l@", "empty domainpart");
    INVALID("d/", "empty resourcepart");
    INVALID("l@d/", "empty resourcepart");
    INVALID("@", "empty localpart");
    INVALID("/", "empty domainpart");
    INVALID("juliet@@example.com", "domainpart contains an invalid character");
    INVALID("a@b@example.com", "domainpart contains an invalid character");
    INVALID("juliet@exa mple.com", "domainpart contains an invalid character");
    INVALID("juliet@example.com:5222", "domainpart contains an invalid character");
    /* '@' after the first '/' belongs to the resource; a second '/' too. */
    expect_jid("d/r@x/y", NULL, "d", "r@x/y");
    expect_jid("l@d//", "l", "d", "/");
    expect_jid("mercutio@example.net//@//", "mercutio", "example.net", "/@//");
    /* Every Nodeprep-forbidden ASCII character. */
    const char *bad = "\"&'/:<>@ ";
    for (const char *c = bad; *c; c++) {
        char s[32];
        snprintf(s, sizeof s, "a%cb@example.com", *c);
        struct jid *j = parse(s);
        /* '/' and '@' change the split instead; all still fail or move the character out of
         * the localpart. */
        if (*c == '/' || *c == '@') {
            if (j)
                UNIT_ASSERT(j->local == NULL || strchr(j->local, *c) == NULL);
        } else {
            UNIT_ASSERT(j == NULL);
        }
        jid_free(&j);
    }
    /* Controls are refused everywhere; NUL inside the given length too. */
    INVALID("a\x01"
            "b@example.com",
            "localpart fails Nodeprep");
    INVALID("ab@example.com/x\x7f", "resourcepart fails Resourceprep");
    INVALID("ab@example.com/x\ty", "resourcepart fails Resourceprep");
    expect_invalid("ab@exa\0mple.com", 15, NULL);
    expect_invalid("a\0b@example.com", 15, NULL);
    /* Only len bytes are read. */
    struct jid *j = jid_parse(NULL, "juliet@example.com/balconyXXXX", 26, NULL);
    UNIT_ASSERT(j != NULL);
    UNIT_ASSERT_STR_EQ(j->full, "juliet@example.com/balcony");
    jid_free(&j);
    /* Invalid UTF-8. */
    INVALID("\xff\xfe@example.com", NULL);
    INVALID("juliet@example.com/\xc3", NULL);
    INVALID("\xc3(@example.com", NULL);
}

static void test_case_folding(void)
{
    expect_jid("JuLiEt@ExAmPlE.CoM/BaLcOnY", "juliet", "example.com", "BaLcOnY");
    expect_jid("EXAMPLE.COM", NULL, "example.com", NULL);
    /* Non-ASCII: Nodeprep folds É, Nameprep folds the domain, Resourceprep keeps case. */
    expect_jid("\xc3\x89lise@\xc3\x89XAMPLE.com/\xc3\x89", "\xc3\xa9lise", "\xc3\xa9xample.com",
               "\xc3\x89");
    /* Compatibility forms are normalised (NFKC): full-width letters. */
    expect_jid("\xef\xbc\xa1"
               "b@example.com",
               "ab", "example.com", NULL);
    /* Resourceprep maps to nothing (soft hyphen) and normalises, but keeps case. */
    expect_jid("a@b/X\xc2\xad"
               "Y",
               "a", "b", "XY");
    /* A localpart that prepares to nothing is empty. */
    INVALID("\xc2\xad@example.com", "empty localpart");
}

static void test_domain(void)
{
    /* One trailing dot is stripped, not two. */
    expect_jid("example.com.", NULL, "example.com", NULL);
    expect_jid("a@example.com./r", "a", "example.com", "r");
    INVALID("example.com..", "domainpart has an empty label");
    INVALID(".", "empty domainpart");
    INVALID("a..b", "domainpart has an empty label");
    INVALID(".example.com", "domainpart has an empty label");
    /* IP literals. */
    expect_jid("127.0.0.1", NULL, "127.0.0.1", NULL);
    expect_jid("a@192.168.0.1/r", "a", "192.168.0.1", "r");
    expect_jid("[::1]", NULL, "[::1]", NULL);
    expect_jid("a@[2001:DB8::1]/r", "a", "[2001:db8::1]", "r");
    expect_jid("[::ffff:192.0.2.1]", NULL, "[::ffff:192.0.2.1]", NULL);
    INVALID("[::1", "invalid IPv6 literal");
    INVALID("[]", "invalid IPv6 literal");
    INVALID("[example.com]", "invalid IPv6 literal");
    INVALID("[1:2:3:4:5:6:7:8:9]", "invalid IPv6 literal");
    INVALID("a@[::1]x", "invalid IPv6 literal");
    /* Labels: 63 bytes fine, 64 not. */
    char d[128];
    memset(d, 'a', 63);
    strcpy(d + 63, ".com");
    expect_jid(d, NULL, d, NULL);
    memset(d, 'a', 64);
    strcpy(d + 64, ".com");
    INVALID(d, "domainpart label longer than 63 bytes");
    /* Internationalised: ideographic full stop is a label separator; label limit applies to the
     * A-label ("xn--" + Punycode) form. */
    expect_jid("\xe4\xbe\x8b\xe3\x80\x82\xe6\xb5\x8b\xe8\xaf\x95", NULL,
               "\xe4\xbe\x8b.\xe6\xb5\x8b\xe8\xaf\x95", NULL);
    expect_jid("m\xc3\xbcnchen.example", NULL, "m\xc3\xbcnchen.example", NULL);
    /* 25 distinct CJK characters: 75 UTF-8 bytes, but a 53-byte A-label — accepted; 32 of them
     * make a 67-byte A-label — refused. */
    char idn[256];
    size_t o = 0;
    for (int i = 0; i < 32; i++) {
        unsigned cp = 0x4e00 + (unsigned)i * 7;
        idn[o++] = (char)(0xe0 | (cp >> 12));
        idn[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        idn[o++] = (char)(0x80 | (cp & 0x3f));
        if (i == 24) {
            strcpy(idn + o, ".example");
            struct jid *j = parse(idn);
            UNIT_ASSERT(j != NULL);
            jid_free(&j);
        }
    }
    strcpy(idn + o, ".example");
    INVALID(idn, "domainpart label longer than 63 bytes");
    /* Nameprep prohibits private use (U+E000); U+3000 normalises to an ASCII space, which the
     * hostname rules refuse. */
    INVALID("exa\xee\x80\x80mple.com", "domainpart fails Nameprep");
    INVALID("exa\xe3\x80\x80mple.com", "domainpart contains an invalid character");
}

static void test_lengths(void)
{
    static char buf[8192];
    /* Localpart of exactly 1023 bytes is fine, 1024 is not. */
    memset(buf, 'x', 1023);
    strcpy(buf + 1023, "@example.com");
    struct jid *j = parse(buf);
    UNIT_ASSERT(j != NULL);
    UNIT_ASSERT_INT_EQ(strlen(j->local), 1023);
    jid_free(&j);
    memset(buf, 'x', 1024);
    strcpy(buf + 1024, "@example.com");
    INVALID(buf, "localpart too long");
    /* Resourcepart likewise. */
    strcpy(buf, "a@b/");
    memset(buf + 4, 'r', 1023);
    buf[4 + 1023] = '\0';
    j = parse(buf);
    UNIT_ASSERT(j != NULL);
    UNIT_ASSERT_INT_EQ(strlen(j->resource), 1023);
    jid_free(&j);
    strcpy(buf, "a@b/");
    memset(buf + 4, 'r', 1024);
    buf[4 + 1024] = '\0';
    INVALID(buf, "resourcepart too long");
    /* Non-ASCII: 512 × "é" = 1024 bytes after preparation. */
    size_t o = 0;
    for (int i = 0; i < 512; i++) {
        buf[o++] = '\xc3';
        buf[o++] = '\xa9';
    }
    strcpy(buf + o, "@example.com");
    INVALID(buf, "localpart too long");
    buf[0] = 'a';
    buf[1] = '@';
    buf[2] = 'b';
    buf[3] = '/';
    o = 4;
    for (int i = 0; i < 512; i++) {
        buf[o++] = '\xc3';
        buf[o++] = '\xa9';
    }
    buf[o] = '\0';
    INVALID(buf, "resourcepart too long");
    /* NFKC expansion past the limit: U+3316 (3 bytes) becomes six katakana (18 bytes). */
    o = 0;
    for (int i = 0; i < 60; i++) {
        buf[o++] = '\xe3';
        buf[o++] = '\x8c';
        buf[o++] = '\x96';
    }
    strcpy(buf + o, "@example.com");
    INVALID(buf, "localpart too long");
    /* Domainpart: many short labels up to 1023 bytes. */
    o = 0;
    while (o + 2 <= 1023) {
        buf[o++] = 'a';
        buf[o++] = '.';
    }
    buf[o++] = 'a'; /* 1023 bytes */
    buf[o] = '\0';
    UNIT_ASSERT_INT_EQ(o, 1023);
    j = parse(buf);
    UNIT_ASSERT(j != NULL);
    jid_free(&j);
    buf[o++] = 'a';
    buf[o] = '\0';
    INVALID(buf, "domainpart too long");
    /* Huge hostile input is refused quickly. */
    memset(buf, 'x', sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
    buf[10] = '@';
    INVALID(buf, "domainpart too long");
}

static void test_make(void)
{
    const char *why = NULL;
    struct jid *j = jid_make(NULL, "Juliet", "Example.COM.", "Balcony", &why);
    UNIT_ASSERT(j != NULL);
    UNIT_ASSERT_STR_EQ(j->full, "juliet@example.com/Balcony");
    UNIT_ASSERT_STR_EQ(j->bare, "juliet@example.com");
    jid_free(&j);
    j = jid_make(NULL, NULL, "example.com", NULL, NULL);
    UNIT_ASSERT_STR_EQ(j->full, "example.com");
    UNIT_ASSERT(j->local == NULL && j->resource == NULL);
    jid_free(&j);
    j = jid_make(NULL, NULL, "example.com", "r/x@y", NULL);
    UNIT_ASSERT_STR_EQ(j->full, "example.com/r/x@y");
    jid_free(&j);
    /* jid_make does not split: '@' or '/' in a localpart is invalid. */
    UNIT_ASSERT(jid_make(NULL, "a@b", "example.com", NULL, &why) == NULL);
    UNIT_ASSERT_STR_EQ(why, "localpart fails Nodeprep");
    UNIT_ASSERT(jid_make(NULL, "a", "exa/mple.com", NULL, &why) == NULL);
    UNIT_ASSERT(jid_make(NULL, "", "example.com", NULL, &why) == NULL);
    UNIT_ASSERT_STR_EQ(why, "empty localpart");
    UNIT_ASSERT(jid_make(NULL, "a", NULL, NULL, &why) == NULL);
    UNIT_ASSERT(jid_make(NULL, "a", "example.com", "", &why) == NULL);
    UNIT_ASSERT_STR_EQ(why, "empty resourcepart");
    /* Same result as parse. */
    struct jid *p = parse("\xce\xa3@Example.com/\xe2\x99\x9a");
    j = jid_make(NULL, "\xce\xa3", "Example.com", "\xe2\x99\x9a", NULL);
    UNIT_ASSERT_STR_EQ(j->full, p->full);
    jid_free(&j);
    jid_free(&p);
}

static void test_arena_and_copy(void)
{
    struct arena *a = arena_new(0);
    struct jid *j = jid_parse(a, "Romeo@Example.NET/Orchard", 25, NULL);
    UNIT_ASSERT(j != NULL);
    UNIT_ASSERT_STR_EQ(j->full, "romeo@example.net/Orchard");
    /* Domain and resource live inside bare and full (one block). */
    UNIT_ASSERT(j->domain == j->bare + 6);
    UNIT_ASSERT(j->resource == j->full + strlen(j->bare) + 1);

    struct jid *c = jid_copy(NULL, j);
    arena_free(&a);
    UNIT_ASSERT_STR_EQ(c->full, "romeo@example.net/Orchard");
    UNIT_ASSERT_STR_EQ(c->bare, "romeo@example.net");
    UNIT_ASSERT_STR_EQ(c->local, "romeo");
    UNIT_ASSERT_STR_EQ(c->domain, "example.net");
    UNIT_ASSERT_STR_EQ(c->resource, "Orchard");

    a = arena_new(0);
    struct jid *d = jid_copy(a, c);
    jid_free(&c);
    UNIT_ASSERT_STR_EQ(d->full, "romeo@example.net/Orchard");
    struct jid *e = jid_copy(a, jid_parse(a, "example.net", 11, NULL));
    UNIT_ASSERT_STR_EQ(e->full, "example.net");
    UNIT_ASSERT(e->local == NULL && e->resource == NULL);
    UNIT_ASSERT(jid_copy(a, NULL) == NULL);
    arena_free(&a);
    jid_free(NULL);
    struct jid *none = NULL;
    jid_free(&none);
}

static void test_prep_functions(void)
{
    const char *why = NULL;
    char *s = jid_prep_local(NULL, "JULIET", &why);
    UNIT_ASSERT_STR_EQ(s, "juliet");
    free(s);
    UNIT_ASSERT(jid_prep_local(NULL, "jul iet", &why) == NULL);
    UNIT_ASSERT_STR_EQ(why, "localpart fails Nodeprep");
    UNIT_ASSERT(jid_prep_local(NULL, "", &why) == NULL);
    UNIT_ASSERT(jid_prep_local(NULL, NULL, &why) == NULL);

    struct arena *a = arena_new(0);
    UNIT_ASSERT_STR_EQ(jid_prep_resource(a, "Balcony Two", NULL), "Balcony Two");
    UNIT_ASSERT_STR_EQ(jid_prep_resource(a, "\xe2\x85\xa3", NULL), "IV");
    UNIT_ASSERT(jid_prep_resource(a, "", &why) == NULL);
    UNIT_ASSERT_STR_EQ(jid_prep_domain(a, "EXAMPLE.org.", NULL), "example.org");
    UNIT_ASSERT_STR_EQ(jid_prep_domain(a, "[::1]", NULL), "[::1]");
    UNIT_ASSERT(jid_prep_domain(a, "exa_mple.org", NULL) != NULL);
    UNIT_ASSERT(jid_prep_domain(a, "a@b", &why) == NULL);
    UNIT_ASSERT(jid_prep_domain(a, "", &why) == NULL);
    UNIT_ASSERT_STR_EQ(why, "empty domainpart");
    arena_free(&a);
}

/* The ASCII fast path must give what libidn gives, for every printable ASCII character. */
static void test_fast_path_matches_libidn(void)
{
    for (int c = 1; c < 128; c++) {
        char in[8] = {'a', (char)c, 'B', '\0'};
        char ref[64];

        /* Nodeprep */
        strcpy(ref, in);
        int rc = stringprep(ref, sizeof ref, STRINGPREP_NO_UNASSIGNED, stringprep_xmpp_nodeprep);
        char *got = jid_prep_local(NULL, in, NULL);
        if (rc == STRINGPREP_OK) {
            if (got == NULL || strcmp(got, ref) != 0)
                UNIT_FAIL("Nodeprep of 0x%02x: libidn \"%s\", ours \"%s\"", c, ref,
                          got ? got : "(rejected)");
        } else if (got != NULL) {
            UNIT_FAIL("Nodeprep of 0x%02x: libidn rejects, ours \"%s\"", c, got);
        }
        free(got);

        /* Resourceprep */
        strcpy(ref, in);
        rc = stringprep(ref, sizeof ref, 0, stringprep_xmpp_resourceprep);
        got = jid_prep_resource(NULL, in, NULL);
        if (rc == STRINGPREP_OK) {
            if (got == NULL || strcmp(got, ref) != 0)
                UNIT_FAIL("Resourceprep of 0x%02x: libidn \"%s\", ours \"%s\"", c, ref,
                          got ? got : "(rejected)");
        } else if (got != NULL) {
            UNIT_FAIL("Resourceprep of 0x%02x: libidn rejects, ours \"%s\"", c, got);
        }
        free(got);

        /* Nameprep: where we accept, the result equals libidn's (our hostname rules refuse
         * more ASCII than Nameprep does). */
        strcpy(ref, in);
        rc = stringprep(ref, sizeof ref, STRINGPREP_NO_UNASSIGNED, stringprep_nameprep);
        got = jid_prep_domain(NULL, in, NULL);
        if (got != NULL && (rc != STRINGPREP_OK || strcmp(got, ref) != 0))
            UNIT_FAIL("Nameprep of 0x%02x: libidn \"%s\", ours \"%s\"", c, ref, got);
        free(got);
    }
}

UNIT_MAIN(UNIT_TEST(test_rfc7622_valid), UNIT_TEST(test_rfc7622_invalid), UNIT_TEST(test_syntax),
          UNIT_TEST(test_case_folding), UNIT_TEST(test_domain), UNIT_TEST(test_lengths),
          UNIT_TEST(test_make), UNIT_TEST(test_arena_and_copy), UNIT_TEST(test_prep_functions),
          UNIT_TEST(test_fast_path_matches_libidn))
