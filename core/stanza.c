/*
 * stanza.c — the element tree, the stanza wrapper around it, and the error tables and replies.
 *
 * Every node, attribute and string of a tree lives in the arena of the stanza that holds it, so
 * nothing here is ever freed on its own: removing a node only unlinks it. Strings that the
 * code knows to be constant (namespace URIs of a child in its parent's namespace, xml:lang's
 * namespace, the names of the three stanza kinds) are shared by pointer instead of copied,
 * which is allowed because the contract only promises that strings outlive the arena.
 *
 * A stanza keeps the routing attributes (type, id, to, from) as pointers into its tree; they
 * are read once by stanza_wrap() and the setters keep them in step with the tree.
 */
#include "stanza.h"

#include <string.h>

#include "jid.h"

/* ---- elements ---- */

static struct xml_el *el_alloc(struct arena *a, const char *ns, const char *name)
{
    struct xml_el *el = arena_alloc(a, sizeof(*el));
    el->node.kind = XML_NODE_ELEMENT;
    el->ns = ns;
    el->name = name;
    return el;
}

/* A copy of ns for an element whose parent (or NULL) is given: shared when equal. */
static const char *ns_for(struct arena *a, const struct xml_el *parent, const char *ns)
{
    if (ns == NULL || ns[0] == '\0')
        return "";
    if (parent != NULL && (parent->ns == ns || strcmp(parent->ns, ns) == 0))
        return parent->ns;
    if (strcmp(ns, NS_CLIENT) == 0)
        return NS_CLIENT;
    return arena_strdup(a, ns);
}

struct xml_el *xml_el_new(struct arena *a, const char *ns, const char *name)
{
    return el_alloc(a, ns_for(a, NULL, ns), arena_strdup(a, name));
}

void xml_el_append(struct xml_el *parent, struct xml_el *child)
{
    child->parent = parent;
    child->node.next = NULL;
    if (parent->last_child != NULL)
        parent->last_child->next = &child->node;
    else
        parent->children = &child->node;
    parent->last_child = &child->node;
}

struct xml_el *xml_el_add(struct arena *a, struct xml_el *parent, const char *ns, const char *name)
{
    const char *cns = ns == NULL ? parent->ns : ns_for(a, parent, ns);
    struct xml_el *el = el_alloc(a, cns, arena_strdup(a, name));
    xml_el_append(parent, el);
    return el;
}

static bool ns_equal(const char *x, const char *y)
{
    if (x == NULL || x[0] == '\0')
        return y == NULL || y[0] == '\0';
    return y != NULL && (x == y || strcmp(x, y) == 0);
}

static struct xml_attr *find_attr(const struct xml_el *el, const char *ns, const char *name,
                                  struct xml_attr ***link_r)
{
    struct xml_attr **link = (struct xml_attr **)&el->attrs;
    for (struct xml_attr *at = el->attrs; at != NULL; link = &at->next, at = at->next) {
        if (strcmp(at->name, name) == 0 && ns_equal(at->ns, ns)) {
            if (link_r != NULL)
                *link_r = link;
            return at;
        }
    }
    if (link_r != NULL)
        *link_r = link;
    return NULL;
}

void xml_el_set_attr_ns(struct arena *a, struct xml_el *el, const char *ns, const char *name,
                        const char *value)
{
    struct xml_attr **link;
    struct xml_attr *at = find_attr(el, ns, name, &link);
    if (value == NULL) {
        if (at != NULL)
            *link = at->next;
        return;
    }
    if (at != NULL) {
        at->value = arena_strdup(a, value);
        return;
    }
    /* Not found: link points at the terminating NULL, so the new attribute goes last and the
     * document order of the others is kept. */
    at = arena_alloc(a, sizeof(*at));
    at->name = arena_strdup(a, name);
    if (ns == NULL || ns[0] == '\0')
        at->ns = NULL;
    else if (strcmp(ns, NS_XML) == 0)
        at->ns = NS_XML;
    else
        at->ns = arena_strdup(a, ns);
    at->value = arena_strdup(a, value);
    *link = at;
}

