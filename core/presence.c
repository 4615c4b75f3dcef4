/*
 * presence.c — the part of RFC 6121 §4 that the core owns.
 *
 * Broadcast presence (no 'to') sets the session's availability and priority in the directory
 * and is reflected to every available resource of the account, the sender included (§4.2.2,
 * §4.4.2). Directed presence (§4.6) is delivered and remembered per session, so that when the
 * session goes unavailable or disappears, those recipients learn it. Subscription requests are
 * addressed from and to bare JIDs (§3.1.2) and delivered to the contact's available resources;
 * the subscription state machine itself arrives with the roster module.
 */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "mem.h"
#include "router.h"
#include "session.h"

#define MAX_OWN_RESOURCES 64

static bool type_is(const struct stanza *st, const char *t)
{
    return st->type != NULL && strcmp(st->type, t) == 0;
}

static int presence_priority(const struct stanza *st)
{
    struct xml_el *p = xml_el_child(st->el, NS_CLIENT, "priority");
    if (!p)
        return 0;
    const char *text = xml_el_text(st->arena, p);
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text)
        return 0;
    return v < -128 ? -128 : v > 127 ? 127 : (int)v;
}

static void directed_add(struct session *s, const char *jid)
{
    for (size_t i = 0; i < s->n_directed; i++)
        if (strcmp(s->directed[i], jid) == 0)
            return;
    if (s->n_directed == s->cap_directed) {
        s->cap_directed = s->cap_directed ? s->cap_directed * 2 : 4;
        s->directed = xrealloc(s->directed, s->cap_directed * sizeof *s->directed);
    }
    s->directed[s->n_directed++] = xstrdup(jid);
}

static void directed_remove(struct session *s, const char *jid)
{
    for (size_t i = 0; i < s->n_directed; i++)
        if (strcmp(s->directed[i], jid) == 0) {
            free(s->directed[i]);
            s->directed[i] = s->directed[--s->n_directed];
            return;
        }
}

/* Sends a copy of st, addressed to each available resource of s's account. Consumes st. */
static void reflect_to_own_resources(struct session *s, struct stanza *st)
{
    struct session *own[MAX_OWN_RESOURCES];
    size_t n = session_find_bare(s->bare, PICK_AVAILABLE, own, MAX_OWN_RESOURCES);
    for (size_t i = 0; i < n; i++) {
        struct stanza *copy = stanza_copy(st);
        stanza_set_to(copy, own[i]->full);
        router_deliver(own[i], copy);
        session_unref(&own[i]);
    }
    stanza_free(&st);
}

/* Unavailable presence from s to everyone that got its directed presence. */
static void unavailable_to_directed(struct session *s)
{
    for (size_t i = 0; i < s->n_directed; i++) {
        struct stanza *u = stanza_new(STANZA_PRESENCE, "unavailable");
        stanza_set_from(u, s->full);
        stanza_set_to(u, s->directed[i]);
        router_route(u);
        free(s->directed[i]);
    }
    s->n_directed = 0;
}

void presence_from_session(struct session *s, struct stanza *st)
{
    if (!st->to_str) {
        if (st->type == NULL || type_is(st, "unavailable")) {
            bool available = st->type == NULL;
            session_set_presence(s, available, available ? presence_priority(st) : 0);
            if (!available)
                unavailable_to_directed(s);
            reflect_to_own_resources(s, st);
        } else {
            stanza_free(&st); /* probes and subscriptions need an addressee */
        }
        return;
    }
    if (st->type == NULL || type_is(st, "unavailable")) {
        if (st->type == NULL)
            directed_add(s, st->to->full);
        else
            directed_remove(s, st->to->full);
        router_route(st);
    } else if (type_is(st, "subscribe") || type_is(st, "subscribed") ||
               type_is(st, "unsubscribe") || type_is(st, "unsubscribed")) {
        stanza_set_from(st, s->bare);
        st->from = jid_parse(st->arena, s->bare, strlen(s->bare), NULL);
        if (st->to->resource) {
            stanza_set_to(st, st->to->bare);
            st->to = jid_parse(st->arena, st->to_str, strlen(st->to_str), NULL);
        }
        router_route(st);
    } else if (type_is(st, "error")) {
        router_route(st);
    } else {
        stanza_free(&st); /* probes are the server's business */
    }
}

void presence_session_ended(struct session *s)
{
    if (s->available) {
        session_set_presence(s, false, 0);
        struct stanza *u = stanza_new(STANZA_PRESENCE, "unavailable");
        stanza_set_from(u, s->full);
        reflect_to_own_resources(s, u);
    }
    unavailable_to_directed(s);
}
