/*
 * c2s.c — client streams, from the first byte to a bound session and back to close.
 *
 * States: WAIT_HEADER (expecting <stream:stream>), NEGOTIATING (features sent: STARTTLS and/or
 * SASL), BINDING (authenticated, stream restarted, waiting for resource binding), BOUND (stanzas
 * go to the router). STARTTLS and SASL success each reset the parser and go back to
 * WAIT_HEADER for the stream restart (RFC 6120 §5.3.3, §6.4.6).
 *
 * Stanzas are processed strictly in order (RFC 6120 §10.1). While the stream waits for something
 * asynchronous — the account's verifiers from the database, or the delay imposed after a failed
 * login — it is "busy": later top-level elements are queued behind it and reading from the
 * socket stops, so a client cannot grow the queue without bound.
 *
 * Every failure on the stream is answered with the stream error RFC 6120 §4.9.3 names, after our
 * stream header if it had not been sent yet (§4.9.1.1), and the connection is then closed
 * gracefully so the error reaches the client.
 */
#include "c2s.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "accounts.h"
#include "addrlimit.h"
#include "config.h"
#include "conn.h"
#include "db.h"
#include "dispatch.h"
#include "jid.h"
#include "log.h"
#include "mem.h"
#include "presence.h"
#include "router.h"
#include "sasl.h"
#include "server.h"
#include "session.h"
#include "slab.h"
#include "tls.h"
#include "worker.h"
#include "xmlstream.h"

#define MAX_AUTH_ATTEMPTS 5  /* per stream, RFC 6120 §6.4.5 */
#define MAX_QUEUED        64 /* elements queued behind a busy stream before reading stops */
#define MAX_FAILURE_DELAY 10000

enum c2s_state { C2S_WAIT_HEADER, C2S_NEGOTIATING, C2S_BINDING, C2S_BOUND };

struct c2s {
    struct c2s *prev, *next; /* the worker's list of streams */
    struct worker *w;
    struct conn *conn;
    const struct config_listener *listener;
    struct xmlstream *xs;
    enum c2s_state state;
    bool header_sent;
    bool closing;
    bool authenticated;
    bool reject_admission; /* per-address connection limit reached */
    char *host;            /* the virtual host this stream is for */
    char stream_id[24];

    /* SASL */
    struct sasl_conn *sasl;
    char *sasl_mech;
    bool sasl_in_progress;
    bool sasl_awaiting_initial; /* <auth/> without initial response: the next <response/> is it */
    int auth_failures;
    char *username;

    /* the bound session */
    struct session *sess;
    /* before authentication: what pending SD_TO_PREAUTH handlers hold on to (dispatch.c) */
    struct session *preauth;

    /* in-order processing */
    bool busy;
    int holds; /* stanzas deferred by modules (dispatch.c) */
    struct stanza **queue;
    size_t q_head, q_len, q_cap;

    struct timer timeout; /* negotiation deadline, then idle checks */
    uint64_t last_input;
    bool idle;          /* parser and buffers given back; set by the sweep, cleared by input */
    struct timer delay; /* delayed SASL failure */
    const char *delayed_failure;
};

struct c2s_list {
    struct c2s *head;
    struct timer sweep; /* gives idle streams' memory back */
};

static void c2s_process(struct c2s *c, struct stanza *st);
static void c2s_run_queue(struct c2s *c);
static void c2s_send_features(struct c2s *c);

/* ---- output helpers ---- */

static void c2s_write(struct c2s *c, const char *s)
{
    conn_write(c->conn, s, strlen(s));
}

void c2s_send(struct c2s *c, struct stanza *st)
{
    if (!c->closing && c->conn->state == CONN_OPEN) {
        xml_serialize(conn_out(c->conn), st->el, NS_CLIENT);
        conn_out_done(c->conn);
    }
    stanza_free(&st);
}

static void c2s_send_header(struct c2s *c, const char *to)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' id='");
    buf_append_str(&b, c->stream_id);
    buf_append_str(&b, "' version='1.0' xml:lang='en'");
    if (c->host) {
        buf_append_str(&b, " from='");
        xml_escape(&b, c->host, strlen(c->host));
        buf_append_str(&b, "'");
    }
    if (to) {
        buf_append_str(&b, " to='");
        xml_escape(&b, to, strlen(to));
        buf_append_str(&b, "'");
    }
    buf_append_str(&b, ">");
    conn_write(c->conn, b.data, b.len);
    buf_free(&b);
    c->header_sent = true;
}