void xml_el_set_attr(struct arena *a, struct xml_el *el, const char *name, const char *value)
{
    xml_el_set_attr_ns(a, el, NULL, name, value);
}

void xml_el_add_text(struct arena *a, struct xml_el *el, const char *text, size_t len)
{
    if (len == 0)
        return;
    struct xml_node *last = el->last_child;
    if (last != NULL && last->kind == XML_NODE_TEXT) {
        /* Keep adjacent text in one node, as the parser produces it. */
        struct xml_text *t = (struct xml_text *)last;
        char *joined = arena_alloc(a, t->len + len + 1);
        memcpy(joined, t->text, t->len);
        memcpy(joined + t->len, text, len);
        t->text = joined;
        t->len += len;
        return;
    }
    struct xml_text *t = arena_alloc(a, sizeof(*t));
    t->node.kind = XML_NODE_TEXT;
    t->text = arena_memdup(a, text, len);
    t->len = len;
    if (last != NULL)
        last->next = &t->node;
    else
        el->children = &t->node;
    el->last_child = &t->node;
}

void xml_el_remove(struct xml_el *el, struct xml_node *child)
{
    struct xml_node *prev = NULL;
    for (struct xml_node *n = el->children; n != NULL; prev = n, n = n->next) {
        if (n != child)
            continue;
        if (prev != NULL)
            prev->next = n->next;
        else
            el->children = n->next;
        if (el->last_child == n)
            el->last_child = prev;
        n->next = NULL;
        if (n->kind == XML_NODE_ELEMENT)
            ((struct xml_el *)n)->parent = NULL;
        return;
    }
}

static struct xml_el *copy_el(struct arena *a, const struct xml_el *src, struct xml_el *parent)
{
    struct xml_el *el = el_alloc(a, ns_for(a, parent, src->ns), arena_strdup(a, src->name));
    el->parent = parent;
    struct xml_attr **tail = &el->attrs;
    for (const struct xml_attr *at = src->attrs; at != NULL; at = at->next) {
        struct xml_attr *c = arena_alloc(a, sizeof(*c));
        c->name = arena_strdup(a, at->name);
        c->ns = at->ns == NULL                ? NULL
                : strcmp(at->ns, NS_XML) == 0 ? NS_XML
                                              : arena_strdup(a, at->ns);
        c->value = arena_strdup(a, at->value);
        *tail = c;
        tail = &c->next;
    }
    for (const struct xml_node *n = src->children; n != NULL; n = n->next) {
        struct xml_node *c;
        if (n->kind == XML_NODE_ELEMENT) {
            c = &copy_el(a, (const struct xml_el *)n, el)->node;
        } else {
            const struct xml_text *t = (const struct xml_text *)n;
            struct xml_text *ct = arena_alloc(a, sizeof(*ct));
            ct->node.kind = XML_NODE_TEXT;
            ct->text = arena_memdup(a, t->text, t->len);
            ct->len = t->len;
            c = &ct->node;
        }
        if (el->last_child != NULL)
            el->last_child->next = c;
        else
            el->children = c;
        el->last_child = c;
    }
    return el;
}

struct xml_el *xml_el_copy(struct arena *a, const struct xml_el *el)
{
    return copy_el(a, el, NULL);
}

const char *xml_el_attr(const struct xml_el *el, const char *name)
{
    for (const struct xml_attr *at = el->attrs; at != NULL; at = at->next)
        if (at->ns == NULL && strcmp(at->name, name) == 0)
            return at->value;
    return NULL;
}

const char *xml_el_attr_ns(const struct xml_el *el, const char *ns, const char *name)
{
    const struct xml_attr *at = find_attr(el, ns, name, NULL);
    return at != NULL ? at->value : NULL;
}

static bool el_matches(const struct xml_el *el, const char *ns, const char *name)
{
    return (ns == NULL || strcmp(el->ns, ns) == 0) && (name == NULL || strcmp(el->name, name) == 0);
}

static struct xml_el *next_matching(const struct xml_node *n, const char *ns, const char *name)
{
    for (; n != NULL; n = n->next)
        if (n->kind == XML_NODE_ELEMENT && el_matches((const struct xml_el *)n, ns, name))
            return (struct xml_el *)n;
    return NULL;
}

