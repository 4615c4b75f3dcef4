/*
 * client.c — the generator's XMPP clients and the per-thread loops that drive the workloads.
 *
 * Each worker thread owns an epoll instance and a share of the clients; a client never leaves
 * its worker, and in the chat workload both ends of a pair live on the same worker, so sequence
 * checking and window accounting need no locks. A client walks the login path of RFC 6120 — TCP
 * connect, stream header, optional STARTTLS and TLS handshake, SASL (PLAIN or SCRAM), stream
 * restart, resource binding, initial presence — as a state machine fed by the scanner in
 * xmlscan.c. Output is queued per client and written once per event-loop round, like a server
 * would, so one write carries every message produced for that connection in the round.
 *
 * Workloads: connect (log N clients in, stay idle), login (a fixed number of slots, each
 * logging in, closing and starting over) and chat (ping-pong pairs: every message received and
 * validated is answered by a new message to the peer, so W messages stay in flight per pair).
 * The presence workload (one hub, its contacts, all on one thread) lives in presence.c and uses
 * the loops here. The main thread coordinates the phases through one barrier; see worker_main().
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define SCRATCH_SIZE   (64 * 1024)
#define READ_RESERVE   (16 * 1024)
#define CHECK_NS       100000000ull  /* deadline sweep period */
#define CLOSE_GRACE_NS 2000000000ull /* how long a closing stream may take */
#define MAX_EVENTS     512
#define BODY_LEN       64

static const char NS_SASL[] = "urn:ietf:params:xml:ns:xmpp-sasl";

static const char *state_name(enum cstate s)
{
    static const char *const names[] = {
        "free",
        "connecting",
        "stream features",
        "STARTTLS proceed",
        "TLS handshake",
        "SASL",
        "features after SASL",
        "bind",
        "ready",
        "closing",
        "done",
    };
    return names[s];
}

void worker_note(struct worker *w, const char *fmt, ...)
{
    if (w->notes_n >= MAX_NOTES) {
        w->notes_dropped++;
        return;
    }
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    w->notes[w->notes_n++] = xstrndup(buf, strlen(buf));
}

/* ---------------------------------------------------------------- output */

static void set_events(struct client *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

static void mark_dirty(struct client *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = c->w->dirty;
        c->w->dirty = c;
    }
}

void out_str(struct client *c, const char *s)
{
    bbuf_puts(&c->out, s);
    mark_dirty(c);
}

static void client_close(struct client *c);
static void client_fail(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes what is queued; on a full socket waits for EPOLLOUT. */
static void flush(struct client *c)
{
    while (c->out.len > 0) {
        ssize_t r;
        if (c->tls_on) {
            size_t n = c->out.len < 16384 ? c->out.len : 16384;
            /* After GNUTLS_E_AGAIN GnuTLS holds the record already: call again with no data. */
            r = c->tls_pending ? gnutls_record_send(c->tls, NULL, 0)
                               : gnutls_record_send(c->tls, c->out.data, n);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                if (!c->tls_pending)
                    c->tls_pending = n;
                set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            if (r < 0) {
                client_fail(c, "TLS send: %s", gnutls_strerror((int)r));
                return;
            }
            c->tls_pending = 0;
        } else {
            r = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return;
                }
                client_fail(c, "send: %s", strerror(errno));
                return;
            }
        }
        bbuf_consume(&c->out, (size_t)r);
    }
    set_events(c, EPOLLIN);
}

void flush_dirty(struct worker *w)
{
    struct client *c;
    while ((c = w->dirty) != NULL) {
        w->dirty = c->next_dirty;
        c->dirty = false;
        if (c->fd >= 0 && c->st != CS_CONNECTING && c->st != CS_HANDSHAKE)
            flush(c);
    }
}

