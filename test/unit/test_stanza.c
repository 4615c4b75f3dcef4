/* unit-sources: core/mem.c core/buf.c core/stanza.c core/serialize.c core/xmlstream.c core/slab.c */
/*
 * test_stanza.c — arenas, buffers, the element model, the serializer, stanza helpers and the
 * error tables. Round trips go through the real stream parser.
 */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "jid.h"
#include "stanza.h"
#include "unit.h"
#include "xmlstream.h"

/* ---- helpers ---- */

static char *serialize(const struct xml_el *el, const char *default_ns)
{
    static struct buf b = BUF_INIT;
    b.len = 0;
    xml_serialize(&b, el, default_ns);
    return (char *)buf_cstr(&b);
}

static bool attrs_equal(const struct xml_el *a, const struct xml_el *b)
{
    size_t na = 0, nb = 0;
    for (const struct xml_attr *x = a->attrs; x != NULL; x = x->next, na++) {
        const char *v = x->ns ? xml_el_attr_ns(b, x->ns, x->name) : xml_el_attr(b, x->name);
        if (v == NULL || strcmp(v, x->value) != 0)
            return false;
    }
    for (const struct xml_attr *x = b->attrs; x != NULL; x = x->next)
        nb++;
    return na == nb;
}

/* Structural equality: names, namespaces, attributes (any order), children in order. */
static bool tree_equal(const struct xml_el *a, const struct xml_el *b)
{
    if (strcmp(a->name, b->name) != 0 || strcmp(a->ns, b->ns) != 0 || !attrs_equal(a, b))
        return false;
    const struct xml_node *x = a->children, *y = b->children;
    for (; x != NULL && y != NULL; x = x->next, y = y->next) {
        if (x->kind != y->kind)
            return false;
        if (x->kind == XML_NODE_TEXT) {
            const struct xml_text *tx = (const void *)x, *ty = (const void *)y;
            if (tx->len != ty->len || memcmp(tx->text, ty->text, tx->len) != 0)
                return false;
        } else if (!tree_equal((const void *)x, (const void *)y)) {
            return false;
        }
    }
    return x == NULL && y == NULL;
}

struct parsed {
    struct stanza *st[8];
    int n;
    int errors;
};

static void collect_stanza(void *ud, struct stanza *st)
{
    struct parsed *p = ud;
    if (p->n < 8)
        p->st[p->n++] = st;
    else
        stanza_free(&st);
}

static void collect_error(void *ud, enum stream_error e, const char *text)
{
    ((struct parsed *)ud)->errors++;
}

#define STREAM_HEADER                                                                              \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"

/* Parses one top-level element given as text inside a jabber:client stream. */
static struct stanza *parse_one(const char *xml)
{
    struct parsed p = {0};
    struct xmlstream_callbacks cb = {.stanza = collect_stanza, .error = collect_error};
    struct xmlstream *xs = xmlstream_new(&cb, &p, NULL);
    UNIT_ASSERT_INT_EQ(xmlstream_feed(xs, STREAM_HEADER, strlen(STREAM_HEADER)), 0);
    UNIT_ASSERT_INT_EQ(xmlstream_feed(xs, xml, strlen(xml)), 0);
    xmlstream_free(&xs);
    UNIT_ASSERT_INT_EQ(p.errors, 0);
    UNIT_ASSERT_INT_EQ(p.n, 1);
    return p.st[0];
}

/* ---- arena ---- */

static void test_arena_alignment_and_zeroing(void)
{
    struct arena *a = arena_new(0);
    for (size_t n = 1; n < 200; n += 7) {
        arena_strndup(a, "xyz", 3); /* knock the bump pointer off alignment */
        unsigned char *p = arena_alloc(a, n);
        UNIT_ASSERT((uintptr_t)p % alignof(max_align_t) == 0);
        for (size_t i = 0; i < n; i++)
            UNIT_ASSERT_INT_EQ(p[i], 0);
        memset(p, 0xab, n);
    }
    arena_free(&a);
    UNIT_ASSERT(a == NULL);
    arena_free(&a); /* NULL-safe */
}

