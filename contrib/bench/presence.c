/*
 * presence.c — the presence workload: what one account's presence costs the server when it has
 * C contacts online (RFC 6121 §4).
 *
 * Client 0 is the hub (account <prefix><first>), clients 1..C its contacts (accounts first+1 ..
 * first+C). All of them live on one worker thread, so the per-update bookkeeping below needs no
 * locks: the generator pins one thread to one CPU anyway.
 *
 * Set-up, through the protocol only, so that it works the same on every server:
 *   1. every client logs in (no initial presence yet) and fetches its roster; the hub's roster
 *      says which pairs are already subscribed both ways (a previous run), and those are left
 *      alone;
 *   2. when some are not, every client sends initial presence (subscription requests go to
 *      available resources) and a roster get, whose answer says the presence was handled; then
 *      the hub sends <presence type='subscribe'/> to each contact it is not subscribed to and
 *      each contact not subscribed to the hub does the same towards the hub; every client
 *      answers a subscription request from the other side with 'subscribed' (RFC 6121 §3.1).
 *      Once the hub's roster pushes (or a roster get every 2 s) show 'both' for every contact,
 *      all the streams are closed and every client logs in again and fetches its roster, which
 *      must now say 'both' everywhere;
 *   3. every contact sends initial presence (each followed by a roster get, whose answer tells
 *      that the server has handled the presence before it), then the hub sends its own, timed:
 *      the server probes the C contacts and answers the probes with their presence, and
 *      broadcasts the hub's to them. init_probes is the time until the hub has all C contacts'
 *      presences, init_bcast until every contact has the hub's, init the later of the two.
 * Measured phase: the hub sends presence updates <presence><status>k</status></presence>, k = 0,
 * 1, 2 ..., keeping at most W updates whose broadcast is incomplete (not yet received by all C
 * contacts); each completion lets the next one go. Every contact checks that it receives every
 * update exactly once and in order (the chat workload's sequence check); the latency of an
 * update is from its sending to its arrival at the last contact.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUB_TO   1u /* in the hub's roster: the hub is subscribed to the contact */
#define SUB_FROM 2u /* the contact is subscribed to the hub */
#define SUB_BOTH (SUB_TO | SUB_FROM)
#define SUB_ASK  4u /* the hub's request to the contact is pending (ask='subscribe') */
#define SUB_SEEN 8u /* the contact is in the hub's roster at all */

#define ASKED_HUB     1u /* the hub received the contact's subscription request */
#define ASKED_CONTACT 2u /* the contact received the hub's */

#define GOT_BY_HUB     1u /* init: the hub has the contact's presence */
#define GOT_BY_CONTACT 2u /* init: the contact has the hub's presence */

#define SETTLE_NS      250000000ull   /* quiet time after the contacts' presence and after init */
#define VERIFY_NS      10000000000ull /* roster polls after a fresh handshake, at most */
#define VERIFY_STEP_NS 250000000ull
#define REFETCH_NS     2000000000ull /* the hub's roster again while subscribing, this often */

enum pphase { PP_IDLE, PP_INIT, PP_MEASURE };

/* One worker thread runs the whole workload: one state. */
static struct {
    enum pphase phase;
    unsigned n; /* contacts */
    struct client *hub;
    unsigned char *sub;   /* [n + 1]: SUB_* per contact, from the hub's roster */
    unsigned char *got;   /* [n + 1]: GOT_* per contact during init */
    unsigned roster_wait; /* roster gets not answered yet */
    unsigned roster_errors;
    unsigned others;        /* items in the hub's roster that are not among the contacts */
    unsigned char *asked;   /* [n + 1]: ASKED_* per contact, requests received in the set-up */
    uint64_t last_activity; /* set-up: last roster push or subscription stanza received */
    unsigned hub_got, contacts_got;
    uint64_t t_init, t_probes, t_bcast;
    /* measured phase: a ring of W updates, indexed by sequence number % W */
    unsigned window;
    uint64_t *t_sent, *t_full;
    unsigned *count;
    uint32_t done; /* updates received by every contact, in order */
} ps;

