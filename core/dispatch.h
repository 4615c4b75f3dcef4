/*
 * dispatch.h — module hooks around the core's routing: registration tables, the pipeline a
 * client's stanza goes through (filters in, iq/pre/route handlers, the core's rules), filters
 * out, undeliverable handling, events, deferral, and iq requests the server sends itself.
 *
 * The tables are filled while modules load (main thread, before the workers start) and are
 * read-only afterwards, so dispatch takes no lock.
 */
#ifndef STANZAD_DISPATCH_H
#define STANZAD_DISPATCH_H

#include <stdbool.h>

#include "stanza.h"
#include "stanzad/hooks.h"

struct c2s;
struct session;
struct worker;
struct sd_module;

/* A stanza from a bound client session (after 'from' stamping); consumes st. */
void dispatch_from_session(struct session *s, struct stanza *st);
/* Writes st to s's client after the SD_FILTER_OUT filters; on s's worker; consumes st. */
void dispatch_to_session(struct session *s, struct stanza *st);
/* An iq get/set before authentication, from the stream whose stand-in session (not in the
 * directory; preauth set) is given: the SD_TO_PREAUTH handlers, else <not-authorized/>. */
void dispatch_preauth(struct session *stand_in, struct stanza *st);
/* The inbound handlers for a stanza to a local account ('to' parsed). True when one took it
 * (consumed); false: route it on. */
bool dispatch_inbound(struct stanza *st);
/* A message or presence no session could take: SD_UNDELIVERABLE handlers, then dflt(st). */
void dispatch_undeliverable(struct stanza *st, void (*dflt)(struct stanza *st));
/* An iq result/error addressed to the server or an account: the answer to an sd_send_iq?
 * Consumes st and returns true if so (possibly by forwarding it to the asking worker). */
bool dispatch_iq_response(struct stanza *st);

/* Session events (on the session's worker). */
void dispatch_session_bound(struct session *s);
void dispatch_session_closed(struct session *s);
/* SD_EV_ACCOUNT_CREATED / SD_EV_ACCOUNT_DELETED for bare@host, on the calling worker; holder
 * and el (may be NULL) are what the creator passed along (sd_account_create's info). */
void dispatch_account_event(sd_event_type type, const char *host, const char *bare,
                            struct stanza *holder, struct xml_el *el);
/* Lets modules add stream features to el (an element of holder) for a stream of host; stream
 * is that stream (sd_hctx_peer / sd_hctx_secure of the event read it). */
void dispatch_stream_features(struct stanza *holder, struct xml_el *el, const char *host,
                              bool authenticated, struct c2s *stream);

/* Per-worker state (module slots, pending iq requests): start and stop hooks. */
void dispatch_worker_init(struct worker *w);
void dispatch_worker_done(struct worker *w);
/* Frees the per-session data modules attached to s (at session end, on s's worker). */
void dispatch_session_free_data(struct session *s);

/* Registration (module_api.c): the module, key and handler of one hook. */
int dispatch_add_stanza_hook(struct sd_module *m, int table, unsigned to_types, unsigned iq_types,
                             const char *xmlns, const char *element, int priority, sd_stanza_fn fn,
                             void *ud);
int dispatch_add_event_hook(struct sd_module *m, sd_event_type type, int priority, sd_event_fn fn,
                            void *ud);
/* Removes every hook of m (module_api.c's module_registrations_remove calls it). */
void dispatch_remove_module_hooks(struct sd_module *m);

enum {
    TABLE_IQ,
    TABLE_MESSAGE_PRE,
    TABLE_MESSAGE_ROUTE,
    TABLE_MESSAGE_UNDELIVERABLE,
    TABLE_PRESENCE_PRE,
    TABLE_PRESENCE_ROUTE,
    TABLE_PRESENCE_UNDELIVERABLE,
    TABLE_FILTER_IN,
    TABLE_FILTER_OUT,
    TABLE_INBOUND,
    TABLE_COUNT
};

#endif