static void test_arena_growth_and_large_blocks(void)
{
    struct arena *a = arena_new(64);
    char *small = arena_strdup(a, "before");
    /* Larger than any regular chunk: gets its own block and must be fully usable. */
    size_t big = 1 << 20;
    unsigned char *p = arena_alloc(a, big);
    UNIT_ASSERT_INT_EQ(p[0], 0);
    UNIT_ASSERT_INT_EQ(p[big - 1], 0);
    memset(p, 1, big);
    /* Many small allocations after the big one keep working and stay distinct. */
    char *strs[1000];
    for (int i = 0; i < 1000; i++) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "s%d", i);
        strs[i] = arena_strdup(a, tmp);
    }
    for (int i = 0; i < 1000; i++) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "s%d", i);
        UNIT_ASSERT_STR_EQ(strs[i], tmp);
    }
    UNIT_ASSERT_STR_EQ(small, "before");
    UNIT_ASSERT(arena_used(a) >= big);
    arena_free(&a);
}

static void test_arena_strings(void)
{
    struct arena *a = arena_new(0);
    UNIT_ASSERT_STR_EQ(arena_strndup(a, "abcdef", 3), "abc");
    UNIT_ASSERT_STR_EQ(arena_strndup(a, "ab", 10), "ab"); /* stops at the NUL */
    char *m = arena_memdup(a, "a\0b", 3);
    UNIT_ASSERT_MEM_EQ(m, "a\0b\0", 4);
    size_t before = arena_used(a);
    arena_strdup(a, "12345");
    UNIT_ASSERT_INT_EQ(arena_used(a) - before, 6);
    arena_free(&a);

    char *x = xstrndup("hello", 4);
    UNIT_ASSERT_STR_EQ(x, "hell");
    free(x);
    x = xstrdup("hello");
    UNIT_ASSERT_STR_EQ(x, "hello");
    free(x);
}

/* ---- buf ---- */

