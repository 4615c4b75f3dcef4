/*
 * stanzad/hooks.h — handlers for stanzas and events, verdicts, deferral, and where code runs.
 *
 * Dispatch. Every stanza a client sends goes through, in order:
 *   1. SD_FILTER_IN filters (every stanza from a session, before anything else);
 *   2. for an iq get/set to the server, to an account (bare JID) or to the sender itself: the iq
 *      handlers registered for its payload (namespace + element) and destination type;
 *      for a message or presence: the SD_PRE handlers, then the SD_ROUTE handlers, of its
 *      destination type;
 *   3. when every handler passed: the core's own rules (RFC 6120 §10, RFC 6121 §8): delivery to
 *      sessions, or <service-unavailable/> for an unhandled iq. A message or presence the core
 *      cannot deliver goes to the SD_UNDELIVERABLE handlers before the core's default (an
 *      error, or nothing, as the RFCs say).
 * Every stanza on its way to a local account — from a client of ours, from a module (sd_route),
 * from the core itself — first goes through the inbound handlers (sd_hook_inbound, ABI 1.1):
 * the recipient's side of the exchange (blocking, subscription state, probes).
 * Before a client has authenticated, only its iq get/set reach modules, and only the handlers
 * registered for SD_TO_PREAUTH (in-band registration, ABI 1.1).
 * Every stanza written to a session first goes through the SD_FILTER_OUT filters, on the
 * recipient's worker.
 *
 * Order. Handlers of one key run from the highest priority to the lowest; equal priorities in
 * module load order. Default priority 0. A handler returns:
 *   SD_PASS  — not mine (or I only looked): go on with the next handler;
 *   SD_DONE  — handled: stop here (the handler has sent whatever reply is due); for a filter,
 *              the stanza is dropped;
 *   SD_LATER — the handler called sd_hctx_defer() and will finish the stanza later.
 * Hooks apply on every virtual host whose module list contains the module; the core checks.
 *
 * Where code runs. Filters IN, iq, SD_PRE, SD_ROUTE and SD_UNDELIVERABLE handlers run on the
 * worker that owns the sending session (for stanzas the server itself generates, on the worker
 * that generated them). SD_FILTER_OUT runs on the recipient session's worker. Events run where
 * they happen (session events on the session's worker). Completions — timers, database results,
 * iq results, offloaded work — run on the worker that started them. Nothing may block: no
 * sleeping, no blocking I/O, no synchronous database access (use sd_offload for such work).
 *
 * In order: while a handler has deferred a client's stanza, that client's later stanzas wait
 * behind it (RFC 6120 §10.1) and the server stops reading that client's stream. So never defer a
 * stanza while waiting for the same client to answer something (an sd_send_iq to it would only
 * time out); finish the stanza first.
 */
#ifndef STANZAD_HOOKS_H
#define STANZAD_HOOKS_H

#include <stdint.h>

#include "export.h"
#include "module.h"
#include "stanza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_verdict { SD_PASS = 0, SD_DONE = 1, SD_LATER = 2 } sd_verdict;

/* The context of one dispatch (opaque): valid during the handler call only. */
typedef struct sd_hctx sd_hctx;
/* A bound client session (opaque). */
typedef struct sd_session sd_session;
/* A deferred stanza (opaque). */
typedef struct sd_pending sd_pending;

typedef sd_verdict (*sd_stanza_fn)(sd_hctx *h, sd_stanza *st, void *ud);