void c2s_stream_error(struct c2s *c, enum stream_error cond, const char *text)
{
    if (c->closing)
        return;
    if (!c->header_sent)
        c2s_send_header(c, NULL);
    struct buf b = BUF_INIT;
    buf_printf(&b, "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
               stream_error_name(cond));
    if (text) {
        buf_append_str(&b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
        xml_escape(&b, text, strlen(text));
        buf_append_str(&b, "</text>");
    }
    buf_append_str(&b, "</stream:error></stream:stream>");
    conn_write(c->conn, b.data, b.len);
    buf_free(&b);
    log_info(c->conn->id, "stream error %s%s%s", stream_error_name(cond), text ? ": " : "",
             text ? text : "");
    c->closing = true;
    conn_close(c->conn, stream_error_name(cond));
}

/* ---- lifecycle ---- */

static void c2s_timeout(struct timer *t)
{
    struct c2s *c = t->ud;
    if (c->state != C2S_BOUND) {
        c2s_stream_error(c, STRERR_CONNECTION_TIMEOUT, "stream negotiation took too long");
        return;
    }
    int idle = server_config->idle_timeout;
    uint64_t now = worker_now(c->w);
    uint64_t idle_ms = (uint64_t)idle * 1000;
    if (now - c->last_input >= idle_ms)
        c2s_stream_error(c, STRERR_CONNECTION_TIMEOUT, "idle for too long");
    else
        worker_timer_start(c->w, &c->timeout, idle_ms - (now - c->last_input));
}

static void c2s_end_session(struct c2s *c)
{
    if (!c->sess)
        return;
    /* At shutdown every session ends at once: nobody is left to tell. */
    dispatch_session_closed(c->sess);
    if (!worker_stopping(c->w))
        presence_session_ended(c->sess);
    dispatch_session_free_data(c->sess);
    session_unbind(c->sess);
    c->sess->c2s = NULL;
    session_unref(&c->sess);
}

static void c2s_drop_preauth(struct c2s *c)
{
    if (!c->preauth)
        return;
    atomic_store(&c->preauth->closed, true);
    c->preauth->c2s = NULL;
    session_unref(&c->preauth);
}

static void c2s_on_close(struct conn *conn, const char *reason)
{
    struct c2s *c = conn->ud;
    log_info(conn->id, "closed: %s", reason);
    c2s_drop_preauth(c);
    c2s_end_session(c);
    worker_timer_stop(c->w, &c->timeout);
    worker_timer_stop(c->w, &c->delay);
    addrlimit_conn_release(conn->peer);
    struct c2s_list *list = worker_slot(c->w, WSLOT_C2S);
    if (c->prev)
        c->prev->next = c->next;
    else
        list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    while (c->q_len > 0) {
        stanza_free(&c->queue[c->q_head]);
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
    }
    free(c->queue);
    xmlstream_free(&c->xs);
    sasl_conn_free(&c->sasl);
    free(c->sasl_mech);
    slab_free(c->username);
    slab_free(c->host);
    conn->ud = NULL;
    conn_unref(&c->conn);
    slab_free(c);
}

static void c2s_on_overflow(struct conn *conn)
{
    struct c2s *c = conn->ud;
    c2s_stream_error(c, STRERR_POLICY_VIOLATION, "output buffer limit reached: client not reading");
}

static void c2s_on_data(struct conn *conn, const char *data, size_t len)
{
    struct c2s *c = conn->ud;
    c->last_input = worker_now(c->w);
    c->idle = false;
    if (!c->closing)
        xmlstream_feed(c->xs, data, len);
}

static void c2s_on_tls_ready(struct conn *conn)
{
    (void)conn; /* the parser was reset at <starttls/>; the client now sends a new header */
}

static const struct conn_handler c2s_conn_handler = {
    .on_data = c2s_on_data,
    .on_tls_ready = c2s_on_tls_ready,
    .on_output_overflow = c2s_on_overflow,
    .on_close = c2s_on_close,
};

/* ---- parser callbacks ---- */

static void c2s_xs_error(void *ud, enum stream_error cond, const char *text)
{
    c2s_stream_error(ud, cond, text);
}

static void c2s_xs_close(void *ud)
{
    struct c2s *c = ud;
    if (c->closing)
        return;
    if (!c->header_sent)
        c2s_send_header(c, NULL);
    c2s_write(c, "</stream:stream>");
    c->closing = true;
    conn_close(c->conn, "stream closed by client");
}

static void c2s_xs_open(void *ud, const struct xmlstream_header *hdr)
{
    struct c2s *c = ud;
    const char *why = NULL;
    char *host = NULL;

    if (hdr->to) {
        host = jid_prep_domain(NULL, hdr->to, &why);
        if (!host || !server_is_local_host(host)) {
            free(host);
            c2s_stream_error(c, STRERR_HOST_UNKNOWN, "this server does not serve that domain");
            return;
        }
    } else {
        host = xstrdup(server_config->hosts[0].name);
    }
    if (c->host && strcmp(c->host, host) != 0) {
        free(host);
        c2s_stream_error(c, STRERR_HOST_UNKNOWN, "the restarted stream names another domain");
        return;
    }
    if (!c->host)
        c->host = slab_strdup(host);
    free(host);

    snprintf(c->stream_id, sizeof c->stream_id, "%016llx",
             (unsigned long long)(c->conn->id * 0x9E3779B97F4A7C15ull ^ monotonic_ms()));
    c2s_send_header(c, NULL);

    if (!hdr->default_ns || strcmp(hdr->default_ns, NS_CLIENT) != 0) {
        c2s_stream_error(c, STRERR_INVALID_NAMESPACE,
                         "the content namespace must be jabber:client");
        return;
    }
    if (!hdr->version || strncmp(hdr->version, "1.", 2) != 0) {
        c2s_stream_error(c, STRERR_UNSUPPORTED_VERSION, "XMPP 1.0 streams only");
        return;
    }
    if (c->reject_admission) {
        c2s_stream_error(c, STRERR_POLICY_VIOLATION, "too many connections from your address");
        return;
    }
    c->state = c->authenticated ? C2S_BINDING : C2S_NEGOTIATING;
    c2s_send_features(c);
}

static void c2s_xs_stanza(void *ud, struct stanza *st)
{
    struct c2s *c = ud;
    if (c->closing) {
        stanza_free(&st);
        return;
    }
    if (c->busy) {
        if (c->q_len == c->q_cap) {
            size_t ncap = c->q_cap ? c->q_cap * 2 : 8;
            struct stanza **q = xmalloc(ncap * sizeof *q);
            for (size_t i = 0; i < c->q_len; i++)
                q[i] = c->queue[(c->q_head + i) % c->q_cap];
            free(c->queue);
            c->queue = q;
            c->q_cap = ncap;
            c->q_head = 0;
        }
        c->queue[(c->q_head + c->q_len) % c->q_cap] = st;
        c->q_len++;
        if (c->q_len >= MAX_QUEUED)
            conn_pause_reading(c->conn, true);
        return;
    }
    c2s_process(c, st);
}

static const struct xmlstream_callbacks c2s_xs_callbacks = {
    .stream_open = c2s_xs_open,
    .stanza = c2s_xs_stanza,
    .stream_close = c2s_xs_close,
    .error = c2s_xs_error,
};

/* ---- accept ---- */

void c2s_accept(struct worker *w, int fd, const char *peer, const struct config_listener *l)
{
    const struct config *cfg = server_config;
    struct c2s *c = slab_alloc(sizeof *c);
    c->w = w;
    c->listener = l;
    c->reject_admission = !addrlimit_conn_acquire(peer, cfg->max_connections_per_ip);
    if (c->reject_admission)
        addrlimit_conn_acquire(peer, 0); /* counted anyway so the release at close balances */
    c->conn = conn_new(w, fd, peer, cfg->max_output_buffer, &c2s_conn_handler, c);
    struct xmlstream_limits lim = {
        .max_stanza_bytes = cfg->max_stanza_size, .max_depth = 64, .max_attrs = 64};
    c->xs = xmlstream_new(&c2s_xs_callbacks, c, &lim);
    c->last_input = worker_now(w);
    timer_init(&c->timeout, c2s_timeout, c);
    timer_init(&c->delay, NULL, c);
    worker_timer_start(w, &c->timeout, (uint64_t)cfg->connect_timeout * 1000);

    struct c2s_list *list = worker_slot(w, WSLOT_C2S);
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;

    log_info(c->conn->id, "connection from %s on port %d%s", peer, l->port,
             l->tls == LISTEN_TLS_DIRECT ? " (direct TLS)" : "");
    if (c->conn->state == CONN_CLOSED)
        return;
    if (l->tls == LISTEN_TLS_DIRECT)
        conn_start_tls(c->conn);
}

/*
 * Most connected clients are idle most of the time. An idle stream needs no parser (libxml2's
 * context is most of a connection's memory), no output buffer and no input queue: once a
 * second, streams silent for IDLE_AFTER_MS give them back, and the next input rebuilds the
 * parser (xmlstream_hibernate). Freed memory inside the heap only leaves the process's RSS when
 * the allocator is asked to return it, so a sweep that freed much trims the heap.
 */
#define SWEEP_MS      1000
#define IDLE_AFTER_MS 2000
#define TRIM_AFTER    64

static void c2s_sweep(struct timer *t)
{
    struct c2s_list *list = t->ud;
    struct worker *w = worker_self();
    uint64_t now = worker_now(w);
    unsigned freed = 0;
    for (struct c2s *c = list->head; c; c = c->next) {
        if (c->idle || c->busy || c->closing || now - c->last_input < IDLE_AFTER_MS)
            continue;
        if (!xmlstream_hibernate(c->xs))
            continue;
        conn_trim(c->conn);
        if (c->q_len == 0) {
            free(c->queue);
            c->queue = NULL;
            c->q_cap = c->q_head = 0;
        }
        c->idle = true;
        freed++;
    }
    if (freed > 0)
        log_debug(0, "idle sweep: %u streams gave back their parser and buffers", freed);
    if (freed >= TRIM_AFTER)
        malloc_trim(0);
    worker_timer_start(w, t, SWEEP_MS);
}

void c2s_worker_init(struct worker *w)
{
    struct c2s_list *list = xcalloc(1, sizeof *list);
    worker_set_slot(w, WSLOT_C2S, list);
    timer_init(&list->sweep, c2s_sweep, list);
    worker_timer_start(w, &list->sweep, SWEEP_MS);
}

void c2s_worker_done(struct worker *w)
{
    /* Streams that did not finish closing within the shutdown grace period. */
    struct c2s_list *list = worker_slot(w, WSLOT_C2S);
    while (list->head)
        conn_abort(list->head->conn, "server shutdown");
    free(list);
    worker_set_slot(w, WSLOT_C2S, NULL);
}

void c2s_shutdown_worker(struct worker *w)
{
    struct c2s_list *list = worker_slot(w, WSLOT_C2S);
    if (!list)
        return;
    for (struct c2s *c = list->head; c; c = c->next) {
        if (c->conn->tls_handshake || c->conn->tls_pending) {
            conn_abort(c->conn, "server shutdown");
            continue;
        }
        c2s_stream_error(c, STRERR_SYSTEM_SHUTDOWN, NULL);
    }
}

/* ---- features ---- */

static void c2s_send_features(struct c2s *c)
{
    const struct config *cfg = server_config;
    bool tls = conn_is_tls(c->conn);
    struct buf b = BUF_INIT;
    buf_append_str(&b, "<stream:features>");
    if (!c->authenticated) {
        bool offer_starttls = !tls && c->listener->tls == LISTEN_TLS_STARTTLS;
        if (offer_starttls)
            buf_append_str(&b, cfg->c2s_require_tls
                                   ? "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
                                     "</starttls>"
                                   : "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        if (tls || !cfg->c2s_require_tls) {
            if (!c->sasl) {
                unsigned char *cb = NULL;
                size_t cb_len = 0;
                const char *cb_name = tls ? tls_channel_binding(c->conn->tls, &cb, &cb_len) : NULL;
                c->sasl = sasl_conn_new(c->host, tls, cb_name, cb, cb_len);
                free(cb);
            }
            if (c->sasl) {
                buf_append_str(&b, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                for (const char *const *m = sasl_conn_mechanisms(c->sasl); *m; m++)
                    buf_printf(&b, "<mechanism>%s</mechanism>", *m);
                buf_append_str(&b, "</mechanisms>");
                const char *cbn = sasl_conn_cb_name(c->sasl);
                if (cbn)
                    buf_printf(&b,
                               "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                               "<channel-binding type='%s'/></sasl-channel-binding>",
                               cbn);
            }
        }
    } else {
        buf_append_str(&b, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                           "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/>"
                           "</session>");
    }
    /* Features from modules (entity capabilities, registration, stream management...). */
    struct arena *a = arena_new(0);
    struct xml_el *fe = xml_el_new(a, NS_STREAMS, "features");
    struct stanza *holder = stanza_wrap(a, fe);
    dispatch_stream_features(holder, fe, c->host, c->authenticated, c);
    for (struct xml_node *n = fe->children; n; n = n->next)
        if (n->kind == XML_NODE_ELEMENT)
            xml_serialize(&b, (struct xml_el *)n, NS_CLIENT);
    stanza_free(&holder);
    buf_append_str(&b, "</stream:features>");
    conn_write(c->conn, b.data, b.len);
    buf_free(&b);
}

/* ---- SASL ---- */

static void sasl_send(struct c2s *c, const char *el, const unsigned char *data, size_t len,
                      bool with_empty_marker)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "<%s xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", el);
    if (len > 0) {
        char *enc = b64_encode(data, len);
        buf_append_str(&b, enc);
        free(enc);
    } else if (with_empty_marker) {
        buf_append_str(&b, "=");
    }
    buf_printf(&b, "</%s>", el);
    conn_write(c->conn, b.data, b.len);
    buf_free(&b);
}

