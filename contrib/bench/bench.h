/*
 * bench.h — shared declarations of stanzad-bench, the XMPP load generator: byte buffers, the
 * small XML scanner, latency histograms, the SASL client side, options, workers and clients.
 */
#ifndef STANZAD_BENCH_H
#define STANZAD_BENCH_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>

/* ---------------------------------------------------------------- utilities (util.c) */

struct bbuf {
    char *data;
    size_t len, cap;
};

void bbuf_reserve(struct bbuf *b, size_t extra);
void bbuf_put(struct bbuf *b, const void *p, size_t n);
void bbuf_puts(struct bbuf *b, const char *s);
void bbuf_consume(struct bbuf *b, size_t n);
void bbuf_free(struct bbuf *b);

uint64_t now_ns(void);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
char *xstrndup(const char *s, size_t n);
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);

/* Resolves host:port and checks that every address is loopback (127.0.0.0/8 or ::1). Returns
 * false with a reason in why when it is not, or when the name does not resolve. */
bool resolve_loopback(const char *host, int port, struct sockaddr_storage *out, socklen_t *len,
                      const char **why);
bool is_loopback(const struct sockaddr *sa);
void raise_nofile_limit(void);

/* Base64 (RFC 4648, with padding). out needs 4 * ceil(n / 3) + 1 bytes; decode returns the
 * decoded length, or -1 on a malformed input or when out is too small. */
size_t b64_encode(const unsigned char *in, size_t n, char *out);
long b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* ---------------------------------------------------------------- XML scanner (xmlscan.c) */

enum xs_kind { XS_MORE, XS_OPEN, XS_CLOSE, XS_ELEMENT, XS_ERROR };

/* One top-level item. Pointers point into the scanned buffer. */
struct xs_item {
    const char *start; /* its first byte, a '<' */
    size_t len;        /* the whole element (for XS_OPEN: the stream header tag) */
    const char *name;  /* local name: the prefix is stripped */
    size_t name_len;
    const char *attrs; /* the start tag after its name, up to (not including) '>' or '/>' */
    size_t attrs_len;
    const char *inner; /* between the start tag and the end tag; empty when self-closing */
    size_t inner_len;
};

struct xscan {
    int depth; /* 0: before the stream header; 1: inside the stream */
};

#define XS_MAX_ELEMENT (1024 * 1024) /* a top-level element larger than this is an error */

enum xs_kind xs_next(struct xscan *s, const char *buf, size_t len, size_t *pos, struct xs_item *it);
bool xs_name_is(const struct xs_item *it, const char *name);
bool xs_attr(const struct xs_item *it, const char *name, const char **val, size_t *vlen);
bool xs_attr_is(const struct xs_item *it, const char *name, const char *value);
/* The text of the next <name> child at or after *off in p[0..len) (any depth); *off moves past
 * it so repeated calls iterate. Self-closing children yield an empty text. */
bool xs_child_text(const char *p, size_t len, size_t *off, const char *name, const char **text,
                   size_t *tlen);
bool xs_has_child(const char *p, size_t len, const char *name);
/* The next start tag <name ...> at or after *off in p[0..len) (any depth): fills tag's name and
 * attributes, so that xs_attr works on it (its inner text is left empty); *off moves past it. */
bool xs_next_tag(const char *p, size_t len, size_t *off, const char *name, struct xs_item *tag);

/* ---------------------------------------------------------------- histogram (hist.c) */

#define HIST_LINEAR  128
#define HIST_SUBBITS 6
#define HIST_BUCKETS (HIST_LINEAR + (64 - 7) * (1 << HIST_SUBBITS))

struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
uint64_t hist_percentile(const struct hist *h, double q);

/* ---------------------------------------------------------------- SASL client (sasl_client.c) */

enum mech { MECH_AUTO, MECH_PLAIN, MECH_SCRAM_SHA1, MECH_SCRAM_SHA256 };

const char *mech_name(enum mech m);
bool mech_parse(const char *s, enum mech *m);

/* What a client keeps for an account once it has derived the keys, as real clients do: the
 * PBKDF2 is paid once per account and salt, not once per login. */
struct scram_keys {
    bool valid;
    enum mech mech;
    unsigned iterations;
    char salt[96];
    unsigned char client_key[32], stored_key[32], server_key[32];
};

struct scram {
    enum mech mech;
    char client_first_bare[320];
    size_t cfb_len;
    unsigned char server_signature[32];
    bool final_sent; /* client-final sent: the next challenge or success carries v= */
    bool verified;   /* the server's signature checked out */
};

/* Writes base64 of PLAIN's "\0user\0password" into out. */
void sasl_plain(struct bbuf *out, const char *user, const char *password);
/* Starts SCRAM: writes base64 of the client-first message into out. */
void scram_first(struct scram *s, enum mech mech, const char *user, struct bbuf *out);
/* Answers the server-first message (base64 in, base64 client-final out). keys may be NULL (no
 * cache). Returns NULL on success, else what is wrong. */
const char *scram_final(struct scram *s, const char *password, const char *in, size_t in_len,
                        struct scram_keys *keys, struct bbuf *out);
/* Checks the server's v= (base64 of server-final in). */
const char *scram_verify(const struct scram *s, const char *in, size_t in_len);

/* ---------------------------------------------------------------- options and the run */

enum workload { WL_CONNECT, WL_LOGIN, WL_CHAT, WL_PRESENCE };

