/*
 * conn.c — socket I/O for one client connection, plain or TLS.
 *
 * Reading: on EPOLLIN we read (or gnutls_record_recv) into a stack buffer until the socket is
 * drained, or a per-event budget is spent so one busy peer cannot starve the others, and hand
 * each chunk to the handler. Writing: conn_write appends to the output buffer and asks the worker
 * to flush once at the end of the iteration, so ten stanzas to one peer in one iteration cost one
 * write(2) (or a few TLS records). When the kernel does not take everything, EPOLLOUT is enabled
 * until the buffer is empty. The buffer is bounded: crossing out_limit tells the handler, which
 * ends the stream — a client that does not read cannot make the server grow without bound.
 *
 * Closing is "flush, half-close, drain, close": the final bytes (usually a stream error) are
 * written, the write side is shut down, and input is discarded until the peer closes or two
 * seconds pass. Closing straight away could make the kernel reset the connection and destroy the
 * final bytes before the peer reads them.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "slab.h"
#include "tls.h"

#define READ_CHUNK     16384
#define READ_BUDGET    8 /* chunks per readiness event */
#define TLS_RECORD_MAX 16384
#define LINGER_MS      2000

static atomic_uint_fast64_t next_conn_id = 1;

uint64_t conn_next_id(void)
{
    return atomic_fetch_add(&next_conn_id, 1);
}

static void conn_on_io(struct io *io, uint32_t events);
static void conn_flush_after(struct after *a);

/* The queued flush holds a reference: a conn closed and released in the same iteration must
 * stay allocated until the worker has run (and unlinked) its flush. */
static void conn_schedule_flush(struct conn *c)
{
    if (c->flush_after.queued)
        return;
    c->refs++;
    worker_after(c->w, &c->flush_after, conn_flush_after);
}
static void conn_finish_close(struct conn *c);

static void conn_update_events(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    uint32_t ev = 0;
    bool want_read = !c->read_paused && !c->tls_pending;
    if (c->state == CONN_CLOSING)
        want_read = true; /* draining until the peer closes */
    if (want_read)
        ev |= EPOLLIN;
    if (c->out.len > 0 || c->tls_handshake)
        ev |= EPOLLOUT;
    if (c->tls_handshake) {
        /* GnuTLS tells us which direction it waits for. */
        ev = gnutls_record_get_direction(c->tls) ? EPOLLOUT : EPOLLIN;
    }
    worker_io_mod(c->w, &c->io, ev);
}

struct conn *conn_new(struct worker *w, int fd, const char *peer, size_t out_limit,
                      const struct conn_handler *h, void *ud)
{
    struct conn *c = slab_alloc(sizeof *c);
    c->id = conn_next_id();
    c->w = w;
    c->fd = fd;
    c->refs = 1;
    c->state = CONN_OPEN;
    c->out_limit = out_limit;
    c->h = h;
    c->ud = ud;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    timer_init(&c->linger, NULL, c);
    if (worker_io_add(w, &c->io, fd, EPOLLIN, conn_on_io, c) < 0) {
        log_error(c->id, "epoll_ctl: %s", strerror(errno));
        close(fd);
        c->fd = -1;
        c->state = CONN_CLOSED;
    }
    worker_hold(w);
    return c;
}

void conn_ref(struct conn *c)
{
    c->refs++;
}

void conn_unref(struct conn **cp)
{
    struct conn *c = *cp;
    *cp = NULL;
    if (!c || --c->refs > 0)
        return;
    if (c->state != CONN_CLOSED) {
        /* The owner dropped its last reference without closing: close now, quietly. */
        c->refs = 1;
        c->h = NULL;
        conn_finish_close(c);
        c->refs = 0;
    }
    buf_free(&c->out);
    slab_free(c);
}

bool conn_is_tls(const struct conn *c)
{
    return c->tls != NULL && !c->tls_handshake;
}

void conn_pause_reading(struct conn *c, bool pause)
{
    if (c->read_paused == pause)
        return;
    c->read_paused = pause;
    conn_update_events(c);
}

/* ---- closing ---- */

static void conn_finish_close(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    c->state = CONN_CLOSED;
    worker_timer_stop(c->w, &c->linger);
    worker_io_del(c->w, &c->io);
    if (c->tls)
        tls_session_free(&c->tls, &c->creds);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    worker_release(c->w);
    if (c->h && c->h->on_close) {
        conn_ref(c);
        c->h->on_close(c, c->close_reason ? c->close_reason : "closed");
        conn_unref(&c);
    }
}

static void conn_linger_expired(struct timer *t)
{
    conn_finish_close(t->ud);
}

/* Output is flushed: half-close and wait for the peer's close. */
static void conn_half_close(struct conn *c)
{
    if (c->tls && !c->tls_handshake)
        gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* best effort; non-blocking */
    shutdown(c->fd, SHUT_WR);
    conn_update_events(c);
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    c->close_reason = reason;
    c->linger.fn = conn_linger_expired;
    worker_timer_start(c->w, &c->linger, LINGER_MS);
    if (c->out.len == 0 && !c->tls_pending)
        conn_half_close(c);
    else
        conn_schedule_flush(c);
}

void conn_abort(struct conn *c, const char *reason)
{
    if (c->state == CONN_CLOSED)
        return;
    c->close_reason = reason;
    conn_finish_close(c);
}

/* ---- writing ---- */

