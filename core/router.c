/*
 * router.c — delivery rules for stanzas between local sessions (RFC 6120 §8, RFC 6121 §8.5).
 *
 * The router runs on the worker of whoever produced the stanza. Looking a JID up takes one
 * directory shard's read lock; delivering to a session on another worker posts the stanza (its
 * arena moves with it, nobody else holds it) to that worker's inbox, where it is serialised
 * straight into the recipient's output buffer. Nothing here touches the database.
 *
 * What the core answers itself, until modules register handlers (the module ABI): an iq get/set
 * to the server, to an account's bare JID or to a resource that is not there gets
 * <service-unavailable/>; a message no available resource can take gets <service-unavailable/>
 * too (RFC 6121 §8.5.2.2 — an offline store is a module); a stanza to a domain we do not serve
 * gets <remote-server-not-found/> (no federation yet). Errors are never answered with errors.
 *
 * Every stanza routed to a local account passes the modules' inbound handlers once, here at the
 * entry (never again on the fallbacks below, such as a full JID that falls back to the bare).
 */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "c2s.h"
#include "dispatch.h"
#include "jid.h"
#include "log.h"
#include "mem.h"
#include "presence.h"
#include "server.h"
#include "session.h"
#include "worker.h"

#define MAX_FANOUT 64 /* resources of one account considered for one delivery */

struct delivery {
    struct post post; /* must be first */
    struct session *s;
    struct stanza *st;
};

static void route_bare(struct stanza *st);

static void bounce_unavailable(struct stanza *st)
{
    router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
}

static void drop(struct stanza *st)
{
    stanza_free(&st);
}

static bool type_is(const struct stanza *st, const char *t)
{
    return st->type != NULL && strcmp(st->type, t) == 0;
}

static bool is_iq_request(const struct stanza *st)
{
    return st->kind == STANZA_IQ && (type_is(st, "get") || type_is(st, "set"));
}

static bool is_subscription(const struct stanza *st)
{
    return type_is(st, "subscribe") || type_is(st, "subscribed") || type_is(st, "unsubscribe") ||
           type_is(st, "unsubscribed");
}

void router_bounce(struct stanza *st, enum stanza_error cond, const char *text)
{
    struct stanza *reply = stanza_error_reply(st, cond, NULL, text);
    if (reply) {
        /* The error comes from where the stanza was going; when that was no valid address,
         * from the sender's own server. */
        if (st->to == NULL && st->from_str != NULL) {
            const struct jid *from =
                st->from ? st->from
                         : jid_parse(st->arena, st->from_str, strlen(st->from_str), NULL);
            if (from)
                stanza_set_from(reply, from->domain);
        }
        router_route(reply);
    }
    stanza_free(&st);
}

/* The session is gone (or going) by the time the stanza reached it. */
static void deliver_failed(struct stanza *st)
{
    if (st->kind == STANZA_MESSAGE &&
        (st->type == NULL || type_is(st, "chat") || type_is(st, "normal"))) {
        route_bare(st); /* RFC 6121 §8.5.3.2.1: as if sent to the bare JID */
    } else if (is_iq_request(st)) {
        router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
    } else {
        stanza_free(&st);
    }
}

static void deliver_here(struct session *s, struct stanza *st)
{
    if (atomic_load(&s->closed) || s->c2s == NULL) {
        deliver_failed(st);
        return;
    }
    dispatch_to_session(s, st);
}

static void deliver_post(struct post *p)
{
    struct delivery *d = (struct delivery *)p;
    deliver_here(d->s, d->st);
    session_unref(&d->s);
    free(d);
}

void router_deliver(struct session *s, struct stanza *st)
{
    if (s->w == worker_self()) {
        deliver_here(s, st);
        return;
    }
    struct delivery *d = xmalloc(sizeof *d);
    session_ref(s);
    d->s = s;
    d->st = st;
    worker_post(s->w, &d->post, deliver_post);
}

/* Delivers st to every session in targets (copies for all but the last); consumes st and the
 * references in targets. */
static void deliver_many(struct session **targets, size_t n, struct stanza *st)
{
    for (size_t i = 0; i < n; i++) {
        struct stanza *one = i + 1 < n ? stanza_copy(st) : st;
        router_deliver(targets[i], one);
        session_unref(&targets[i]);
    }
    if (n == 0)
        stanza_free(&st);
}

