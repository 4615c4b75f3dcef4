/*
 * mod_test_failload — a test-only module whose load() registers one thing of every kind and
 * then fails (setting fail = true, the default), to show that the core removes everything a
 * module registered when its load() fails. With fail = false it loads, and the same
 * registrations are visible: the control for the test.
 *
 * What it registers, all in urn:stanzad:test:failload so a leftover is easy to spot: an iq
 * handler for <probe/> to the host (answers <probe loaded='1'/>), a disco feature, a
 * stream-features event that adds <leftover/>, a SD_PRE message handler that adds <leftover/>
 * to messages, and a prepared statement.
 */
#include <stddef.h>

#include <stanzad/stanzad.h>

#define NS "urn:stanzad:test:failload"

struct fl_conf {
    int fail;
};

static const sd_setting fl_settings[] = {
    {"fail", SD_SETTING_BOOL, offsetof(struct fl_conf, fail), "true", 0, 0, NULL,
     "fail in load() after registering"},
    SD_SETTINGS_END,
};

static sd_verdict fl_probe(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_stanza *reply = sd_stanza_result(st);
    sd_el_set_attr(reply, sd_el_add(reply, sd_stanza_el(reply), NS, "probe"), "loaded", "1");
    sd_reply(h, &reply);
    return SD_DONE;
}

static void fl_features(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_el_add(sd_event_stanza(ev), sd_event_el(ev), NS, "leftover");
}

static sd_verdict fl_message(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el_add(st, sd_stanza_el(st), NS, "leftover");
    return SD_PASS;
}

static int fl_load(sd_module *m, const char **error_r)
{
    const struct fl_conf *c = sd_module_config(m, NULL);
    if (sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS, "probe", 0, fl_probe, NULL) < 0 ||
        sd_add_feature(m, SD_DISCO_SERVER, NS) < 0 ||
        sd_hook_event(m, SD_EV_STREAM_FEATURES, 0, fl_features, NULL) < 0 ||
        sd_hook_message(m, SD_TO_BARE | SD_TO_FULL | SD_TO_SELF, SD_PRE, 0, fl_message, NULL) < 0 ||
        sd_db_prepare(m, "SELECT 1 WHERE $1::text IS NOT NULL", 1) == NULL) {
        *error_r = "a registration failed";
        return -1;
    }
    if (c == NULL || c->fail) {
        *error_r = "deliberate failure after registering (test_failload)";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "test_failload", .version = "test", .settings = fl_settings,
          .config_size = sizeof(struct fl_conf), .load = fl_load);
