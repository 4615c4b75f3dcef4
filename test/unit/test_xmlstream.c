/* unit-sources: core/mem.c core/buf.c core/stanza.c core/serialize.c core/xmlstream.c core/slab.c */
/*
 * test_xmlstream.c — the XMPP stream parser: whole, byte-by-byte and randomly chunked input,
 * stream restarts, restricted XML, broken XML, limits, and the callback contract.
 */
#include <fcntl.h>
#include <stdint.h>

#include "stanza.h"
#include "unit.h"
#include "xmlstream.h"

#define NS_STREAM_DECL "xmlns:stream='http://etherx.jabber.org/streams'"
#define HEADER         "<stream:stream xmlns='jabber:client' " NS_STREAM_DECL ">"

/* ---- a recorder of everything the parser reports ---- */

struct rec {
    struct xmlstream *xs;
    struct buf log; /* transcript: one line per event */
    int opens, stanzas, closes, errors;
    enum stream_error err;
    size_t pos;           /* index of the last byte fed (set by the feeding helpers) */
    size_t at[32];        /* pos at each open/stanza/close event */
    int nat;              /* entries in at */
    const char *reset_on; /* reset the stream from the callback of a stanza with this name */
    bool free_on_stanza, free_on_error;
    char first_ns[64]; /* namespace of the first stanza */
};

static void note_pos(struct rec *r)
{
    if (r->nat < 32)
        r->at[r->nat++] = r->pos;
}

static void on_open(void *ud, const struct xmlstream_header *h)
{
    struct rec *r = ud;
    r->opens++;
    note_pos(r);
    buf_printf(&r->log, "open prefix=%s ns=%s default=%s to=%s from=%s id=%s version=%s lang=%s\n",
               h->prefix ? h->prefix : "-", h->ns ? h->ns : "-",
               h->default_ns ? h->default_ns : "-", h->to ? h->to : "-", h->from ? h->from : "-",
               h->id ? h->id : "-", h->version ? h->version : "-", h->lang ? h->lang : "-");
}

static void on_stanza(void *ud, struct stanza *st)
{
    struct rec *r = ud;
    if (r->stanzas == 0)
        snprintf(r->first_ns, sizeof r->first_ns, "%s", st->el->ns);
    r->stanzas++;
    note_pos(r);
    xml_serialize(&r->log, st->el, NS_CLIENT);
    buf_append_str(&r->log, "\n");
    bool reset = r->reset_on != NULL && strcmp(st->el->name, r->reset_on) == 0;
    stanza_free(&st);
    if (reset)
        xmlstream_reset(r->xs);
    if (r->free_on_stanza)
        xmlstream_free(&r->xs);
}

static void on_close(void *ud)
{
    struct rec *r = ud;
    r->closes++;
    note_pos(r);
    buf_append_str(&r->log, "close\n");
}

static void on_error(void *ud, enum stream_error e, const char *text)
{
    struct rec *r = ud;
    r->errors++;
    r->err = e;
    buf_printf(&r->log, "error %s\n", stream_error_name(e));
    if (r->free_on_error)
        xmlstream_free(&r->xs);
}

static const struct xmlstream_callbacks callbacks = {on_open, on_stanza, on_close, on_error};

static void rec_init(struct rec *r, const struct xmlstream_limits *lim)
{
    memset(r, 0, sizeof(*r));
    r->xs = xmlstream_new(&callbacks, r, lim);
}

static void rec_done(struct rec *r)
{
    xmlstream_free(&r->xs);
    buf_free(&r->log);
}

static const char *transcript(struct rec *r)
{
    return buf_cstr(&r->log);
}

/* Feeding helpers; each returns the result of the last feed. */
static int feed_len(struct rec *r, const char *s, size_t n)
{
    r->pos = n - 1;
    return xmlstream_feed(r->xs, s, n);
}

static int feed(struct rec *r, const char *s)
{
    return feed_len(r, s, strlen(s));
}

static int feed_bytes(struct rec *r, const char *s)
{
    int rc = 0;
    for (size_t i = 0; s[i] != '\0' && r->xs != NULL; i++) {
        r->pos = i;
        rc = xmlstream_feed(r->xs, s + i, 1);
        if (rc < 0)
            break;
    }
    return rc;
}