static void sasl_failure_now(struct c2s *c, const char *cond, const char *text)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><%s/>", cond);
    if (text) {
        buf_append_str(&b, "<text xml:lang='en'>");
        xml_escape(&b, text, strlen(text));
        buf_append_str(&b, "</text>");
    }
    buf_append_str(&b, "</failure>");
    conn_write(c->conn, b.data, b.len);
    buf_free(&b);
}

static void c2s_reset_sasl(struct c2s *c)
{
    c->sasl_in_progress = false;
    c->sasl_awaiting_initial = false;
    free(c->sasl_mech);
    c->sasl_mech = NULL;
    /* A fresh context for the next attempt: Cyrus contexts are single-use. */
    if (c->sasl) {
        sasl_conn_free(&c->sasl);
        unsigned char *cb = NULL;
        size_t cb_len = 0;
        bool tls = conn_is_tls(c->conn);
        const char *cb_name = tls ? tls_channel_binding(c->conn->tls, &cb, &cb_len) : NULL;
        c->sasl = sasl_conn_new(c->host, tls, cb_name, cb, cb_len);
        free(cb);
    }
}

static void c2s_set_busy(struct c2s *c, bool busy)
{
    c->busy = busy;
    if (busy) {
        conn_pause_reading(c->conn, true);
    } else {
        conn_pause_reading(c->conn, false);
        c2s_run_queue(c);
    }
}