/* Destination types (bit flags). A stanza has exactly one; register for several with |. */
enum {
    SD_TO_HOST = 1 << 0, /* to="example.com": the server itself */
    SD_TO_BARE = 1 << 1, /* to="user@example.com", another account than the sender's */
    SD_TO_FULL = 1 << 2, /* to="user@example.com/res" */
    SD_TO_SELF = 1 << 3, /* no 'to', or the sender's own bare JID */
    /* ABI 1.1: an iq get/set sent before the stream authenticated (XEP-0077 registration),
     * addressed to nothing or to the stream's host. Only handlers that name this type see it;
     * sd_hctx_session() is NULL, sd_hctx_host() the stream's host, and replies (sd_reply*,
     * sd_pending_*) go back on the stream while it lasts. An iq no handler takes, and every
     * other stanza before authentication, ends the stream with <not-authorized/>. */
    SD_TO_PREAUTH = 1 << 4,
};
/* iq types (bit flags). */
enum { SD_IQ_GET = 1 << 0, SD_IQ_SET = 1 << 1 };

typedef enum sd_phase { SD_PRE = 0, SD_ROUTE = 1, SD_UNDELIVERABLE = 2 } sd_phase;
enum { SD_FILTER_IN = 1 << 0, SD_FILTER_OUT = 1 << 1 };

/*
 * iq get/set whose payload is <element xmlns='xmlns'> (element NULL: any element of xmlns; since
 * ABI 1.1 xmlns NULL: any payload at all), to the destination types given. The handler answers
 * (sd_reply*) and returns SD_DONE, or passes. Register in load() only. Returns 0, or -1 with a log
 * line (bad arguments).
 */
SD_API int sd_hook_iq(sd_module *m, unsigned to_types, unsigned iq_types, const char *xmlns,
                      const char *element, int priority, sd_stanza_fn fn, void *ud);
/* message / presence stanzas by destination type and phase. */
SD_API int sd_hook_message(sd_module *m, unsigned to_types, sd_phase phase, int priority,
                           sd_stanza_fn fn, void *ud);
SD_API int sd_hook_presence(sd_module *m, unsigned to_types, sd_phase phase, int priority,
                            sd_stanza_fn fn, void *ud);
/* Every stanza into the server from a session (SD_FILTER_IN) and/or out to one
 * (SD_FILTER_OUT). A filter may modify the stanza; SD_DONE drops it. Only SD_FILTER_IN filters
 * may defer (SD_LATER); an SD_FILTER_OUT filter that returns SD_LATER is treated as SD_PASS. */
SD_API int sd_hook_filter(sd_module *m, unsigned which, int priority, sd_stanza_fn fn, void *ud);

/* Stanza kinds as bit flags, for sd_hook_inbound (ABI 1.1). */
enum {
    SD_KIND_MESSAGE = 1 << SD_MESSAGE,
    SD_KIND_PRESENCE = 1 << SD_PRESENCE,
    SD_KIND_IQ = 1 << SD_IQ,
};
/*
 * ABI 1.1. Inbound handlers: every stanza of the given kinds on its way to a local account (to
 * its bare JID or to one of its resources), whoever sent it — a client (after the sender's own
 * handlers and the core's outbound rules), a module through sd_route, the core (errors,
 * unavailable presence at logout), later a remote server. They run on the worker routing the
 * stanza, before the core looks for the recipient's sessions; sd_hctx_session() is NULL,
 * sd_hctx_host() is the recipient's host; read the sender and the recipient from the stanza.
 * SD_PASS lets the stanza go on; SD_DONE takes it (send whatever is due: sd_reply_error answers
 * the sender, sd_route sends anything else). They cannot defer (SD_LATER counts as SD_PASS):
 * copy the stanza (sd_stanza_copy) and post it to the worker that owns the state instead. Keep
 * them cheap: every message between two online users passes through them.
 */
SD_API int sd_hook_inbound(sd_module *m, unsigned kinds, int priority, sd_stanza_fn fn, void *ud);

/* ---- the handler context ---- */

/* The virtual host the stanza is for (its 'to' domain when that is ours, else the sender's). */
SD_API const char *sd_hctx_host(const sd_hctx *h);
/* The session that sent the stanza (IN, iq, PRE, ROUTE) or receives it (OUT); NULL when the
 * server generated it. Borrowed for the call. */
