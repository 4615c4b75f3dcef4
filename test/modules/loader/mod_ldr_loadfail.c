/*
 * mod_ldr_loadfail — loader test: load() registers an iq handler and then fails. Start-up must
 * stop with "module ldr_loadfail: load failed: ..." before any port is bound.
 */
#include <stanzad/stanzad.h>

static sd_verdict loadfail_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    return sd_reply_result(h, st);
}

static int loadfail_load(sd_module *m, const char **error_r)
{
    sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, "urn:stanzad:test:ldr-loadfail", "query", 0, loadfail_iq,
               NULL);
    *error_r = "deliberate failure after registering an iq handler";
    return -1;
}

SD_MODULE(.name = "ldr_loadfail", .version = "test", .load = loadfail_load);