static void test_buf_append_printf_cstr(void)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "abc");
    buf_append(&b, "def", 3);
    buf_printf(&b, "-%d-%s", 42, "x");
    UNIT_ASSERT_STR_EQ(buf_cstr(&b), "abcdef-42-x");
    UNIT_ASSERT_INT_EQ(b.len, 11);
    /* A long printf that cannot fit the current capacity. */
    char big[3000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_printf(&b, "%s!", big);
    UNIT_ASSERT_INT_EQ(b.len, 11 + 3000);
    UNIT_ASSERT_INT_EQ(b.data[b.len - 1], '!');
    UNIT_ASSERT_INT_EQ(b.data[11], 'q');
    buf_free(&b);
    UNIT_ASSERT(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_buf_consume_keeps_content(void)
{
    struct buf b = BUF_INIT;
    /* Append and consume in uneven steps, checking against a model of the content. */
    char model[100000];
    size_t mlen = 0, max_len = 0;
    unsigned seed = 7;
    for (int round = 0; round < 2000; round++) {
        size_t add = (seed = seed * 1103515245 + 12345) % 97;
        char chunk[97];
        for (size_t i = 0; i < add; i++)
            chunk[i] = (char)('a' + (round + i) % 26);
        buf_append(&b, chunk, add);
        memcpy(model + mlen, chunk, add);
        mlen += add;
        if (mlen > max_len)
            max_len = mlen;
        size_t take = (seed = seed * 1103515245 + 12345) % 101;
        if (take > mlen)
            take = mlen;
        buf_consume(&b, take);
        memmove(model, model + take, mlen - take);
        mlen -= take;
        UNIT_ASSERT_INT_EQ(b.len, mlen);
        UNIT_ASSERT_MEM_EQ(b.data, model, mlen);
        /* Consumed space is reused: the block stays proportional to the most ever live. */
        UNIT_ASSERT(b.cap + b.off <= 4 * max_len + 256);
    }
    /* Consuming part of the bytes moves nothing: the data pointer just advances. */
    buf_append(&b, "0123456789", 10);
    const char *before = b.data;
    buf_consume(&b, 4);
    UNIT_ASSERT(b.data == before + 4);
    UNIT_ASSERT_MEM_EQ(b.data + b.len - 6, "456789", 6);
    buf_consume(&b, b.len + 10);
    UNIT_ASSERT_INT_EQ(b.len, 0);
    UNIT_ASSERT_INT_EQ(b.off, 0);
    buf_free(&b);
}

static void test_shared_bytes_refcount(void)
{
    struct shared_bytes *s = shared_bytes_new("<message/>", 10);
    UNIT_ASSERT_INT_EQ(s->len, 10);
    UNIT_ASSERT_STR_EQ(s->data, "<message/>");
    struct shared_bytes *r = shared_bytes_ref(s);
    UNIT_ASSERT(r == s);
    UNIT_ASSERT_INT_EQ(atomic_load(&s->refs), 2);
    shared_bytes_unref(&r);
    UNIT_ASSERT(r == NULL);
    UNIT_ASSERT_INT_EQ(atomic_load(&s->refs), 1);
    shared_bytes_unref(&s); /* frees; ASan reports a leak otherwise */
    UNIT_ASSERT(s == NULL);
    shared_bytes_unref(&s);
}

/* ---- element model ---- */

static void test_build_attributes(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *el = xml_el_new(a, NS_CLIENT, "message");
    xml_el_set_attr(a, el, "to", "bob@example.com");
    xml_el_set_attr(a, el, "type", "chat");
    xml_el_set_attr(a, el, "id", "1");
    xml_el_set_attr_ns(a, el, NS_XML, "lang", "en");
    UNIT_ASSERT_STR_EQ(xml_el_attr(el, "to"), "bob@example.com");
    UNIT_ASSERT(xml_el_attr(el, "lang") == NULL); /* namespaced, not unqualified */
    UNIT_ASSERT_STR_EQ(xml_el_attr_ns(el, NS_XML, "lang"), "en");
    UNIT_ASSERT_STR_EQ(xml_el_attr_ns(el, NULL, "id"), "1");
    /* Replace keeps the position; remove unlinks; order is document order. */
    xml_el_set_attr(a, el, "type", "normal");
    xml_el_set_attr(a, el, "to", NULL);
    xml_el_set_attr(a, el, "absent", NULL);
    UNIT_ASSERT(xml_el_attr(el, "to") == NULL);
    UNIT_ASSERT_STR_EQ(serialize(el, NS_CLIENT), "<message type='normal' id='1' xml:lang='en'/>");
    /* The value is copied. */
    char v[] = "abc";
    xml_el_set_attr(a, el, "x", v);
    v[0] = 'z';
    UNIT_ASSERT_STR_EQ(xml_el_attr(el, "x"), "abc");
    arena_free(&a);
}

static void test_build_children_and_text(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *msg = xml_el_new(a, NS_CLIENT, "message");
    struct xml_el *body = xml_el_add(a, msg, NULL, "body");
    UNIT_ASSERT_STR_EQ(body->ns, NS_CLIENT);
    UNIT_ASSERT(body->parent == msg);
    xml_el_add_text(a, body, "Hello", 5);
    xml_el_add_text(a, body, ", world!xx", 8);
    /* Adjacent text is kept in one node. */
    UNIT_ASSERT(body->children == body->last_child);
    UNIT_ASSERT_STR_EQ(xml_el_text(a, body), "Hello, world!");
    struct xml_el *x1 = xml_el_add(a, msg, "urn:x", "x");
    struct xml_el *x2 = xml_el_add(a, msg, "urn:y", "x");
    struct xml_el *x3 = xml_el_add(a, msg, "urn:x", "x");
    UNIT_ASSERT_INT_EQ(xml_el_count_children(msg), 4);
    UNIT_ASSERT(xml_el_child(msg, NULL, NULL) == body);
    UNIT_ASSERT(xml_el_child(msg, "urn:y", NULL) == x2);
    UNIT_ASSERT(xml_el_child(msg, "urn:x", "x") == x1);
    UNIT_ASSERT(xml_el_next(x1, "urn:x", "x") == x3);
    UNIT_ASSERT(xml_el_next(x3, NULL, NULL) == NULL);
    UNIT_ASSERT(xml_el_child(msg, NULL, "nothing") == NULL);
    /* Text split by an element is concatenated by xml_el_text. */
    xml_el_add_text(a, msg, "a", 1);
    xml_el_add(a, msg, NULL, "y");
    xml_el_add_text(a, msg, "b", 1);
    UNIT_ASSERT_STR_EQ(xml_el_text(a, msg), "ab");
    UNIT_ASSERT_STR_EQ(xml_el_text(a, x1), "");
    /* Remove the middle, the first and the last child. */
    xml_el_remove(msg, &x2->node);
    UNIT_ASSERT(x2->parent == NULL);
    xml_el_remove(msg, &body->node);
    xml_el_remove(msg, msg->last_child);
    UNIT_ASSERT_STR_EQ(serialize(msg, NS_CLIENT),
                       "<message><x xmlns='urn:x'/><x xmlns='urn:x'/>a<y/></message>");
    /* Re-append a detached element. */
    xml_el_append(msg, body);
    UNIT_ASSERT(msg->last_child == &body->node);
    UNIT_ASSERT_STR_EQ(serialize(msg, NS_CLIENT), "<message><x xmlns='urn:x'/><x xmlns='urn:x'/>"
                                                  "a<y/><body>Hello, world!</body></message>");
    arena_free(&a);
}

static void test_copy_is_deep(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *el = xml_el_new(a, NS_CLIENT, "iq");
    xml_el_set_attr(a, el, "type", "set");
    xml_el_set_attr_ns(a, el, "urn:ext", "flag", "1");
    struct xml_el *q = xml_el_add(a, el, "jabber:iq:roster", "query");
    struct xml_el *item = xml_el_add(a, q, NULL, "item");
    xml_el_set_attr(a, item, "jid", "a@b");
    xml_el_add_text(a, item, "t & u", 5);
    char *before = xstrdup(serialize(el, NS_CLIENT));

    struct arena *b = arena_new(0);
    struct xml_el *c = xml_el_copy(b, el);
    UNIT_ASSERT(tree_equal(el, c));
    UNIT_ASSERT(c->parent == NULL);
    struct xml_el *cq = xml_el_child(c, NULL, "query");
    UNIT_ASSERT(cq->parent == c);
    UNIT_ASSERT(xml_el_child(cq, NULL, "item")->parent == cq);
    arena_free(&a); /* the copy must not refer to the original's memory */
    UNIT_ASSERT_STR_EQ(serialize(c, NS_CLIENT), before);
    free(before);
    arena_free(&b);
}

/* ---- serializer ---- */

static void test_serialize_text_escaping(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *el = xml_el_new(a, NS_CLIENT, "body");
    const char text[] = "a&b<c>d\"e'f\r\ng\tz";
    xml_el_add_text(a, el, text, sizeof text - 1);
    UNIT_ASSERT_STR_EQ(serialize(el, NS_CLIENT), "<body>a&amp;b&lt;c&gt;d\"e'f&#13;\ng\tz</body>");
    /* Control characters XML cannot carry are dropped rather than written. */
    struct xml_el *bad = xml_el_new(a, NS_CLIENT, "body");
    xml_el_add_text(a, bad, "x\x01y\x1fz\x00w", 7);
    UNIT_ASSERT_STR_EQ(serialize(bad, NS_CLIENT), "<body>xyzw</body>");
    arena_free(&a);
}

static void test_serialize_attribute_escaping(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *el = xml_el_new(a, NS_CLIENT, "x");
    xml_el_set_attr(a, el, "v", "a&b<c>d\"e'f\tg\nh\ri");
    UNIT_ASSERT_STR_EQ(serialize(el, NS_CLIENT),
                       "<x v='a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i'/>");
    struct buf b = BUF_INIT;
    xml_escape(&b, "<&>\"'", 5);
    UNIT_ASSERT_STR_EQ(buf_cstr(&b), "&lt;&amp;&gt;&quot;&apos;");
    b.len = 0;
    xml_escape(&b, "plain text, nothing to do", 25);
    UNIT_ASSERT_STR_EQ(buf_cstr(&b), "plain text, nothing to do");
    buf_free(&b);
    arena_free(&a);
}

static void test_serialize_namespaces(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *msg = xml_el_new(a, NS_CLIENT, "message");
    xml_el_set_attr_ns(a, msg, NS_XML, "lang", "en");
    struct xml_el *body = xml_el_add(a, msg, NULL, "body");
    struct xml_el *x = xml_el_add(a, msg, "urn:x", "x");
    xml_el_add(a, x, NULL, "inner");                      /* inherits urn:x: no xmlns */
    xml_el_add(a, x, NS_CLIENT, "back");                  /* back to jabber:client: declared */
    struct xml_el *none = xml_el_add(a, msg, "", "none"); /* no namespace: undeclared */
    (void)body;
    (void)none;
    UNIT_ASSERT_STR_EQ(serialize(msg, NS_CLIENT),
                       "<message xml:lang='en'><body/><x xmlns='urn:x'><inner/>"
                       "<back xmlns='jabber:client'/></x><none xmlns=''/></message>");
    /* With another namespace in scope (or none) the top element declares its own. */
    UNIT_ASSERT_STR_EQ(serialize(body, NULL), "<body xmlns='jabber:client'/>");
    UNIT_ASSERT_STR_EQ(serialize(body, NS_SERVER), "<body xmlns='jabber:client'/>");
    arena_free(&a);
}

static void test_serialize_prefixed_attributes(void)
{
    struct arena *a = arena_new(0);
    struct xml_el *el = xml_el_new(a, NS_CLIENT, "x");
    xml_el_set_attr(a, el, "plain", "1");
    xml_el_set_attr_ns(a, el, "urn:a", "one", "2");
    xml_el_set_attr_ns(a, el, "urn:b", "two", "3");
    xml_el_set_attr_ns(a, el, "urn:a", "three", "4");
    xml_el_set_attr_ns(a, el, NS_XML, "lang", "de");
    /* Attempts to write namespace declarations as attributes are ignored. */
    xml_el_set_attr(a, el, "xmlns", "urn:evil");
    xml_el_set_attr(a, el, "xmlns:p", "urn:evil");
    struct xml_el *child = xml_el_add(a, el, NULL, "c");
    xml_el_set_attr_ns(a, child, "urn:b", "k", "5");
    UNIT_ASSERT_STR_EQ(serialize(el, NS_CLIENT),
                       "<x plain='1' xmlns:ns0='urn:a' ns0:one='2' xmlns:ns1='urn:b' ns1:two='3' "
                       "ns0:three='4' xml:lang='de'><c xmlns:ns0='urn:b' ns0:k='5'/></x>");
    /* The output parses back into the same tree (minus the dropped declarations). */
    xml_el_set_attr(a, el, "xmlns", NULL);
    xml_el_set_attr(a, el, "xmlns:p", NULL);
    struct stanza *st = parse_one(serialize(el, NS_CLIENT));
    UNIT_ASSERT(tree_equal(el, st->el));
    UNIT_ASSERT_STR_EQ(xml_el_attr_ns(st->el, "urn:a", "three"), "4");
    stanza_free(&st);
    arena_free(&a);
}

static void test_round_trip(void)
{
    const char *in =
        "<message to='bob@example.com/phone' from='alice@example.com/laptop' type='chat' "
        "id='m&amp;1' xml:lang='en'>"
        "<body>Hi &lt;Bob&gt; &amp; &quot;friends&quot; &#x263A; caf\xc3\xa9 ]]&gt;</body>"
        "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
        "<body xmlns='http://www.w3.org/1999/xhtml'><p style='a:&apos;b&apos;'>x<br/>y</p></body>"
        "</html>"
        "<ext:flag xmlns:ext='urn:ext' ext:level='3' plain='&#9;tab'/>"
        "<empty></empty>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        "</message>";
    struct stanza *first = parse_one(in);
    char *out1 = xstrdup(serialize(first->el, NS_CLIENT));
    struct stanza *second = parse_one(out1);
    UNIT_ASSERT(tree_equal(first->el, second->el));
    UNIT_ASSERT_STR_EQ(serialize(second->el, NS_CLIENT), out1);
    /* Spot checks of what the parser produced. */
    UNIT_ASSERT_STR_EQ(first->id, "m&1");
    UNIT_ASSERT_STR_EQ(xml_el_attr_ns(first->el, NS_XML, "lang"), "en");
    struct xml_el *body = xml_el_child(first->el, NS_CLIENT, "body");
    UNIT_ASSERT_STR_EQ(xml_el_text(first->arena, body),
                       "Hi <Bob> & \"friends\" \xe2\x98\xba caf\xc3\xa9 ]]>");
    struct xml_el *flag = xml_el_child(first->el, "urn:ext", "flag");
    UNIT_ASSERT(flag != NULL);
    UNIT_ASSERT_STR_EQ(xml_el_attr_ns(flag, "urn:ext", "level"), "3");
    UNIT_ASSERT_STR_EQ(xml_el_attr(flag, "plain"), "\ttab");
    UNIT_ASSERT_INT_EQ(xml_el_count_children(xml_el_child(first->el, NULL, "empty")), 0);
    free(out1);
    stanza_free(&first);
    stanza_free(&second);
}

/* ---- stanzas ---- */

static void test_stanza_wrap_reads_routing(void)
{
    struct stanza *st = parse_one("<iq type='get' id='q1' to='example.com' from='a@b/c'>"
                                  "<query xmlns='jabber:iq:version'/></iq>");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_IQ);
    UNIT_ASSERT_STR_EQ(st->type, "get");
    UNIT_ASSERT_STR_EQ(st->id, "q1");
    UNIT_ASSERT_STR_EQ(st->to_str, "example.com");
    UNIT_ASSERT_STR_EQ(st->from_str, "a@b/c");
    UNIT_ASSERT(st->to == NULL && st->from == NULL && st->route_link == NULL);
    stanza_free(&st);
    UNIT_ASSERT(st == NULL);

    st = parse_one("<presence/>");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_PRESENCE);
    UNIT_ASSERT(st->type == NULL && st->id == NULL && st->to_str == NULL);
    stanza_free(&st);

    /* Only message/presence/iq in jabber:client or jabber:server are stanzas. */
    st = parse_one("<message xmlns='jabber:server'/>");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_MESSAGE);
    stanza_free(&st);
    st = parse_one("<message xmlns='urn:other'/>");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_OTHER);
    stanza_free(&st);
    st = parse_one("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_OTHER);
    stanza_free(&st);
}

