/*
 * mod_time — Entity Time (XEP-0202) of the server.
 *
 * It answers urn:xmpp:time queries to a served host with the server's offset from UTC (<tzo>,
 * "+hh:mm" or "-hh:mm") and the current time in UTC (<utc>, XEP-0082 DateTime with
 * milliseconds and 'Z'). The wall clock is read at each answer; the time zone is loaded once in
 * load() (tzset), because the first conversion to local time may otherwise read /etc/localtime
 * from a worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <stanzad/stanzad.h>

#define NS_TIME "urn:xmpp:time"

static sd_verdict time_answer(sd_hctx *h, sd_stanza *st, void *ud)
{
    struct timespec now;
    struct tm utc, loc;
    clock_gettime(CLOCK_REALTIME, &now);
    if (gmtime_r(&now.tv_sec, &utc) == NULL || localtime_r(&now.tv_sec, &loc) == NULL)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);

    char utc_s[96], tzo_s[32]; /* room for any int, so snprintf never truncates */
    snprintf(utc_s, sizeof(utc_s), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
             (int)(now.tv_nsec / 1000000));
    long off = loc.tm_gmtoff; /* seconds east of UTC */
    long aoff = labs(off);
    snprintf(tzo_s, sizeof(tzo_s), "%c%02ld:%02ld", off < 0 ? '-' : '+', (aoff / 3600) % 100,
             (aoff / 60) % 60);

    sd_stanza *reply = sd_stanza_result(st);
    if (reply == NULL)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    sd_el *t = sd_el_add(reply, sd_stanza_el(reply), NS_TIME, "time");
    sd_el_add_text_child(reply, t, NULL, "tzo", tzo_s);
    sd_el_add_text_child(reply, t, NULL, "utc", utc_s);
    sd_reply(h, &reply);
    return SD_DONE;
}

static int time_load(sd_module *m, const char **error_r)
{
    tzset();
    if (sd_add_feature(m, SD_DISCO_SERVER, NS_TIME) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS_TIME, "time", 0, time_answer, NULL) < 0) {
        *error_r = "cannot register the time handler";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "time", .version = SD_VERSION_STRING, .load = time_load);
