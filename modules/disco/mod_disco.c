/*
 * mod_disco — service discovery (XEP-0030) for the server and for accounts.
 *
 * It owns the answers to disco#info and disco#items queries addressed to a served host and to
 * the asking account's own bare JID (or sent without 'to'), which the server answers on the
 * account's behalf (RFC 6121 §8.5.1). A query to a full JID goes to that client and never
 * reaches this module. The content is not kept here: identities and features come from the
 * core's registry (stanzad/disco.h), which every loaded module fills in its load(); this module
 * only adds its own entries there and turns the registry into a <query/>. After the registry's
 * part, sd_disco_info_extend() lets other modules add what a registry cannot hold (XEP-0128
 * data forms, for instance).
 *
 * The handlers sit at a low priority so a module that publishes a disco node of its own hooks
 * the same key at the default priority, answers its node and passes everything else down to
 * here; a node nobody claimed is answered with <item-not-found/>.
 *
 * Queries to another account's bare JID are left to the core (<service-unavailable/>): whether
 * the asker may see them depends on a presence subscription, and there is no roster to ask yet.
 */
#include <stddef.h>

#include <stanzad/stanzad.h>

#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

/* Below the default priority: node owners at 0 answer first (see the top of the file). */
#define DISCO_PRIORITY (-50)

struct fill {
    sd_stanza *st;
    sd_el *query;
};

static void disco_add_identity(const char *category, const char *type, const char *name, void *ud)
{
    struct fill *f = ud;
    sd_el *id = sd_el_add(f->st, f->query, NULL, "identity");
    sd_el_set_attr(f->st, id, "category", category);
    sd_el_set_attr(f->st, id, "type", type);
    if (name != NULL && name[0] != '\0')
        sd_el_set_attr(f->st, id, "name", name);
}

static void disco_add_feature(const char *var, void *ud)
{
    struct fill *f = ud;
    sd_el *feat = sd_el_add(f->st, f->query, NULL, "feature");
    sd_el_set_attr(f->st, feat, "var", var);
}

/* The entity a query is about: the host, or the asking account's bare JID. */
static const char *disco_entity(sd_hctx *h, sd_stanza *st, unsigned where)
{
    if (where == SD_DISCO_SERVER)
        return sd_hctx_host(h);
    const sd_jid *from = sd_stanza_from(st);
    return from != NULL ? sd_jid_bare(from) : sd_hctx_host(h);
}

static sd_verdict disco_info(sd_hctx *h, sd_stanza *st, unsigned where)
{
    const char *node = sd_el_attr(sd_stanza_payload(st), "node");
    if (node != NULL)
        return sd_reply_error(h, st, SD_ERR_ITEM_NOT_FOUND, NULL);

    sd_stanza *reply = sd_stanza_result(st);
    if (reply == NULL)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    struct fill f = {reply, sd_el_add(reply, sd_stanza_el(reply), NS_DISCO_INFO, "query")};
    const char *host = sd_hctx_host(h);
    sd_disco_identities(host, where, disco_add_identity, &f);
    sd_disco_features(host, where, disco_add_feature, &f);
    sd_disco_info_extend(h, reply, f.query, disco_entity(h, st, where), NULL);
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict disco_items(sd_hctx *h, sd_stanza *st)
{
    if (sd_el_attr(sd_stanza_payload(st), "node") != NULL)
        return sd_reply_error(h, st, SD_ERR_ITEM_NOT_FOUND, NULL);
    /* No items yet: components and PEP nodes will list themselves here once they exist. */
    sd_stanza *reply = sd_stanza_result(st);
    if (reply == NULL)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    sd_el_add(reply, sd_stanza_el(reply), NS_DISCO_ITEMS, "query");
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict disco_info_host(sd_hctx *h, sd_stanza *st, void *ud)
{
    return disco_info(h, st, SD_DISCO_SERVER);
}

static sd_verdict disco_info_account(sd_hctx *h, sd_stanza *st, void *ud)
{
    return disco_info(h, st, SD_DISCO_ACCOUNT);
}

static sd_verdict disco_items_any(sd_hctx *h, sd_stanza *st, void *ud)
{
    return disco_items(h, st);
}

static int disco_load(sd_module *m, const char **error_r)
{
    const unsigned both = SD_DISCO_SERVER | SD_DISCO_ACCOUNT;
    if (sd_add_identity(m, SD_DISCO_SERVER, "server", "im", "stanzad") < 0 ||
        sd_add_identity(m, SD_DISCO_ACCOUNT, "account", "registered", NULL) < 0 ||
        sd_add_feature(m, both, NS_DISCO_INFO) < 0 || sd_add_feature(m, both, NS_DISCO_ITEMS) < 0) {
        *error_r = "cannot register the disco identities and features";
        return -1;
    }
    if (sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS_DISCO_INFO, "query", DISCO_PRIORITY,
                   disco_info_host, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_GET, NS_DISCO_INFO, "query", DISCO_PRIORITY,
                   disco_info_account, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST | SD_TO_SELF, SD_IQ_GET, NS_DISCO_ITEMS, "query", DISCO_PRIORITY,
                   disco_items_any, NULL) < 0) {
        *error_r = "cannot register the disco handlers";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "disco", .version = SD_VERSION_STRING, .load = disco_load);