void c2s_hold(struct c2s *c)
{
    if (c->holds++ == 0)
        c2s_set_busy(c, true);
}

void c2s_release(struct c2s *c)
{
    if (c->holds > 0 && --c->holds == 0)
        c2s_set_busy(c, false);
}

const char *c2s_peer(const struct c2s *c)
{
    return c->conn->peer;
}

bool c2s_secure(const struct c2s *c)
{
    return conn_is_tls(c->conn);
}

uint64_t c2s_last_input(const struct c2s *c)
{
    return c->last_input;
}

static void sasl_delayed_failure(struct timer *t)
{
    struct c2s *c = t->ud;
    sasl_failure_now(c, c->delayed_failure, NULL);
    if (c->auth_failures >= MAX_AUTH_ATTEMPTS) {
        c2s_stream_error(c, STRERR_POLICY_VIOLATION, "too many failed authentication attempts");
        return;
    }
    c2s_set_busy(c, false);
}

/* A failed attempt: counted per stream and per address, answered after a growing delay. */
static void sasl_failed(struct c2s *c, const char *cond)
{
    const struct config *cfg = server_config;
    bool binding = c->sasl && sasl_conn_binding_failure(c->sasl);
    c2s_reset_sasl(c);
    if (binding || (strcmp(cond, "not-authorized") != 0 && strcmp(cond, "invalid-authzid") != 0)) {
        sasl_failure_now(c, cond, NULL);
        return;
    }
    c->auth_failures++;
    int recent = addrlimit_auth_failed(c->conn->peer, worker_now(c->w));
    log_info(c->conn->id, "authentication failed (%d from %s in the last minute)", recent,
             c->conn->peer);
    uint64_t delay = (uint64_t)cfg->auth_failure_delay * (uint64_t)recent;
    if (delay > MAX_FAILURE_DELAY)
        delay = MAX_FAILURE_DELAY;
    c->delayed_failure = cond;
    c->delay.fn = sasl_delayed_failure;
    c2s_set_busy(c, true);
    worker_timer_start(c->w, &c->delay, delay);
}

