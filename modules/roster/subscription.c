/*
 * subscription.c — presence subscriptions, RFC 6121 §3 and the state tables of Appendix A.
 *
 * State of the user's item for a contact: subscription bits (TO: the user receives the contact's
 * presence; FROM: the contact receives the user's), `ask` (Pending Out), `pending_in` (Pending
 * In, with the request's status and nick kept so it can be delivered again), `approved`
 * (pre-approval, §3.4). A stored request from a JID that is not in the roster is a hidden item
 * (§3.1.3: the server does not add a roster item for it).
 *
 * Outbound (the user's client sent it; runs on the user's home worker): Appendix A.2. The stanza
 * is routed from the user's bare JID to the contact's bare JID (§3.1.2); subscribe and
 * unsubscribe are routed in every state (the contact's server may have lost its state), an
 * approval or a refusal only when it answers something (A.2.3, A.2.4), and an approval with no
 * request pending is a pre-approval (§3.4.1).
 *
 * Inbound (routed to a local account; runs on that account's home worker): Appendix A.3. What
 * is delivered goes to the account's available resources (a request, §3.1.3: stored and sent
 * again at every initial presence until answered) or to its available and interested ones (the
 * other three). Every visible change is pushed (roster.c).
 */
#include <stdlib.h>
#include <string.h>

#include "roster.h"

bool is_subscription_type(const char *type)
{
    return type != NULL && (strcmp(type, "subscribe") == 0 || strcmp(type, "subscribed") == 0 ||
                            strcmp(type, "unsubscribe") == 0 || strcmp(type, "unsubscribed") == 0);
}

static void clear_request(struct item *it)
{
    it->pending_in = false;
    sd_stanza_free(&it->pin);
}

/* Routes st (a client's subscription stanza, or one built here) from the user's bare JID to the
 * contact's bare JID. */
static void route_from_user(struct account *a, const sd_stanza *st, const char *contact)
{
    send_copy(st, a->bare, contact);
}

/* The contact's bare JID a client's stanza is for; NULL if it has no valid 'to'. */
static const char *contact_of(sd_stanza *st)
{
    const sd_jid *to = sd_stanza_to(st);
    return to ? sd_jid_bare(to) : NULL;
}

/* An error back to the client that sent t->st. */
static void refuse(struct task *t, sd_error cond, const char *text)
{
    /* From the contact to the client's full JID (the copy's 'from', stamped by the core). */
    sd_stanza *err = sd_stanza_error(t->st, cond, text);
    if (err != NULL)
        sd_route(&err);
}

/* The item for contact, created hidden when missing and `create`. */
static struct item *get_item(struct account *a, const char *contact, bool create)
{
    struct item *it = item_find(a, contact);
    if (it == NULL && create)
        it = item_new(a, contact);
    return it;
}

/* Would making `it` visible exceed the roster's size? */
static bool roster_full(struct account *a, const struct item *it)
{
    const struct rconf *c = rconf(a->host);
    return (it == NULL || !it->in_roster) && c != NULL && a->n_visible >= (size_t)c->max_items;
}

/* When making `it` visible would exceed the roster's size: refuses the client's stanza, frees
 * the task and says so. */
static bool refused_when_full(struct task *t, struct account *a, const struct item *it)
{
    if (!roster_full(a, it))
        return false;
    refuse(t, SD_ERR_POLICY_VIOLATION, "the roster is full");
    task_free(t);
    return true;
}

