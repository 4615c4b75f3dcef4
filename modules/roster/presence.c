/*
 * presence.c — presence broadcast and probes (RFC 6121 §4), on the account's home worker.
 *
 * The core owns availability and priority (message routing needs them), reflection to the
 * account's own resources and directed presence; this file adds what needs the roster:
 *   - initial presence (§4.2.2): probes from the bare JID to the contacts the user is subscribed
 *     to ("to"/"both"), the presence to the contacts subscribed to the user ("from"/"both"),
 *     the stored subscription requests (§3.1.3) and the other available resources' presence to
 *     the new resource;
 *   - updates (§4.4.2) and unavailable presence (§4.5.2), also when the session just ends
 *     (§4.5.4), to the "from"/"both" contacts;
 *   - answers to probes (§4.3.2) with the last presence of each available resource.
 * Each resource's last broadcast presence is kept here, so none of this touches the database.
 * Contacts the user blocked get nothing (XEP-0191).
 */
#include <stdlib.h>
#include <string.h>

#include "roster.h"

void send_copy(const sd_stanza *st, const char *from, const char *to)
{
    sd_stanza *c = sd_stanza_copy(st);
    if (c == NULL)
        return;
    sd_stanza_set_from(c, from);
    sd_stanza_set_to(c, to);
    sd_route(&c);
}

/* As send_copy, for a stanza this module has already handled as the recipient's side (an
 * inbound subscription stanza): delivered without running the inbound handlers again. */
void deliver_copy(const sd_stanza *st, const char *from, const char *to)
{
    sd_stanza *c = sd_stanza_copy(st);
    if (c == NULL)
        return;
    sd_stanza_set_from(c, from);
    sd_stanza_set_to(c, to);
    sd_deliver(&c);
}

void send_presence(const char *type, const char *from, const char *to)
{
    sd_stanza *st = sd_stanza_new(SD_PRESENCE, type);
    if (st == NULL)
        return;
    sd_stanza_set_from(st, from);
    sd_stanza_set_to(st, to);
    sd_route(&st);
}

static bool user_blocks(const struct account *a, const char *jid)
{
    return a->nblocked > 0 && blocklist_match(a->blocked, a->nblocked, jid);
}

struct bcast {
    struct account *a;
    const sd_stanza *st;
    const char *from;
    unsigned want; /* SUB_FROM: to subscribers; SUB_TO: probes */
};

static void bcast_cb(struct hent *e, void *ud)
{
    struct bcast *b = ud;
    struct item *it = CONTAINER(e, struct item, he);
    if (!it->in_roster || !(it->sub & b->want) || user_blocks(b->a, it->jid))
        return;
    if (b->st != NULL)
        send_copy(b->st, b->from, it->jid);
    else
        send_presence("probe", b->from, it->jid);
}

/* st (from `from`) to every contact with a "from" subscription. */
static void broadcast(struct account *a, const sd_stanza *st, const char *from)
{
    struct bcast b = {a, st, from, SUB_FROM};
    hmap_each(&a->items, bcast_cb, &b);
}

static int parse_priority(sd_stanza *st)
{
    const char *p = sd_el_child_text(st, sd_stanza_el(st), NS_CLIENT, "priority");
    if (p == NULL)
        return 0;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p)
        return 0;
    return v < -128 ? -128 : v > 127 ? 127 : (int)v;
}

struct pending_ctx {
    struct account *a;
    struct res *r;
};

static void pending_cb(struct hent *e, void *ud)
{
    struct pending_ctx *p = ud;
    struct item *it = CONTAINER(e, struct item, he);
    if (!it->pending_in || user_blocks(p->a, it->jid))
        return;
    if (it->pin != NULL) {
        deliver_copy(it->pin, it->jid, p->r->full);
        return;
    }
    send_presence("subscribe", it->jid, p->r->full);
}