static uint32_t rng(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static int feed_random(struct rec *r, const char *s, uint32_t seed)
{
    uint32_t state = seed * 2654435761u + 1;
    size_t len = strlen(s), off = 0;
    int rc = 0;
    while (off < len && r->xs != NULL) {
        /* Mostly small pieces, sometimes large ones. */
        size_t n = 1 + rng(&state) % (rng(&state) % 4 == 0 ? 512 : 24);
        if (n > len - off)
            n = len - off;
        r->pos = off + n - 1;
        rc = xmlstream_feed(r->xs, s + off, n);
        if (rc < 0)
            break;
        off += n;
    }
    return rc;
}

enum mode { WHOLE, BYTES };

/* Runs input through a fresh parser and returns the error (or -1 if none). */
static int run(const char *input, enum mode mode, const struct xmlstream_limits *lim, struct rec *r)
{
    rec_init(r, lim);
    int rc = mode == WHOLE ? feed(r, input) : feed_bytes(r, input);
    UNIT_ASSERT_INT_EQ(rc, r->errors > 0 ? -1 : 0);
    UNIT_ASSERT(r->errors <= 1);
    return r->errors > 0 ? (int)r->err : -1;
}

static void expect_error(const char *input, enum stream_error want)
{
    for (int m = WHOLE; m <= BYTES; m++) {
        struct rec r;
        int got = run(input, (enum mode)m, NULL, &r);
        if (got != (int)want)
            UNIT_FAIL("%s feeding of\n    %s\n  gave %s, expected %s",
                      m == WHOLE ? "whole" : "bytewise", input,
                      got < 0 ? "no error" : stream_error_name((enum stream_error)got),
                      stream_error_name(want));
        rec_done(&r);
    }
}

static void expect_ok(const char *input, int stanzas)
{
    for (int m = WHOLE; m <= BYTES; m++) {
        struct rec r;
        int got = run(input, (enum mode)m, NULL, &r);
        if (got >= 0)
            UNIT_FAIL("%s feeding of\n    %s\n  gave %s", m == WHOLE ? "whole" : "bytewise", input,
                      stream_error_name((enum stream_error)got));
        UNIT_ASSERT_INT_EQ(r.stanzas, stanzas);
        rec_done(&r);
    }
}

/* ---- a realistic client stream ---- */

static const char client_stream[] =
    "<?xml version='1.0'?>\n"
    "<stream:stream to='example.com' xmlns='jabber:client' " NS_STREAM_DECL
    " version='1.0' xml:lang='en' id='c2s-1'>\n"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>\n"
    " \n \t "
    "<presence><show>away</show><status xml:lang='en'>Out &amp; about</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' "
    "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>"
    "<message to='juliet@capulet.lit/balcony' type=\"chat\" id='ktx72v49' xml:lang='en'>"
    "<body>Art thou not Romeo, and a Montague?</body>"
    "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    "<iq type='get' id='roster_1'><query xmlns='jabber:iq:roster'/></iq>"
    "<message to='a@b' id='x>y'><body>multi\nline &lt;text&gt; with caf&#xe9; ' \" ]]&gt; "
    "<![CDATA[<raw> & stuff]]></body>"
    "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
    "<p>hi <b>there</b></p></body></html></message>\n"
    "</stream:stream>";

static const char client_transcript[] =
    "open prefix=stream ns=http://etherx.jabber.org/streams default=jabber:client to=example.com "
    "from=- id=c2s-1 version=1.0 lang=en\n"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>\n"
    "<presence><show>away</show><status xml:lang='en'>Out &amp; about</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' "
    "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>\n"
    "<message to='juliet@capulet.lit/balcony' type='chat' id='ktx72v49' xml:lang='en'>"
    "<body>Art thou not Romeo, and a Montague?</body>"
    "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
    "<iq type='get' id='roster_1'><query xmlns='jabber:iq:roster'/></iq>\n"
    "<message to='a@b' id='x&gt;y'><body>multi\nline &lt;text&gt; with caf\xc3\xa9 ' \" ]]&gt; "
    "&lt;raw&gt; &amp; stuff</body>"
    "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
    "<p>hi <b>there</b></p></body></html></message>\n"
    "close\n";

static void test_client_stream_whole(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, client_stream), 0);
    UNIT_ASSERT_STR_EQ(transcript(&r), client_transcript);
    UNIT_ASSERT_INT_EQ(r.opens, 1);
    UNIT_ASSERT_INT_EQ(r.stanzas, 6);
    UNIT_ASSERT_INT_EQ(r.closes, 1);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    /* Nothing is read after the stream close. */
    UNIT_ASSERT_INT_EQ(feed(&r, "<message/>"), 0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 6);
    rec_done(&r);
}

/* Byte by byte: each event fires in the feed call that carried its final '>'. */
static void test_client_stream_byte_by_byte(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed_bytes(&r, client_stream), 0);
    UNIT_ASSERT_STR_EQ(transcript(&r), client_transcript);
    UNIT_ASSERT_INT_EQ(r.nat, 8);
    /* Where each top-level element ends in the input. */
    const char *ends[] = {"version='1.0' xml:lang='en' id='c2s-1'>",
                          "xmpp-tls'/>",
                          "</bind></iq>",
                          "</presence>",
                          "</message>",
                          "roster'/></iq>",
                          "</html></message>",
                          "</stream:stream>"};
    const char *from = client_stream;
    for (int i = 0; i < 8; i++) {
        const char *e = strstr(from, ends[i]);
        UNIT_ASSERT(e != NULL);
        size_t last = (size_t)(e - client_stream) + strlen(ends[i]) - 1;
        UNIT_ASSERT_INT_EQ(client_stream[last], '>');
        UNIT_ASSERT_INT_EQ(r.at[i], last);
        from = e + strlen(ends[i]);
    }
    rec_done(&r);
}