struct xml_el *xml_el_child(const struct xml_el *el, const char *ns, const char *name)
{
    return next_matching(el->children, ns, name);
}

struct xml_el *xml_el_next(const struct xml_el *child, const char *ns, const char *name)
{
    return next_matching(child->node.next, ns, name);
}

const char *xml_el_text(struct arena *a, const struct xml_el *el)
{
    const struct xml_text *only = NULL;
    size_t total = 0, count = 0;
    for (const struct xml_node *n = el->children; n != NULL; n = n->next) {
        if (n->kind != XML_NODE_TEXT)
            continue;
        only = (const struct xml_text *)n;
        total += only->len;
        count++;
    }
    if (count == 0)
        return "";
    if (count == 1)
        return only->text;
    char *s = arena_alloc(a, total + 1), *p = s;
    for (const struct xml_node *n = el->children; n != NULL; n = n->next) {
        if (n->kind != XML_NODE_TEXT)
            continue;
        const struct xml_text *t = (const struct xml_text *)n;
        memcpy(p, t->text, t->len);
        p += t->len;
    }
    *p = '\0';
    return s;
}

size_t xml_el_count_children(const struct xml_el *el)
{
    size_t count = 0;
    for (const struct xml_node *n = el->children; n != NULL; n = n->next)
        count += n->kind == XML_NODE_ELEMENT;
    return count;
}

/* ---- stanzas ---- */

static const char *const kind_names[] = {"message", "presence", "iq"};

static enum stanza_kind kind_of(const struct xml_el *el)
{
    if (strcmp(el->ns, NS_CLIENT) != 0 && strcmp(el->ns, NS_SERVER) != 0)
        return STANZA_OTHER;
    for (int k = STANZA_MESSAGE; k <= STANZA_IQ; k++)
        if (strcmp(el->name, kind_names[k]) == 0)
            return (enum stanza_kind)k;
    return STANZA_OTHER;
}

struct stanza *stanza_wrap(struct arena *a, struct xml_el *el)
{
    struct stanza *st = arena_alloc(a, sizeof(*st));
    st->arena = a;
    st->el = el;
    st->kind = kind_of(el);
    for (const struct xml_attr *at = el->attrs; at != NULL; at = at->next) {
        if (at->ns != NULL)
            continue;
        const char *n = at->name;
        if (strcmp(n, "type") == 0)
            st->type = at->value;
        else if (strcmp(n, "id") == 0)
            st->id = at->value;
        else if (strcmp(n, "to") == 0)
            st->to_str = at->value;
        else if (strcmp(n, "from") == 0)
            st->from_str = at->value;
    }
    return st;
}

struct stanza *stanza_new(enum stanza_kind kind, const char *type)
{
    if ((unsigned)kind > STANZA_IQ)
        return NULL;
    struct arena *a = arena_new(0);
    struct stanza *st = stanza_wrap(a, el_alloc(a, NS_CLIENT, kind_names[kind]));
    if (type != NULL)
        stanza_set_type(st, type);
    return st;
}

void stanza_free(struct stanza **st)
{
    if (st == NULL || *st == NULL)
        return;
    struct arena *a = (*st)->arena; /* the stanza itself lives in this arena */
    *st = NULL;
    arena_free(&a);
}

/* A JID copied into another arena, so that a copied stanza keeps what the router parsed. */
static struct jid *jid_into(struct arena *a, const struct jid *j)
{
    if (j == NULL)
        return NULL;
    struct jid *c = arena_alloc(a, sizeof(*c));
    c->local = j->local != NULL ? arena_strdup(a, j->local) : NULL;
    c->domain = arena_strdup(a, j->domain);
    c->resource = j->resource != NULL ? arena_strdup(a, j->resource) : NULL;
    c->bare = arena_strdup(a, j->bare);
    c->full = arena_strdup(a, j->full);
    return c;
}