static void send_header(struct client *c)
{
    bbuf_puts(&c->out, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' to='");
    bbuf_puts(&c->out, opt.domain);
    bbuf_puts(&c->out, "' version='1.0' xml:lang='en'>");
    mark_dirty(c);
}

/* ---------------------------------------------------------------- lifecycle */

static void client_reset(struct client *c)
{
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    bbuf_free(&c->in);
    bbuf_free(&c->out);
    free(c->scram);
    free(c->jid);
    free(c->msg_head);
    free(c->seen);
    struct worker *w = c->w;
    memset(c, 0, sizeof *c);
    c->w = w;
    c->fd = -1;
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->st = CS_DONE;
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    c->tls_on = false;
    bbuf_free(&c->in);
    bbuf_free(&c->out);
    free(c->scram);
    c->scram = NULL;
}

static void client_fail(struct client *c, const char *fmt, ...)
{
    struct worker *w = c->w;
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (c->st < CS_READY) {
        w->s.login_failed++;
        w->in_progress--;
        if (opt.workload != WL_LOGIN)
            w->settled++;
        worker_note(w, "client %u (account %s%u): login failed in state '%s': %s", c->idx,
                    opt.user_prefix, c->account, state_name(c->st), why);
    } else if (c->st == CS_READY) {
        w->s.disconnects++;
        worker_note(w, "client %u (%s): disconnected: %s", c->idx, c->jid ? c->jid : "?", why);
    } else if (c->st == CS_CLOSING) {
        w->s.close_timeouts++;
        worker_note(w, "client %u: while closing: %s", c->idx, why);
    }
    client_close(c);
}

static void begin_close(struct client *c)
{
    out_str(c, "</stream:stream>");
    c->st = CS_CLOSING;
    c->deadline = now_ns() + CLOSE_GRACE_NS;
}

static void client_start(struct client *c, unsigned idx, unsigned account)
{
    struct worker *w = c->w;
    c->idx = idx;
    c->account = account;
    c->t_start = now_ns();
    c->deadline = c->t_start + (uint64_t)(opt.login_timeout * 1e9);
    c->st = CS_CONNECTING;
    w->in_progress++;
    c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        client_fail(c, "socket: %s", strerror(errno));
        return;
    }
    /* Output is already batched per loop round; Nagle would only add latency. */
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&opt.addr, opt.addr_len) < 0 &&
        errno != EINPROGRESS) {
        client_fail(c, "connect: %s", strerror(errno));
        return;
    }
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        client_fail(c, "epoll_ctl: %s", strerror(errno));
}

static void on_connected(struct client *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        client_fail(c, "connect: %s", strerror(err));
        return;
    }
    set_events(c, EPOLLIN);
    c->st = CS_WAIT_FEATURES;
    send_header(c);
}

static void restart_stream(struct client *c, enum cstate next)
{
    c->xs.depth = 0;
    c->st = next;
    send_header(c);
}

static void do_handshake(struct client *c)
{
    int r = gnutls_handshake(c->tls);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED || (r < 0 && !gnutls_error_is_fatal(r))) {
        set_events(c, gnutls_record_get_direction(c->tls) ? EPOLLOUT : EPOLLIN);
        return;
    }
    if (r < 0) {
        client_fail(c, "TLS handshake: %s", gnutls_strerror(r));
        return;
    }
    c->tls_on = true;
    set_events(c, EPOLLIN);
    restart_stream(c, CS_WAIT_FEATURES);
}

static void start_tls(struct client *c)
{
    /* No certificate check at all: the target is loopback and the test is about load. */
    if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 ||
        gnutls_set_default_priority(c->tls) < 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, tls_cred) < 0) {
        client_fail(c, "TLS set-up failed");
        return;
    }
    gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, opt.domain, strlen(opt.domain));
    gnutls_transport_set_int(c->tls, c->fd);
    c->st = CS_HANDSHAKE;
    do_handshake(c);
}

/* ---------------------------------------------------------------- negotiation */

/* The local name of the first child element in p[0..len), for error conditions. */
static void first_child(const char *p, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    const char *e = p + len;
    const char *lt = memchr(p, '<', len);
    if (!lt || lt + 1 >= e || lt[1] == '/')
        return;
    const char *n = lt + 1, *ne = n;
    while (ne < e && *ne != ' ' && *ne != '/' && *ne != '>' && *ne != '\t' && *ne != '\n')
        ne++;
    size_t l = (size_t)(ne - n);
    if (l >= cap)
        l = cap - 1;
    memcpy(out, n, l);
    out[l] = '\0';
}

static void send_auth(struct client *c, enum mech m)
{
    char user[128];
    snprintf(user, sizeof user, "%s%u", opt.user_prefix, c->account);
    struct bbuf *o = &c->out;
    bbuf_puts(o, "<auth xmlns='");
    bbuf_puts(o, NS_SASL);
    bbuf_puts(o, "' mechanism='");
    bbuf_puts(o, mech_name(m));
    bbuf_puts(o, "'>");
    if (m == MECH_PLAIN) {
        sasl_plain(o, user, opt.password);
    } else {
        c->scram = xcalloc(1, sizeof *c->scram);
        scram_first(c->scram, m, user, o);
    }
    bbuf_puts(o, "</auth>");
    mark_dirty(c);
    int none = MECH_AUTO;
    atomic_compare_exchange_strong(&run.mech_used, &none, (int)m);
    c->st = CS_WAIT_SASL;
}