static bool count_mode(void)
{
    return opt.count > 0;
}

/* The number i of <prefix><i>@<domain>[/resource] minus opt.first, if that is the hub (0) or
 * one of the contacts (1..n); else -1. */
static int jid_index(const char *j, size_t l)
{
    size_t pl = strlen(opt.user_prefix), dl = strlen(opt.domain);
    if (l <= pl || strncasecmp(j, opt.user_prefix, pl) != 0)
        return -1;
    size_t i = pl, digits = 0;
    uint64_t v = 0;
    while (i < l && j[i] >= '0' && j[i] <= '9' && digits < 10) {
        v = v * 10 + (uint64_t)(j[i++] - '0');
        digits++;
    }
    if (digits == 0 || i + 1 + dl > l || j[i] != '@' || strncasecmp(j + i + 1, opt.domain, dl))
        return -1;
    i += 1 + dl;
    if (i != l && j[i] != '/')
        return -1;
    if (v < opt.first || v > (uint64_t)opt.first + ps.n)
        return -1;
    return (int)(v - opt.first);
}

static bool is_hub_full(const char *from, size_t fl)
{
    return from && fl == ps.hub->jid_len && memcmp(from, ps.hub->jid, fl) == 0;
}

static void send_to_account(struct client *c, const char *type, unsigned index)
{
    char b[400];
    snprintf(b, sizeof b, "<presence type='%s' to='%s%u@%s'/>", type, opt.user_prefix,
             opt.first + index, opt.domain);
    out_str(c, b);
}

/* ---------------------------------------------------------------- rosters */

static void roster_get(struct client *c)
{
    out_str(c, "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>");
    ps.roster_wait++;
}

static unsigned missing_pairs(void)
{
    unsigned k = 0;
    for (unsigned i = 1; i <= ps.n; i++)
        if ((ps.sub[i] & SUB_BOTH) != SUB_BOTH)
            k++;
    return k;
}

/* The items of a roster result (full: the whole roster) or push, for the hub. */
static void read_roster(const char *p, size_t len, bool full)
{
    if (full) {
        memset(ps.sub, 0, ps.n + 1);
        ps.others = 0;
    }
    size_t off = 0;
    struct xs_item item;
    while (xs_next_tag(p, len, &off, "item", &item)) {
        const char *j, *s;
        size_t jl, sl;
        if (!xs_attr(&item, "jid", &j, &jl))
            continue;
        int k = jid_index(j, jl);
        if (k <= 0 || memchr(j, '/', jl)) {
            ps.others += full;
            continue;
        }
        unsigned bits = 0;
        if (xs_attr(&item, "subscription", &s, &sl)) {
            if (sl == 4 && memcmp(s, "both", 4) == 0)
                bits = SUB_BOTH;
            else if (sl == 2 && memcmp(s, "to", 2) == 0)
                bits = SUB_TO;
            else if (sl == 4 && memcmp(s, "from", 4) == 0)
                bits = SUB_FROM;
        }
        if (xs_attr_is(&item, "ask", "subscribe"))
            bits |= SUB_ASK;
        if (!xs_attr_is(&item, "subscription", "remove"))
            bits |= SUB_SEEN;
        ps.sub[k] = (unsigned char)bits;
    }
}