SD_API sd_session *sd_hctx_session(const sd_hctx *h);
/* ABI 1.1. The IP address (text, no port) of the client the stanza came from — the session's
 * or, for SD_TO_PREAUTH, the stream's; in an SD_EV_STREAM_FEATURES handler, the stream being
 * offered them — or NULL when the server generated it. */
SD_API const char *sd_hctx_peer(const sd_hctx *h);
/* ABI 1.1. 1 when that client's stream is encrypted (TLS), else 0 (also when there is none). */
SD_API int sd_hctx_secure(const sd_hctx *h);
/* Scratch memory freed when this dispatch ends. */
SD_API void *sd_hctx_alloc(sd_hctx *h, size_t n);
/* Sends reply to the sender of the stanza being handled; consumes *reply. Its to/from should
 * come from sd_stanza_result/sd_stanza_error (they are filled when absent). */
SD_API void sd_reply(sd_hctx *h, sd_stanza **reply);
/* Builds and sends the error reply for st; returns SD_DONE (so: return sd_reply_error(...)). */
SD_API sd_verdict sd_reply_error(sd_hctx *h, sd_stanza *st, sd_error cond, const char *text);
/* Sends an empty iq result for st; returns SD_DONE. */
SD_API sd_verdict sd_reply_result(sd_hctx *h, sd_stanza *st);

/* ---- deferral ---- */

/*
 * Takes the stanza being handled out of the dispatch, to finish later; the handler then returns
 * SD_LATER. The pending stanza must be finished exactly once, with one of the calls below, on
 * the same worker (database, timer and iq completions already run there). Later stanzas of the
 * same client wait until then.
 */
SD_API sd_pending *sd_hctx_defer(sd_hctx *h);
/* The deferred stanza (still owned by the pending). */
SD_API sd_stanza *sd_pending_stanza(sd_pending *p);
/* The session it came from, or NULL if it has ended meanwhile (replies are then dropped). */
SD_API sd_session *sd_pending_session(sd_pending *p);
/* Finishes with a reply (consumed) to the sender. */
SD_API void sd_pending_reply(sd_pending **p, sd_stanza **reply);
/* Finishes with the error reply for the stanza. */
SD_API void sd_pending_error(sd_pending **p, sd_error cond, const char *text);
/* Finishes: the stanza was handled, nothing more to send. */
SD_API void sd_pending_done(sd_pending **p);
/* Resumes dispatch with the next handler after the one that deferred. */
SD_API void sd_pending_pass(sd_pending **p);

/* ---- sending ---- */

/* Routes a stanza by its 'to' through the normal rules; 'from' must be set (the server's host,
 * or a JID the module speaks for). Consumes *st. Any worker. */
SD_API void sd_route(sd_stanza **st);
/* ABI 1.1. Like sd_route, but a stanza to a local account skips the inbound handlers
 * (sd_hook_inbound): for a module that has just been the recipient's side of it — say, the
 * roster module delivering a subscription request it processed for the contact. The core's
 * delivery rules still apply (RFC 6121 §8.5). Consumes *st. Any worker. */
SD_API void sd_deliver(sd_stanza **st);
/* Called with the iq result or error, or with NULL when timeout_ms passed first. The stanza is
 * borrowed for the call. */
typedef void (*sd_iq_result_fn)(sd_stanza *result, void *ud);
/* Sends an iq get/set (its 'from', 'to' and 'type' set by the caller; the id is set here) and
 * calls fn once on this worker. Consumes *iq. Returns 0, or -1 (not on a worker; fn not called). */
SD_API int sd_send_iq(sd_module *m, sd_stanza **iq, unsigned timeout_ms, sd_iq_result_fn fn,
                      void *ud);

/* ---- sessions ---- */