static void on_features(struct client *c, const struct xs_item *it)
{
    if (opt.tls && !c->tls_on) {
        if (!xs_has_child(it->inner, it->inner_len, "starttls")) {
            client_fail(c, "the server offers no STARTTLS");
            return;
        }
        out_str(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        c->st = CS_WAIT_PROCEED;
        return;
    }
    size_t off = 0;
    const char *t;
    size_t tl;
    unsigned offered = 0;
    char list[200] = "";
    while (xs_child_text(it->inner, it->inner_len, &off, "mechanism", &t, &tl)) {
        enum mech m;
        char name[40];
        if (tl < sizeof name) {
            memcpy(name, t, tl);
            name[tl] = '\0';
            if (mech_parse(name, &m) && m != MECH_AUTO)
                offered |= 1u << m;
            if (strlen(list) + tl + 2 < sizeof list) {
                strcat(list, list[0] ? " " : "");
                strcat(list, name);
            }
        }
    }
    if (!offered && xs_has_child(it->inner, it->inner_len, "starttls")) {
        client_fail(c, "no SASL mechanism before STARTTLS: the server wants TLS (use --tls)");
        return;
    }
    enum mech m = opt.mech;
    if (m == MECH_AUTO) {
        if (offered & (1u << MECH_SCRAM_SHA256))
            m = MECH_SCRAM_SHA256;
        else if (offered & (1u << MECH_SCRAM_SHA1))
            m = MECH_SCRAM_SHA1;
        else if (offered & (1u << MECH_PLAIN))
            m = MECH_PLAIN;
    }
    if (m == MECH_AUTO || !(offered & (1u << m))) {
        client_fail(c, "mechanism %s not offered (offered: %s)", mech_name(opt.mech),
                    list[0] ? list : "none");
        return;
    }
    send_auth(c, m);
}

static void sasl_response(struct client *c, const char *b64)
{
    bbuf_puts(&c->out, "<response xmlns='");
    bbuf_puts(&c->out, NS_SASL);
    bbuf_puts(&c->out, "'>");
    bbuf_puts(&c->out, b64);
    bbuf_puts(&c->out, "</response>");
    mark_dirty(c);
}

static void on_sasl(struct client *c, const struct xs_item *it)
{
    const char *text = it->inner;
    size_t tl = it->inner_len;
    if (xs_name_is(it, "challenge")) {
        if (!c->scram) {
            client_fail(c, "unexpected SASL challenge for PLAIN");
            return;
        }
        if (c->scram->final_sent) {
            /* Some servers send server-final as a challenge and succeed afterwards. */
            const char *why = scram_verify(c->scram, text, tl);
            if (why) {
                client_fail(c, "SCRAM: %s", why);
                return;
            }
            c->scram->verified = true;
            sasl_response(c, "");
            return;
        }
        struct scram_keys *k = NULL;
        if (c->w->keys)
            k = &c->w->keys[c->account - opt.first];
        struct bbuf b = {0};
        const char *why = scram_final(c->scram, opt.password, text, tl, k, &b);
        if (why) {
            bbuf_free(&b);
            client_fail(c, "SCRAM: %s", why);
            return;
        }
        bbuf_put(&b, "", 1);
        sasl_response(c, b.data);
        bbuf_free(&b);
        c->scram->final_sent = true;
        return;
    }
    if (xs_name_is(it, "success")) {
        if (c->scram) {
            if (tl > 0) {
                const char *why = scram_verify(c->scram, text, tl);
                if (why) {
                    client_fail(c, "SCRAM: %s", why);
                    return;
                }
            } else if (!c->scram->verified) {
                client_fail(c, "SCRAM: success without the server's signature");
                return;
            }
            free(c->scram);
            c->scram = NULL;
        }
        restart_stream(c, CS_WAIT_FEATURES2);
        return;
    }
    if (xs_name_is(it, "failure")) {
        char cond[64];
        first_child(it->inner, it->inner_len, cond, sizeof cond);
        client_fail(c, "SASL failure <%s/>", cond);
        return;
    }
    client_fail(c, "unexpected <%.*s/> during SASL", (int)it->name_len, it->name);
}

static void login_done(struct client *c, const char *jid, size_t jl)
{
    struct worker *w = c->w;
    uint64_t now = now_ns();
    c->jid = xstrndup(jid, jl);
    c->jid_len = jl;
    w->in_progress--;
    w->s.logins++;
    uint64_t us = (now - c->t_start) / 1000;
    if (w->warming) {
        begin_close(c);
        return;
    }
    if (opt.workload == WL_LOGIN) {
        if (now >= run.t0 && now < run.end) {
            hist_add(&w->login_h, us);
            w->s.logins_measured++;
            w->s.last_login_ns = now;
        }
        begin_close(c);
        return;
    }
    hist_add(&w->login_h, us);
    /* The presence workload sends its initial presence itself, when the set-up says. */
    if (opt.workload != WL_PRESENCE)
        out_str(c, "<presence/>");
    c->st = CS_READY;
    c->deadline = 0;
    w->settled++;
}

static void on_bind(struct client *c, const struct xs_item *it)
{
    if (!xs_name_is(it, "iq") || !xs_attr_is(it, "id", "bind1"))
        return; /* not our answer; nothing else is expected yet */
    if (xs_attr_is(it, "type", "result")) {
        size_t off = 0;
        const char *j;
        size_t jl;
        if (!xs_child_text(it->inner, it->inner_len, &off, "jid", &j, &jl) || jl == 0) {
            client_fail(c, "bind result without a JID");
            return;
        }
        login_done(c, j, jl);
        return;
    }
    char cond[64] = "";
    size_t off = 0;
    const char *t;
    size_t tl;
    if (xs_child_text(it->inner, it->inner_len, &off, "error", &t, &tl))
        first_child(t, it->inner_len - (size_t)(t - it->inner), cond, sizeof cond);
    client_fail(c, "bind failed <%s/>", cond);
}

static void send_bind(struct client *c)
{
    char b[256];
    snprintf(b, sizeof b,
             "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>%s%u-%u</resource></bind></iq>",
             opt.workload == WL_LOGIN ? "l" : "b", run.pid_tag, c->idx);
    out_str(c, b);
    c->st = CS_WAIT_BIND;
}

/* ---------------------------------------------------------------- chat */

static char *put_dec(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

static char *put_hex(char *p, uint64_t v, int width)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = width - 1; i >= 0; i--) {
        p[i] = hex[v & 15];
        v >>= 4;
    }
    return p + width;
}