/* The first few pairs not subscribed both ways, as the hub's roster shows them. */
static void describe_missing(char *out, size_t cap)
{
    static const char *const names[] = {"none", "to", "from", "both"};
    size_t len = 0;
    out[0] = '\0';
    for (unsigned k = 1; k <= ps.n && len + 60 < cap; k++) {
        unsigned b = ps.sub[k];
        if ((b & SUB_BOTH) == SUB_BOTH)
            continue;
        /* and whether the requests the pair is missing reached the other side (then it
         * approved them) */
        const char *heard = "";
        if (!(b & SUB_TO) && !(b & SUB_FROM))
            heard = ps.asked[k] == (ASKED_HUB | ASKED_CONTACT) ? "(both requests approved)" : "";
        else if (!(b & SUB_FROM))
            heard = ps.asked[k] & ASKED_HUB ? "(its request approved by the hub)" : "";
        else if (!(b & SUB_TO))
            heard = ps.asked[k] & ASKED_CONTACT ? "(the hub's request approved by it)" : "";
        len += (size_t)snprintf(out + len, cap - len, " %s%u:%s%s%s", opt.user_prefix,
                                opt.first + k, b & SUB_SEEN ? names[b & SUB_BOTH] : "absent",
                                b & SUB_ASK ? "+ask" : "", heard);
    }
}

static bool roster_query(const struct xs_item *it, struct xs_item *q)
{
    size_t off = 0;
    return xs_next_tag(it->inner, it->inner_len, &off, "query", q) &&
           xs_attr_is(q, "xmlns", "jabber:iq:roster");
}

bool pres_on_iq(struct client *c, const struct xs_item *it)
{
    struct worker *w = c->w;
    if (xs_attr_is(it, "id", "rg") &&
        (xs_attr_is(it, "type", "result") || xs_attr_is(it, "type", "error"))) {
        if (ps.roster_wait)
            ps.roster_wait--;
        if (xs_attr_is(it, "type", "error")) {
            if (ps.roster_errors++ == 0)
                worker_note(w, "client %u: roster get answered with an error: %.*s", c->idx,
                            (int)(it->len < 300 ? it->len : 300), it->start);
        } else if (c == ps.hub) {
            read_roster(it->inner, it->inner_len, true);
        }
        return true;
    }
    struct xs_item q;
    if (!xs_attr_is(it, "type", "set") || !roster_query(it, &q))
        return false;
    /* A roster push (RFC 6121 §2.1.6): only from the account itself, and acknowledged. */
    const char *from, *id = "";
    size_t fl, idl = 0;
    const char *slash = memchr(c->jid, '/', c->jid_len);
    size_t bare = slash ? (size_t)(slash - c->jid) : c->jid_len;
    if (xs_attr(it, "from", &from, &fl) && !(fl == bare && memcmp(from, c->jid, fl) == 0))
        return false;
    xs_attr(it, "id", &id, &idl);
    if (idl > 200 || memchr(id, '\'', idl))
        return true;
    char b[300];
    snprintf(b, sizeof b, "<iq type='result' id='%.*s'/>", (int)idl, id);
    out_str(c, b);
    if (c == ps.hub)
        read_roster(it->inner, it->inner_len, false);
    ps.last_activity = w->now;
    return true;
}

/* ---------------------------------------------------------------- presence */

/* Contact c receives update seq from the hub. */
static void on_update(struct client *c, uint32_t seq)
{
    struct worker *w = c->w;
    w->s.received++;
    if (!seq_check(c, seq))
        return;
    uint64_t now = w->now;
    bool measured = now >= run.warm_end && (count_mode() || now < run.end);
    if (measured)
        w->s.msgs++;
    uint32_t sent = ps.hub->seq_out;
    if (seq - ps.done >= sent - ps.done)
        return; /* not outstanding: a late arrival after a gap, already counted as lost */
    unsigned slot = seq % ps.window;
    if (++ps.count[slot] == ps.n)
        ps.t_full[slot] = now;
    /* Updates complete in order (each contact receives them in order), so only the oldest can
     * free a place in the window. */
    while (ps.done != sent && ps.count[ps.done % ps.window] >= ps.n) {
        unsigned s = ps.done % ps.window;
        uint64_t t = ps.t_full[s];
        if (t >= run.warm_end && (count_mode() || t < run.end)) {
            w->pr.updates++;
            hist_add(&w->lat_h, t > ps.t_sent[s] ? (t - ps.t_sent[s]) / 1000 : 0);
        }
        w->pr.last_done = t;
        ps.count[s] = 0;
        ps.done++;
    }
}