static void sasl_succeeded(struct c2s *c, const unsigned char *out, size_t outlen)
{
    c->username = slab_strdup(sasl_conn_username(c->sasl));
    c->authenticated = true;
    c2s_drop_preauth(c);
    c->sasl_in_progress = false;
    log_info(c->conn->id, "authenticated as %s@%s with %s", c->username, c->host, c->sasl_mech);
    sasl_send(c, "success", out, outlen, false); /* out belongs to the SASL context */
    sasl_conn_free(&c->sasl);
    c->state = C2S_WAIT_HEADER;
    c->header_sent = false;
    xmlstream_reset(c->xs);
}

static void sasl_handle_result(struct c2s *c, enum sasl_result r, const unsigned char *out,
                               size_t outlen, const char *failure)
{
    switch (r) {
    case SASLR_CONTINUE:
        sasl_send(c, "challenge", out, outlen, false);
        break;
    case SASLR_OK:
        sasl_succeeded(c, out, outlen);
        break;
    case SASLR_FAIL:
        sasl_failed(c, failure ? failure : "not-authorized");
        break;
    }
}

struct cred_fetch {
    struct offload off; /* must be first: PLAIN's PBKDF2 runs on a helper thread */
    struct conn *conn;
    unsigned char *initial;
    size_t initial_len;
    /* PLAIN on the helper thread: the SASL context travels with the job */
    struct sasl_conn *sasl;
    enum sasl_result r;
    const unsigned char *out;
    size_t outlen;
    const char *failure;
};

static void cred_fetch_free(struct cred_fetch *f)
{
    sasl_conn_free(&f->sasl);
    free(f->initial);
    conn_unref(&f->conn);
    free(f);
}

static void plain_work(struct offload *o)
{
    struct cred_fetch *f = (struct cred_fetch *)o;
    f->r = sasl_conn_start(f->sasl, "PLAIN", f->initial, f->initial_len, &f->out, &f->outlen,
                           &f->failure);
}