/* Queues the next message to the peer: sequence number, send time and our client number in a
 * body of exactly BODY_LEN bytes. */
static void send_msg(struct client *c)
{
    struct worker *w = c->w;
    struct bbuf *o = &c->out;
    bbuf_reserve(o, c->msg_head_len + BODY_LEN + 17);
    char *p = o->data + o->len;
    memcpy(p, c->msg_head, c->msg_head_len);
    p += c->msg_head_len;
    char *body = p;
    memcpy(p, "seq=", 4);
    p = put_dec(p + 4, c->seq_out++, 10);
    memcpy(p, " ts=", 4);
    p = put_hex(p + 4, now_ns(), 16);
    memcpy(p, " from=", 6);
    p = put_dec(p + 6, c->idx, 6);
    memset(p, 'x', (size_t)(BODY_LEN - (p - body)));
    p = body + BODY_LEN;
    memcpy(p, "</body></message>", 17);
    p += 17;
    o->len = (size_t)(p - o->data);
    w->inflight++;
    w->s.sent++;
    mark_dirty(c);
}

static bool get_dec(const char *p, int width, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < width; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        r = r * 10 + (uint64_t)(p[i] - '0');
    }
    *v = r;
    return true;
}

static bool get_hex(const char *p, int width, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < width; i++) {
        char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return false;
        r = r << 4 | d;
    }
    *v = r;
    return true;
}

static bool parse_body(const char *b, size_t bl, uint64_t *seq, uint64_t *ts, uint64_t *from)
{
    return bl == BODY_LEN && memcmp(b, "seq=", 4) == 0 && get_dec(b + 4, 10, seq) &&
           memcmp(b + 14, " ts=", 4) == 0 && get_hex(b + 18, 16, ts) &&
           memcmp(b + 34, " from=", 6) == 0 && get_dec(b + 40, 6, from);
}

#define SEEN_TEST(c, s) ((c)->seen[((s) % SEEN_BITS) / 64] & (1ull << ((s) % 64)))
#define SEEN_SET(c, s)  ((c)->seen[((s) % SEEN_BITS) / 64] |= 1ull << ((s) % 64))
#define SEEN_CLR(c, s)  ((c)->seen[((s) % SEEN_BITS) / 64] &= ~(1ull << ((s) % 64)))

/* Order, loss and duplicate accounting for one received sequence number. Returns false for a
 * duplicate. A gap moves the expectation past it; a later arrival from the gap counts as
 * reordered, a sequence number that never arrives ends up as lost. */