/* JIDs of a session. Borrowed while the session lives (during a handler: for the call). */
SD_API const char *sd_session_full(const sd_session *s);
SD_API const char *sd_session_bare(const sd_session *s);
SD_API const char *sd_session_host(const sd_session *s);
/* Is the session available (sent presence) and with what priority? */
SD_API int sd_session_available(const sd_session *s);
SD_API int sd_session_priority(const sd_session *s);
/* Writes a stanza to this session's client (through SD_FILTER_OUT); consumes *st. Any worker. */
SD_API void sd_session_send(sd_session *s, sd_stanza **st);
/* Milliseconds since the session's client last sent anything. On the session's worker. */
SD_API uint64_t sd_session_idle_ms(const sd_session *s);

/* RFC 6120 §4.9.3 stream errors a module may end a session with (values never change). */
typedef enum sd_stream_error {
    SD_STREAM_CONFLICT = 0,
    SD_STREAM_CONNECTION_TIMEOUT = 1,
    SD_STREAM_POLICY_VIOLATION = 2,
    SD_STREAM_NOT_AUTHORIZED = 3,
    SD_STREAM_RESOURCE_CONSTRAINT = 4,
    SD_STREAM_UNDEFINED_CONDITION = 5,
} sd_stream_error;
/* Ends the session's stream with that error (text optional). Any worker; idempotent. */
SD_API void sd_session_end(sd_session *s, sd_stream_error cond, const char *text);

/*
 * Per-session data of a module: one pointer, freed with free_fn (may be NULL) when the session
 * ends or when replaced. Only on the session's own worker (in its hooks and events).
 */
SD_API void sd_session_set_data(sd_session *s, sd_module *m, void *data, void (*free_fn)(void *));
SD_API void *sd_session_get_data(const sd_session *s, const sd_module *m);

/* ---- events ---- */

typedef enum sd_event_type {
    SD_EV_SESSION_BOUND = 1,   /* a resource was bound: sd_event_session */
    SD_EV_SESSION_CLOSED = 2,  /* a session ended (before its data is freed): sd_event_session */
    SD_EV_ACCOUNT_CREATED = 3, /* sd_event_jid: the bare JID; sd_event_el: what the creator
                                * passed to sd_account_create (a registration form), or NULL */
    SD_EV_ACCOUNT_DELETED = 4, /* sd_event_jid: the bare JID. Rows in tables that reference
                                * accounts(id) ON DELETE CASCADE are already gone, in the
                                * transaction that deleted the account; drop what is in memory
                                * and tell others (contacts) what is due. See accounts.h. */
    SD_EV_STREAM_FEATURES = 5, /* features being offered: add children to sd_event_el */
    SD_EV_DISCO_INFO = 6,      /* disco#info being answered (raised by the disco module with
                                * sd_disco_info_extend): add to sd_event_el (the <query/>);
                                * sd_event_jid is the entity asked, sd_event_node its node */
} sd_event_type;

typedef struct sd_event sd_event;
typedef void (*sd_event_fn)(sd_hctx *h, sd_event *ev, void *ud);

SD_API int sd_hook_event(sd_module *m, sd_event_type type, int priority, sd_event_fn fn, void *ud);
SD_API sd_event_type sd_event_kind(const sd_event *ev);
SD_API sd_session *sd_event_session(const sd_event *ev); /* NULL when not about a session */
SD_API const char *sd_event_jid(const sd_event *ev);     /* NULL when not about a JID */
SD_API const char *sd_event_node(const sd_event *ev);
/* For STREAM_FEATURES: is the stream authenticated yet (features before/after login)? */
SD_API int sd_event_authenticated(const sd_event *ev);
/* The element to extend (STREAM_FEATURES: <stream:features/>; DISCO_INFO: <query/>) and the
 * stanza it belongs to, for sd_el_add(). NULL for other events. */
SD_API sd_el *sd_event_el(const sd_event *ev);
SD_API sd_stanza *sd_event_stanza(const sd_event *ev);

#ifdef __cplusplus
}
#endif

#endif
