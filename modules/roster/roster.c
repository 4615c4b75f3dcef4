/*
 * roster.c — the roster itself (RFC 6121 §2): get, set, remove, pushes, versioning (§2.6).
 *
 * Every visible change to an item raises the account's version by one and stamps the item with
 * it; a removed item stays as a tombstone (not in the roster, stamped with the version of its
 * removal). So a client that presents an older version of ours gets, instead of the roster, an
 * empty result and one push per item changed since (removals as subscription='remove'), in
 * version order (§2.6.3). Tombstones are dropped when there are more of them than the roster
 * may have items; the version at that moment becomes the floor below which a client gets the
 * whole roster again. A version string is "<epoch>-<n>": the epoch is random per account, so a
 * version of a deleted and re-created account never matches.
 *
 * Pushes go to every interested resource (one that asked for the roster in this session), from
 * the account's bare JID (§2.1.6), with the new version. A roster set is answered once its write
 * is in the database.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

static const char *const sub_names[] = {"none", "to", "from", "both"};

char *ver_string(const struct account *a, int64_t ver, char *buf, size_t n)
{
    snprintf(buf, n, "%" PRIx32 "-%" PRId64, a->epoch, ver);
    return buf;
}

/* Parses "<epoch>-<n>"; -1 when it is not one of ours. */
static int64_t ver_parse(const struct account *a, const char *s)
{
    char *end = NULL;
    unsigned long e = strtoul(s, &end, 16);
    if (end == s || *end != '-' || (uint32_t)e != a->epoch)
        return -1;
    const char *p = end + 1;
    if (*p < '0' || *p > '9')
        return -1;
    long long v = strtoll(p, &end, 10);
    if (*end != '\0' || v < 0)
        return -1;
    return v;
}

unsigned item_visible_state(const struct item *it)
{
    if (!it->in_roster)
        return 0;
    return 1u | it->sub << 1 | (unsigned)it->ask << 3 | (unsigned)it->approved << 4;
}

/* <item/> for it under parent; removed: subscription='remove'. */
static void item_xml(sd_stanza *st, sd_el *parent, const struct item *it, bool removed)
{
    sd_el *el = sd_el_add(st, parent, NS_ROSTER, "item");
    sd_el_set_attr(st, el, "jid", it->jid);
    if (removed) {
        sd_el_set_attr(st, el, "subscription", "remove");
        return;
    }
    if (it->name != NULL)
        sd_el_set_attr(st, el, "name", it->name);
    sd_el_set_attr(st, el, "subscription", sub_names[it->sub & 3]);
    if (it->ask)
        sd_el_set_attr(st, el, "ask", "subscribe");
    if (it->approved)
        sd_el_set_attr(st, el, "approved", "true");
    for (size_t i = 0; i < it->ngroups; i++)
        sd_el_add_text_child(st, el, NS_ROSTER, "group", it->groups[i]);
}

static void push_to(struct account *a, struct res *r, const struct item *it)
{
    const struct rconf *c = rconf(a->host);
    sd_stanza *st = sd_stanza_new(SD_IQ, "set");
    if (st == NULL)
        return;
    char id[32], ver[48];
    snprintf(id, sizeof(id), "push%" PRIu64, next_seq());
    sd_stanza_set_id(st, id);
    sd_stanza_set_from(st, a->bare);
    sd_stanza_set_to(st, r->full);
    sd_el *q = sd_el_add(st, sd_stanza_el(st), NS_ROSTER, "query");
    if (c == NULL || c->versioning)
        sd_el_set_attr(st, q, "ver", ver_string(a, it->ver, ver, sizeof(ver)));
    item_xml(st, q, it, !it->in_roster);
    sd_route(&st);
}

static void push_item(struct account *a, const struct item *it)
{
    for (struct res *r = a->res; r; r = r->next)
        if (r->interested)
            push_to(a, r, it);
}

static void compact_cb(struct hent *e, void *ud)
{
    struct account *a = ud;
    struct item *it = CONTAINER(e, struct item, he);
    if (!it->in_roster && !it->pending_in) {
        item_unaccount(a, it);
        hmap_del(&a->items, &it->he);
        item_free(it);
    }
}

