/*
 * conn.h — one client socket: non-blocking reads and writes, optional TLS, a bounded output
 * buffer flushed once per loop iteration, and a lingering close that lets final bytes (a stream
 * error) reach the peer. The stream logic above it (c2s.c) sees plaintext in and out only.
 *
 * A conn belongs to one worker for life and is used on that thread only. It is reference
 * counted so that asynchronous work (a database query) can hold it across its own close; the
 * memory goes when the last reference is dropped.
 */
#ifndef STANZAD_CONN_H
#define STANZAD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "buf.h"
#include "worker.h"

struct conn;
struct tls_creds;

struct conn_handler {
    /* Plaintext bytes from the peer. The handler may close or pause the conn from here. */
    void (*on_data)(struct conn *c, const char *data, size_t len);
    /* The TLS handshake completed (STARTTLS or direct TLS). */
    void (*on_tls_ready)(struct conn *c);
    /* The output buffer would exceed its limit: the peer is not reading. */
    void (*on_output_overflow)(struct conn *c);
    /* The socket is closed (peer went away, error, or our own close finished). Called once. */
    void (*on_close)(struct conn *c, const char *reason);
};

enum conn_state { CONN_OPEN, CONN_CLOSING, CONN_CLOSED };

struct conn {
    uint64_t id;
    struct worker *w;
    int fd;
    struct io io;
    char peer[48]; /* peer IP address as text */
    enum conn_state state;
    int refs;

    gnutls_session_t tls;
    struct tls_creds *creds;
    bool tls_pending;   /* STARTTLS: switch once the plaintext output is flushed */
    bool tls_handshake; /* handshake in progress */
    size_t tls_resend;  /* bytes of the last record that GnuTLS asked us to resend */

    bool read_paused;
    bool overflowed;
    struct buf out;
    size_t out_limit;
    struct after flush_after;
    struct timer linger;
    const char *close_reason;

    const struct conn_handler *h;
    void *ud;
};

/* Takes over fd (non-blocking) on worker w. One reference is returned to the caller. */
struct conn *conn_new(struct worker *w, int fd, const char *peer, size_t out_limit,
                      const struct conn_handler *h, void *ud);
void conn_ref(struct conn *c);
void conn_unref(struct conn **c);

/* Queues bytes for the peer; they are written at the end of this loop iteration. */
void conn_write(struct conn *c, const void *p, size_t n);
/* Serialising in place: append to conn_out(c), then call conn_out_done(c), which applies the
 * output limit and schedules the flush like conn_write. */
struct buf *conn_out(struct conn *c);
void conn_out_done(struct conn *c);
/* Gives back the output buffer's memory when it is empty (idle connections). */
void conn_trim(struct conn *c);
/* Starts the server side of TLS once the queued plaintext (e.g. <proceed/>) is flushed. */
int conn_start_tls(struct conn *c);
bool conn_is_tls(const struct conn *c);
/* Stops or resumes reading (backpressure while a stanza waits for the database). */
void conn_pause_reading(struct conn *c, bool pause);
/* Closes: flushes queued output (bounded by a 2 s linger), then closes the socket. */
void conn_close(struct conn *c, const char *reason);
/* Closes now, dropping queued output. */
void conn_abort(struct conn *c, const char *reason);

/* Process-wide connection counter for ids. */
uint64_t conn_next_id(void);

#endif