struct stanza *stanza_copy(const struct stanza *st)
{
    /* One first chunk large enough for the whole copy in the common case. */
    struct arena *a = arena_new(arena_used(st->arena) + 256);
    struct stanza *c = stanza_wrap(a, xml_el_copy(a, st->el));
    c->to = jid_into(a, st->to);
    c->from = jid_into(a, st->from);
    return c;
}

static const char *set_routing_attr(struct stanza *st, const char *name, const char *value)
{
    xml_el_set_attr(st->arena, st->el, name, value);
    return xml_el_attr(st->el, name);
}

void stanza_set_to(struct stanza *st, const char *to)
{
    st->to_str = set_routing_attr(st, "to", to);
    st->to = NULL; /* the parsed form no longer matches; the router parses again */
}

void stanza_set_from(struct stanza *st, const char *from)
{
    st->from_str = set_routing_attr(st, "from", from);
    st->from = NULL;
}

void stanza_set_type(struct stanza *st, const char *type)
{
    st->type = set_routing_attr(st, "type", type);
}

void stanza_set_id(struct stanza *st, const char *id)
{
    st->id = set_routing_attr(st, "id", id);
}

/* ---- errors ---- */

static const struct {
    const char *name;
    const char *type;
} stanza_errors[] = {
    [SERR_BAD_REQUEST] = {"bad-request", "modify"},
    [SERR_CONFLICT] = {"conflict", "cancel"},
    [SERR_FEATURE_NOT_IMPLEMENTED] = {"feature-not-implemented", "cancel"},
    [SERR_FORBIDDEN] = {"forbidden", "auth"},
    [SERR_GONE] = {"gone", "cancel"},
    [SERR_INTERNAL_SERVER_ERROR] = {"internal-server-error", "cancel"},
    [SERR_ITEM_NOT_FOUND] = {"item-not-found", "cancel"},
    [SERR_JID_MALFORMED] = {"jid-malformed", "modify"},
    [SERR_NOT_ACCEPTABLE] = {"not-acceptable", "modify"},
    [SERR_NOT_ALLOWED] = {"not-allowed", "cancel"},
    [SERR_NOT_AUTHORIZED] = {"not-authorized", "auth"},
    [SERR_POLICY_VIOLATION] = {"policy-violation", "modify"},
    [SERR_RECIPIENT_UNAVAILABLE] = {"recipient-unavailable", "wait"},
    [SERR_REDIRECT] = {"redirect", "modify"},
    [SERR_REGISTRATION_REQUIRED] = {"registration-required", "auth"},
    [SERR_REMOTE_SERVER_NOT_FOUND] = {"remote-server-not-found", "cancel"},
    [SERR_REMOTE_SERVER_TIMEOUT] = {"remote-server-timeout", "wait"},
    [SERR_RESOURCE_CONSTRAINT] = {"resource-constraint", "wait"},
    [SERR_SERVICE_UNAVAILABLE] = {"service-unavailable", "cancel"},
    [SERR_SUBSCRIPTION_REQUIRED] = {"subscription-required", "auth"},
    [SERR_UNDEFINED_CONDITION] = {"undefined-condition", "modify"},
    [SERR_UNEXPECTED_REQUEST] = {"unexpected-request", "wait"},
};

#define N_STANZA_ERRORS (sizeof(stanza_errors) / sizeof(stanza_errors[0]))

const char *stanza_error_name(enum stanza_error e)
{
    return (size_t)e < N_STANZA_ERRORS ? stanza_errors[e].name : "undefined-condition";
}

const char *stanza_error_default_type(enum stanza_error e)
{
    return (size_t)e < N_STANZA_ERRORS ? stanza_errors[e].type : "cancel";
}

