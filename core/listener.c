/*
 * listener.c — bind, listen and accept.
 *
 * Sockets are bound before the workers start, so a port that is taken stops start-up with a
 * clear message. Accepting happens on each worker's own socket; a new connection is made
 * non-blocking, gets TCP_NODELAY (stanzas are small and latency matters more than packet count;
 * output is already coalesced per loop iteration) and is handed to the c2s layer together with
 * its per-address admission verdict.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "c2s.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "worker.h"

struct lsock {
    struct io io;
    int fd;
    const struct config_listener *cl;
};

static struct lsock *socks; /* [listener * n_workers + worker] */
static size_t n_listeners;
static int n_per;

static int open_one(const struct config_listener *cl, bool probe, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    char port[16];
    snprintf(port, sizeof port, "%d", cl->port);
    const char *host = strcmp(cl->address, "*") == 0 ? NULL : cl->address;
    if (!host)
        hints.ai_family = AF_INET6;
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s:%d: %s", cl->address, cl->port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s:%d: socket: %s", cl->address, cl->port, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (probe) {
        /* SO_REUSEPORT would let a second stanzad of the same user share the port silently,
         * each getting half of the clients. Bind once without it first: if anyone listens
         * there, this fails like any bind to a used port. */
        if (!host)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        int rc2 = bind(fd, ai->ai_addr, ai->ai_addrlen);
        int e = errno;
        close(fd);
        freeaddrinfo(ai);
        if (rc2 < 0) {
            snprintf(err, errlen, "listen %s:%d: %s", cl->address, cl->port, strerror(e));
            return -1;
        }
        return open_one(cl, false, err, errlen);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (!host)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errlen, "listen %s:%d: %s", cl->address, cl->port, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int listeners_open(const struct config *cfg, int n_workers, char *err, size_t errlen)
{
    n_listeners = cfg->n_listeners;
    n_per = n_workers;
    socks = xcalloc(n_listeners * (size_t)n_workers, sizeof *socks);
    for (size_t i = 0; i < n_listeners * (size_t)n_workers; i++)
        socks[i].fd = -1;
    for (size_t l = 0; l < n_listeners; l++)
        for (int w = 0; w < n_workers; w++) {
            struct lsock *ls = &socks[l * (size_t)n_workers + (size_t)w];
            ls->cl = &cfg->listeners[l];
            ls->fd = open_one(ls->cl, w == 0, err, errlen);
            if (ls->fd < 0) {
                listeners_close();
                return -1;
            }
        }
    return 0;
}

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    } else {
        snprintf(out, cap, "unknown");
    }
}

static void on_accept(struct io *io, uint32_t events)
{
    struct lsock *ls = io->ud;
    struct worker *w = worker_self();
    for (int i = 0; i < 64; i++) {
        if (worker_stopping(w))
            return;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                log_warn(0, "accept: %s (raise the open-files limit)", strerror(errno));
                return;
            }
            log_warn(0, "accept: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char peer[48];
        peer_text(&ss, peer, sizeof peer);
        c2s_accept(w, fd, peer, ls->cl);
    }
}

void listeners_attach(struct worker *w)
{
    int wi = worker_index(w);
    for (size_t l = 0; l < n_listeners; l++) {
        struct lsock *ls = &socks[l * (size_t)n_per + (size_t)wi];
        worker_io_add(w, &ls->io, ls->fd, EPOLLIN, on_accept, ls);
    }
}

void listeners_close(void)
{
    for (size_t i = 0; i < n_listeners * (size_t)n_per; i++)
        if (socks[i].fd >= 0)
            close(socks[i].fd);
    free(socks);
    socks = NULL;
}