static void test_stanza_new_and_setters(void)
{
    UNIT_ASSERT(stanza_new(STANZA_OTHER, NULL) == NULL);
    struct stanza *st = stanza_new(STANZA_MESSAGE, "chat");
    UNIT_ASSERT_INT_EQ(st->kind, STANZA_MESSAGE);
    UNIT_ASSERT_STR_EQ(st->el->ns, NS_CLIENT);
    UNIT_ASSERT_STR_EQ(st->type, "chat");
    stanza_set_to(st, "bob@example.com");
    stanza_set_from(st, "alice@example.com/x");
    stanza_set_id(st, "id1");
    UNIT_ASSERT_STR_EQ(st->to_str, "bob@example.com");
    UNIT_ASSERT_STR_EQ(xml_el_attr(st->el, "from"), "alice@example.com/x");
    UNIT_ASSERT_STR_EQ(serialize(st->el, NS_CLIENT),
                       "<message type='chat' to='bob@example.com' from='alice@example.com/x' "
                       "id='id1'/>");
    /* A setter drops the parsed JID, which no longer matches. */
    struct jid j = {.domain = "example.com", .bare = "example.com", .full = "example.com"};
    st->to = &j;
    stanza_set_to(st, "other.example");
    UNIT_ASSERT(st->to == NULL);
    stanza_set_to(st, NULL);
    stanza_set_type(st, NULL);
    UNIT_ASSERT(st->to_str == NULL && st->type == NULL);
    UNIT_ASSERT(xml_el_attr(st->el, "to") == NULL);
    UNIT_ASSERT_STR_EQ(serialize(st->el, NS_CLIENT),
                       "<message from='alice@example.com/x' id='id1'/>");
    stanza_free(&st);
    stanza_free(&st); /* NULL-safe */
}