bool seq_check(struct client *c, uint32_t s)
{
    struct worker *w = c->w;
    uint32_t exp = c->seq_in;
    if (s == exp) {
        SEEN_SET(c, s);
        c->seq_in = s + 1;
        c->recv_distinct++;
        return true;
    }
    if (s > exp) {
        if (s - exp >= SEEN_BITS)
            memset(c->seen, 0, SEEN_BITS / 8);
        else
            for (uint32_t k = exp; k != s; k++)
                SEEN_CLR(c, k);
        SEEN_SET(c, s);
        c->seq_in = s + 1;
        c->recv_distinct++;
        if (w->s.reordered == 0 && w->s.dup == 0)
            worker_note(w, "client %u: expected seq %u from %s, got %u", c->idx, exp, c->peer->jid,
                        s);
        return true;
    }
    if (exp - s > SEEN_BITS) {
        /* Too old to know whether it is a duplicate; call it reordered. */
        w->s.reordered++;
        c->recv_distinct++;
        return true;
    }
    if (SEEN_TEST(c, s)) {
        w->s.dup++;
        return false;
    }
    SEEN_SET(c, s);
    w->s.reordered++;
    c->recv_distinct++;
    return true;
}

static void on_message(struct client *c, const struct xs_item *it)
{
    struct worker *w = c->w;
    if (opt.workload != WL_CHAT || !c->peer)
        return;
    if (xs_attr_is(it, "type", "error")) {
        w->s.bounced++;
        w->inflight--;
        if (w->s.bounced == 1) {
            char cond[64] = "";
            size_t off = 0;
            const char *t;
            size_t tl;
            if (xs_child_text(it->inner, it->inner_len, &off, "error", &t, &tl))
                first_child(t, it->inner_len - (size_t)(t - it->inner), cond, sizeof cond);
            worker_note(w, "client %u: message bounced with <%s/>", c->idx, cond);
        }
        return;
    }
    const char *body, *from;
    size_t bl, fl, off = 0;
    uint64_t seq, ts, from_idx;
    if (!xs_child_text(it->inner, it->inner_len, &off, "body", &body, &bl) ||
        !parse_body(body, bl, &seq, &ts, &from_idx)) {
        if (w->s.bad++ == 0)
            worker_note(w, "client %u: unexpected message: %.*s", c->idx,
                        (int)(it->len < 300 ? it->len : 300), it->start);
        return;
    }
    struct client *p = c->peer;
    if (!xs_attr(it, "from", &from, &fl) || fl != p->jid_len || memcmp(from, p->jid, fl) != 0 ||
        from_idx != p->idx) {
        if (w->s.wrong_sender++ == 0)
            worker_note(w, "client %u: message from the wrong sender%s: %.*s", c->idx,
                        p != c && fl == c->jid_len && memcmp(from, c->jid, fl) == 0
                            ? " (its own JID: an echo peer needs --peer self)"
                            : "",
                        (int)(it->len < 300 ? it->len : 300), it->start);
        return;
    }
    w->s.received++;
    if (!seq_check(c, (uint32_t)seq))
        return;
    w->inflight--;
    uint64_t now = w->now;
    if (now >= run.warm_end && now < run.end) {
        w->s.msgs++;
        hist_add(&w->lat_h, now > ts ? (now - ts) / 1000 : 0);
    }
    if (now < run.end)
        send_msg(c);
}

/* Answers requests addressed to the client: a ping with a result, anything else with
 * <service-unavailable/>, as RFC 6120 §8.2.3 wants every get/set answered. */