static void test_client_stream_random_chunks(void)
{
    for (uint32_t seed = 1; seed <= 300; seed++) {
        struct rec r;
        rec_init(&r, NULL);
        UNIT_ASSERT_INT_EQ(feed_random(&r, client_stream, seed), 0);
        if (strcmp(transcript(&r), client_transcript) != 0)
            UNIT_FAIL("seed %u gave\n%s", seed, transcript(&r));
        /* Each event fires in the chunk holding the element's last byte, never later. */
        UNIT_ASSERT_INT_EQ(r.nat, 8);
        for (int i = 0; i < r.nat; i++)
            UNIT_ASSERT(r.at[i] < sizeof client_stream - 1);
        rec_done(&r);
    }
}

static void test_header_fields(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, "<s:stream xmlns:s='http://etherx.jabber.org/streams' "
                                "xmlns='jabber:server' from='a.example' to='b.example' "
                                "id='abc&amp;d' version='1.0' xml:lang='de' other='x'>"),
                       0);
    UNIT_ASSERT_STR_EQ(transcript(&r),
                       "open prefix=s ns=http://etherx.jabber.org/streams default=jabber:server "
                       "to=b.example from=a.example id=abc&d version=1.0 lang=de\n");
    UNIT_ASSERT_INT_EQ(feed(&r, "<message to='x'/>"), 0);
    UNIT_ASSERT_STR_EQ(r.first_ns, NS_SERVER);
    rec_done(&r);

    /* No default namespace, no prefix. */
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, "<stream xmlns='http://etherx.jabber.org/streams'>"), 0);
    UNIT_ASSERT_STR_EQ(transcript(&r), "open prefix=- ns=http://etherx.jabber.org/streams "
                                       "default=http://etherx.jabber.org/streams to=- from=- "
                                       "id=- version=- lang=-\n");
    rec_done(&r);
}

static void test_prefixed_stanza(void)
{
    struct rec plain, prefixed;
    rec_init(&plain, NULL);
    rec_init(&prefixed, NULL);
    UNIT_ASSERT_INT_EQ(feed(&plain, HEADER "<message to='a@b' xml:lang='en'><body>x</body>"
                                           "</message>"),
                       0);
    UNIT_ASSERT_INT_EQ(feed(&prefixed, HEADER "<foo:message xmlns:foo='jabber:client' to='a@b' "
                                              "xml:lang='en'><foo:body>x</foo:body></foo:message>"),
                       0);
    UNIT_ASSERT_INT_EQ(prefixed.stanzas, 1);
    UNIT_ASSERT_STR_EQ(prefixed.first_ns, NS_CLIENT);
    UNIT_ASSERT_STR_EQ(transcript(&prefixed), transcript(&plain));
    rec_done(&plain);
    rec_done(&prefixed);
}

static void test_whitespace_and_text_at_stream_level(void)
{
    /* Keepalives between stanzas are ignored. */
    expect_ok(HEADER " \n\t\r\n <presence/>   \n\n <presence/>  ", 2);
    /* Anything else is not. */
    expect_error(HEADER "hello<presence/>", STRERR_BAD_FORMAT);
    expect_error(HEADER "<presence/>  x  <presence/>", STRERR_BAD_FORMAT);
    expect_error(HEADER "<![CDATA[text]]>", STRERR_BAD_FORMAT);
}

static void test_stream_close_and_reset(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<presence/></stream:stream>"), 0);
    UNIT_ASSERT_INT_EQ(r.closes, 1);
    UNIT_ASSERT_INT_EQ(feed(&r, "<presence/>"), 0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    /* A reset after the close starts a new stream. */
    xmlstream_reset(r.xs);
    UNIT_ASSERT_INT_EQ(feed(&r, "<?xml version='1.0'?>" HEADER "<message/>"), 0);
    UNIT_ASSERT_INT_EQ(r.opens, 2);
    UNIT_ASSERT_INT_EQ(r.stanzas, 2);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    rec_done(&r);
}

static void test_reset_outside_callback(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<message><body>half"), 0);
    xmlstream_reset(r.xs);
    /* The half stanza is gone; the new stream may start with blanks and an XML declaration. */
    UNIT_ASSERT_INT_EQ(
        feed(&r, "\n <?xml version='1.0'?><stream:stream xmlns='jabber:client' " NS_STREAM_DECL
                 " to='second'><message><body>new</body></message>"),
        0);
    UNIT_ASSERT_INT_EQ(r.opens, 2);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    UNIT_ASSERT(strstr(transcript(&r), "to=second") != NULL);
    UNIT_ASSERT(strstr(transcript(&r), "<message><body>new</body></message>") != NULL);
    UNIT_ASSERT(strstr(transcript(&r), "half") == NULL);
    rec_done(&r);
}

/* STARTTLS: the reset from the callback drops the rest of the same feed, so bytes a peer sent
 * in plaintext after <starttls/> can never be read as part of the new stream. */
static void test_reset_inside_callback_drops_rest(void)
{
    struct rec r;
    rec_init(&r, NULL);
    r.reset_on = "starttls";
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                                       "<message to='victim'><body>injected</body></message>"),
                       0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    UNIT_ASSERT(strstr(transcript(&r), "injected") == NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, "<?xml version='1.0'?>" HEADER "<message><body>after</body>"
                                "</message>"),
                       0);
    UNIT_ASSERT_INT_EQ(r.opens, 2);
    UNIT_ASSERT_INT_EQ(r.stanzas, 2);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    UNIT_ASSERT(strstr(transcript(&r), "<message><body>after</body></message>") != NULL);
    rec_done(&r);

    /* An error later in the dropped bytes is dropped with them. */
    rec_init(&r, NULL);
    r.reset_on = "success";
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
                                       "<!-- not seen --><broken"),
                       0);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<presence/>"), 0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 2);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    rec_done(&r);
}