static const char *const stream_errors[] = {
    [STRERR_BAD_FORMAT] = "bad-format",
    [STRERR_BAD_NAMESPACE_PREFIX] = "bad-namespace-prefix",
    [STRERR_CONFLICT] = "conflict",
    [STRERR_CONNECTION_TIMEOUT] = "connection-timeout",
    [STRERR_HOST_GONE] = "host-gone",
    [STRERR_HOST_UNKNOWN] = "host-unknown",
    [STRERR_IMPROPER_ADDRESSING] = "improper-addressing",
    [STRERR_INTERNAL_SERVER_ERROR] = "internal-server-error",
    [STRERR_INVALID_FROM] = "invalid-from",
    [STRERR_INVALID_NAMESPACE] = "invalid-namespace",
    [STRERR_INVALID_XML] = "invalid-xml",
    [STRERR_NOT_AUTHORIZED] = "not-authorized",
    [STRERR_NOT_WELL_FORMED] = "not-well-formed",
    [STRERR_POLICY_VIOLATION] = "policy-violation",
    [STRERR_REMOTE_CONNECTION_FAILED] = "remote-connection-failed",
    [STRERR_RESET] = "reset",
    [STRERR_RESOURCE_CONSTRAINT] = "resource-constraint",
    [STRERR_RESTRICTED_XML] = "restricted-xml",
    [STRERR_SEE_OTHER_HOST] = "see-other-host",
    [STRERR_SYSTEM_SHUTDOWN] = "system-shutdown",
    [STRERR_UNDEFINED_CONDITION] = "undefined-condition",
    [STRERR_UNSUPPORTED_ENCODING] = "unsupported-encoding",
    [STRERR_UNSUPPORTED_FEATURE] = "unsupported-feature",
    [STRERR_UNSUPPORTED_STANZA_TYPE] = "unsupported-stanza-type",
    [STRERR_UNSUPPORTED_VERSION] = "unsupported-version",
};

const char *stream_error_name(enum stream_error e)
{
    return (size_t)e < sizeof(stream_errors) / sizeof(stream_errors[0]) ? stream_errors[e]
                                                                        : "undefined-condition";
}

/* Swaps the to and from of a stanza (its tree, raw strings and parsed JIDs) without copying:
 * the attributes are renamed in place. */
static void swap_addresses(struct stanza *st)
{
    for (struct xml_attr *at = st->el->attrs; at != NULL; at = at->next) {
        if (at->ns != NULL)
            continue;
        if (strcmp(at->name, "to") == 0)
            at->name = "from";
        else if (strcmp(at->name, "from") == 0)
            at->name = "to";
    }
    const char *s = st->to_str;
    st->to_str = st->from_str;
    st->from_str = s;
    struct jid *j = st->to;
    st->to = st->from;
    st->from = j;
}

struct stanza *stanza_error_reply(const struct stanza *st, enum stanza_error cond, const char *type,
                                  const char *text)
{
    if (st->kind == STANZA_OTHER || (st->type != NULL && strcmp(st->type, "error") == 0))
        return NULL;
    struct stanza *r = stanza_copy(st);
    swap_addresses(r);
    stanza_set_type(r, "error");
    struct arena *a = r->arena;
    struct xml_el *err = xml_el_add(a, r->el, NULL, "error");
    xml_el_set_attr(a, err, "type", type != NULL ? type : stanza_error_default_type(cond));
    xml_el_add(a, err, NS_STANZAS, stanza_error_name(cond));
    if (text != NULL) {
        struct xml_el *t = xml_el_add(a, err, NS_STANZAS, "text");
        xml_el_add_text(a, t, text, strlen(text));
    }
    return r;
}

struct stanza *stanza_iq_result(const struct stanza *iq)
{
    if (iq->kind != STANZA_IQ || iq->type == NULL ||
        (strcmp(iq->type, "get") != 0 && strcmp(iq->type, "set") != 0))
        return NULL;
    struct stanza *r = stanza_new(STANZA_IQ, "result");
    struct arena *a = r->arena;
    if (strcmp(iq->el->ns, NS_CLIENT) != 0)
        r->el->ns = arena_strdup(a, iq->el->ns); /* an s2s iq is answered in jabber:server */
    if (iq->id != NULL)
        stanza_set_id(r, iq->id);
    if (iq->from_str != NULL)
        stanza_set_to(r, iq->from_str);
    if (iq->to_str != NULL)
        stanza_set_from(r, iq->to_str);
    r->to = jid_into(a, iq->from);
    r->from = jid_into(a, iq->to);
    return r;
}