static void test_stanza_copy(void)
{
    struct stanza *st = parse_one("<message to='b@x' from='a@x/r' type='chat' id='7'>"
                                  "<body>hello</body></message>");
    struct jid to = {.local = "b", .domain = "x", .bare = "b@x", .full = "b@x"};
    st->to = &to;
    struct stanza *c = stanza_copy(st);
    UNIT_ASSERT(c->arena != st->arena);
    UNIT_ASSERT(tree_equal(st->el, c->el));
    UNIT_ASSERT_INT_EQ(c->kind, STANZA_MESSAGE);
    UNIT_ASSERT_STR_EQ(c->to_str, "b@x");
    UNIT_ASSERT_STR_EQ(c->id, "7");
    UNIT_ASSERT(c->to != NULL && c->to != &to);
    UNIT_ASSERT_STR_EQ(c->to->bare, "b@x");
    UNIT_ASSERT(c->to->resource == NULL);
    UNIT_ASSERT(c->from == NULL);
    stanza_free(&st);
    UNIT_ASSERT_STR_EQ(serialize(c->el, NS_CLIENT),
                       "<message to='b@x' from='a@x/r' type='chat' id='7'><body>hello</body>"
                       "</message>");
    stanza_free(&c);
}

static void test_error_reply(void)
{
    struct stanza *st = parse_one("<iq type='set' id='r1' to='example.com' from='a@example.com/r'>"
                                  "<query xmlns='jabber:iq:private'/></iq>");
    struct stanza *r = stanza_error_reply(st, SERR_ITEM_NOT_FOUND, NULL, NULL);
    UNIT_ASSERT(r != NULL);
    UNIT_ASSERT_STR_EQ(r->type, "error");
    UNIT_ASSERT_STR_EQ(r->to_str, "a@example.com/r");
    UNIT_ASSERT_STR_EQ(r->from_str, "example.com");
    UNIT_ASSERT_STR_EQ(r->id, "r1");
    UNIT_ASSERT_STR_EQ(serialize(r->el, NS_CLIENT),
                       "<iq type='error' id='r1' from='example.com' to='a@example.com/r'>"
                       "<query xmlns='jabber:iq:private'/>"
                       "<error type='cancel'><item-not-found "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    /* The original is untouched. */
    UNIT_ASSERT_STR_EQ(st->type, "set");
    UNIT_ASSERT_STR_EQ(xml_el_attr(st->el, "to"), "example.com");

    /* Never answer an error with an error. */
    UNIT_ASSERT(stanza_error_reply(r, SERR_BAD_REQUEST, NULL, NULL) == NULL);
    stanza_free(&r);

    /* Explicit type, text, and a stanza with only a to. */
    struct stanza *m = parse_one("<message to='nobody@example.com'><body>x</body></message>");
    r = stanza_error_reply(m, SERR_SERVICE_UNAVAILABLE, "wait", "Try <later> & again");
    UNIT_ASSERT(r->to_str == NULL);
    UNIT_ASSERT_STR_EQ(r->from_str, "nobody@example.com");
    struct xml_el *err = xml_el_child(r->el, NS_CLIENT, "error");
    UNIT_ASSERT(err != NULL);
    UNIT_ASSERT_STR_EQ(xml_el_attr(err, "type"), "wait");
    UNIT_ASSERT(xml_el_child(err, NS_STANZAS, "service-unavailable") != NULL);
    struct xml_el *text = xml_el_child(err, NS_STANZAS, "text");
    UNIT_ASSERT_STR_EQ(xml_el_text(r->arena, text), "Try <later> & again");
    UNIT_ASSERT_STR_EQ(serialize(r->el, NS_CLIENT),
                       "<message from='nobody@example.com' type='error'><body>x</body>"
                       "<error type='wait'><service-unavailable "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Try &lt;later&gt; &amp; "
                       "again</text></error></message>");
    stanza_free(&r);

    /* Not a stanza: no stanza error. */
    struct stanza *other = parse_one("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    UNIT_ASSERT(stanza_error_reply(other, SERR_BAD_REQUEST, NULL, NULL) == NULL);
    stanza_free(&other);
    stanza_free(&m);
    stanza_free(&st);
}

static void test_iq_result(void)
{
    struct stanza *iq = parse_one("<iq type='get' id='p1' to='example.com' from='a@example.com/r'>"
                                  "<ping xmlns='urn:xmpp:ping'/></iq>");
    struct stanza *r = stanza_iq_result(iq);
    UNIT_ASSERT_INT_EQ(r->kind, STANZA_IQ);
    UNIT_ASSERT_STR_EQ(r->type, "result");
    UNIT_ASSERT_STR_EQ(r->id, "p1");
    UNIT_ASSERT_STR_EQ(r->to_str, "a@example.com/r");
    UNIT_ASSERT_STR_EQ(r->from_str, "example.com");
    UNIT_ASSERT_STR_EQ(serialize(r->el, NS_CLIENT),
                       "<iq type='result' id='p1' to='a@example.com/r' from='example.com'/>");
    UNIT_ASSERT(stanza_iq_result(r) == NULL); /* not a get or set */
    stanza_free(&r);
    stanza_free(&iq);

    struct stanza *s2s = parse_one("<iq xmlns='jabber:server' type='set' id='s'/>");
    r = stanza_iq_result(s2s);
    UNIT_ASSERT_STR_EQ(r->el->ns, NS_SERVER);
    UNIT_ASSERT(r->to_str == NULL && r->from_str == NULL);
    stanza_free(&r);
    stanza_free(&s2s);

    struct stanza *msg = parse_one("<message type='get'/>");
    UNIT_ASSERT(stanza_iq_result(msg) == NULL);
    stanza_free(&msg);
}

static void test_error_tables(void)
{
    UNIT_ASSERT_STR_EQ(stanza_error_name(SERR_BAD_REQUEST), "bad-request");
    UNIT_ASSERT_STR_EQ(stanza_error_name(SERR_ITEM_NOT_FOUND), "item-not-found");
    UNIT_ASSERT_STR_EQ(stanza_error_name(SERR_UNEXPECTED_REQUEST), "unexpected-request");
    UNIT_ASSERT_STR_EQ(stanza_error_default_type(SERR_BAD_REQUEST), "modify");
    UNIT_ASSERT_STR_EQ(stanza_error_default_type(SERR_FORBIDDEN), "auth");
    UNIT_ASSERT_STR_EQ(stanza_error_default_type(SERR_RESOURCE_CONSTRAINT), "wait");
    UNIT_ASSERT_STR_EQ(stanza_error_default_type(SERR_SERVICE_UNAVAILABLE), "cancel");
    UNIT_ASSERT_STR_EQ(stanza_error_name((enum stanza_error)999), "undefined-condition");
    /* Every condition has a distinct name and a known type. */
    for (int i = SERR_BAD_REQUEST; i <= SERR_UNEXPECTED_REQUEST; i++) {
        const char *t = stanza_error_default_type((enum stanza_error)i);
        UNIT_ASSERT(strcmp(t, "cancel") == 0 || strcmp(t, "modify") == 0 ||
                    strcmp(t, "auth") == 0 || strcmp(t, "wait") == 0);
        for (int j = SERR_BAD_REQUEST; j < i; j++)
            UNIT_ASSERT(strcmp(stanza_error_name((enum stanza_error)i),
                               stanza_error_name((enum stanza_error)j)) != 0);
    }
    UNIT_ASSERT_STR_EQ(stream_error_name(STRERR_BAD_FORMAT), "bad-format");
    UNIT_ASSERT_STR_EQ(stream_error_name(STRERR_NOT_WELL_FORMED), "not-well-formed");
    UNIT_ASSERT_STR_EQ(stream_error_name(STRERR_RESTRICTED_XML), "restricted-xml");
    UNIT_ASSERT_STR_EQ(stream_error_name(STRERR_UNSUPPORTED_VERSION), "unsupported-version");
    for (int i = STRERR_BAD_FORMAT; i <= STRERR_UNSUPPORTED_VERSION; i++)
        for (int j = STRERR_BAD_FORMAT; j < i; j++)
            UNIT_ASSERT(strcmp(stream_error_name((enum stream_error)i),
                               stream_error_name((enum stream_error)j)) != 0);
}

UNIT_MAIN(UNIT_TEST(test_arena_alignment_and_zeroing),
          UNIT_TEST(test_arena_growth_and_large_blocks), UNIT_TEST(test_arena_strings),
          UNIT_TEST(test_buf_append_printf_cstr), UNIT_TEST(test_buf_consume_keeps_content),
          UNIT_TEST(test_shared_bytes_refcount), UNIT_TEST(test_build_attributes),
          UNIT_TEST(test_build_children_and_text), UNIT_TEST(test_copy_is_deep),
          UNIT_TEST(test_serialize_text_escaping), UNIT_TEST(test_serialize_attribute_escaping),
          UNIT_TEST(test_serialize_namespaces), UNIT_TEST(test_serialize_prefixed_attributes),
          UNIT_TEST(test_round_trip), UNIT_TEST(test_stanza_wrap_reads_routing),
          UNIT_TEST(test_stanza_new_and_setters), UNIT_TEST(test_stanza_copy),
          UNIT_TEST(test_error_reply), UNIT_TEST(test_iq_result), UNIT_TEST(test_error_tables))