static void send_updates(struct worker *w)
{
    struct client *hub = ps.hub;
    if (hub->st != CS_READY)
        return;
    uint64_t now = now_ns();
    while (hub->seq_out - ps.done < ps.window && now < run.end &&
           (!count_mode() || hub->seq_out < opt.count)) {
        uint32_t seq = hub->seq_out++;
        unsigned slot = seq % ps.window;
        ps.t_sent[slot] = now;
        ps.count[slot] = 0;
        if (seq == 0)
            w->pr.first_send = now;
        char b[80];
        snprintf(b, sizeof b, "<presence><status>%u</status></presence>", seq);
        out_str(hub, b);
        w->s.sent++;
    }
}

static bool is_subscription(const char *type, size_t tl)
{
    static const char *const types[] = {"subscribe", "subscribed", "unsubscribe", "unsubscribed"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (tl == strlen(types[i]) && memcmp(type, types[i], tl) == 0)
            return true;
    return false;
}

void pres_on_presence(struct client *c, const struct xs_item *it)
{
    struct worker *w = c->w;
    const char *from = NULL, *type = NULL;
    size_t fl = 0, tl = 0;
    bool has_from = xs_attr(it, "from", &from, &fl);
    bool typed = xs_attr(it, "type", &type, &tl);
    int k = has_from ? jid_index(from, fl) : -1;
    if (typed && is_subscription(type, tl))
        ps.last_activity = w->now;
    if (typed && tl == 9 && memcmp(type, "subscribe", 9) == 0) {
        /* Between the hub and a contact, always approved (a request left pending by an earlier
         * run is answered too). */
        if (k >= 0 && (k == 0) != (c == ps.hub)) {
            send_to_account(c, "subscribed", (unsigned)k);
            if (k > 0)
                ps.asked[k] |= ASKED_HUB;
            else
                ps.asked[c->idx] |= ASKED_CONTACT;
        }
        return;
    }
    if (ps.phase == PP_INIT) {
        if (typed)
            return;
        if (c == ps.hub) {
            if (k <= 0 || !memchr(from, '/', fl))
                return; /* its own presence reflected, or not a contact's */
            if (ps.got[k] & GOT_BY_HUB) {
                w->pr.init_extra++;
                return;
            }
            ps.got[k] |= GOT_BY_HUB;
            if (++ps.hub_got == ps.n)
                ps.t_probes = w->now;
        } else if (is_hub_full(from, fl)) {
            if (ps.got[c->idx] & GOT_BY_CONTACT) {
                w->pr.init_extra++;
                return;
            }
            ps.got[c->idx] |= GOT_BY_CONTACT;
            if (++ps.contacts_got == ps.n)
                ps.t_bcast = w->now;
        }
        return;
    }
    if (ps.phase != PP_MEASURE || c == ps.hub || !is_hub_full(from, fl))
        return;
    if (typed) {
        if (w->s.bad++ == 0)
            worker_note(w, "client %u: unexpected presence from the hub: %.*s", c->idx,
                        (int)(it->len < 300 ? it->len : 300), it->start);
        return;
    }
    size_t off = 0, sl;
    const char *s;
    if (!xs_child_text(it->inner, it->inner_len, &off, "status", &s, &sl)) {
        w->pr.init_extra++; /* the hub's initial presence again, late */
        return;
    }
    uint64_t seq = 0;
    bool ok = sl > 0 && sl <= 10;
    for (size_t i = 0; ok && i < sl; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        seq = seq * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || seq > UINT32_MAX) {
        if (w->s.bad++ == 0)
            worker_note(w, "client %u: presence from the hub with an unexpected status: %.*s",
                        c->idx, (int)(it->len < 300 ? it->len : 300), it->start);
        return;
    }
    on_update(c, (uint32_t)seq);
    send_updates(w);
}

/* ---------------------------------------------------------------- set-up */

static bool all_ready(struct worker *w)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->clients[i].st != CS_READY)
            return false;
    return true;
}

