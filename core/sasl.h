/*
 * sasl.h — SASL for client streams through Cyrus libsasl2.
 *
 * libsasl2 runs the mechanisms (SCRAM-SHA-1, SCRAM-SHA-256, their -PLUS variants, PLAIN); we
 * give it credentials. Because a database lookup must not block the event loop, the connection
 * first asks sasl_peek_authcid() which account the client's initial response names, fetches that
 * account's verifiers asynchronously, hands them over with sasl_conn_set_credentials(), and only
 * then calls sasl_conn_start(). Inside libsasl2, an in-process auxprop plugin serves the SCRAM
 * plugin the RFC 5803 authPassword values of those verifiers, and a checkpass callback verifies
 * PLAIN against them. An unknown account gets a decoy verifier, so SCRAM fails at the proof, the
 * same way as a wrong password (no account enumeration by timing or by error).
 */
#ifndef STANZAD_SASL_H
#define STANZAD_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "scram.h"

struct sasl_conn;

enum sasl_result {
    SASLR_OK = 0,       /* authenticated; *out may hold additional data for <success/> */
    SASLR_CONTINUE = 1, /* send *out as a <challenge/> */
    SASLR_FAIL = 2,     /* send <failure/> with *failure_r */
};

/* Once per process, before workers start. service is "xmpp". Returns 0 or -1 with err. */
int sasl_global_init(char *err, size_t errlen);
void sasl_global_done(void);

/*
 * A SASL context for one stream. host is the virtual host (the SASL realm and the domain of the
 * resulting JID). tls: the stream is encrypted (PLAIN is offered only then). cb_name/cb_data:
 * channel binding ("tls-unique" under TLS 1.2, "tls-exporter" under TLS 1.3) or NULL.
 */
struct sasl_conn *sasl_conn_new(const char *host, bool tls, const char *cb_name,
                                const unsigned char *cb_data, size_t cb_len);
void sasl_conn_free(struct sasl_conn **sc);

/* Mechanisms to offer, strongest first; NULL-terminated array owned by sc. */
const char *const *sasl_conn_mechanisms(struct sasl_conn *sc);
/* The channel-binding type offered (for XEP-0440), or NULL. */
const char *sasl_conn_cb_name(const struct sasl_conn *sc);

/*
 * The authentication identity named in a mechanism's initial response, prepared as a localpart
 * (SCRAM: the n= attribute with =2C/=3D decoded; PLAIN: authcid). Returns a malloc'd string, or
 * NULL when the response is malformed (→ <failure><malformed-request/>) or the mechanism is not
 * offered (→ <invalid-mechanism/>); *failure_r then holds that condition name.
 */
char *sasl_peek_authcid(struct sasl_conn *sc, const char *mech, const unsigned char *in,
                        size_t inlen, const char **failure_r);

/* Verifiers of the account (any of SCRAM-SHA-1/-256), or n == 0 for an unknown account. Copied.
 * They apply to the name returned by the last sasl_peek_authcid() only (which forgets earlier
 * ones); an exchange naming anyone else meets a decoy, as for an unknown account. */
void sasl_conn_set_credentials(struct sasl_conn *sc, const struct scram_verifier *v, size_t n);

/*
 * Starts / steps the exchange. in is the decoded client data. On SASLR_CONTINUE/OK, *out and
 * *outlen are the server data (borrowed until the next call). On SASLR_FAIL, *failure_r is the
 * RFC 6120 §6.5 condition ("not-authorized", "malformed-request", "invalid-mechanism",
 * "encryption-required", "temporary-auth-failure", ...).
 * in == NULL at start means "no initial response" (SASLR_CONTINUE with an empty challenge; the
 * client's first message then goes to sasl_conn_step); a non-NULL in with inlen == 0 is an empty
 * response. After SASLR_OK or SASLR_FAIL the exchange is over: sasl_conn_step() fails, and
 * sasl_conn_start() may begin a new one on the same context.
 */
enum sasl_result sasl_conn_start(struct sasl_conn *sc, const char *mech, const unsigned char *in,
                                 size_t inlen, const unsigned char **out, size_t *outlen,
                                 const char **failure_r);
enum sasl_result sasl_conn_step(struct sasl_conn *sc, const unsigned char *in, size_t inlen,
                                const unsigned char **out, size_t *outlen, const char **failure_r);
/* After SASLR_FAIL: did the attempt fail on channel-binding negotiation (a binding type not
 * offered, or the 'y' flag while -PLUS is offered) rather than on credentials? Such failures
 * are not password guesses and are not counted against the client's address. */
bool sasl_conn_binding_failure(const struct sasl_conn *sc);
/* The authenticated localpart after SASLR_OK (prepared), borrowed from sc. */
const char *sasl_conn_username(const struct sasl_conn *sc);

#endif