/* ---- restricted XML ---- */

static void test_restricted_dtd_and_entities(void)
{
    /* An internal subset. */
    expect_error("<?xml version='1.0'?><!DOCTYPE stream [<!ELEMENT stream ANY>]>" HEADER,
                 STRERR_RESTRICTED_XML);
    /* The billion laughs. */
    expect_error("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                 "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
                 "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
                 "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
                 "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
                 "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
                 "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
                 "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
                 "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
                 "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"
                 "]>" HEADER "<message><body>&lol9;</body></message>",
                 STRERR_RESTRICTED_XML);
    /* External entities and an external subset: refused before anything could be loaded. */
    expect_error("<!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>" HEADER
                 "<message><body>&xxe;</body></message>",
                 STRERR_RESTRICTED_XML);
    expect_error("<!DOCTYPE stream SYSTEM 'file:///etc/passwd'>" HEADER, STRERR_RESTRICTED_XML);
    expect_error("<!DOCTYPE stream PUBLIC '-//x//y' 'http://127.0.0.1:1/x.dtd'>" HEADER,
                 STRERR_RESTRICTED_XML);
    /* Declarations inside the stream. */
    expect_error(HEADER "<!DOCTYPE x [<!ENTITY a 'b'>]>", STRERR_RESTRICTED_XML);
    expect_error(HEADER "<message><!ENTITY a 'b'></message>", STRERR_RESTRICTED_XML);
    /* References to undeclared entities, in text and in attributes. */
    expect_error(HEADER "<message><body>a &nbsp; b</body></message>", STRERR_RESTRICTED_XML);
    expect_error(HEADER "<message to='&foo;'/>", STRERR_RESTRICTED_XML);
    /* The five predefined entities and character references are fine. */
    struct rec r;
    UNIT_ASSERT_INT_EQ(run(HEADER "<m a='&lt;&gt;&amp;&apos;&quot;&#65;&#x42;'>"
                                  "&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</m>",
                           WHOLE, NULL, &r),
                       -1);
    UNIT_ASSERT(strstr(transcript(&r),
                       "<m a='&lt;&gt;&amp;&apos;&quot;AB'>&lt;&gt;&amp;'\"AB</m>") != NULL);
    rec_done(&r);
}

static void test_restricted_comments_and_pis(void)
{
    expect_error("<!-- hello -->" HEADER, STRERR_RESTRICTED_XML);
    expect_error(HEADER "<!-- hello -->", STRERR_RESTRICTED_XML);
    expect_error(HEADER "<message><body>a<!-- hello -->b</body></message>", STRERR_RESTRICTED_XML);
    expect_error("<?xml-stylesheet href='x'?>" HEADER, STRERR_RESTRICTED_XML);
    expect_error(HEADER "<?pi data?>", STRERR_RESTRICTED_XML);
    expect_error(HEADER "<message><?pi data?></message>", STRERR_RESTRICTED_XML);
    /* The XML declaration is not a processing instruction. */
    expect_ok("<?xml version='1.0'?>" HEADER "<presence/>", 1);
    expect_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" HEADER "<presence/>", 1);
}

/* ---- broken XML ---- */

static void test_not_well_formed(void)
{
    expect_error(HEADER "<message><body>hi</message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message></message></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>\xc3\x28</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>\xff</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>\xc0\xaf</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>\xed\xa0\x80</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message to='\xfe'/>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message to='a<b'/><presence/>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message to='abc><body>x</body></message><presence/>",
                 STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message a='1' a='2'/>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<foo:message/>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>&#0;</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<message><body>\x01</body></message>", STRERR_NOT_WELL_FORMED);
    expect_error(HEADER "<1message/>", STRERR_NOT_WELL_FORMED);
    expect_error("<stream:stream xmlns='jabber:client'>", STRERR_BAD_NAMESPACE_PREFIX);
}

static void test_wrong_stream_element(void)
{
    expect_error("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>",
                 STRERR_INVALID_NAMESPACE);
    expect_error("<stream xmlns='jabber:client'>", STRERR_INVALID_NAMESPACE);
    expect_error("<message xmlns='jabber:client'/>", STRERR_INVALID_NAMESPACE);
    expect_error("<stream:features " NS_STREAM_DECL ">", STRERR_BAD_FORMAT);
}

static void test_encodings(void)
{
    /* A UTF-8 byte order mark is skipped, also when it arrives byte by byte. */
    expect_ok("\xef\xbb\xbf<?xml version='1.0'?>" HEADER "<presence/>", 1);
    expect_ok("\xef\xbb\xbf" HEADER "<presence/>", 1);
    expect_error("\xef\xbb<stream/>", STRERR_NOT_WELL_FORMED);
    /* UTF-16 and UTF-32, with or without a mark, are not XMPP. */
    expect_error("\xfe\xff", STRERR_UNSUPPORTED_ENCODING);
    expect_error("\xff\xfe<", STRERR_UNSUPPORTED_ENCODING);
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed_len(&r, "\0<\0s", 4), -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_UNSUPPORTED_ENCODING);
    rec_done(&r);
    /* A declared encoding other than UTF-8 is ignored: the bytes are read as UTF-8. */
    expect_ok("<?xml version='1.0' encoding='ISO-8859-1'?>" HEADER "<m>caf\xc3\xa9</m>", 1);
    expect_error("<?xml version='1.0' encoding='ISO-8859-1'?>" HEADER "<m>caf\xe9</m>",
                 STRERR_NOT_WELL_FORMED);
}