void sub_outbound(struct account *a, struct task *t)
{
    if (a == NULL || a->state != A_READY) {
        task_free(t);
        return;
    }
    const char *type = sd_stanza_type(t->st);
    const char *contact = contact_of(t->st);
    if (contact == NULL || strcmp(contact, a->bare) == 0) {
        task_free(t);
        return;
    }
    const struct rconf *c = rconf(a->host);
    struct item *it = item_find(a, contact);
    unsigned before = it ? item_visible_state(it) : 0;

    if (strcmp(type, "subscribe") == 0) {
        /* A.2.1 / §3.1.2: None -> None + Pending Out, From -> From + Pending Out, other states
         * unchanged; the request is routed in every state. */
        if (it == NULL || !(it->sub & SUB_TO)) {
            if (refused_when_full(t, a, it))
                return;
            it = get_item(a, contact, true);
            item_unaccount(a, it);
            it->in_roster = true;
            it->ask = true;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
        route_from_user(a, t->st, contact);
    } else if (strcmp(type, "unsubscribe") == 0) {
        /* A.2.2 / §3.3.2: To -> None, Both -> From, Pending Out cancelled; routed always. */
        if (it != NULL && (it->ask || (it->sub & SUB_TO))) {
            item_unaccount(a, it);
            it->ask = false;
            it->sub &= ~(unsigned)SUB_TO;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
        route_from_user(a, t->st, contact);
    } else if (strcmp(type, "subscribed") == 0) {
        if (it != NULL && it->pending_in) {
            /* A.2.3 / §3.1.5: Pending In -> From (added to the roster when it was not). */
            if (refused_when_full(t, a, it))
                return;
            item_unaccount(a, it);
            it->in_roster = true;
            it->sub |= SUB_FROM;
            it->approved = false;
            clear_request(it);
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
            route_from_user(a, t->st, contact);
            /* §3.1.5: the contact now gets the user's current presence. */
            pres_current_to(a, contact);
        } else if (it != NULL && (it->sub & SUB_FROM)) {
            /* Already approved: not routed, no change. */
        } else if (c == NULL || c->pre_approval) {
            /* §3.4.1: a pre-approval, kept on the item (created when missing); not routed. */
            if (refused_when_full(t, a, it))
                return;
            it = get_item(a, contact, true);
            item_unaccount(a, it);
            it->in_roster = true;
            it->approved = true;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
    } else if (strcmp(type, "unsubscribed") == 0) {
        if (it != NULL && (it->pending_in || (it->sub & SUB_FROM))) {
            /* A.2.4 / §3.2.2: From -> None, Both -> To, a pending request refused. */
            /* §3.2.2: the contact no longer sees the user — told before the unsubscribed. */
            if (it->sub & SUB_FROM)
                pres_unavailable_to(a, contact);
            item_unaccount(a, it);
            it->sub &= ~(unsigned)SUB_FROM;
            it->approved = false;
            clear_request(it);
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
            route_from_user(a, t->st, contact);
        } else if (it != NULL && it->approved) {
            /* A.2.4 note: cancels a pre-approval; not routed. */
            item_unaccount(a, it);
            it->approved = false;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
    }
    task_free(t);
}

void sub_remove_item(struct account *a, struct item *it)
{
    /* §2.5.2: removing an item cancels both directions. A pending request either way is
     * cancelled too (Appendix A.3.2 / A.3.4 on the contact's side). */
    if (it->sub & SUB_FROM)
        pres_unavailable_to(a, it->jid); /* before the unsubscribed, as §3.2.2 */
    if ((it->sub & SUB_TO) || it->ask)
        send_presence("unsubscribe", a->bare, it->jid);
    if ((it->sub & SUB_FROM) || it->pending_in)
        send_presence("unsubscribed", a->bare, it->jid);
}

/* Keeps the request, complete with its extended content, to deliver it again (§3.1.3). */
static void store_request(struct item *it, sd_stanza *st)
{
    sd_stanza_free(&it->pin);
    it->pin = sd_stanza_copy(st);
}

void sub_inbound(struct account *a, struct task *t)
{
    const char *type = sd_stanza_type(t->st);
    const sd_jid *from = sd_stanza_from(t->st);
    if (a == NULL || from == NULL || type == NULL) {
        task_free(t);
        return;
    }
    const char *contact = sd_jid_bare(from);
    if (a->state == A_MISSING) {
        /* No such account: a request is refused on its behalf (§3.1.3). */
        if (strcmp(type, "subscribe") == 0)
            send_presence("unsubscribed", a->bare, contact);
        task_free(t);
        return;
    }
    if (a->state != A_READY || strcmp(contact, a->bare) == 0) {
        task_free(t);
        return;
    }
    /* What is delivered comes from the contact's bare JID (§3.1.3). */
    sd_stanza_set_from(t->st, contact);
    struct item *it = item_find(a, contact);
    unsigned before = it ? item_visible_state(it) : 0;

    if (strcmp(type, "subscribe") == 0) {
        if (it != NULL && (it->sub & SUB_FROM)) {
            /* A.3.1 "no *": already subscribed; the server answers for the user. */
            send_presence("subscribed", a->bare, contact);
        } else if (it != NULL && it->approved) {
            /* §3.4.2: pre-approved — approve now, deliver nothing. */
            item_unaccount(a, it);
            it->sub |= SUB_FROM;
            it->approved = false;
            clear_request(it);
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
            send_presence("subscribed", a->bare, contact);
            pres_current_to(a, contact);
        } else if (it != NULL && it->pending_in) {
            /* A.3.1: Pending In already: no state change, not delivered again now (it will be
             * at the next initial presence). */
            store_request(it, t->st);
            store_save_item(a, it, NULL, NULL);
        } else {
            /* A.3.1: None -> None + Pending In, None + Pending Out -> None + Pending Out/In,
             * To -> To + Pending In. Stored, and delivered to the available resources. */
            const struct rconf *c = rconf(a->host);
            if ((it == NULL || !it->in_roster) && c != NULL &&
                a->n_hidden >= (size_t)c->max_pending) {
                /* Not silently: the requester's server gets a presence error (RFC 6120
                 * §8.3.3.18, type wait) and the log says so. */
                sd_log(roster_mod, SD_LOG_WARN,
                       "%s has %zu pending subscription requests (max_pending); refusing one "
                       "from %s with <resource-constraint/>",
                       a->bare, a->n_hidden, contact);
                sd_stanza *err = sd_stanza_error(t->st, SD_ERR_RESOURCE_CONSTRAINT,
                                                 "too many pending subscription requests");
                if (err != NULL)
                    sd_route(&err);
                task_free(t);
                return;
            }
            it = get_item(a, contact, true);
            item_unaccount(a, it);
            it->pending_in = true;
            store_request(it, t->st);
            item_commit(a, it, false, NULL, NULL);
            deliver_to_resources(a, t->st, false);
        }
    } else if (strcmp(type, "unsubscribe") == 0) {
        if (it != NULL && ((it->sub & SUB_FROM) || it->pending_in)) {
            /* A.3.2: From -> None, Both -> To, a pending request withdrawn; delivered. */
            bool had_from = (it->sub & SUB_FROM) != 0;
            deliver_to_resources(a, t->st, true); /* delivered, then pushed (§3.3.3) */
            item_unaccount(a, it);
            it->sub &= ~(unsigned)SUB_FROM;
            clear_request(it);
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
            /* §3.3.3: the contact no longer receives the user's presence. */
            if (had_from)
                pres_unavailable_to(a, contact);
        }
    } else if (strcmp(type, "subscribed") == 0) {
        if (it != NULL && it->ask) {
            /* A.3.3: Pending Out -> To (From + Pending Out -> Both); delivered, then pushed
             * (§3.1.6). */
            deliver_to_resources(a, t->st, true);
            item_unaccount(a, it);
            it->ask = false;
            it->sub |= SUB_TO;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
    } else if (strcmp(type, "unsubscribed") == 0) {
        if (it != NULL && (it->ask || (it->sub & SUB_TO))) {
            /* A.3.4: To -> None, Both -> From, Pending Out refused; delivered, then pushed
             * (§3.2.3). */
            deliver_to_resources(a, t->st, true);
            item_unaccount(a, it);
            it->ask = false;
            it->sub &= ~(unsigned)SUB_TO;
            item_commit(a, it, item_visible_state(it) != before, NULL, NULL);
        }
    }
    task_free(t);
}