static void plain_done(struct offload *o)
{
    struct cred_fetch *f = (struct cred_fetch *)o;
    struct c2s *c = f->conn->ud;
    if (f->conn->state != CONN_CLOSED && c && !c->closing) {
        c->sasl = f->sasl;
        f->sasl = NULL;
        sasl_handle_result(c, f->r, f->out, f->outlen, f->failure);
        if (!c->closing && !timer_armed(&c->delay))
            c2s_set_busy(c, false);
    }
    cred_fetch_free(f);
}

static void sasl_credentials_ready(enum db_status status, PGresult *res, const char *err, void *ud)
{
    struct cred_fetch *f = ud;
    struct c2s *c = f->conn->ud;
    if (f->conn->state != CONN_CLOSED && c && !c->closing) {
        if (status != DB_OK) {
            log_warn(c->conn->id, "cannot fetch credentials: %s", err ? err : "database error");
            c2s_reset_sasl(c);
            sasl_failure_now(c, "temporary-auth-failure", "the account database is unavailable");
        } else {
            struct scram_verifier v[SCRAM_HASH_COUNT];
            size_t n = accounts_verifiers_from_result(res, v, SCRAM_HASH_COUNT);
            sasl_conn_set_credentials(c->sasl, v, n);
            if (strcmp(c->sasl_mech, "PLAIN") == 0) {
                /* Checking a plaintext password means PBKDF2 with the stored iteration count:
                 * milliseconds of CPU that must not stall the loop. The context moves to the
                 * job so nothing on this worker touches it meanwhile; the stream stays busy. */
                f->sasl = c->sasl;
                c->sasl = NULL;
                offload_submit(&f->off, plain_work, plain_done);
                return;
            }
            const unsigned char *out = NULL;
            size_t outlen = 0;
            const char *failure = NULL;
            enum sasl_result r = sasl_conn_start(c->sasl, c->sasl_mech, f->initial, f->initial_len,
                                                 &out, &outlen, &failure);
            sasl_handle_result(c, r, out, outlen, failure);
        }
        if (!c->closing && !timer_armed(&c->delay))
            c2s_set_busy(c, false);
    }
    cred_fetch_free(f);
}

/* The client's first message is here: learn the account, fetch its verifiers, then start. */
static void sasl_begin(struct c2s *c, const unsigned char *in, size_t inlen)
{
    const char *failure = NULL;
    char *user = sasl_peek_authcid(c->sasl, c->sasl_mech, in, inlen, &failure);
    if (!user) {
        c2s_reset_sasl(c);
        sasl_failure_now(c, failure ? failure : "malformed-request", NULL);
        return;
    }
    struct cred_fetch *f = xcalloc(1, sizeof *f);
    f->conn = c->conn;
    conn_ref(c->conn);
    f->initial = xmalloc(inlen ? inlen : 1);
    memcpy(f->initial, in, inlen);
    f->initial_len = inlen;
    const char *values[2] = {c->host, user};
    struct db_params p = {.n = 2, .values = values};
    c2s_set_busy(c, true);
    if (db_query(&db_stmt_fetch_credentials, &p, sasl_credentials_ready, f) != 0) {
        cred_fetch_free(f);
        c2s_reset_sasl(c);
        sasl_failure_now(c, "temporary-auth-failure", NULL);
        c2s_set_busy(c, false);
    }
    free(user);
}

/* Decodes the base64 text of a SASL element; "=" is an empty response. */
static bool sasl_decode(struct stanza *st, unsigned char **out, size_t *outlen)
{
    const char *text = xml_el_text(st->arena, st->el);
    size_t len = strlen(text);
    /* Whitespace is not part of base64 here, but tolerate the line breaks some clients add. */
    char *clean = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t')
            clean[n++] = text[i];
    clean[n] = 0;
    *out = xmalloc(n + 1);
    if (n == 0 || (n == 1 && clean[0] == '=')) {
        *outlen = 0;
        free(clean);
        return true;
    }
    long r = b64_decode(clean, n, *out, n + 1);
    free(clean);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return false;
    }
    *outlen = (size_t)r;
    return true;
}

static void c2s_sasl_auth(struct c2s *c, struct stanza *st)
{
    const struct config *cfg = server_config;
    if (!conn_is_tls(c->conn) && cfg->c2s_require_tls) {
        sasl_failure_now(c, "encryption-required", "negotiate TLS first");
        return;
    }
    if (!c->sasl) {
        sasl_failure_now(c, "temporary-auth-failure", NULL);
        return;
    }
    if (c->sasl_in_progress)
        c2s_reset_sasl(c);
    const char *mech = xml_el_attr(st->el, "mechanism");
    bool offered = false;
    if (mech)
        for (const char *const *m = sasl_conn_mechanisms(c->sasl); *m; m++)
            if (strcmp(*m, mech) == 0)
                offered = true;
    if (!offered) {
        sasl_failure_now(c, "invalid-mechanism", NULL);
        return;
    }
    if (cfg->max_auth_failures > 0 &&
        addrlimit_auth_failures(c->conn->peer, worker_now(c->w)) >= cfg->max_auth_failures) {
        sasl_failure_now(c, "temporary-auth-failure",
                         "too many failed attempts from your address; try again later");
        return;
    }
    unsigned char *in = NULL;
    size_t inlen = 0;
    if (!sasl_decode(st, &in, &inlen)) {
        sasl_failure_now(c, "incorrect-encoding", NULL);
        return;
    }
    c->sasl_mech = xstrdup(mech);
    c->sasl_in_progress = true;
    const char *text = xml_el_text(st->arena, st->el);
    if (inlen == 0 && text[0] != '=') {
        /* No initial response: ask for it with an empty challenge (RFC 6120 §6.4.2). */
        c->sasl_awaiting_initial = true;
        sasl_send(c, "challenge", NULL, 0, false);
    } else {
        sasl_begin(c, in, inlen);
    }
    free(in);
}