/* ---- limits ---- */

/* An endless stanza fed byte by byte is refused with the first byte past the limit. */
static void test_endless_stanza_byte_by_byte(void)
{
    const size_t limit = 1000;
    struct xmlstream_limits lim = {.max_stanza_bytes = limit};
    const char *kinds[] = {"<message><body>", "<message to='", "<message ", "<message><a><b><c>"};
    const char fill[] = {'a', 'b', ' ', 'x'};
    for (int k = 0; k < 4; k++) {
        struct rec r;
        rec_init(&r, &lim);
        UNIT_ASSERT_INT_EQ(feed(&r, HEADER "  "), 0);
        size_t fed = 0;
        int rc = 0;
        for (size_t i = 0; kinds[k][i] != '\0' && rc == 0; i++, fed++)
            rc = xmlstream_feed(r.xs, kinds[k] + i, 1);
        while (rc == 0 && fed < 100000) {
            rc = xmlstream_feed(r.xs, &fill[k], 1);
            fed++;
        }
        UNIT_ASSERT_INT_EQ(rc, -1);
        UNIT_ASSERT_INT_EQ(r.err, STRERR_POLICY_VIOLATION);
        UNIT_ASSERT_INT_EQ(fed, limit + 1);
        UNIT_ASSERT_INT_EQ(r.errors, 1);
        rec_done(&r);
    }
}

static void test_giant_attribute_and_text(void)
{
    struct xmlstream_limits lim = {.max_stanza_bytes = 4096};
    size_t n = 200000;
    char *big = xmalloc(n + 100);
    /* A giant attribute value in one chunk. */
    int len = sprintf(big, "<message to='");
    memset(big + len, 'a', n);
    strcpy(big + len + n, "'/>");
    struct rec r;
    rec_init(&r, &lim);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER), 0);
    UNIT_ASSERT_INT_EQ(feed(&r, big), -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_POLICY_VIOLATION);
    rec_done(&r);
    /* A giant text node in chunks of 1000. */
    len = sprintf(big, "<message><body>");
    memset(big + len, 't', n);
    strcpy(big + len + n, "</body></message>");
    rec_init(&r, &lim);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER), 0);
    int rc = 0;
    size_t off = 0, total = strlen(big);
    for (; off < total && rc == 0; off += 1000)
        rc = xmlstream_feed(r.xs, big + off, total - off < 1000 ? total - off : 1000);
    UNIT_ASSERT_INT_EQ(rc, -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_POLICY_VIOLATION);
    UNIT_ASSERT(off <= 5000); /* stopped within the chunk that crossed the limit */
    rec_done(&r);
    /* An endless stream header. */
    len = sprintf(big, "<stream:stream " NS_STREAM_DECL " to='");
    memset(big + len, 'h', n);
    big[len + n] = '\0';
    rec_init(&r, &lim);
    UNIT_ASSERT_INT_EQ(feed(&r, big), -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_POLICY_VIOLATION);
    rec_done(&r);
    free(big);
}

/* The limit counts the element's own bytes: exactly the limit passes, one more fails, and
 * blanks around it do not count, however the input is cut. */
static void test_limit_is_exact(void)
{
    const char *st = "<message to='a@b'><body>0123456789</body></message>";
    size_t n = strlen(st);
    /* A header short enough for both limits (its content namespace does not matter here). */
    const char *hdr = "<stream xmlns='http://etherx.jabber.org/streams'>";
    UNIT_ASSERT(strlen(hdr) <= n - 1);
    char body[4096];
    snprintf(body, sizeof body, "  %s \n %s%s \t", st, st, st);
    struct xmlstream_limits exact = {.max_stanza_bytes = n};
    struct xmlstream_limits short_by_one = {.max_stanza_bytes = n - 1};
    for (uint32_t seed = 0; seed <= 200; seed++) {
        struct rec ok, bad;
        rec_init(&ok, &exact);
        rec_init(&bad, &short_by_one);
        UNIT_ASSERT_INT_EQ(feed(&ok, hdr), 0);
        UNIT_ASSERT_INT_EQ(feed(&bad, hdr), 0);
        UNIT_ASSERT_INT_EQ(seed == 0 ? feed(&ok, body) : feed_random(&ok, body, seed), 0);
        UNIT_ASSERT_INT_EQ(ok.stanzas, 3);
        UNIT_ASSERT_INT_EQ(seed == 0 ? feed(&bad, body) : feed_random(&bad, body, seed), -1);
        UNIT_ASSERT_INT_EQ(bad.stanzas, 0);
        UNIT_ASSERT_INT_EQ(bad.err, STRERR_POLICY_VIOLATION);
        rec_done(&ok);
        rec_done(&bad);
    }
}