static void on_iq(struct client *c, const struct xs_item *it)
{
    if (opt.workload == WL_PRESENCE && pres_on_iq(c, it))
        return;
    if (!xs_attr_is(it, "type", "get") && !xs_attr_is(it, "type", "set"))
        return;
    const char *id = "", *from = "";
    size_t idl = 0, fl = 0;
    xs_attr(it, "id", &id, &idl);
    xs_attr(it, "from", &from, &fl);
    if (memchr(id, '\'', idl) || memchr(from, '\'', fl))
        return;
    char b[600];
    bool ping = xs_has_child(it->inner, it->inner_len, "ping");
    int n = snprintf(b, sizeof b, "<iq type='%s' id='%.*s'%s%.*s%s>%s</iq>",
                     ping ? "result" : "error", (int)(idl < 200 ? idl : 200), id, fl ? " to='" : "",
                     (int)(fl < 300 ? fl : 300), from, fl ? "'" : "",
                     ping ? ""
                          : "<error type='cancel'><service-unavailable "
                            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
    if (n > 0 && (size_t)n < sizeof b)
        out_str(c, b);
}

/* ---------------------------------------------------------------- input */

static void on_element(struct client *c, const struct xs_item *it)
{
    if (xs_name_is(it, "error") && it->name != it->start + 1) {
        char cond[64];
        first_child(it->inner, it->inner_len, cond, sizeof cond);
        client_fail(c, "stream error <%s/>", cond);
        return;
    }
    switch (c->st) {
    case CS_READY:
        if (xs_name_is(it, "message"))
            on_message(c, it);
        else if (xs_name_is(it, "iq"))
            on_iq(c, it);
        else if (opt.workload == WL_PRESENCE && xs_name_is(it, "presence"))
            pres_on_presence(c, it);
        return; /* anything else: ignored */
    case CS_WAIT_FEATURES:
        if (xs_name_is(it, "features"))
            on_features(c, it);
        else
            client_fail(c, "expected stream features, got <%.*s/>", (int)it->name_len, it->name);
        return;
    case CS_WAIT_PROCEED:
        if (xs_name_is(it, "proceed"))
            start_tls(c);
        else
            client_fail(c, "STARTTLS refused");
        return;
    case CS_WAIT_SASL:
        on_sasl(c, it);
        return;
    case CS_WAIT_FEATURES2:
        if (!xs_name_is(it, "features"))
            client_fail(c, "expected stream features after SASL");
        else if (!xs_has_child(it->inner, it->inner_len, "bind"))
            client_fail(c, "the server offers no resource binding");
        else
            send_bind(c);
        return;
    case CS_WAIT_BIND:
        on_bind(c, it);
        return;
    default:
        return; /* closing: whatever still arrives is of no interest */
    }
}

static void on_stream_end(struct client *c, const char *what)
{
    if (c->st == CS_CLOSING)
        client_close(c);
    else
        client_fail(c, "%s", what);
}

/* Feeds buf[0..len) to the scanner; returns how much was used (the rest is an incomplete
 * element to keep). */
static size_t process(struct client *c, const char *buf, size_t len)
{
    size_t pos = 0;
    while (c->fd >= 0) {
        struct xs_item it;
        switch (xs_next(&c->xs, buf, len, &pos, &it)) {
        case XS_MORE:
            return pos;
        case XS_ERROR:
            client_fail(c, "unparseable XML from the server");
            return len;
        case XS_OPEN:
            continue;
        case XS_CLOSE:
            on_stream_end(c, "the server closed the stream");
            return len;
        case XS_ELEMENT:
            on_element(c, &it);
            /* After <proceed/> the bytes that follow are TLS, not XML. */
            if (c->st == CS_HANDSHAKE)
                return len;
            break;
        }
    }
    return len;
}

static void on_readable(struct client *c)
{
    struct worker *w = c->w;
    for (;;) {
        /* Complete elements are scanned straight from the worker's scratch buffer; only an
         * incomplete tail is copied into the client's own buffer, so an idle client holds no
         * input memory. */
        bool direct = c->in.len == 0;
        char *dst;
        size_t cap;
        if (direct) {
            dst = w->scratch;
            cap = SCRATCH_SIZE;
        } else {
            bbuf_reserve(&c->in, READ_RESERVE);
            dst = c->in.data + c->in.len;
            cap = c->in.cap - c->in.len;
        }
        ssize_t n;
        if (c->tls_on) {
            n = gnutls_record_recv(c->tls, dst, cap);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                return;
            if (n < 0 && n != GNUTLS_E_PREMATURE_TERMINATION) {
                client_fail(c, "TLS receive: %s", gnutls_strerror((int)n));
                return;
            }
            if (n < 0)
                n = 0;
        } else {
            n = recv(c->fd, dst, cap, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                on_stream_end(c, strerror(errno));
                return;
            }
        }
        if (n == 0) {
            on_stream_end(c, "the server closed the connection");
            return;
        }
        w->now = now_ns();
        if (direct) {
            size_t used = process(c, dst, (size_t)n);
            if (c->fd < 0)
                return;
            if (used < (size_t)n)
                bbuf_put(&c->in, dst + used, (size_t)n - used);
        } else {
            c->in.len += (size_t)n;
            size_t used = process(c, c->in.data, c->in.len);
            if (c->fd < 0)
                return;
            bbuf_consume(&c->in, used);
        }
        if (c->st == CS_HANDSHAKE)
            return;
        /* A short read drained the socket; level-triggered epoll reports anything newer. */
        if (!c->tls_on && (size_t)n < cap)
            return;
    }
}

/* ---------------------------------------------------------------- loops */

static void check_deadlines(struct worker *w, uint64_t now)
{
    for (unsigned i = 0; i < w->n; i++) {
        struct client *c = &w->clients[i];
        if (c->fd < 0 || c->deadline == 0 || now < c->deadline)
            continue;
        if (c->st == CS_CLOSING)
            client_fail(c, "the server did not close the stream within %.0f s",
                        CLOSE_GRACE_NS / 1e9);
        else if (c->st < CS_READY)
            client_fail(c, "no answer within %.0f s", opt.login_timeout);
    }
}

void loop_once(struct worker *w, int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct client *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->fd < 0)
            continue;
        if (c->st == CS_CONNECTING) {
            on_connected(c);
            continue;
        }
        if (c->st == CS_HANDSHAKE) {
            do_handshake(c);
            continue;
        }
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(c);
        if (c->fd >= 0 && (e & EPOLLOUT))
            flush(c);
    }
    flush_dirty(w);
    uint64_t now = now_ns();
    if (now >= w->next_check) {
        check_deadlines(w, now);
        w->next_check = now + CHECK_NS;
    }
}