static void c2s_sasl_response(struct c2s *c, struct stanza *st)
{
    if (!c->sasl_in_progress) {
        sasl_failure_now(c, "malformed-request", "no authentication in progress");
        return;
    }
    unsigned char *in = NULL;
    size_t inlen = 0;
    if (!sasl_decode(st, &in, &inlen)) {
        c2s_reset_sasl(c);
        sasl_failure_now(c, "incorrect-encoding", NULL);
        return;
    }
    if (c->sasl_awaiting_initial) {
        c->sasl_awaiting_initial = false;
        sasl_begin(c, in, inlen);
    } else {
        const unsigned char *out = NULL;
        size_t outlen = 0;
        const char *failure = NULL;
        enum sasl_result r = sasl_conn_step(c->sasl, in, inlen, &out, &outlen, &failure);
        sasl_handle_result(c, r, out, outlen, failure);
    }
    free(in);
}

/* An error answer to a stanza of this stream before it has a routable session. */
static void c2s_error_reply(struct c2s *c, struct stanza *st, enum stanza_error cond,
                            const char *text)
{
    struct stanza *reply = stanza_error_reply(st, cond, NULL, text);
    stanza_free(&st);
    if (reply) {
        stanza_set_from(reply, NULL);
        c2s_send(c, reply);
    }
}

/* ---- binding ---- */

static void c2s_random_resource(char *out, size_t cap)
{
    unsigned char rnd[8];
    gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd);
    snprintf(out, cap, "stanzad-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5], rnd[6], rnd[7]);
}

struct kick {
    struct post post;
    struct session *s;
};

static void kick_on_worker(struct post *p)
{
    struct kick *k = (struct kick *)p;
    if (k->s->c2s)
        c2s_stream_error(k->s->c2s, STRERR_CONFLICT, "replaced by a new login");
    session_unref(&k->s);
    free(k);
}

static void c2s_bind(struct c2s *c, struct stanza *st, struct xml_el *bind)
{
    const struct config *cfg = server_config;
    struct xml_el *res_el = xml_el_child(bind, NS_BIND, "resource");
    const char *requested = res_el ? xml_el_text(st->arena, res_el) : "";
    char resource[64 + JID_PART_MAX];
    if (requested[0]) {
        const char *why = NULL;
        char *prepped = jid_prep_resource(NULL, requested, &why);
        if (!prepped) {
            c2s_error_reply(c, st, SERR_BAD_REQUEST, why ? why : "invalid resource");
            return;
        }
        snprintf(resource, sizeof resource, "%s", prepped);
        free(prepped);
    } else {
        c2s_random_resource(resource, sizeof resource);
    }
    char bare[2 * JID_PART_MAX + 2];
    snprintf(bare, sizeof bare, "%s@%s", c->username, c->host);
    if (cfg->conflict == CONFLICT_RANDOM && session_resource_taken(bare, resource))
        c2s_random_resource(resource, sizeof resource);

    struct session *s = session_new(c->w, c->conn->id, c->username, c->host, resource);
    struct session **kicked = NULL;
    size_t nk = 0;
    if (session_bind(s, cfg->conflict, cfg->max_sessions_per_account, &kicked, &nk) != BIND_OK) {
        session_unref(&s);
        c2s_error_reply(c, st, SERR_CONFLICT, "that resource is in use");
        return;
    }
    s->c2s = c;
    c->sess = s;
    c->state = C2S_BOUND;
    for (size_t i = 0; i < nk; i++) {
        struct kick *k = xcalloc(1, sizeof *k);
        k->s = kicked[i];
        worker_post(kicked[i]->w, &k->post, kick_on_worker);
    }
    free(kicked);

    worker_timer_stop(c->w, &c->timeout);
    if (cfg->idle_timeout > 0)
        worker_timer_start(c->w, &c->timeout, (uint64_t)cfg->idle_timeout * 1000);
    log_info(c->conn->id, "bound %s", s->full);

    struct stanza *reply = stanza_iq_result(st);
    struct xml_el *b = xml_el_add(reply->arena, reply->el, NS_BIND, "bind");
    struct xml_el *j = xml_el_add(reply->arena, b, NULL, "jid");
    xml_el_add_text(reply->arena, j, s->full, strlen(s->full));
    stanza_free(&st);
    c2s_send(c, reply);
    /* After the result, so that what modules send on this event reaches a bound client. */
    dispatch_session_bound(s);
}