static void test_keepalives_do_not_count(void)
{
    struct xmlstream_limits lim = {.max_stanza_bytes = 200};
    struct rec r;
    rec_init(&r, &lim);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER), 0);
    for (int i = 0; i < 5000; i++) {
        UNIT_ASSERT_INT_EQ(feed(&r, " "), 0);
        if (i % 1000 == 0)
            UNIT_ASSERT_INT_EQ(feed(&r, "<presence/>\n"), 0);
    }
    UNIT_ASSERT_INT_EQ(feed(&r, "<message><body>still fine</body></message>"), 0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 6);
    UNIT_ASSERT_INT_EQ(r.errors, 0);
    rec_done(&r);
}

static void test_depth_limit(void)
{
    struct xmlstream_limits lim = {.max_depth = 3};
    struct rec r;
    UNIT_ASSERT_INT_EQ(run(HEADER "<message><a><b>x</b></a></message>", WHOLE, &lim, &r), -1);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    rec_done(&r);
    for (int m = WHOLE; m <= BYTES; m++) {
        UNIT_ASSERT_INT_EQ(
            run(HEADER "<message><a><b><c/></b></a></message>", (enum mode)m, &lim, &r),
            STRERR_POLICY_VIOLATION);
        UNIT_ASSERT_INT_EQ(r.stanzas, 0);
        rec_done(&r);
    }
}

static void test_attribute_limit(void)
{
    struct xmlstream_limits lim = {.max_attrs = 4};
    struct rec r;
    /* Namespace declarations are not attributes. */
    UNIT_ASSERT_INT_EQ(run(HEADER "<message xmlns:x='urn:x' a='1' b='2' c='3' x:d='4'>"
                                  "<e xmlns='urn:e' f='1' g='2' h='3' i='4'/></message>",
                           WHOLE, &lim, &r),
                       -1);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    rec_done(&r);
    UNIT_ASSERT_INT_EQ(
        run(HEADER "<message><e a='1' b='2' c='3' d='4' e='5'/></message>", WHOLE, &lim, &r),
        STRERR_POLICY_VIOLATION);
    UNIT_ASSERT_INT_EQ(r.stanzas, 0);
    rec_done(&r);
}

/* Long tags with quoted '>' dripped in small pieces (held back until the tag closes, to keep
 * libxml2 2.9 from rescanning them) still parse exactly, and on time. */
static void test_long_tags(void)
{
    struct buf in = BUF_INIT;
    buf_append_str(&in, HEADER "<message to='");
    for (int i = 0; i < 3000; i++)
        buf_append_str(&in, i % 3 ? ">" : "\"");
    buf_append_str(&in, "' id=\"");
    for (int i = 0; i < 3000; i++)
        buf_append_str(&in, i % 2 ? ">" : "'");
    buf_append_str(&in, "\"><body>x</body></message");
    for (int i = 0; i < 2000; i++)
        buf_append_str(&in, " ");
    buf_append_str(&in, "><presence/>");
    const char *input = buf_cstr(&in);

    struct rec whole;
    rec_init(&whole, NULL);
    UNIT_ASSERT_INT_EQ(feed(&whole, input), 0);
    UNIT_ASSERT_INT_EQ(whole.stanzas, 2);
    struct rec bytes;
    rec_init(&bytes, NULL);
    UNIT_ASSERT_INT_EQ(feed_bytes(&bytes, input), 0);
    UNIT_ASSERT_STR_EQ(transcript(&bytes), transcript(&whole));
    /* The message is delivered with the '>' ending its long end tag, the presence after it. */
    UNIT_ASSERT_INT_EQ(bytes.at[1], in.len - strlen("<presence/>") - 1);
    UNIT_ASSERT_INT_EQ(bytes.at[2], in.len - 1);
    for (uint32_t seed = 1; seed <= 30; seed++) {
        struct rec r;
        rec_init(&r, NULL);
        UNIT_ASSERT_INT_EQ(feed_random(&r, input, seed), 0);
        UNIT_ASSERT_STR_EQ(transcript(&r), transcript(&whole));
        rec_done(&r);
    }
    rec_done(&whole);
    rec_done(&bytes);

    /* A long tag that turns out broken fails, whether its quote closes or not. */
    in.len = 0;
    buf_append_str(&in, HEADER "<message a='");
    for (int i = 0; i < 2000; i++)
        buf_append_str(&in, ">");
    buf_append_str(&in, "<'/><presence/>");
    expect_error(buf_cstr(&in), STRERR_NOT_WELL_FORMED);
    in.len = 0;
    buf_append_str(&in, HEADER "<message a='x'");
    for (int i = 0; i < 2000; i++)
        buf_append_str(&in, " ");
    buf_append_str(&in, "<presence/>");
    expect_error(buf_cstr(&in), STRERR_NOT_WELL_FORMED);
    buf_free(&in);
}