int ms_until(uint64_t now, uint64_t t, int cap)
{
    if (t <= now)
        return 0;
    uint64_t ms = (t - now + 999999) / 1000000;
    return ms > (uint64_t)cap ? cap : (int)ms;
}

static unsigned active_clients(const struct worker *w)
{
    unsigned k = 0;
    for (unsigned i = 0; i < w->n; i++)
        if (w->clients[i].fd >= 0)
            k++;
    return k;
}

/* Every client back to its state before its login (number, account and peer kept), ready for
 * login_phase() again. The clients must be closed. */
void reset_clients(struct worker *w)
{
    for (unsigned i = 0; i < w->n; i++) {
        struct client *c = &w->clients[i];
        unsigned idx = c->idx, account = c->account;
        struct client *peer = c->peer;
        client_reset(c);
        c->idx = idx;
        c->account = account;
        c->peer = peer;
    }
    w->settled = w->in_progress = w->next_start = 0;
}

/* connect and chat, before the timed logins: log every client in once and out again, so that
 * the SCRAM keys of its account are derived and cached. Without this the timed logins of N
 * distinct accounts would queue behind the generator's own N PBKDF2 runs (about 0.5 ms each),
 * and their latency would describe the generator rather than the server. */
static void key_warmup(struct worker *w)
{
    uint64_t deadline = now_ns() + (uint64_t)(opt.ramp_timeout * 1e9);
    unsigned next = 0;
    w->warming = true;
    for (;;) {
        while (w->in_progress < w->slot_limit && next < w->n) {
            struct client *c = &w->clients[next++];
            client_start(c, c->idx, c->account);
        }
        if (next >= w->n && active_clients(w) == 0)
            break;
        if (now_ns() >= deadline) {
            for (unsigned i = 0; i < w->n; i++)
                if (w->clients[i].fd >= 0)
                    client_fail(&w->clients[i], "key warm-up: timed out");
            break;
        }
        loop_once(w, 100);
    }
    w->warming = false;
    /* The timed phase starts from scratch; failures here will show again there. */
    reset_clients(w);
    memset(&w->s, 0, sizeof w->s);
    hist_init(&w->login_h);
    w->settled = w->in_progress = 0;
    w->inflight = 0;
    for (unsigned i = 0; i < w->notes_n; i++)
        free(w->notes[i]);
    w->notes_n = w->notes_dropped = 0;
}

/* connect and chat: log every client in, at most slot_limit at a time. */
void login_phase(struct worker *w)
{
    uint64_t deadline = now_ns() + (uint64_t)(opt.ramp_timeout * 1e9);
    while (w->settled < w->n) {
        while (w->in_progress < w->slot_limit && w->next_start < w->n) {
            struct client *c = &w->clients[w->next_start++];
            client_start(c, c->idx, c->account);
        }
        uint64_t now = now_ns();
        if (now >= deadline) {
            for (unsigned i = 0; i < w->n; i++) {
                struct client *c = &w->clients[i];
                if (c->st < CS_READY) {
                    if (c->st == CS_FREE) {
                        c->st = CS_CONNECTING; /* counted as failed like the others */
                        w->in_progress++;
                    }
                    client_fail(c, "not logged in when the ramp-up time (%.0f s) ran out",
                                opt.ramp_timeout);
                }
            }
            break;
        }
        loop_once(w, ms_until(now, deadline, 100));
    }
    flush_dirty(w);
}

static void chat_phase(struct worker *w)
{
    for (unsigned i = 0; i < w->n; i++) {
        struct client *c = &w->clients[i];
        struct client *p = c->peer;
        size_t cap = p->jid_len + 64;
        c->msg_head = xmalloc(cap);
        c->msg_head_len =
            (size_t)snprintf(c->msg_head, cap, "<message type='chat' to='%s'><body>", p->jid);
        c->seen = xcalloc(SEEN_BITS / 64, sizeof(uint64_t));
    }
    /* The window is split between the two directions of a pair; in self mode a client is its
     * own pair and holds the whole window. */
    for (unsigned i = 0; i < w->n; i++) {
        struct client *c = &w->clients[i];
        unsigned k = opt.window;
        if (c->peer != c)
            k = (c->idx % 2 == 0) ? opt.window - opt.window / 2 : opt.window / 2;
        for (unsigned j = 0; j < k; j++)
            send_msg(c);
    }
    uint64_t drain_end = run.end + (uint64_t)(opt.drain * 1e9);
    for (;;) {
        uint64_t now = now_ns();
        if (now >= run.end && (w->inflight <= 0 || now >= drain_end))
            break;
        loop_once(w, ms_until(now, now < run.end ? run.end : drain_end, 100));
    }
}

