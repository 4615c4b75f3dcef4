/*
 * stanzad/disco.h — what the server and accounts say they support (XEP-0030), collected from
 * every loaded module. Register in load(); the entries belong to the module and go with it.
 * The disco module answers queries from this registry; entity capabilities (XEP-0115) hash it.
 */
#ifndef STANZAD_DISCO_H
#define STANZAD_DISCO_H

#include <stddef.h>

#include "export.h"
#include "hooks.h"
#include "module.h"
#include "stanza.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SD_DISCO_SERVER = 1, SD_DISCO_ACCOUNT = 2 };

/* A feature var of the server (SD_DISCO_SERVER) and/or of every account's bare JID
 * (SD_DISCO_ACCOUNT), on the hosts where the module is enabled. */
SD_API int sd_add_feature(sd_module *m, unsigned where, const char *var);
/* An identity (category/type/name) of the server or of accounts. */
SD_API int sd_add_identity(sd_module *m, unsigned where, const char *category, const char *type,
                           const char *name);

/* Reading the registry for host (sorted, without duplicates): calls fn for each entry. */
SD_API void sd_disco_features(const char *host, unsigned where,
                              void (*fn)(const char *var, void *ud), void *ud);
SD_API void sd_disco_identities(const char *host, unsigned where,
                                void (*fn)(const char *category, const char *type,
                                           const char *name, void *ud),
                                void *ud);

/* For the module that answers disco#info: raises SD_EV_DISCO_INFO so that other modules can add
 * to the <query/> element of st being built, for the entity jid (bare JID or host) and node
 * (NULL when none). On the calling worker. */
SD_API void sd_disco_info_extend(sd_hctx *h, sd_stanza *st, sd_el *query, const char *jid,
                                 const char *node);

#ifdef __cplusplus
}
#endif

#endif
