/*
 * c2s.h — client-to-server streams: negotiation (stream header, STARTTLS, SASL, resource
 * binding), then stanzas in and out of a bound session.
 */
#ifndef STANZAD_C2S_H
#define STANZAD_C2S_H

#include <stdint.h>

#include "stanza.h"

struct worker;
struct config_listener;
struct c2s;

/* A new connection accepted on worker w. */
void c2s_accept(struct worker *w, int fd, const char *peer, const struct config_listener *l);
/* Writes st to the client (on the stream's worker); consumes st. */
void c2s_send(struct c2s *s, struct stanza *st);
/* Ends the stream with a stream error (on the stream's worker). */
void c2s_stream_error(struct c2s *s, enum stream_error cond, const char *text);
/* Per-worker state: a workers_on_start hook, and its release after the workers stopped. */
void c2s_worker_init(struct worker *w);
void c2s_worker_done(struct worker *w);
/* A module deferred one of this stream's stanzas: later ones wait until the release. */
void c2s_hold(struct c2s *c);
void c2s_release(struct c2s *c);
/* Monotonic ms of the last input from the client. */
uint64_t c2s_last_input(const struct c2s *c);
/* The client's IP address as text; whether the stream is encrypted. */
const char *c2s_peer(const struct c2s *c);
bool c2s_secure(const struct c2s *c);
/* Ends every stream of worker w with <system-shutdown/> (runs on w). */
void c2s_shutdown_worker(struct worker *w);

#endif