/* Runs the loop until done(w) or the deadline or a client is lost; true when done. */
static bool wait_for(struct worker *w, bool (*done)(struct worker *), uint64_t deadline)
{
    flush_dirty(w);
    for (;;) {
        if (done(w))
            return true;
        uint64_t now = now_ns();
        if (now >= deadline || !all_ready(w))
            return false;
        loop_once(w, ms_until(now, deadline, 50));
    }
}

static bool never(struct worker *w)
{
    (void)w;
    return false;
}

static bool rosters_in(struct worker *w)
{
    (void)w;
    return ps.roster_wait == 0;
}

static bool all_both(struct worker *w)
{
    (void)w;
    return missing_pairs() == 0;
}

static bool init_done(struct worker *w)
{
    (void)w;
    return ps.hub_got == ps.n && ps.contacts_got == ps.n;
}

static uint64_t after(double seconds)
{
    return now_ns() + (uint64_t)(seconds * 1e9);
}

/* Roster gets from clients first..w->n-1; true when all were answered without error. */
static bool fetch_rosters(struct worker *w, unsigned first)
{
    ps.roster_wait = 0;
    ps.roster_errors = 0;
    for (unsigned i = first; i < w->n; i++)
        roster_get(&w->clients[i]);
    if (!wait_for(w, rosters_in, after(opt.login_timeout))) {
        worker_note(w, "presence set-up: %u roster gets not answered within %.0f s", ps.roster_wait,
                    opt.login_timeout);
        return false;
    }
    return ps.roster_errors == 0;
}

