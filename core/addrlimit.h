/*
 * addrlimit.h — per-address counters: open connections and recent authentication failures.
 * Touched at accept, close and failed logins only (never per stanza), so a few mutex-protected
 * shards are plenty.
 */
#ifndef STANZAD_ADDRLIMIT_H
#define STANZAD_ADDRLIMIT_H

#include <stdbool.h>
#include <stdint.h>

void addrlimit_init(void);
void addrlimit_destroy(void);
/* Counts a new connection from ip; false (and nothing counted) when max (> 0) is reached. */
bool addrlimit_conn_acquire(const char *ip, int max);
void addrlimit_conn_release(const char *ip);
/* Failures from ip within the last minute (now in monotonic ms). */
int addrlimit_auth_failures(const char *ip, uint64_t now);
/* Records one failure; returns the count within the last minute including it. */
int addrlimit_auth_failed(const char *ip, uint64_t now);

#endif