void conn_write(struct conn *c, const void *p, size_t n)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->out.len + n > c->out_limit && !c->overflowed) {
        c->overflowed = true;
        if (c->h && c->h->on_output_overflow) {
            c->h->on_output_overflow(c);
            return;
        }
    }
    buf_append(&c->out, p, n);
    conn_schedule_flush(c);
}

struct buf *conn_out(struct conn *c)
{
    return &c->out;
}

void conn_out_done(struct conn *c)
{
    if (c->state == CONN_CLOSED) {
        buf_consume(&c->out, c->out.len);
        return;
    }
    if (c->out.len > c->out_limit && !c->overflowed) {
        c->overflowed = true;
        if (c->h && c->h->on_output_overflow)
            c->h->on_output_overflow(c);
    }
    conn_schedule_flush(c);
}

void conn_trim(struct conn *c)
{
    if (c->out.len == 0 && c->out.cap > 0)
        buf_free(&c->out);
}

static int conn_start_handshake(struct conn *c);

/* Writes as much of the output buffer as the socket takes. Returns -1 when the conn died. */
static int conn_flush(struct conn *c)
{
    while (c->out.len > 0) {
        ssize_t n;
        if (c->tls && !c->tls_pending) {
            if (c->tls_handshake)
                return 0;
            size_t len = c->tls_resend
                             ? c->tls_resend
                             : (c->out.len < TLS_RECORD_MAX ? c->out.len : TLS_RECORD_MAX);
            n = gnutls_record_send(c->tls, c->out.data, len);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
                c->tls_resend = len;
                break;
            }
            c->tls_resend = 0;
            if (n < 0) {
                log_debug(c->id, "TLS write failed: %s", gnutls_strerror((int)n));
                conn_abort(c, "TLS write error");
                return -1;
            }
        } else {
            n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                log_debug(c->id, "write failed: %s", strerror(errno));
                conn_abort(c, "write error");
                return -1;
            }
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->out.len == 0) {
        if (c->tls_pending)
            return conn_start_handshake(c);
        if (c->state == CONN_CLOSING)
            conn_half_close(c);
    }
    conn_update_events(c);
    return 0;
}

static void conn_flush_after(struct after *a)
{
    struct conn *c = (struct conn *)((char *)a - offsetof(struct conn, flush_after));
    if (c->state != CONN_CLOSED)
        conn_flush(c);
    conn_unref(&c); /* the reference conn_schedule_flush took */
}

/* ---- TLS ---- */

int conn_start_tls(struct conn *c)
{
    if (c->tls || c->tls_pending)
        return -1;
    c->tls_pending = true;
    if (c->out.len == 0) {
        conn_ref(c); /* a failed handshake closes the conn under us */
        int rc = conn_start_handshake(c);
        conn_unref(&c);
        return rc;
    }
    conn_schedule_flush(c);
    conn_update_events(c);
    return 0;
}

static void conn_continue_handshake(struct conn *c)
{
    int rc = gnutls_handshake(c->tls);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
        conn_update_events(c);
        return;
    }
    if (rc < 0) {
        log_info(c->id, "TLS handshake failed: %s", gnutls_strerror(rc));
        conn_abort(c, "TLS handshake failed");
        return;
    }
    c->tls_handshake = false;
    log_debug(c->id, "TLS established: %s",
              gnutls_protocol_get_name(gnutls_protocol_get_version(c->tls)));
    conn_update_events(c);
    if (c->h && c->h->on_tls_ready)
        c->h->on_tls_ready(c);
}

static int conn_start_handshake(struct conn *c)
{
    c->tls_pending = false;
    c->tls = tls_session_new(c->fd, &c->creds);
    if (!c->tls) {
        conn_abort(c, "cannot create TLS session");
        return -1;
    }
    c->tls_handshake = true;
    conn_continue_handshake(c);
    return c->state == CONN_CLOSED ? -1 : 0;
}

/* ---- reading ---- */

static void conn_read(struct conn *c)
{
    char data[READ_CHUNK];
    for (int i = 0; i < READ_BUDGET; i++) {
        if (c->state == CONN_CLOSED || c->read_paused || c->tls_pending || c->tls_handshake)
            return;
        ssize_t n;
        if (c->tls) {
            n = gnutls_record_recv(c->tls, data, sizeof data);
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                return;
            if (n < 0) {
                /* A peer that drops TCP without close_notify is common; not worth a warning. */
                log_debug(c->id, "TLS read: %s", gnutls_strerror((int)n));
                conn_abort(c, n == GNUTLS_E_PREMATURE_TERMINATION ? "connection closed by peer"
                                                                  : "TLS error");
                return;
            }
        } else {
            n = recv(c->fd, data, sizeof data, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR)
                    continue;
                conn_abort(c, "connection reset by peer");
                return;
            }
        }
        if (n == 0) {
            conn_abort(c, c->state == CONN_CLOSING ? c->close_reason : "connection closed by peer");
            return;
        }
        if (c->state == CONN_CLOSING)
            continue; /* draining */
        if (c->h && c->h->on_data)
            c->h->on_data(c, data, (size_t)n);
        if (c->tls == NULL && (size_t)n < sizeof data)
            return; /* short read: the socket is drained */
        if (c->tls && (size_t)n < sizeof data && gnutls_record_check_pending(c->tls) == 0)
            return;
    }
}

static void conn_on_io(struct io *io, uint32_t events)
{
    struct conn *c = io->ud;
    conn_ref(c);
    if (c->tls_handshake) {
        conn_continue_handshake(c);
    } else {
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(c);
        if (c->state != CONN_CLOSED && (events & EPOLLOUT))
            conn_flush(c);
    }
    conn_unref(&c);
}