static void setup_fail(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void setup_fail(struct worker *w, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    worker_note(w, "presence set-up: %s", why);
    w->pr.setup_failed = true;
}

/* Establishes the subscriptions that are missing, then logs everyone in again. */
static bool subscribe_pairs(struct worker *w, unsigned missing)
{
    fprintf(stderr, "stanzad-bench: presence: subscribing %u of %u pairs both ways\n", missing,
            ps.n);
    /* Available first, as a client would be long before it subscribes: the requests then go
     * straight to the other side, with no race against the storage of pending requests. The
     * roster get after each presence is answered once the server has handled the presence. */
    for (unsigned i = 0; i < w->n; i++)
        out_str(&w->clients[i], "<presence/>");
    if (!fetch_rosters(w, 0)) {
        setup_fail(w, "roster get failed after the initial presence");
        return false;
    }
    wait_for(w, never, now_ns() + SETTLE_NS);
    for (unsigned k = 1; k <= ps.n; k++) {
        if (!(ps.sub[k] & SUB_TO))
            send_to_account(ps.hub, "subscribe", k);
        if (!(ps.sub[k] & SUB_FROM))
            send_to_account(&w->clients[k], "subscribe", 0);
    }
    /* The hub's roster pushes tell when a pair is done; a roster get now and then as well, in
     * case a push went astray. When 2 s pass with pairs missing and nothing happening (no
     * roster push, no subscription stanza at any client), their requests are sent again, as a
     * patient user would: a server that lost some still gets its figures measured, and the
     * line says so (setup_resent). */
    uint64_t deadline = after(opt.ramp_timeout);
    ps.last_activity = now_ns();
    while (!wait_for(w, all_both, now_ns() + REFETCH_NS)) {
        unsigned now_missing = missing_pairs();
        uint64_t now = now_ns();
        if (now - ps.last_activity >= REFETCH_NS && ps.roster_wait == 0 && now < deadline) {
            unsigned n = 0;
            for (unsigned k = 1; k <= ps.n; k++) {
                if ((ps.sub[k] & SUB_BOTH) == SUB_BOTH)
                    continue;
                if (!(ps.sub[k] & SUB_TO)) {
                    send_to_account(ps.hub, "subscribe", k);
                    n++;
                }
                if (!(ps.sub[k] & SUB_FROM)) {
                    send_to_account(&w->clients[k], "subscribe", 0);
                    n++;
                }
            }
            if (w->pr.setup_resent == 0) {
                char which[300];
                describe_missing(which, sizeof which);
                fprintf(stderr,
                        "stanzad-bench: presence: nothing for %.0f s with %u pairs missing "
                        "(the hub's roster:%s): sending their %u requests again\n",
                        REFETCH_NS / 1e9, now_missing, which, n);
            }
            w->pr.setup_resent += n;
            ps.last_activity = now;
        }
        if (now_ns() >= deadline || !all_ready(w)) {
            char which[300];
            describe_missing(which, sizeof which);
            setup_fail(w,
                       "%u pairs still not subscribed both ways after %.0f s; the hub's roster:%s",
                       missing_pairs(), opt.ramp_timeout, which);
            return false;
        }
        if (ps.roster_wait == 0)
            roster_get(ps.hub);
    }
    /* A fresh presence session for the measurement: the handshake's presence traffic and
     * state stay behind. */
    close_phase(w);
    reset_clients(w);
    w->s.logins = 0;
    login_phase(w);
    if (w->s.login_failed) {
        setup_fail(w, "logging in again after the subscriptions failed");
        return false;
    }
    /* The roster must say 'both' now; a server that stores it asynchronously may need a
     * moment after the streams closed. */
    deadline = now_ns() + VERIFY_NS;
    if (!fetch_rosters(w, 0)) {
        setup_fail(w, "roster get failed after the subscriptions");
        return false;
    }
    while (missing_pairs() > 0 && now_ns() < deadline) {
        wait_for(w, never, now_ns() + VERIFY_STEP_NS);
        if (!fetch_rosters(w, 0)) {
            setup_fail(w, "roster get failed after the subscriptions");
            return false;
        }
    }
    if (missing_pairs() > 0) {
        char which[300];
        describe_missing(which, sizeof which);
        setup_fail(w,
                   "after the handshake and a new login, the hub's roster still has %u "
                   "contacts not subscribed both ways:%s",
                   missing_pairs(), which);
        return false;
    }
    w->pr.setup_pairs = missing;
    return true;
}

void presence_setup(struct worker *w)
{
    ps.n = opt.contacts;
    ps.hub = &w->clients[0];
    ps.sub = xcalloc(ps.n + 1, 1);
    ps.got = xcalloc(ps.n + 1, 1);
    ps.asked = xcalloc(ps.n + 1, 1);
    ps.phase = PP_IDLE;
    if (w->s.login_failed || !all_ready(w)) {
        setup_fail(w, "not every client logged in");
        return;
    }
    if (!fetch_rosters(w, 0)) {
        setup_fail(w, "roster get failed (does the server have a roster module?)");
        return;
    }
    if (ps.others)
        fprintf(stderr,
                "stanzad-bench: presence: the hub's roster also holds %u other contacts "
                "(offline here)\n",
                ps.others);
    unsigned missing = missing_pairs();
    if (missing > 0 && !subscribe_pairs(w, missing))
        return;
    if (missing == 0)
        fprintf(stderr, "stanzad-bench: presence: all %u pairs already subscribed both ways\n",
                ps.n);

    /* The contacts become available; the roster get after each presence is answered once the
     * server has handled that presence (a stream's stanzas are handled in order). */
    for (unsigned k = 1; k <= ps.n; k++)
        out_str(&w->clients[k], "<presence/>");
    if (!fetch_rosters(w, 1)) {
        setup_fail(w, "no answer after the contacts' initial presence");
        return;
    }
    wait_for(w, never, now_ns() + SETTLE_NS);
    if (!all_ready(w)) {
        setup_fail(w, "a client was disconnected after the contacts' initial presence");
        return;
    }

    /* The hub's initial presence, timed. */
    ps.hub_got = ps.contacts_got = 0;
    memset(ps.got, 0, ps.n + 1);
    ps.phase = PP_INIT;
    ps.t_init = now_ns();
    out_str(ps.hub, "<presence/>");
    bool ok = wait_for(w, init_done, after(opt.login_timeout));
    if (ps.hub_got == ps.n)
        w->pr.init_probes_ns = ps.t_probes - ps.t_init;
    if (ps.contacts_got == ps.n)
        w->pr.init_bcast_ns = ps.t_bcast - ps.t_init;
    if (!ok) {
        char which[240] = "";
        size_t len = 0;
        for (unsigned k = 1; k <= ps.n && len + 60 < sizeof which; k++)
            if (ps.got[k] != (GOT_BY_HUB | GOT_BY_CONTACT))
                len += (size_t)snprintf(which + len, sizeof which - len, " %s%u%s", opt.user_prefix,
                                        opt.first + k,
                                        !(ps.got[k] & GOT_BY_HUB)       ? " (its at the hub)"
                                        : !(ps.got[k] & GOT_BY_CONTACT) ? " (the hub's at it)"
                                                                        : "");
        setup_fail(w,
                   "the hub's initial presence: after %.0f s the hub had %u of %u contacts' "
                   "presences and %u of %u contacts had the hub's; missing:%s",
                   opt.login_timeout, ps.hub_got, ps.n, ps.contacts_got, ps.n, which);
        ps.phase = PP_IDLE;
        return;
    }
    w->pr.init_ns = (ps.t_probes > ps.t_bcast ? ps.t_probes : ps.t_bcast) - ps.t_init;
    fprintf(stderr,
            "stanzad-bench: presence: hub's initial presence: %.1f ms (the contacts' presences "
            "at the hub after %.1f ms, the hub's at every contact after %.1f ms)\n",
            w->pr.init_ns / 1e6, w->pr.init_probes_ns / 1e6, w->pr.init_bcast_ns / 1e6);
    /* Duplicates still on their way count as extras, not as updates. */
    wait_for(w, never, now_ns() + SETTLE_NS);
    if (!all_ready(w))
        setup_fail(w, "a client was disconnected after the hub's initial presence");
}

/* ---------------------------------------------------------------- measured phase */

void presence_phase(struct worker *w)
{
    ps.window = opt.window;
    ps.t_sent = xcalloc(ps.window, sizeof *ps.t_sent);
    ps.t_full = xcalloc(ps.window, sizeof *ps.t_full);
    ps.count = xcalloc(ps.window, sizeof *ps.count);
    ps.done = 0;
    for (unsigned k = 1; k <= ps.n; k++) {
        struct client *c = &w->clients[k];
        c->peer = ps.hub;
        c->seen = xcalloc(SEEN_BITS / 64, sizeof(uint64_t));
    }
    ps.phase = PP_MEASURE;
    send_updates(w);
    flush_dirty(w);
    uint64_t drain_end = run.end + (uint64_t)(opt.drain * 1e9);
    for (;;) {
        uint64_t now = now_ns();
        bool idle = ps.hub->seq_out == ps.done;
        if (count_mode() && ps.hub->seq_out >= opt.count && idle)
            break;
        if (now >= run.end && (idle || now >= drain_end))
            break;
        if (ps.hub->st != CS_READY)
            break;
        loop_once(w, ms_until(now, now < run.end ? run.end : drain_end, 100));
    }
    ps.phase = PP_IDLE;
}

void presence_cleanup(void)
{
    free(ps.t_sent);
    free(ps.t_full);
    free(ps.count);
    free(ps.sub);
    free(ps.got);
    free(ps.asked);
    memset(&ps, 0, sizeof ps);
}