/* To local@host with no resource. */
static void route_bare(struct stanza *st)
{
    struct session *targets[MAX_FANOUT];
    size_t n;
    const char *bare = st->to->bare;

    switch (st->kind) {
    case STANZA_MESSAGE:
        if (type_is(st, "error")) {
            stanza_free(&st);
        } else if (type_is(st, "groupchat")) {
            router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
        } else if (type_is(st, "headline")) {
            n = session_find_bare(bare, PICK_NON_NEGATIVE, targets, MAX_FANOUT);
            deliver_many(targets, n, st);
        } else {
            n = session_find_bare(bare, PICK_TOP_PRIORITY, targets, MAX_FANOUT);
            if (n == 0)
                dispatch_undeliverable(st, bounce_unavailable);
            else
                deliver_many(targets, n, st);
        }
        return;
    case STANZA_PRESENCE:
        if (type_is(st, "probe") || type_is(st, "error")) {
            stanza_free(&st);
            return;
        }
        n = session_find_bare(bare, PICK_AVAILABLE, targets, MAX_FANOUT);
        if (n == 0)
            dispatch_undeliverable(st, drop);
        else
            deliver_many(targets, n, st);
        return;
    case STANZA_IQ:
        /* The server answers on the account's behalf (RFC 6120 §10.5.3.2 / RFC 6121 §8.5.1);
         * modules had their turn before this (dispatch.c). An answer to the server's own
         * request (sd_send_iq from this account's JID) is taken by the asking module. */
        if (is_iq_request(st))
            router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
        else if (!dispatch_iq_response(st))
            stanza_free(&st);
        return;
    default:
        stanza_free(&st);
    }
}

/* To local@host/resource. */
static void route_full(struct stanza *st)
{
    struct session *s = session_find(st->to->bare, st->to->resource);
    if (s) {
        router_deliver(s, st);
        session_unref(&s);
        return;
    }
    switch (st->kind) {
    case STANZA_MESSAGE:
        if (st->type == NULL || type_is(st, "chat") || type_is(st, "normal"))
            route_bare(st);
        else if (type_is(st, "groupchat"))
            router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
        else
            stanza_free(&st);
        return;
    case STANZA_PRESENCE:
        if (is_subscription(st))
            route_bare(st);
        else
            dispatch_undeliverable(st, drop);
        return;
    case STANZA_IQ:
        if (is_iq_request(st))
            router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
        else
            stanza_free(&st);
        return;
    default:
        stanza_free(&st);
    }
}

/* To the server itself. */
static void route_host(struct stanza *st)
{
    if ((st->kind == STANZA_IQ && is_iq_request(st)) ||
        (st->kind == STANZA_MESSAGE && !type_is(st, "error")))
        router_bounce(st, SERR_SERVICE_UNAVAILABLE, NULL);
    else if (st->kind != STANZA_IQ || !dispatch_iq_response(st))
        stanza_free(&st);
}

static void route(struct stanza *st, bool inbound)
{
    if (!st->to) {
        const char *why = NULL;
        if (st->to_str)
            st->to = jid_parse(st->arena, st->to_str, strlen(st->to_str), &why);
        if (!st->to) {
            log_debug(0, "dropping a server stanza without a valid 'to'");
            stanza_free(&st);
            return;
        }
    }
    if (!server_is_local_host(st->to->domain)) {
        if (type_is(st, "error") || (st->kind == STANZA_PRESENCE && !is_subscription(st) &&
                                     st->type != NULL && !type_is(st, "unavailable")))
            stanza_free(&st);
        else
            router_bounce(st, SERR_REMOTE_SERVER_NOT_FOUND, "this server does not federate yet");
        return;
    }
    if (!st->to->local) {
        route_host(st);
        return;
    }
    /* The recipient's side first: modules that guard accounts (blocking, subscriptions). */
    if (inbound && dispatch_inbound(st))
        return;
    if (st->to->resource)
        route_full(st);
    else
        route_bare(st);
}

void router_route(struct stanza *st)
{
    route(st, true);
}

void router_route_past_inbound(struct stanza *st)
{
    route(st, false);
}

void router_from_session(struct session *s, struct stanza *st)
{
    /* RFC 6120 §8.1.2.1: the server stamps 'from' with the sender's full JID, whatever the
     * client put there. */
    stanza_set_from(st, s->full);
    st->from = NULL; /* parsed only if someone needs it */

    if (st->to_str) {
        const char *why = NULL;
        st->to = jid_parse(st->arena, st->to_str, strlen(st->to_str), &why);
        if (!st->to) {
            router_bounce(st, SERR_JID_MALFORMED, why);
            return;
        }
    }
    if (st->kind == STANZA_OTHER) {
        stanza_free(&st);
        return;
    }
    dispatch_from_session(s, st);
}

void router_from_session_core(struct session *s, struct stanza *st)
{
    switch (st->kind) {
    case STANZA_PRESENCE:
        presence_from_session(s, st);
        return;
    case STANZA_MESSAGE:
        if (!st->to) {
            /* RFC 6120 §10.3.1: no 'to' means the sender's own bare JID. */
            stanza_set_to(st, s->bare);
            st->to = jid_parse(st->arena, s->bare, strlen(s->bare), NULL);
        }
        break;
    case STANZA_IQ:
        if (!st->to) {
            /* To the account itself, handled by the server on its behalf. */
            if (is_iq_request(st)) {
                struct stanza *reply = stanza_error_reply(st, SERR_SERVICE_UNAVAILABLE, NULL, NULL);
                stanza_free(&st);
                if (reply) {
                    stanza_set_from(reply, s->bare);
                    router_deliver(s, reply);
                }
            } else if (!dispatch_iq_response(st)) {
                stanza_free(&st);
            }
            return;
        }
        break;
    default:
        stanza_free(&st);
        return;
    }
    router_route(st);
}