/* A comment or processing instruction fails the stream as soon as it begins, not when (if
 * ever) it ends. */
static void test_restricted_detected_early(void)
{
    const char *starts[] = {HEADER "<!--",        HEADER "<message><!--",    HEADER "<?",
                            HEADER "<message><?", "<?xml version='1.0'?><?", "<!DOCTYPE stream"};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        struct rec r;
        rec_init(&r, NULL);
        UNIT_ASSERT_INT_EQ(feed_bytes(&r, starts[i]), -1);
        UNIT_ASSERT_INT_EQ(r.err, STRERR_RESTRICTED_XML);
        rec_done(&r);
    }
}

/* ---- the callback contract ---- */

static void test_error_reported_once(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<presence/><message><body></message><presence/>"), -1);
    UNIT_ASSERT_INT_EQ(r.errors, 1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_NOT_WELL_FORMED);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1); /* the one before the error */
    /* Later feeds do nothing and keep failing, valid or not. */
    UNIT_ASSERT_INT_EQ(feed(&r, "<presence/>"), -1);
    UNIT_ASSERT_INT_EQ(feed(&r, "<!-- x -->"), -1);
    xmlstream_reset(r.xs); /* a failed stream stays failed */
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<presence/>"), -1);
    UNIT_ASSERT_INT_EQ(r.errors, 1);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    UNIT_ASSERT_INT_EQ(r.opens, 1);
    UNIT_ASSERT_STR_EQ(transcript(&r), "open prefix=stream ns=http://etherx.jabber.org/streams "
                                       "default=jabber:client to=- from=- id=- version=- lang=-\n"
                                       "<presence/>\n"
                                       "error not-well-formed\n");
    rec_done(&r);
}

static void test_free_from_callbacks(void)
{
    /* Freed from the stanza callback: nothing else is delivered, nothing leaks. */
    struct rec r;
    rec_init(&r, NULL);
    r.free_on_stanza = true;
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<presence/><presence/><message>"), 0);
    UNIT_ASSERT(r.xs == NULL);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    rec_done(&r);
    /* Freed from the error callback. */
    rec_init(&r, NULL);
    r.free_on_error = true;
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<message><body>x</message>"), -1);
    UNIT_ASSERT(r.xs == NULL);
    UNIT_ASSERT_INT_EQ(r.errors, 1);
    rec_done(&r);
    /* Freed with a stanza half built and a header arena alive. */
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<message><body>x"), 0);
    rec_done(&r);
}

/* No libxml2 message reaches stderr, whatever the input. */
static void test_nothing_on_stderr(void)
{
    char path[] = "/tmp/test_xmlstream_stderr_XXXXXX";
    int fd = mkstemp(path);
    UNIT_ASSERT(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    const char *inputs[] = {
        HEADER "<message><body>hi</message>",
        HEADER "<message><body>\xff</body></message>",
        HEADER "<a xmlns='not a uri'/><b xmlns='relative'/>",
        "<!DOCTYPE x SYSTEM 'file:///etc/passwd'>" HEADER,
        HEADER "<message>&unknown;</message>",
        HEADER "<foo:bar/>",
        HEADER "</stream:stream><extra/>",
        "<?xml version='1.1' encoding='ISO-8859-1'?>" HEADER "<a/>",
        "\xfe\xff\x00<",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        struct rec r;
        rec_init(&r, NULL);
        feed(&r, inputs[i]);
        rec_done(&r);
        rec_init(&r, NULL);
        feed_bytes(&r, inputs[i]);
        rec_done(&r);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    close(fd);
    UNIT_ASSERT_INT_EQ(size, 0);
}

static void test_namespaces_resolved(void)
{
    struct rec r;
    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER "<message xmlns:x='urn:x' x:attr='1' xml:lang='fr'>"
                                       "<x:child x:y='2'><inner/></x:child>"
                                       "<other xmlns='urn:o'><deeper xmlns=''/></other></message>"),
                       0);
    UNIT_ASSERT_STR_EQ(
        transcript(&r) + strcspn(transcript(&r), "\n") + 1,
        "<message xmlns:ns0='urn:x' ns0:attr='1' xml:lang='fr'>"
        "<child xmlns='urn:x' xmlns:ns0='urn:x' ns0:y='2'><inner xmlns='jabber:client'/>"
        "</child><other xmlns='urn:o'><deeper xmlns=''/></other></message>\n");
    rec_done(&r);
}

/* An idle stream gives its libxml2 parser back and wakes up transparently: the stanzas after
 * a hibernation, with a prefix declared on the stream header, come out exactly as without. */
