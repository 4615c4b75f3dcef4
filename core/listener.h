/*
 * listener.h — listening sockets. Every configured listener gets one socket per worker with
 * SO_REUSEPORT, so the kernel spreads new connections over the workers and no acceptor thread or
 * hand-off is needed; each accepted connection stays on the worker that accepted it.
 */
#ifndef STANZAD_LISTENER_H
#define STANZAD_LISTENER_H

#include <stddef.h>

struct config;
struct worker;

/* Creates and binds all sockets (before workers start, before dropping root). */
int listeners_open(const struct config *cfg, int n_workers, char *err, size_t errlen);
/* Registers worker w's sockets with its loop (a workers_on_start hook). */
void listeners_attach(struct worker *w);
void listeners_close(void);

#endif
