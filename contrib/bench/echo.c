/*
 * echo.c — the trivial XMPP peer behind "stanzad-bench --echo-server": the yardstick for the
 * generator itself.
 *
 * It accepts a stream, offers only SASL PLAIN and accepts any credentials, binds whatever
 * resource is asked for, answers other iq requests with an empty result, ignores presence, and
 * sends every message straight back to its sender (from and to both set to the sender's full
 * JID, body untouched). It does no routing, no storage and no real parsing — the same scanner
 * as the generator — so that running the chat workload against it (with --peer self) measures
 * how many messages the generator can produce and validate, which is the ceiling of any figure
 * it reports for a real server. Single-threaded, one epoll loop, loopback addresses only; it
 * stops on SIGINT or SIGTERM, or after its duration.
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define ECHO_SCRATCH    (64 * 1024)
#define ECHO_MAX_OUTPUT (64 * 1024 * 1024) /* a peer that stops reading is dropped */

struct econn {
    int fd;
    struct xscan xs;
    struct bbuf in, out;
    uint32_t events;
    bool dirty, closing, authed;
    bool parked; /* on the list of connections to free */
    char user[128];
    char *jid;
    struct econn *next_dirty;
    struct econn *prev, *next; /* every connection, to free them at the end */
};

static volatile sig_atomic_t echo_stop;
static struct econn *dirty_list;
static struct econn *all_conns;
static int echo_epfd;
static const char *echo_domain;
static unsigned long long n_conns, n_msgs;
static unsigned stream_ids;

static void on_signal(int sig)
{
    (void)sig;
    echo_stop = 1;
}

static void e_dirty(struct econn *e)
{
    if (!e->dirty) {
        e->dirty = true;
        e->next_dirty = dirty_list;
        dirty_list = e;
    }
}

static void e_put(struct econn *e, const char *s, size_t n)
{
    bbuf_put(&e->out, s, n);
    e_dirty(e);
}

static void e_puts(struct econn *e, const char *s)
{
    e_put(e, s, strlen(s));
}

static void e_free(struct econn *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    bbuf_free(&e->in);
    bbuf_free(&e->out);
    free(e->jid);
    e->jid = NULL;
    /* Freed after the loop round: it may still be on the dirty list. */
    e->closing = true;
}

static void e_destroy(struct econn *e)
{
    if (e->fd >= 0)
        e_free(e);
    if (e->prev)
        e->prev->next = e->next;
    else
        all_conns = e->next;
    if (e->next)
        e->next->prev = e->prev;
    free(e);
}

static void e_set_events(struct econn *e, uint32_t ev)
{
    if (e->events == ev || e->fd < 0)
        return;
    struct epoll_event x = {.events = ev, .data.ptr = e};
    epoll_ctl(echo_epfd, EPOLL_CTL_MOD, e->fd, &x);
    e->events = ev;
}

static void e_flush(struct econn *e)
{
    while (e->out.len > 0) {
        ssize_t r = send(e->fd, e->out.data, e->out.len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (e->out.len > ECHO_MAX_OUTPUT)
                    e_free(e);
                else
                    e_set_events(e, EPOLLIN | EPOLLOUT);
                return;
            }
            e_free(e);
            return;
        }
        bbuf_consume(&e->out, (size_t)r);
    }
    if (e->closing) {
        e_free(e);
        return;
    }
    e_set_events(e, EPOLLIN);
}

static void send_stream_header(struct econn *e)
{
    char b[512];
    snprintf(b, sizeof b,
             "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' id='echo%u' from='%s' "
             "version='1.0'><stream:features>%s</stream:features>",
             ++stream_ids, echo_domain,
             e->authed ? "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                       : "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                         "<mechanism>PLAIN</mechanism></mechanisms>");
    e_puts(e, b);
}

