/*
 * tls.c — GnuTLS credentials and sessions for the server side of client streams.
 *
 * One gnutls_certificate_credentials_t holds every virtual host's key pair; GnuTLS selects the
 * pair by SNI. The current credentials sit behind a pointer that only the main thread changes
 * (start-up, SIGHUP), under a mutex that new sessions take briefly; each session holds a
 * reference so a reload never frees credentials in use. The priority string comes from the
 * configuration (TLS 1.2 and 1.3 by default).
 */
#include "tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mem.h"

struct tls_creds {
    atomic_int refs;
    gnutls_certificate_credentials_t x509;
    gnutls_priority_t priority;
};

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_creds *current_creds;

static void creds_unref(struct tls_creds **c)
{
    if (*c && atomic_fetch_sub(&(*c)->refs, 1) == 1) {
        gnutls_certificate_free_credentials((*c)->x509);
        gnutls_priority_deinit((*c)->priority);
        free(*c);
    }
    *c = NULL;
}

static struct tls_creds *creds_build(const struct config *cfg, char *err, size_t errlen)
{
    struct tls_creds *c = xcalloc(1, sizeof *c);
    atomic_init(&c->refs, 1);
    int rc = gnutls_certificate_allocate_credentials(&c->x509);
    if (rc < 0) {
        snprintf(err, errlen, "TLS credentials: %s", gnutls_strerror(rc));
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        const struct config_host *h = &cfg->hosts[i];
        rc = gnutls_certificate_set_x509_key_file2(c->x509, h->certificate, h->key,
                                                   GNUTLS_X509_FMT_PEM, NULL, 0);
        if (rc < 0) {
            snprintf(err, errlen, "host %s: cannot load certificate %s / key %s: %s", h->name,
                     h->certificate, h->key, gnutls_strerror(rc));
            gnutls_certificate_free_credentials(c->x509);
            free(c);
            return NULL;
        }
    }
    const char *epos = NULL;
    rc = gnutls_priority_init(&c->priority, cfg->tls_priority, &epos);
    if (rc < 0) {
        snprintf(err, errlen, "tls.priority: %s at \"%s\"", gnutls_strerror(rc), epos ? epos : "");
        gnutls_certificate_free_credentials(c->x509);
        free(c);
        return NULL;
    }
    return c;
}

int tls_init(const struct config *cfg, char *err, size_t errlen)
{
    int rc = gnutls_global_init();
    if (rc < 0) {
        snprintf(err, errlen, "gnutls_global_init: %s", gnutls_strerror(rc));
        return -1;
    }
    struct tls_creds *c = creds_build(cfg, err, errlen);
    if (!c)
        return -1;
    current_creds = c;
    return 0;
}

int tls_reload(const struct config *cfg, char *err, size_t errlen)
{
    struct tls_creds *c = creds_build(cfg, err, errlen);
    if (!c)
        return -1;
    pthread_mutex_lock(&creds_lock);
    struct tls_creds *old = current_creds;
    current_creds = c;
    pthread_mutex_unlock(&creds_lock);
    creds_unref(&old);
    return 0;
}

void tls_shutdown(void)
{
    creds_unref(&current_creds);
    gnutls_global_deinit();
}

gnutls_session_t tls_session_new(int fd, struct tls_creds **creds_r)
{
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
        return NULL;
    pthread_mutex_lock(&creds_lock);
    struct tls_creds *c = current_creds;
    atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&creds_lock);
    if (gnutls_priority_set(s, c->priority) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->x509) < 0) {
        gnutls_deinit(s);
        creds_unref(&c);
        return NULL;
    }
    gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 0);
    *creds_r = c;
    return s;
}

void tls_session_free(gnutls_session_t *s, struct tls_creds **creds)
{
    if (*s) {
        gnutls_deinit(*s);
        *s = NULL;
    }
    creds_unref(creds);
}

const char *tls_channel_binding(gnutls_session_t s, unsigned char **data_r, size_t *len_r)
{
    gnutls_datum_t d = {NULL, 0};
    const char *name;
    if (gnutls_protocol_get_version(s) == GNUTLS_TLS1_3) {
        if (gnutls_session_channel_binding(s, GNUTLS_CB_TLS_EXPORTER, &d) < 0)
            return NULL;
        name = "tls-exporter";
    } else {
        if (gnutls_session_channel_binding(s, GNUTLS_CB_TLS_UNIQUE, &d) < 0)
            return NULL;
        name = "tls-unique";
    }
    *data_r = xmalloc(d.size ? d.size : 1);
    memcpy(*data_r, d.data, d.size);
    *len_r = d.size;
    gnutls_free(d.data);
    return name;
}