/* ---- dispatch of top-level elements ---- */

static bool is_client_stanza(const struct stanza *st)
{
    return st->kind != STANZA_OTHER && strcmp(st->el->ns, NS_CLIENT) == 0;
}

/* An iq before authentication (XEP-0077 registration): to modules that asked for such, through
 * a stand-in session that lets a deferred reply find the stream while it lasts. */
static void c2s_preauth_iq(struct c2s *c, struct stanza *st)
{
    if (st->to_str) {
        st->to = jid_parse(st->arena, st->to_str, strlen(st->to_str), NULL);
        if (!st->to || st->to->local || strcmp(st->to->domain, c->host) != 0) {
            c2s_stream_error(c, STRERR_NOT_AUTHORIZED, "authenticate first");
            stanza_free(&st);
            return;
        }
    }
    if (!c->preauth) {
        c->preauth = session_new(c->w, c->conn->id, "", c->host, "");
        c->preauth->preauth = true;
        c->preauth->c2s = c;
    }
    dispatch_preauth(c->preauth, st);
}

static void c2s_process(struct c2s *c, struct stanza *st)
{
    const char *ns = st->el->ns, *name = st->el->name;

    if (c->state == C2S_NEGOTIATING) {
        if (strcmp(ns, NS_TLS) == 0 && strcmp(name, "starttls") == 0) {
            if (conn_is_tls(c->conn) || c->listener->tls != LISTEN_TLS_STARTTLS) {
                c2s_write(c, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                c2s_xs_close(c);
            } else {
                c2s_write(c, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                /* Mechanisms offered in the clear (PLAIN absent, no channel binding) change
                 * under TLS: the next features build a new SASL context. */
                c2s_reset_sasl(c);
                sasl_conn_free(&c->sasl);
                xmlstream_reset(c->xs);
                c->state = C2S_WAIT_HEADER;
                c->header_sent = false;
                conn_start_tls(c->conn);
            }
        } else if (strcmp(ns, NS_SASL) == 0 && strcmp(name, "auth") == 0) {
            c2s_sasl_auth(c, st);
        } else if (strcmp(ns, NS_SASL) == 0 && strcmp(name, "response") == 0) {
            c2s_sasl_response(c, st);
        } else if (strcmp(ns, NS_SASL) == 0 && strcmp(name, "abort") == 0) {
            c2s_reset_sasl(c);
            sasl_failure_now(c, "aborted", NULL);
        } else if (is_client_stanza(st) && st->kind == STANZA_IQ && st->type &&
                   (strcmp(st->type, "get") == 0 || strcmp(st->type, "set") == 0)) {
            c2s_preauth_iq(c, st);
            return;
        } else if (is_client_stanza(st)) {
            c2s_stream_error(c, STRERR_NOT_AUTHORIZED, "authenticate first");
        } else {
            c2s_stream_error(c, STRERR_UNSUPPORTED_STANZA_TYPE, NULL);
        }
        stanza_free(&st);
        return;
    }

    if (!is_client_stanza(st)) {
        c2s_stream_error(c, STRERR_UNSUPPORTED_STANZA_TYPE, NULL);
        stanza_free(&st);
        return;
    }

    if (st->kind == STANZA_IQ && st->to_str == NULL && st->type && strcmp(st->type, "set") == 0) {
        struct xml_el *bind = xml_el_child(st->el, NS_BIND, "bind");
        if (bind && xml_el_count_children(st->el) == 1) {
            if (c->state == C2S_BINDING)
                c2s_bind(c, st, bind);
            else
                c2s_error_reply(c, st, SERR_NOT_ALLOWED, "a resource is already bound");
            return;
        }
        if (xml_el_child(st->el, NS_SESSION, "session")) {
            /* RFC 3921 session establishment: a no-op kept for old clients. */
            struct stanza *reply = stanza_iq_result(st);
            stanza_free(&st);
            c2s_send(c, reply);
            return;
        }
    }

    if (c->state != C2S_BOUND) {
        c2s_stream_error(c, STRERR_NOT_AUTHORIZED, "bind a resource first");
        stanza_free(&st);
        return;
    }
    router_from_session(c->sess, st);
}

static void c2s_run_queue(struct c2s *c)
{
    while (!c->busy && !c->closing && c->q_len > 0) {
        struct stanza *st = c->queue[c->q_head];
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
        c2s_process(c, st);
    }
}
