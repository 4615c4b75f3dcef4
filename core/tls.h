/*
 * tls.h — server-side TLS with GnuTLS: credentials for every virtual host, sessions for
 * connections, channel-binding data for SASL -PLUS, and reload on SIGHUP.
 *
 * All virtual hosts' certificates live in one credentials object; GnuTLS picks the one whose name
 * matches the client's SNI (the first one when there is no SNI). Credentials are reference
 * counted: a reload builds a new set and new connections use it, while existing sessions keep
 * the set they started with until they end.
 */
#ifndef STANZAD_TLS_H
#define STANZAD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <gnutls/gnutls.h>

struct config;
struct tls_creds;

/* Loads every host's certificate and key and the priority string. 0, or -1 with err. */
int tls_init(const struct config *cfg, char *err, size_t errlen);
/* Rebuilds the credentials from cfg (SIGHUP). On failure the old ones stay. */
int tls_reload(const struct config *cfg, char *err, size_t errlen);
void tls_shutdown(void);

/* A server session on fd (non-blocking), with a reference to the current credentials that is
 * returned by tls_session_free. NULL on failure. */
gnutls_session_t tls_session_new(int fd, struct tls_creds **creds_r);
void tls_session_free(gnutls_session_t *s, struct tls_creds **creds);

/*
 * Channel binding for SCRAM-…-PLUS on an established session: "tls-exporter" (RFC 9266) under
 * TLS 1.3, "tls-unique" (RFC 5929) under TLS 1.2. Returns the name and fills data (malloc'd, to
 * free) or returns NULL when none is available.
 */
const char *tls_channel_binding(gnutls_session_t s, unsigned char **data_r, size_t *len_r);

#endif