static void on_auth(struct econn *e, const struct xs_item *it)
{
    unsigned char raw[512];
    long n = -1;
    if (xs_attr_is(it, "mechanism", "PLAIN"))
        n = b64_decode(it->inner, it->inner_len, raw, sizeof raw - 1);
    const unsigned char *authcid = n > 0 ? memchr(raw, '\0', (size_t)n) : NULL;
    if (!authcid) {
        e_puts(e, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/>"
                  "</failure>");
        return;
    }
    authcid++;
    const unsigned char *end = memchr(authcid, '\0', (size_t)(raw + n - authcid));
    size_t l = end ? (size_t)(end - authcid) : 0;
    if (l == 0 || l >= sizeof e->user || memchr(authcid, '\'', l) || memchr(authcid, '<', l)) {
        e_puts(e, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
                  "</failure>");
        return;
    }
    memcpy(e->user, authcid, l);
    e->user[l] = '\0';
    e->authed = true;
    e_puts(e, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    e->xs.depth = 0; /* the client restarts the stream */
}

static void on_iq(struct econn *e, const struct xs_item *it)
{
    const char *id = "";
    size_t idl = 0;
    xs_attr(it, "id", &id, &idl);
    if (memchr(id, '\'', idl) || idl > 200)
        return;
    if (!xs_attr_is(it, "type", "get") && !xs_attr_is(it, "type", "set"))
        return;
    char b[800];
    const char *res;
    size_t rl, off = 0;
    if (e->authed && !e->jid && xs_has_child(it->inner, it->inner_len, "bind")) {
        if (!xs_child_text(it->inner, it->inner_len, &off, "resource", &res, &rl) || rl == 0 ||
            rl > 200 || memchr(res, '\'', rl) || memchr(res, '<', rl)) {
            res = "echo";
            rl = 4;
        }
        size_t jl = strlen(e->user) + strlen(echo_domain) + rl + 3;
        e->jid = xmalloc(jl);
        snprintf(e->jid, jl, "%s@%s/%.*s", e->user, echo_domain, (int)rl, res);
        snprintf(b, sizeof b,
                 "<iq type='result' id='%.*s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 "<jid>%s</jid></bind></iq>",
                 (int)idl, id, e->jid);
    } else {
        snprintf(b, sizeof b, "<iq type='result' id='%.*s'/>", (int)idl, id);
    }
    e_puts(e, b);
}

/* Back to the sender, with from and to stamped as the sender's full JID. */
static void on_message(struct econn *e, const struct xs_item *it)
{
    if (!e->jid)
        return;
    const char *type = "chat";
    size_t tl = 4;
    xs_attr(it, "type", &type, &tl);
    struct bbuf *o = &e->out;
    size_t jl = strlen(e->jid);
    bbuf_reserve(o, 2 * jl + tl + it->inner_len + 48);
    bbuf_put(o, "<message type='", 15);
    bbuf_put(o, type, tl);
    bbuf_put(o, "' from='", 8);
    bbuf_put(o, e->jid, jl);
    bbuf_put(o, "' to='", 6);
    bbuf_put(o, e->jid, jl);
    bbuf_put(o, "'>", 2);
    bbuf_put(o, it->inner, it->inner_len);
    bbuf_put(o, "</message>", 10);
    e_dirty(e);
    n_msgs++;
}

static size_t e_process(struct econn *e, const char *buf, size_t len)
{
    size_t pos = 0;
    while (!e->closing) {
        struct xs_item it;
        switch (xs_next(&e->xs, buf, len, &pos, &it)) {
        case XS_MORE:
            return pos;
        case XS_ERROR:
            e_puts(e, "<stream:error><not-well-formed "
                      "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                      "</stream:stream>");
            e->closing = true;
            return len;
        case XS_OPEN:
            send_stream_header(e);
            break;
        case XS_CLOSE:
            e_puts(e, "</stream:stream>");
            e->closing = true;
            return len;
        case XS_ELEMENT:
            if (xs_name_is(&it, "message"))
                on_message(e, &it);
            else if (xs_name_is(&it, "iq"))
                on_iq(e, &it);
            else if (xs_name_is(&it, "auth") && !e->authed)
                on_auth(e, &it);
            break;
        }
    }
    return len;
}

static void e_read(struct econn *e, char *scratch)
{
    for (;;) {
        bool direct = e->in.len == 0;
        char *dst = scratch;
        size_t cap = ECHO_SCRATCH;
        if (!direct) {
            bbuf_reserve(&e->in, 16384);
            dst = e->in.data + e->in.len;
            cap = e->in.cap - e->in.len;
        }
        ssize_t n = recv(e->fd, dst, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            e_free(e);
            return;
        }
        if (direct) {
            size_t used = e_process(e, dst, (size_t)n);
            if (!e->closing && used < (size_t)n)
                bbuf_put(&e->in, dst + used, (size_t)n - used);
        } else {
            e->in.len += (size_t)n;
            bbuf_consume(&e->in, e_process(e, e->in.data, e->in.len));
        }
        if (e->closing || (size_t)n < cap)
            return;
    }
}

int echo_server_main(const char *host, int port, const char *domain, double duration)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *why = NULL;
    if (!resolve_loopback(host, port, &ss, &sl, &why))
        die("%s: %s", host, why);
    echo_domain = domain;
    raise_nofile_limit();
    int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 4096) < 0)
        die("listening on %s port %d: %s", host, port, strerror(errno));
    echo_epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(echo_epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char *scratch = xmalloc(ECHO_SCRATCH);
    uint64_t end = now_ns() + (uint64_t)(duration * 1e9);
    fprintf(stderr, "stanzad-bench: echo server on %s port %d for at most %.0f s\n", host, port,
            duration);

    /* Closed connections are parked here until the end of the round that closed them. */
    struct econn **dead = NULL;
    size_t ndead = 0, capdead = 0;
    while (!echo_stop && now_ns() < end) {
        struct epoll_event evs[512];
        int n = epoll_wait(echo_epfd, evs, 512, 200);
        for (int i = 0; i < n; i++) {
            struct econn *e = evs[i].data.ptr;
            if (!e) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct econn *c = xcalloc(1, sizeof *c);
                    c->fd = fd;
                    c->next = all_conns;
                    if (all_conns)
                        all_conns->prev = c;
                    all_conns = c;
                    c->events = EPOLLIN;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(echo_epfd, EPOLL_CTL_ADD, fd, &ev);
                    n_conns++;
                }
                continue;
            }
            if (e->fd < 0)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                e_read(e, scratch);
            if (e->fd >= 0 && (evs[i].events & EPOLLOUT))
                e_flush(e);
            if ((e->fd < 0 || e->closing) && !e->parked) {
                e->parked = true;
                if (ndead == capdead) {
                    capdead = capdead ? 2 * capdead : 64;
                    dead = realloc(dead, capdead * sizeof *dead);
                    if (!dead)
                        die("out of memory");
                }
                dead[ndead++] = e;
            }
        }
        struct econn *e;
        while ((e = dirty_list) != NULL) {
            dirty_list = e->next_dirty;
            e->dirty = false;
            if (e->fd >= 0)
                e_flush(e);
        }
        /* A closing connection whose last bytes did not fit stays until they are written. */
        size_t keep = 0;
        for (size_t i = 0; i < ndead; i++) {
            if (dead[i]->fd >= 0 && dead[i]->out.len > 0) {
                dead[keep++] = dead[i];
                continue;
            }
            e_destroy(dead[i]);
        }
        ndead = keep;
    }
    fprintf(stderr, "stanzad-bench: echo server done: %llu connections, %llu messages reflected\n",
            n_conns, n_msgs);
    while (all_conns)
        e_destroy(all_conns);
    free(dead);
    free(scratch);
    close(lfd);
    close(echo_epfd);
    return 0;
}