void pres_update(struct account *a, struct res *r, sd_stanza *st)
{
    const char *type = sd_stanza_type(st);
    if (type == NULL) {
        bool initial = !r->available;
        r->available = true;
        r->priority = parse_priority(st);
        sd_stanza_free(&r->last);
        r->last = sd_stanza_copy(st);
        if (r->last == NULL)
            return;
        sd_stanza_set_to(r->last, NULL);
        sd_stanza_set_from(r->last, r->full);
        broadcast(a, r->last, r->full);
        if (!initial)
            return;
        /* §4.2.2: probes, from the bare JID, to the contacts the user is subscribed to. */
        struct bcast b = {a, NULL, a->bare, SUB_TO};
        hmap_each(&a->items, bcast_cb, &b);
        /* §3.1.3: requests received while the user was offline (or not yet answered). */
        struct pending_ctx p = {a, r};
        hmap_each(&a->items, pending_cb, &p);
        /* The other resources' presence, which the new one has not seen. */
        for (struct res *o = a->res; o; o = o->next)
            if (o != r && o->available && o->last != NULL)
                send_copy(o->last, o->full, r->full);
    } else if (strcmp(type, "unavailable") == 0) {
        if (!r->available)
            return;
        r->available = false;
        sd_stanza_free(&r->last);
        broadcast(a, st, r->full);
    }
}

void pres_gone(struct account *a, struct res *r)
{
    if (!r->available)
        return;
    r->available = false;
    sd_stanza_free(&r->last);
    sd_stanza *u = sd_stanza_new(SD_PRESENCE, "unavailable");
    if (u == NULL)
        return;
    broadcast(a, u, r->full);
    sd_stanza_free(&u);
}

void pres_current_to(struct account *a, const char *to)
{
    if (user_blocks(a, to))
        return;
    for (struct res *r = a->res; r; r = r->next)
        if (r->available && r->last != NULL)
            send_copy(r->last, r->full, to);
}

void pres_unavailable_to(struct account *a, const char *to)
{
    for (struct res *r = a->res; r; r = r->next)
        if (r->available)
            send_presence("unavailable", r->full, to);
}

void pres_probe(struct account *a, const char *to)
{
    send_presence("probe", a->bare, to);
}

void pres_probe_in(struct account *a, struct task *t)
{
    const sd_jid *from = sd_stanza_from(t->st);
    /* An account whose state is not in memory has no session, hence no available resource:
     * nothing to answer (§4.3.2 lets the last unavailable presence go unsent), and a probe never
     * costs a database read. */
    if (a == NULL || a->state != A_READY || from == NULL) {
        sd_log(roster_mod, SD_LOG_DEBUG, "probe to %s: not in memory, not answered", t->bare);
        task_free(t);
        return;
    }
    const char *prober = sd_jid_bare(from);
    if (sd_log_enabled(SD_LOG_DEBUG)) {
        struct item *dbg = item_find(a, prober);
        size_t avail = 0;
        for (struct res *r = a->res; r; r = r->next)
            avail += r->available && r->last != NULL;
        sd_log(roster_mod, SD_LOG_DEBUG, "probe from %s to %s: item %s, %zu available", prober,
               a->bare, dbg ? (dbg->sub & SUB_FROM ? "from" : "no from") : "none", avail);
    }
    if (strcmp(prober, a->bare) != 0) {
        struct item *it = item_find(a, prober);
        if (it == NULL || !(it->sub & SUB_FROM)) {
            /* §4.3.2: not subscribed to this account's presence. */
            send_presence("unsubscribed", a->bare, prober);
        } else {
            pres_current_to(a, prober);
        }
    }
    task_free(t);
}

void deliver_to_resources(struct account *a, const sd_stanza *st, bool also_interested)
{
    const char *f = sd_stanza_from_str(st);
    if (f == NULL)
        return;
    for (struct res *r = a->res; r; r = r->next)
        if (r->available || (also_interested && r->interested))
            deliver_copy(st, f, r->full);
}
