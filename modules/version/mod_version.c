/*
 * mod_version — Software Version (XEP-0092) of the server.
 *
 * It answers jabber:iq:version queries to a served host with the software's name and, as the
 * operator chooses per host, its release and the operating system. What a server reveals about
 * itself helps an attacker pick exploits (XEP-0092 §6), so the operating system is off by
 * default and the release can be hidden; a hidden field is left out of the answer rather than
 * faked. The operating system is read once in load() (uname(2)), so answering never makes a
 * system call.
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/utsname.h>

#include <stanzad/stanzad.h>

#define NS_VERSION "jabber:iq:version"

struct version_conf {
    const char *name;
    int show_version;
    int show_os;
};

static const sd_setting version_settings[] = {
    {"name", SD_SETTING_STRING, offsetof(struct version_conf, name), "stanzad", 0, 0, NULL,
     "the software name given in answers"},
    {"show_version", SD_SETTING_BOOL, offsetof(struct version_conf, show_version), "true", 0, 0,
     NULL, "include the server's release"},
    {"show_os", SD_SETTING_BOOL, offsetof(struct version_conf, show_os), "false", 0, 0, NULL,
     "include the operating system (kernel name and release)"},
    SD_SETTINGS_END,
};

static sd_module *version_mod;
static char version_os[2 * sizeof(((struct utsname *)0)->sysname) + 2]; /* set in load() */

static sd_verdict version_answer(sd_hctx *h, sd_stanza *st, void *ud)
{
    const struct version_conf *c = sd_module_config(version_mod, sd_hctx_host(h));
    sd_stanza *reply = sd_stanza_result(st);
    if (c == NULL || reply == NULL) {
        sd_stanza_free(&reply);
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    }
    sd_el *q = sd_el_add(reply, sd_stanza_el(reply), NS_VERSION, "query");
    sd_el_add_text_child(reply, q, NULL, "name", c->name);
    if (c->show_version)
        sd_el_add_text_child(reply, q, NULL, "version", sd_server_version());
    if (c->show_os && version_os[0] != '\0')
        sd_el_add_text_child(reply, q, NULL, "os", version_os);
    sd_reply(h, &reply);
    return SD_DONE;
}

static int version_load(sd_module *m, const char **error_r)
{
    version_mod = m;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(version_os, sizeof(version_os), "%s %s", u.sysname, u.release);
    if (sd_add_feature(m, SD_DISCO_SERVER, NS_VERSION) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS_VERSION, "query", 0, version_answer, NULL) < 0) {
        *error_r = "cannot register the version handler";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "version", .version = SD_VERSION_STRING, .settings = version_settings,
          .config_size = sizeof(struct version_conf), .load = version_load);