struct options {
    enum workload workload;
    const char *host;
    int port;
    const char *domain;
    const char *user_prefix;
    const char *password;
    unsigned first; /* index of the first account */
    unsigned users; /* accounts cycled through; 0 = one per client */
    unsigned clients;
    unsigned pairs;
    unsigned window;
    unsigned contacts; /* presence: the hub's contacts */
    bool peer_self;
    bool tls;
    enum mech mech;
    unsigned threads;
    unsigned concurrency;
    unsigned long count;
    double duration, warmup, drain, login_timeout, ramp_timeout;
    int pid;
    bool scram_cache;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

extern struct options opt;
extern gnutls_certificate_credentials_t tls_cred;

/* Shared by all workers; written before the workers start or by main between barriers. */
struct run {
    pthread_barrier_t barrier;
    uint64_t t0, warm_end, end, hard_end;
    _Atomic unsigned long login_claims; /* login workload: logins started, all threads */
    _Atomic int mech_used;
    bool abort;       /* a login failed: skip the measured phase */
    unsigned pid_tag; /* makes resources unique across generator processes */
};
extern struct run run;

/* ---------------------------------------------------------------- clients (client.c) */

#define CLOSE_BOUND_S 3.0 /* seconds the close phase may take at most */

enum cstate {
    CS_FREE,
    CS_CONNECTING,
    CS_WAIT_FEATURES,
    CS_WAIT_PROCEED,
    CS_HANDSHAKE,
    CS_WAIT_SASL,
    CS_WAIT_FEATURES2,
    CS_WAIT_BIND,
    CS_READY,
    CS_CLOSING,
    CS_DONE,
};

#define SEEN_BITS 4096 /* reorder/duplicate detection window, per direction */

struct worker;

struct client {
    struct worker *w;
    int fd;
    enum cstate st;
    unsigned idx;     /* client number, global over all threads */
    unsigned account; /* account number (the name is user_prefix + account) */
    uint32_t events;  /* what epoll watches for it */
    bool dirty;       /* on the worker's flush list */
    bool tls_on;
    gnutls_session_t tls;
    size_t tls_pending; /* bytes given to a gnutls_record_send that returned EAGAIN */
    struct xscan xs;
    struct bbuf in, out;
    uint64_t t_start, deadline;
    struct scram *scram;
    char *jid; /* full JID from the bind result */
    size_t jid_len;
    struct client *next_dirty;

    /* chat */
    struct client *peer;
    char *msg_head; /* "<message type='chat' to='peer'><body>" */
    size_t msg_head_len;
    uint32_t seq_out; /* sent to the peer so far = next sequence number */
    uint32_t seq_in;  /* next sequence number expected from the peer */
    uint64_t recv_distinct;
    uint64_t *seen; /* SEEN_BITS bits: which recent sequence numbers arrived */
};

struct wstats {
    uint64_t msgs; /* received and validated inside the measurement window */
    uint64_t sent, received, dup, reordered, bounced, bad, wrong_sender;
    uint64_t logins, logins_measured, login_failed, disconnects, close_timeouts, errors;
    uint64_t last_login_ns;
};

/* presence: what the set-up and the measured phase found, for the result line */
struct presult {
    bool setup_failed;
    unsigned setup_pairs;           /* pairs whose subscriptions this run had to establish */
    unsigned setup_resent;          /* requests sent again because the server lost them */
    uint64_t init_ns;               /* hub's initial presence: until both sides below were done */
    uint64_t init_probes_ns;        /* ... until the hub had every contact's presence */
    uint64_t init_bcast_ns;         /* ... until every contact had the hub's presence */
    uint64_t init_extra;            /* presence stanzas beyond one per contact and direction */
    uint64_t updates;               /* updates delivered to every contact in the measured time */
    uint64_t first_send, last_done; /* first update sent, last update complete */
};

#define MAX_NOTES 8

struct worker {
    unsigned id;
    int epfd;
    pthread_t th;
    struct client *clients;
    unsigned n;           /* clients (connect, chat) or slots (login) */
    unsigned next_start;  /* connect/chat: next client to start logging in */
    unsigned in_progress; /* logins in flight */
    unsigned settled;     /* clients ready or failed */
    unsigned slot_limit;  /* logins in flight at most */
    bool warming;         /* key warm-up: log in and straight out again, uncounted */
    struct client *dirty;
    char *scratch;
    struct scram_keys *keys; /* by account - opt.first; NULL without the cache */
    struct hist login_h, lat_h;
    struct wstats s;
    int64_t inflight;  /* chat: messages sent by this worker's clients and not yet received */
    struct presult pr; /* presence */
    uint64_t now;      /* time of the last read, for latencies */
    uint64_t next_check;
    char *notes[MAX_NOTES];
    unsigned notes_n, notes_dropped;
};

void worker_setup(struct worker *w);
void *worker_main(void *arg);
void worker_cleanup(struct worker *w);
void worker_note(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shared by client.c and presence.c. */
void out_str(struct client *c, const char *s);
void flush_dirty(struct worker *w);
void loop_once(struct worker *w, int timeout_ms);
int ms_until(uint64_t now, uint64_t t, int cap);
void login_phase(struct worker *w);
void close_phase(struct worker *w);
void reset_clients(struct worker *w);
bool seq_check(struct client *c, uint32_t s);

/* ---------------------------------------------------------------- presence (presence.c) */

/* After the login: subscriptions (made when missing), the contacts' initial presence, then the
 * hub's, timed. Sets w->pr.setup_failed when the measured phase cannot run. */
void presence_setup(struct worker *w);
/* The measured phase: the hub's updates, checked at every contact. */
void presence_phase(struct worker *w);
void presence_cleanup(void);
/* Stanzas for the presence workload's clients; pres_on_iq returns false for iqs it leaves to
 * the generic handler. */
void pres_on_presence(struct client *c, const struct xs_item *it);
bool pres_on_iq(struct client *c, const struct xs_item *it);

/* ---------------------------------------------------------------- echo server (echo.c) */

int echo_server_main(const char *host, int port, const char *domain, double duration);

#endif