void item_commit(struct account *a, struct item *it, bool visible, db_done_fn done, void *ud)
{
    if (visible) {
        a->ver++;
        it->ver = a->ver;
        push_item(a, it);
    }
    if (!it->in_roster && !it->pending_in && it->ver == 0) {
        /* Nothing left to remember. */
        hmap_del(&a->items, &it->he);
        store_delete_item(a, it->jid, done, ud);
        item_free(it);
        return;
    }
    item_account(a, it);
    store_save_item(a, it, done, ud);
    const struct rconf *c = rconf(a->host);
    if (a->n_tomb > (size_t)(c ? c->max_items : 1000) + 16) {
        hmap_each(&a->items, compact_cb, a);
        a->n_tomb = 0;
        a->floor = a->ver;
        store_compact(a);
    }
}

/* ---- get ---- */

static int cmp_ver(const void *x, const void *y)
{
    const struct item *a = CONTAINER(*(struct hent *const *)x, struct item, he);
    const struct item *b = CONTAINER(*(struct hent *const *)y, struct item, he);
    return a->ver < b->ver ? -1 : a->ver > b->ver;
}

static void roster_get(struct account *a, struct task *t, struct res *r, sd_el *query)
{
    const struct rconf *c = rconf(a->host);
    if (r != NULL)
        r->interested = true;
    const char *asked = sd_el_attr(query, "ver");
    bool versioning = asked != NULL && (c == NULL || c->versioning);
    sd_stanza *reply = sd_stanza_result(t->st);
    if (reply == NULL) {
        task_finish(t, NULL, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    sd_stanza_set_from(reply, a->bare);
    int64_t known = versioning && asked[0] != '\0' ? ver_parse(a, asked) : -1;
    if (known >= 0 && known <= a->ver && known >= a->floor) {
        /* §2.6.3: an empty result, then the changes since `known` as pushes. */
        size_t n;
        struct hent **v = hmap_list(&a->items, &n);
        if (n > 1)
            qsort(v, n, sizeof(*v), cmp_ver);
        task_finish(t, reply, -1, NULL); /* before the pushes (same worker: sent now) */
        for (size_t i = 0; r != NULL && i < n; i++) {
            struct item *it = CONTAINER(v[i], struct item, he);
            if (it->ver > known)
                push_to(a, r, it);
        }
        free(v);
        return;
    }
    sd_el *q = sd_el_add(reply, sd_stanza_el(reply), NS_ROSTER, "query");
    if (versioning) {
        char ver[48];
        sd_el_set_attr(reply, q, "ver", ver_string(a, a->ver, ver, sizeof(ver)));
    }
    size_t n;
    struct hent **v = hmap_list(&a->items, &n);
    for (size_t i = 0; i < n; i++) {
        struct item *it = CONTAINER(v[i], struct item, he);
        if (it->in_roster)
            item_xml(reply, q, it, false);
    }
    free(v);
    task_finish(t, reply, -1, NULL);
}

/* ---- set ---- */

static void set_saved(struct account *a, bool ok, void *ud)
{
    struct task *t = ud;
    (void)a;
    if (!ok) {
        task_finish(t, NULL, SD_ERR_INTERNAL_SERVER_ERROR, "the roster could not be saved");
        return;
    }
    sd_stanza *reply = sd_stanza_result(t->st);
    if (reply != NULL)
        sd_stanza_set_from(reply, t->bare);
    task_finish(t, reply, reply ? -1 : SD_ERR_INTERNAL_SERVER_ERROR, NULL);
}

/* Characters (not bytes) of a UTF-8 string. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void roster_remove(struct account *a, struct task *t, const char *jid)
{
    struct item *it = item_find(a, jid);
    if (it == NULL || !it->in_roster) {
        /* §2.5.3: not in the roster. */
        task_finish(t, NULL, SD_ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    /* §2.5.2: cancel the subscriptions both ways, then the item goes (a tombstone stays). */
    sub_remove_item(a, it);
    item_unaccount(a, it);
    it->in_roster = false;
    it->sub = 0;
    it->ask = false;
    it->approved = false;
    it->pending_in = false;
    sd_stanza_free(&it->pin);
    free(it->name);
    it->name = NULL;
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    free(it->groups);
    it->groups = NULL;
    it->ngroups = 0;
    item_commit(a, it, true, set_saved, t);
}

static void roster_set(struct account *a, struct task *t, sd_el *query)
{
    const struct rconf *c = rconf(a->host);
    /* RFC 6121 §2.3.3 (error cases, which §2.4.3 and §2.5.3 apply too). */
    sd_el *el = sd_el_child(query, NS_ROSTER, "item");
    if (el == NULL || sd_el_next(el, NS_ROSTER, "item") != NULL) {
        task_finish(t, NULL, SD_ERR_BAD_REQUEST, "a roster set carries exactly one item");
        return;
    }
    const char *jid_s = sd_el_attr(el, "jid");
    if (jid_s == NULL) {
        task_finish(t, NULL, SD_ERR_BAD_REQUEST, "the item has no 'jid'");
        return;
    }
    sd_jid *jid = sd_jid_new(jid_s);
    if (jid == NULL) {
        /* RFC 6120 §8.3.3.8: an address that does not adhere to the syntax. */
        task_finish(t, NULL, SD_ERR_JID_MALFORMED, "the item's 'jid' is not a valid JID");
        return;
    }
    char *key = strdup(sd_jid_full(jid));
    sd_jid_free(&jid);
    if (key == NULL)
        abort();
    const char *sub = sd_el_attr(el, "subscription");
    if (sub != NULL && strcmp(sub, "remove") == 0) {
        roster_remove(a, t, key);
        free(key);
        return;
    }
    /* Any other 'subscription', 'ask' and 'approved' in a set are ignored (§2.1.2). */
    if (strcmp(key, a->bare) == 0) {
        /* Decision: the account is implicitly subscribed to itself (§4.2.2 reflection); an item
         * for it would make the server send the account's presence to itself twice. */
        free(key);
        task_finish(t, NULL, SD_ERR_NOT_ACCEPTABLE, "the roster cannot hold the account itself");
        return;
    }
    const char *name = sd_el_attr(el, "name");
    if (name != NULL && c != NULL && utf8_len(name) > (size_t)c->max_name_length) {
        free(key);
        task_finish(t, NULL, SD_ERR_NOT_ACCEPTABLE, "the name is too long");
        return;
    }
    size_t ng = 0;
    for (sd_el *g = sd_el_child(el, NS_ROSTER, "group"); g; g = sd_el_next(g, NS_ROSTER, "group"))
        ng++;
    if (c != NULL && ng > (size_t)c->max_groups) {
        free(key);
        task_finish(t, NULL, SD_ERR_NOT_ACCEPTABLE, "too many groups");
        return;
    }
    char **groups = ng ? calloc(ng, sizeof(char *)) : NULL;
    if (ng && groups == NULL)
        abort();
    size_t k = 0;
    int err = -1;
    const char *why = NULL;
    for (sd_el *g = sd_el_child(el, NS_ROSTER, "group"); g; g = sd_el_next(g, NS_ROSTER, "group")) {
        const char *text = sd_el_text(t->st, g);
        if (text[0] == '\0') {
            err = SD_ERR_NOT_ACCEPTABLE;
            why = "a group name is empty";
            break;
        }
        if (c != NULL && utf8_len(text) > (size_t)c->max_group_length) {
            err = SD_ERR_NOT_ACCEPTABLE;
            why = "a group name is too long";
            break;
        }
        for (size_t i = 0; i < k; i++)
            if (strcmp(groups[i], text) == 0) {
                err = SD_ERR_BAD_REQUEST;
                why = "a group is named twice";
            }
        if (err >= 0)
            break;
        groups[k] = strdup(text);
        if (groups[k++] == NULL)
            abort();
    }
    /* The roster's size limit (a local service policy, RFC 6120 §8.3.3.12). */
    struct item *it = item_find(a, key);
    if (err < 0 && (it == NULL || !it->in_roster) && c != NULL &&
        a->n_visible >= (size_t)c->max_items) {
        err = SD_ERR_POLICY_VIOLATION;
        why = "the roster is full";
    }
    if (err >= 0) {
        for (size_t i = 0; i < k; i++)
            free(groups[i]);
        free(groups);
        free(key);
        task_finish(t, NULL, err, why);
        return;
    }
    if (it == NULL)
        it = item_new(a, key);
    free(key);
    item_unaccount(a, it);
    it->in_roster = true;
    free(it->name);
    it->name = name != NULL && name[0] != '\0' ? strdup(name) : NULL;
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    free(it->groups);
    it->groups = groups;
    it->ngroups = k;
    item_commit(a, it, true, set_saved, t);
}

void roster_iq(struct account *a, struct task *t)
{
    sd_el *query = sd_stanza_payload(t->st);
    struct res *r = res_get(a, t->res, t->sid);
    const char *type = sd_stanza_type(t->st);
    if (query == NULL || type == NULL) {
        task_finish(t, NULL, SD_ERR_BAD_REQUEST, NULL);
        return;
    }
    if (strcmp(type, "get") == 0)
        roster_get(a, t, r, query);
    else
        roster_set(a, t, query);
}