static void test_hibernate_and_wake(void)
{
    const char *hdr = "<stream:stream xmlns='jabber:client' " NS_STREAM_DECL
                      " xmlns:x='urn:example:x' to='example.com' version='1.0'>";
    const char *st1 = "<message to='a@b'><body>one</body></message>";
    const char *st2 = "<x:thing a='1'><body>two</body></x:thing><message to='c@d'><x:y/></message>";
    struct rec ref, h;
    rec_init(&ref, NULL);
    rec_init(&h, NULL);
    UNIT_ASSERT_INT_EQ(feed(&ref, hdr), 0);
    UNIT_ASSERT_INT_EQ(feed(&ref, st1), 0);
    UNIT_ASSERT_INT_EQ(feed(&ref, st2), 0);

    UNIT_ASSERT(!xmlstream_hibernate(h.xs)); /* no header yet: nothing to replay */
    UNIT_ASSERT_INT_EQ(feed(&h, hdr), 0);
    UNIT_ASSERT(xmlstream_hibernate(h.xs));
    UNIT_ASSERT_INT_EQ(feed(&h, st1), 0);
    UNIT_ASSERT_INT_EQ(feed(&h, "  "), 0); /* a keepalive leaves it idle */
    UNIT_ASSERT(xmlstream_hibernate(h.xs));
    UNIT_ASSERT_INT_EQ(feed_bytes(&h, st2), 0);
    UNIT_ASSERT_INT_EQ(h.opens, 1); /* the replayed header is not reported */
    UNIT_ASSERT_INT_EQ(h.stanzas, 3);
    UNIT_ASSERT_STR_EQ(transcript(&h), transcript(&ref));

    /* Not in the middle of a stanza. */
    UNIT_ASSERT_INT_EQ(feed(&h, "<message><body>ha"), 0);
    UNIT_ASSERT(!xmlstream_hibernate(h.xs));
    UNIT_ASSERT_INT_EQ(feed(&h, "lf</body></message></stream:stream>"), 0);
    UNIT_ASSERT_INT_EQ(h.stanzas, 4);
    UNIT_ASSERT_INT_EQ(h.closes, 1);
    UNIT_ASSERT(!xmlstream_hibernate(h.xs)); /* closed */
    rec_done(&ref);
    rec_done(&h);
}

/* Limits and restricted XML hold after a wake-up exactly as before it. */
static void test_limits_after_wake(void)
{
    const char *st = "<message to='a@b'><body>0123456789</body></message>";
    struct xmlstream_limits exact = {.max_stanza_bytes = strlen(st)};
    struct rec r;
    rec_init(&r, &exact);
    UNIT_ASSERT_INT_EQ(feed(&r, "<stream xmlns='http://etherx.jabber.org/streams'>"), 0);
    UNIT_ASSERT(xmlstream_hibernate(r.xs));
    UNIT_ASSERT_INT_EQ(feed(&r, st), 0);
    UNIT_ASSERT_INT_EQ(r.stanzas, 1);
    UNIT_ASSERT(xmlstream_hibernate(r.xs));
    UNIT_ASSERT_INT_EQ(feed(&r, "<message to='a@b'><body>0123456789!</body></message>"), -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_POLICY_VIOLATION);
    rec_done(&r);

    rec_init(&r, NULL);
    UNIT_ASSERT_INT_EQ(feed(&r, HEADER), 0);
    UNIT_ASSERT(xmlstream_hibernate(r.xs));
    UNIT_ASSERT_INT_EQ(feed(&r, "<!-- hi -->"), -1);
    UNIT_ASSERT_INT_EQ(r.err, STRERR_RESTRICTED_XML);
    rec_done(&r);
}

UNIT_MAIN(UNIT_TEST(test_client_stream_whole), UNIT_TEST(test_client_stream_byte_by_byte),
          UNIT_TEST(test_client_stream_random_chunks), UNIT_TEST(test_header_fields),
          UNIT_TEST(test_prefixed_stanza), UNIT_TEST(test_whitespace_and_text_at_stream_level),
          UNIT_TEST(test_stream_close_and_reset), UNIT_TEST(test_reset_outside_callback),
          UNIT_TEST(test_reset_inside_callback_drops_rest),
          UNIT_TEST(test_restricted_dtd_and_entities), UNIT_TEST(test_restricted_comments_and_pis),
          UNIT_TEST(test_not_well_formed), UNIT_TEST(test_wrong_stream_element),
          UNIT_TEST(test_encodings), UNIT_TEST(test_endless_stanza_byte_by_byte),
          UNIT_TEST(test_giant_attribute_and_text), UNIT_TEST(test_limit_is_exact),
          UNIT_TEST(test_keepalives_do_not_count), UNIT_TEST(test_depth_limit),
          UNIT_TEST(test_attribute_limit), UNIT_TEST(test_long_tags),
          UNIT_TEST(test_restricted_detected_early), UNIT_TEST(test_error_reported_once),
          UNIT_TEST(test_free_from_callbacks), UNIT_TEST(test_nothing_on_stderr),
          UNIT_TEST(test_namespaces_resolved), UNIT_TEST(test_hibernate_and_wake),
          UNIT_TEST(test_limits_after_wake))