static void idle_phase(struct worker *w)
{
    for (;;) {
        uint64_t now = now_ns();
        if (now >= run.end)
            break;
        loop_once(w, ms_until(now, run.end, 250));
    }
}

void close_phase(struct worker *w)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->clients[i].st == CS_READY)
            begin_close(&w->clients[i]);
    uint64_t deadline = now_ns() + CLOSE_GRACE_NS + CHECK_NS;
    while (active_clients(w) > 0 && now_ns() < deadline)
        loop_once(w, 50);
    for (unsigned i = 0; i < w->n; i++)
        if (w->clients[i].fd >= 0)
            client_fail(&w->clients[i], "still open at the end");
}

static void login_workload(struct worker *w)
{
    for (;;) {
        uint64_t now = now_ns();
        /* Logins that mostly fail would only hammer the server: stop starting new ones. */
        bool may_start =
            now < run.end && !(w->s.login_failed >= 100 && w->s.login_failed > w->s.logins);
        for (unsigned i = 0; i < w->n && may_start; i++) {
            struct client *c = &w->clients[i];
            if (c->fd >= 0)
                continue;
            unsigned long k = atomic_fetch_add(&run.login_claims, 1);
            if (opt.count && k >= opt.count) {
                may_start = false;
                break;
            }
            client_reset(c);
            client_start(c, (unsigned)k, opt.first + (unsigned)(k % opt.users));
        }
        if (!may_start && active_clients(w) == 0)
            break;
        if (now >= run.hard_end) {
            for (unsigned i = 0; i < w->n; i++)
                if (w->clients[i].fd >= 0)
                    client_fail(&w->clients[i], "still busy at the hard time limit");
            break;
        }
        loop_once(w, may_start ? 100 : 20);
    }
}

void worker_setup(struct worker *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    w->scratch = xmalloc(SCRATCH_SIZE);
    hist_init(&w->login_h);
    hist_init(&w->lat_h);
    if (opt.scram_cache)
        w->keys = xcalloc(opt.users, sizeof *w->keys);
    for (unsigned i = 0; i < w->n; i++) {
        w->clients[i].w = w;
        w->clients[i].fd = -1;
    }
}

void worker_cleanup(struct worker *w)
{
    if (opt.workload == WL_PRESENCE)
        presence_cleanup();
    for (unsigned i = 0; i < w->n; i++)
        client_reset(&w->clients[i]);
    free(w->clients);
    w->clients = NULL;
    free(w->scratch);
    free(w->keys);
    for (unsigned i = 0; i < w->notes_n; i++)
        free(w->notes[i]);
    w->notes_n = 0;
    if (w->epfd >= 0)
        close(w->epfd);
    w->epfd = -1;
}

/* Phases, each thread in step with main through run.barrier:
 *   key warm-up (connect, chat, if SCRAM may be used) -> barrier: main reads the server's RSS
 *   log in (connect, chat, presence) | nothing (login)
 *   presence: subscriptions, initial presence         -> barrier: main sets the clock
 *   measured phase (chat, presence, idle, logins)     -> barrier: main reads the server's RSS
 *   close everything                                  -> main joins. */
void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (opt.workload != WL_LOGIN && opt.scram_cache && opt.mech != MECH_PLAIN)
        key_warmup(w);
    pthread_barrier_wait(&run.barrier);
    pthread_barrier_wait(&run.barrier);
    if (opt.workload != WL_LOGIN)
        login_phase(w);
    if (opt.workload == WL_PRESENCE)
        presence_setup(w);
    pthread_barrier_wait(&run.barrier);
    pthread_barrier_wait(&run.barrier);
    if (opt.workload == WL_LOGIN)
        login_workload(w);
    else if (!run.abort && opt.workload == WL_CHAT)
        chat_phase(w);
    else if (!run.abort && opt.workload == WL_PRESENCE)
        presence_phase(w);
    else if (!run.abort)
        idle_phase(w);
    pthread_barrier_wait(&run.barrier);
    pthread_barrier_wait(&run.barrier);
    if (opt.workload != WL_LOGIN)
        close_phase(w);
    return NULL;
}
