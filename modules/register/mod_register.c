/*
 * mod_register — In-Band Registration (XEP-0077) with a data form (XEP-0004).
 *
 * Before authentication (SD_TO_PREAUTH), on the stream to a served host:
 *   get — <instructions/>, the legacy fields and a jabber:x:data form (FORM_TYPE
 *         jabber:iq:register): username, password, email, the operator's extra `fields`, and in
 *         invite mode the field `invite`. The legacy fields are left out (XEP-0077 §6, the
 *         "x:data form + iq:register instructions" combination) when the form has a required
 *         field that no legacy element stands for (an invitation token, a required "x-age"), so a
 *         legacy-only client is not led to submit something that must fail.
 *   set — the submission (the form when there is one, else the legacy elements: §7) is checked
 *         field by field; the first problem is answered with <not-acceptable/> and a text
 *         "<field>: <what is wrong>". Then the per-address limits (<policy-violation/>), the
 *         invitation (claimed in register_invites_used, single use across workers and restarts),
 *         and sd_account_create(): <conflict/> for a taken username, else an empty result. The
 *         client then authenticates on the same stream (§3.1). The <query/> is handed to
 *         SD_EV_ACCOUNT_CREATED handlers (a profile module keeps nick, name, email...) without its
 *         password and invitation token.
 * After authentication (to the host or to no one):
 *   get — <registered/> and <username/> (§3.1).
 *   set — <remove/> alone cancels the account (§3.2): the result is sent first, then the account
 *         is deleted; the core then ends every session of the account with <not-authorized/>.
 *         <username/> + <password/> (or a form of FORM_TYPE jabber:iq:register:changepassword or
 *         jabber:iq:register) changes the password (§3.3) under the same strength rule. Nothing
 *         else can be changed here: profile data belongs to vCard, so another field is refused
 *         with <not-acceptable/> naming it.
 *
 * Policy: `registration` open / closed / invite. Closed answers <service-unavailable/>, what
 * §3.1 prescribes for a host without in-band registration (password change and cancellation
 * stay available). Without TLS, registration and password changes are refused with
 * <not-authorized/> ("does not consider the channel safe enough", §3.3) unless
 * `allow_insecure`. The stream feature <register xmlns='http://jabber.org/features/iq-register'/>
 * is offered to unauthenticated streams only where a registration could succeed.
 *
 * Per-address limits: a module-wide table under one mutex, keyed by host and client address
 * (IPv6 addresses by their /64, a v4-mapped address as IPv4), holding the times of recent
 * successful registrations and the attempts in flight. It is touched once or twice per
 * registration attempt, never per stanza, so one short lock is cheaper and simpler than a round
 * trip to a home worker, and it holds wherever a client reconnects: every worker sees the same
 * counts. An attempt reserves a slot before any database work; a success turns it into a time
 * stamp, a failure (invalid, taken) gives it back, so only accounts actually created count.
 *
 * Secrets: passwords and invitation tokens are never logged, never echoed in an error reply
 * (error replies carry no <query/>, as §3.3 asks for password changes), never handed to other
 * modules, and the module's own copies are wiped before they are freed. The table of used
 * invitations stores SHA-256 digests of the tokens, not the tokens.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#define NS_REGISTER   "jabber:iq:register"
#define NS_FEATURE    "http://jabber.org/features/iq-register"
#define NS_DATA       "jabber:x:data"
#define FORM_CHANGEPW "jabber:iq:register:changepassword"

#define MAX_PASSWORD_BYTES 1024

enum { MODE_OPEN = 0, MODE_CLOSED = 1, MODE_INVITE = 2 };
static const char *const reg_modes[] = {"open", "closed", "invite", NULL};

struct reg_conf {
    int mode;
    const char *const *invites;
    int allow_insecure;
    int64_t max_per_address;
    int64_t window_ms;
    int64_t min_interval_ms;
    int64_t pw_min_length;
    int64_t pw_min_classes;
    int pw_reject_username;
    const char *const *fields;
    const char *const *required_fields;
    int64_t max_field_length;
    const char *instructions;
    int allow_password_change;
    int allow_cancel;
};

#define DAY_MS (INT64_C(24) * 3600 * 1000)

static const sd_setting reg_settings[] = {
    {"registration", SD_SETTING_ENUM, offsetof(struct reg_conf, mode), "open", 0, 0, reg_modes,
     "who may create accounts in-band: anyone (open), nobody (closed), or holders of an "
     "invitation token (invite)"},
    {"invites", SD_SETTING_STRING_LIST, offsetof(struct reg_conf, invites), NULL, 0, 0, NULL,
     "invitation tokens for invite mode; each creates one account, then is used up"},
    {"allow_insecure", SD_SETTING_BOOL, offsetof(struct reg_conf, allow_insecure), "false", 0, 0,
     NULL, "allow registration and password changes on streams without TLS"},
    {"max_per_address", SD_SETTING_INT, offsetof(struct reg_conf, max_per_address), "5", 0, 1000,
     NULL, "accounts one client address (IPv6: one /64) may create per window; 0: no limit"},
    {"window", SD_SETTING_DURATION, offsetof(struct reg_conf, window_ms), "1h", 1000, 30 * DAY_MS,
     NULL, "the period max_per_address counts over"},
    {"min_interval", SD_SETTING_DURATION, offsetof(struct reg_conf, min_interval_ms), "60s", 0,
     DAY_MS, NULL, "minimum time between two registrations from one address; 0: none"},
    {"password_min_length", SD_SETTING_INT, offsetof(struct reg_conf, pw_min_length), "8", 1,
     MAX_PASSWORD_BYTES, NULL, "shortest password accepted, in characters"},
    {"password_min_classes", SD_SETTING_INT, offsetof(struct reg_conf, pw_min_classes), "2", 0, 4,
     NULL,
     "kinds of characters a password must mix: lower-case letters, upper-case letters, digits, "
     "others"},
    {"password_reject_username", SD_SETTING_BOOL, offsetof(struct reg_conf, pw_reject_username),
     "true", 0, 0, NULL, "refuse a password that contains the username (of 3 characters or more)"},
    {"fields", SD_SETTING_STRING_LIST, offsetof(struct reg_conf, fields), NULL, 0, 0, NULL,
     "extra form fields, \"var=Label\" each, e.g. \"nick=Nickname\""},
    {"required_fields", SD_SETTING_STRING_LIST, offsetof(struct reg_conf, required_fields), NULL, 0,
     0, NULL, "fields that must be filled in: vars of `fields`, and/or \"email\""},
    {"max_field_length", SD_SETTING_INT, offsetof(struct reg_conf, max_field_length), "256", 16,
     65536, NULL, "longest value accepted in email and the extra fields, in bytes"},
    {"instructions", SD_SETTING_STRING, offsetof(struct reg_conf, instructions),
     "Choose a username and a password for your new account.", 0, 0, NULL,
     "the <instructions/> of the registration form"},
    {"allow_password_change", SD_SETTING_BOOL, offsetof(struct reg_conf, allow_password_change),
     "true", 0, 0, NULL, "let users change their password in-band"},
    {"allow_cancel", SD_SETTING_BOOL, offsetof(struct reg_conf, allow_cancel), "true", 0, 0, NULL,
     "let users delete their account in-band"},
    SD_SETTINGS_END,
};

/* Used invitations. Not keyed by the account: a token stays used after the account it created
 * is cancelled; the link to that account is cleared with it (ON DELETE SET NULL). */
static const sd_migration reg_migrations[] = {
    {1, "CREATE TABLE register_invites_used ("
        "  host text NOT NULL,"
        "  token_sha256 text NOT NULL,"
        "  account_id bigint REFERENCES accounts (id) ON DELETE SET NULL,"
        "  used_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (host, token_sha256))"},
    SD_MIGRATIONS_END,
};

#define TOKEN_DIGEST "encode(sha256(convert_to($2, 'UTF8')), 'hex')"

/* ---- per-host configuration, parsed once in load() and read-only afterwards ---- */

struct extra_field {
    char *var;
    char *label;
    int required;
};

struct reg_host {
    const char *name;
    const struct reg_conf *c; /* NULL where the module is not enabled */
    struct extra_field *extras;
    size_t n_extras;
    int email_required;
    int legacy_ok; /* every required field has a legacy element */
    char *pw_rule; /* the strength rule in words, for the form */
};

static sd_module *reg_mod;
static struct reg_host *reg_hosts;
static unsigned reg_nhosts;
static sd_stmt *stmt_claim, *stmt_bind, *stmt_release;

/* Legacy jabber:iq:register elements that carry data (XEP-0077 §14; misc, text, key are
 * obsolete). An extra field named like one of them can be asked for in legacy form too. */
static const char *const legacy_names[] = {"username", "nick",  "password", "name", "first",
                                           "last",     "email", "address",  "city", "state",
                                           "zip",      "phone", "url",      "date", NULL};
/* Vars the module itself defines: not usable for extra fields. */
static const char *const reserved_vars[] = {"username",     "password",  "email", "invite",
                                            "old_password", "FORM_TYPE", NULL};

static int in_list(const char *const *list, const char *s)
{
    for (; list != NULL && *list != NULL; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static const struct reg_host *host_of(const char *host)
{
    for (unsigned i = 0; host != NULL && i < reg_nhosts; i++)
        if (reg_hosts[i].c != NULL && strcmp(reg_hosts[i].name, host) == 0)
            return &reg_hosts[i];
    return NULL;
}

/* ---- small checks ---- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int lower_ascii(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* ASCII case-insensitive substring test. */
static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               lower_ascii((unsigned char)hay[i]) == lower_ascii((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

/* NULL when the password meets the host's rule, else the reason, "password: ...". */
static const char *password_problem(const struct reg_conf *c, const char *pw, const char *username,
                                    char *buf, size_t n)
{
    if (pw == NULL || pw[0] == '\0')
        return "password: required";
    if (strlen(pw) > MAX_PASSWORD_BYTES)
        return "password: too long (at most 1024 bytes)";
    if ((int64_t)utf8_chars(pw) < c->pw_min_length) {
        snprintf(buf, n, "password: at least %" PRId64 " characters are required",
                 c->pw_min_length);
        return buf;
    }
    int lower = 0, upper = 0, digit = 0, other = 0;
    for (const unsigned char *p = (const unsigned char *)pw; *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            lower = 1;
        else if (*p >= 'A' && *p <= 'Z')
            upper = 1;
        else if (*p >= '0' && *p <= '9')
            digit = 1;
        else
            other = 1;
    }
    if (lower + upper + digit + other < c->pw_min_classes) {
        snprintf(buf, n,
                 "password: use at least %" PRId64 " of these: lower-case letters, upper-case "
                 "letters, digits, other characters",
                 c->pw_min_classes);
        return buf;
    }
    if (c->pw_reject_username && username != NULL && utf8_chars(username) >= 3 &&
        contains_ci(pw, username))
        return "password: must not contain the username";
    return NULL;
}

/* local@domain.tld: one '@'; a local part of 1..64 printable characters without spaces and
 * ()<>[]\,;:" and without leading, trailing or double dots; a domain of at least two labels of
 * letters, digits, hyphens (not first or last) or non-ASCII characters, the last not all
 * digits; 254 bytes in all. */
static int email_ok(const char *e)
{
    size_t len = strlen(e);
    const char *at = strchr(e, '@');
    if (len > 254 || at == NULL || strchr(at + 1, '@') != NULL)
        return 0;
    size_t ll = (size_t)(at - e);
    if (ll == 0 || ll > 64 || e[0] == '.' || at[-1] == '.')
        return 0;
    for (const char *p = e; p < at; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f || strchr("()<>[]\\,;:\"", ch) != NULL ||
            (ch == '.' && p[1] == '.'))
            return 0;
    }
    const char *d = at + 1;
    int labels = 0, all_digits = 0;
    for (;;) {
        const char *end = strchr(d, '.');
        size_t n = end != NULL ? (size_t)(end - d) : strlen(d);
        if (n == 0 || n > 63 || d[0] == '-' || d[n - 1] == '-')
            return 0;
        all_digits = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)d[i];
            int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch >= 0x80;
            int num = ch >= '0' && ch <= '9';
            if (!alpha && !num && ch != '-')
                return 0;
            if (!num)
                all_digits = 0;
        }
        labels++;
        if (end == NULL)
            break;
        d = end + 1;
    }
    return labels >= 2 && !all_digits;
}

/* Is tok one of the configured tokens? Every token is compared in full, so the time taken does
 * not tell how much of a guess was right. */
static int token_known(const char *const *list, const char *tok)
{
    int found = 0;
    size_t tl = strlen(tok);
    for (; list != NULL && *list != NULL; list++) {
        const char *t = *list;
        if (strlen(t) != tl || tl == 0)
            continue;
        unsigned char diff = 0;
        for (size_t i = 0; i < tl; i++)
            diff |= (unsigned char)(t[i] ^ tok[i]);
        found |= diff == 0;
    }
    return found;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* ---- per-address limits ---- */

#define RL_BUCKETS 256

struct rl_entry {
    struct rl_entry *next;
    char *key; /* host, space, address */
    uint64_t window_ms, min_ms;
    uint64_t last_ok;  /* when the last registration succeeded; 0: never */
    unsigned inflight; /* attempts between reservation and result */
    unsigned n, cap;   /* stamps within the window, oldest first */
    uint64_t stamps[];
};

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_entry *rl_table[RL_BUCKETS];
static unsigned rl_ops;

static unsigned rl_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % RL_BUCKETS;
}

static void rl_prune(struct rl_entry *e, uint64_t now)
{
    unsigned k = 0;
    while (k < e->n && now - e->stamps[k] >= e->window_ms)
        k++;
    if (k > 0) {
        memmove(e->stamps, e->stamps + k, (e->n - k) * sizeof(e->stamps[0]));
        e->n -= k;
    }
}

static int rl_stale(struct rl_entry *e, uint64_t now)
{
    rl_prune(e, now);
    return e->inflight == 0 && e->n == 0 && (e->last_ok == 0 || now - e->last_ok >= e->min_ms);
}

/* Finds key's entry in its bucket, freeing stale entries met on the way. Under rl_lock. */
static struct rl_entry *rl_find(const char *key, uint64_t now)
{
    struct rl_entry **pp = &rl_table[rl_hash(key)], *found = NULL;
    while (*pp != NULL) {
        struct rl_entry *e = *pp;
        if (strcmp(e->key, key) == 0) {
            found = e;
        } else if (rl_stale(e, now)) {
            *pp = e->next;
            free(e->key);
            free(e);
            continue;
        }
        pp = &e->next;
    }
    return found;
}

static void rl_sweep(uint64_t now)
{
    for (unsigned b = 0; b < RL_BUCKETS; b++) {
        struct rl_entry **pp = &rl_table[b];
        while (*pp != NULL) {
            struct rl_entry *e = *pp;
            if (rl_stale(e, now)) {
                *pp = e->next;
                free(e->key);
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

static unsigned long long secs_up(uint64_t ms)
{
    return (unsigned long long)((ms + 999) / 1000);
}

/* Reserves a registration for key under c's limits: 0, or -1 with the reason in why. */
static int rl_reserve(const char *key, const struct reg_conf *c, char *why, size_t n)
{
    if (c->max_per_address == 0 && c->min_interval_ms == 0)
        return 0;
    uint64_t now = sd_now_ms();
    int rc = 0;
    pthread_mutex_lock(&rl_lock);
    if (++rl_ops % 256 == 0)
        rl_sweep(now);
    struct rl_entry *e = rl_find(key, now);
    if (e == NULL) {
        unsigned cap = c->max_per_address > 0 ? (unsigned)c->max_per_address : 1;
        e = calloc(1, sizeof(*e) + cap * sizeof(e->stamps[0]));
        if (e == NULL || (e->key = strdup(key)) == NULL) {
            free(e);
            pthread_mutex_unlock(&rl_lock);
            snprintf(why, n, "the server is out of memory; try again later");
            return -1;
        }
        e->cap = cap;
        e->window_ms = (uint64_t)c->window_ms;
        e->min_ms = (uint64_t)c->min_interval_ms;
        unsigned b = rl_hash(key);
        e->next = rl_table[b];
        rl_table[b] = e;
    }
    rl_prune(e, now);
    if (e->min_ms > 0 && e->inflight > 0) {
        snprintf(why, n, "another registration from your address is in progress; try again later");
        rc = -1;
    } else if (e->min_ms > 0 && e->last_ok != 0 && now - e->last_ok < e->min_ms) {
        snprintf(why, n, "registering too fast from your address; try again in %llu seconds",
                 secs_up(e->min_ms - (now - e->last_ok)));
        rc = -1;
    } else if (c->max_per_address > 0 && e->n + e->inflight >= (uint64_t)c->max_per_address) {
        if (e->n > 0)
            snprintf(why, n, "too many registrations from your address; try again in %llu seconds",
                     secs_up(e->stamps[0] + e->window_ms - now));
        else
            snprintf(why, n, "too many registrations from your address; try again later");
        rc = -1;
    } else {
        e->inflight++;
    }
    pthread_mutex_unlock(&rl_lock);
    return rc;
}

/* Ends a reservation: a created account becomes a time stamp, anything else is forgotten. */
static void rl_finish(const char *key, int created)
{
    uint64_t now = sd_now_ms();
    pthread_mutex_lock(&rl_lock);
    struct rl_entry *e = rl_find(key, now);
    if (e != NULL && e->inflight > 0) {
        e->inflight--;
        if (created) {
            rl_prune(e, now);
            if (e->n == e->cap) {
                memmove(e->stamps, e->stamps + 1, (e->n - 1) * sizeof(e->stamps[0]));
                e->n--;
            }
            e->stamps[e->n++] = now;
            e->last_ok = now;
        }
    }
    pthread_mutex_unlock(&rl_lock);
}

/* "host addr": an IPv6 address by its /64 (one subscriber usually holds a whole /64), a
 * v4-mapped one as IPv4. */
static void rl_key(const char *host, const char *peer, char *out, size_t n)
{
    char addr[INET6_ADDRSTRLEN + 4];
    struct in6_addr a6;
    if (peer == NULL) {
        snprintf(addr, sizeof(addr), "?");
    } else if (inet_pton(AF_INET6, peer, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            struct in_addr a4;
            memcpy(&a4, &a6.s6_addr[12], 4);
            inet_ntop(AF_INET, &a4, addr, sizeof(addr));
        } else {
            memset(&a6.s6_addr[8], 0, 8);
            inet_ntop(AF_INET6, &a6, addr, sizeof(addr));
            strcat(addr, "/64");
        }
    } else {
        snprintf(addr, sizeof(addr), "%s", peer);
    }
    snprintf(out, n, "%s %s", host, addr);
}

/* ---- replies ---- */

/* The error reply for st without the <query/> it carried: no password or token goes back. */
static sd_stanza *reg_error(const sd_stanza *st, sd_error cond, const char *text)
{
    sd_stanza *e = sd_stanza_error(st, cond, text);
    if (e != NULL) {
        sd_el *top = sd_stanza_el(e), *q;
        while ((q = sd_el_child(top, NS_REGISTER, NULL)) != NULL)
            sd_el_remove(top, q);
    }
    return e;
}

static sd_verdict reply_error(sd_hctx *h, sd_stanza *st, sd_error cond, const char *text)
{
    sd_stanza *e = reg_error(st, cond, text);
    if (e != NULL)
        sd_reply(h, &e);
    return SD_DONE;
}

static void pending_error(sd_pending **p, sd_error cond, const char *text)
{
    sd_stanza *e = reg_error(sd_pending_stanza(*p), cond, text);
    if (e != NULL)
        sd_pending_reply(p, &e);
    else
        sd_pending_done(p);
}

static void pending_result(sd_pending **p)
{
    sd_stanza *r = sd_stanza_result(sd_pending_stanza(*p));
    if (r != NULL)
        sd_pending_reply(p, &r);
    else
        sd_pending_done(p);
}

/* ---- reading a submission: the form when there is one, else the legacy elements ---- */

struct sub {
    sd_stanza *st;
    sd_el *q;
    sd_el *form;
};

/* The value of field `name` ("" when present but empty), or NULL when absent. */
static const char *sub_value(const struct sub *s, const char *name)
{
    if (s->form == NULL)
        return sd_el_child_text(s->st, s->q, NS_REGISTER, name);
    for (sd_el *f = sd_el_child(s->form, NS_DATA, "field"); f != NULL;
         f = sd_el_next(f, NS_DATA, "field")) {
        const char *var = sd_el_attr(f, "var");
        if (var != NULL && strcmp(var, name) == 0) {
            const char *v = sd_el_child_text(s->st, f, NS_DATA, "value");
            return v != NULL ? v : "";
        }
    }
    return NULL;
}

static int filled(const char *v)
{
    return v != NULL && v[0] != '\0';
}

/* Sets s up; -1 with a reason for a form that is not a submission of an accepted FORM_TYPE. */
static int sub_init(struct sub *s, sd_stanza *st, sd_el *q, const char *type_a, const char *type_b,
                    const char **why)
{
    s->st = st;
    s->q = q;
    s->form = sd_el_child(q, NS_DATA, "x");
    if (s->form == NULL)
        return 0;
    const char *t = sd_el_attr(s->form, "type");
    if (t != NULL && strcmp(t, "submit") != 0) {
        *why = "the data form must be of type 'submit'";
        return -1;
    }
    const char *ft = sub_value(s, "FORM_TYPE");
    if (ft != NULL && strcmp(ft, type_a) != 0 && (type_b == NULL || strcmp(ft, type_b) != 0)) {
        *why = "FORM_TYPE: not a form of this service";
        return -1;
    }
    return 0;
}

/* The prepared localpart of `user` on host (malloc'd), or NULL when it is not a valid one. */
static char *prepare_username(const char *user, const char *host)
{
    if (strpbrk(user, "@/") != NULL || strlen(user) > 1023)
        return NULL;
    size_t n = strlen(user) + strlen(host) + 2;
    char *s = malloc(n);
    if (s == NULL)
        return NULL;
    snprintf(s, n, "%s@%s", user, host);
    sd_jid *j = sd_jid_new(s);
    free(s);
    char *local = j != NULL && sd_jid_local(j) != NULL && sd_jid_resource(j) == NULL
                      ? strdup(sd_jid_local(j))
                      : NULL;
    sd_jid_free(&j);
    return local;
}

#define BAD_USERNAME "username: not a valid username (no spaces and none of \" & ' / : < > @)"

/* ---- the registration form (get) ---- */

static sd_el *add_field(sd_stanza *st, sd_el *x, const char *type, const char *var,
                        const char *label, int required, const char *desc)
{
    sd_el *f = sd_el_add(st, x, NS_DATA, "field");
    sd_el_set_attr(st, f, "type", type);
    sd_el_set_attr(st, f, "var", var);
    if (label != NULL)
        sd_el_set_attr(st, f, "label", label);
    if (desc != NULL)
        sd_el_add_text_child(st, f, NS_DATA, "desc", desc);
    if (required)
        sd_el_add(st, f, NS_DATA, "required");
    return f;
}

static sd_verdict preauth_get(sd_hctx *h, sd_stanza *st, const struct reg_host *rh)
{
    const struct reg_conf *c = rh->c;
    sd_stanza *r = sd_stanza_result(st);
    if (r == NULL)
        return SD_DONE;
    sd_el *q = sd_el_add(r, sd_stanza_el(r), NS_REGISTER, "query");
    sd_el_add_text_child(r, q, NS_REGISTER, "instructions", c->instructions);
    if (rh->legacy_ok) {
        sd_el_add(r, q, NS_REGISTER, "username");
        sd_el_add(r, q, NS_REGISTER, "password");
        if (rh->email_required)
            sd_el_add(r, q, NS_REGISTER, "email");
        for (size_t i = 0; i < rh->n_extras; i++)
            if (rh->extras[i].required)
                sd_el_add(r, q, NS_REGISTER, rh->extras[i].var);
    }
    sd_el *x = sd_el_add(r, q, NS_DATA, "x");
    sd_el_set_attr(r, x, "type", "form");
    char title[300];
    snprintf(title, sizeof(title), "Create an account on %s", rh->name);
    sd_el_add_text_child(r, x, NS_DATA, "title", title);
    sd_el_add_text_child(r, x, NS_DATA, "instructions", c->instructions);
    sd_el *ft = add_field(r, x, "hidden", "FORM_TYPE", NULL, 0, NULL);
    sd_el_add_text_child(r, ft, NS_DATA, "value", NS_REGISTER);
    add_field(r, x, "text-single", "username", "Username", 1, NULL);
    add_field(r, x, "text-private", "password", "Password", 1, rh->pw_rule);
    add_field(r, x, "text-single", "email", "Email address", rh->email_required, NULL);
    for (size_t i = 0; i < rh->n_extras; i++)
        add_field(r, x, "text-single", rh->extras[i].var, rh->extras[i].label,
                  rh->extras[i].required, NULL);
    if (c->mode == MODE_INVITE)
        add_field(r, x, "text-single", "invite", "Invitation token", 1,
                  "The token you were given with your invitation");
    sd_reply(h, &r);
    return SD_DONE;
}

/* ---- creating an account (set, before authentication) ---- */

struct reg_req {
    sd_pending *p;
    char *host;
    char *username; /* prepared */
    char *password;
    char *invite; /* the token (invite mode) */
    char *rl_key; /* the reservation, or NULL when the host has no limits */
    sd_stanza *info_st;
    sd_el *info;
    char *peer;
    int claimed;
    /* the outcome, kept while the invitation is linked or given back */
    int created;
    sd_error cond;
    const char *text;
};

static void req_free(struct reg_req *q)
{
    free(q->host);
    free(q->username);
    wipe_free(q->password);
    wipe_free(q->invite);
    free(q->rl_key);
    free(q->peer);
    sd_stanza_free(&q->info_st);
    free(q);
}

/* Answers the client and frees the request. */
static void req_reply(struct reg_req *q)
{
    if (q->created)
        pending_result(&q->p);
    else
        pending_error(&q->p, q->cond, q->text);
    req_free(q);
}

static void invite_done(sd_dbres *r, void *ud)
{
    struct reg_req *q = ud;
    if (sd_dbres_status(r) != SD_DB_OK)
        sd_log(reg_mod, SD_LOG_WARN, "%s: %s",
               q->created ? "cannot link a used invitation to its account"
                          : "cannot give an unused invitation back",
               sd_dbres_error(r));
    req_reply(q);
}

/* Ends the request: the reservation becomes a time stamp or is given back; a claimed
 * invitation is linked to the new account or given back *before* the client hears the outcome,
 * so that a retry with the same token cannot overtake the release; then the reply (the result,
 * or the error cond/text, a static string). */
static void req_end(struct reg_req *q, int created, sd_error cond, const char *text)
{
    q->created = created;
    q->cond = cond;
    q->text = text;
    if (q->rl_key != NULL)
        rl_finish(q->rl_key, created);
    if (q->claimed) {
        const char *params[] = {q->host, q->invite, q->username};
        if (sd_db_exec(created ? stmt_bind : stmt_release, params, created ? 3 : 2, invite_done,
                       q) == 0)
            return;
    }
    req_reply(q);
}

static void reg_created(sd_account_status status, void *ud)
{
    struct reg_req *q = ud;
    switch (status) {
    case SD_ACCOUNT_OK:
        sd_log(reg_mod, SD_LOG_INFO, "account %s@%s registered in-band from %s", q->username,
               q->host, q->peer);
        req_end(q, 1, SD_ERR_UNDEFINED_CONDITION, NULL);
        break;
    case SD_ACCOUNT_EXISTS:
        req_end(q, 0, SD_ERR_CONFLICT, "username: this username is taken");
        break;
    case SD_ACCOUNT_BAD_NAME:
        req_end(q, 0, SD_ERR_NOT_ACCEPTABLE, BAD_USERNAME);
        break;
    case SD_ACCOUNT_BAD_PASSWORD:
        req_end(q, 0, SD_ERR_NOT_ACCEPTABLE,
                "password: not acceptable text (control or unassigned characters)");
        break;
    case SD_ACCOUNT_UNAVAILABLE:
        req_end(q, 0, SD_ERR_RESOURCE_CONSTRAINT,
                "the account database is not available; try again later");
        break;
    default:
        req_end(q, 0, SD_ERR_INTERNAL_SERVER_ERROR, "the account could not be created");
        break;
    }
}

static void req_create(struct reg_req *q)
{
    int rc = sd_account_create(reg_mod, q->host, q->username, q->password, q->info_st, q->info,
                               reg_created, q);
    /* The core has what it needs: our copy of the password goes now. */
    wipe_free(q->password);
    q->password = NULL;
    if (rc < 0)
        req_end(q, 0, SD_ERR_INTERNAL_SERVER_ERROR, "the account could not be created");
}

static void reg_claimed(sd_dbres *r, void *ud)
{
    struct reg_req *q = ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(reg_mod, SD_LOG_WARN, "cannot claim an invitation: %s", sd_dbres_error(r));
        req_end(q, 0,
                sd_dbres_status(r) == SD_DB_UNAVAILABLE ? SD_ERR_RESOURCE_CONSTRAINT
                                                        : SD_ERR_INTERNAL_SERVER_ERROR,
                "the invitation could not be checked; try again later");
    } else if (sd_dbres_rows(r) != 1) {
        req_end(q, 0, SD_ERR_NOT_ACCEPTABLE, "invite: this invitation token has already been used");
    } else {
        q->claimed = 1;
        req_create(q);
    }
}

/* What other modules get with SD_EV_ACCOUNT_CREATED: a copy of the <query/> without the
 * password and the invitation token. */
static int build_info(struct reg_req *q, const sd_el *query)
{
    q->info_st = sd_stanza_new(SD_IQ, "set");
    if (q->info_st == NULL)
        return -1;
    q->info = sd_el_copy_into(q->info_st, sd_stanza_el(q->info_st), query);
    if (q->info == NULL)
        return -1;
    sd_el *e;
    while ((e = sd_el_child(q->info, NS_REGISTER, "password")) != NULL)
        sd_el_remove(q->info, e);
    for (sd_el *x = sd_el_child(q->info, NS_DATA, "x"); x != NULL;
         x = sd_el_next(x, NS_DATA, "x")) {
        sd_el *f = sd_el_child(x, NS_DATA, "field");
        while (f != NULL) {
            sd_el *next = sd_el_next(f, NS_DATA, "field");
            const char *var = sd_el_attr(f, "var");
            if (var != NULL && (strcmp(var, "password") == 0 || strcmp(var, "invite") == 0))
                sd_el_remove(x, f);
            f = next;
        }
    }
    return 0;
}

static sd_verdict preauth_set(sd_hctx *h, sd_stanza *st, sd_el *query, const struct reg_host *rh)
{
    const struct reg_conf *c = rh->c;
    if (sd_el_child(query, NS_REGISTER, "remove") != NULL)
        return reply_error(h, st, SD_ERR_UNEXPECTED_REQUEST,
                           "log in to the account before cancelling it");
    struct sub s;
    const char *why = NULL;
    if (sub_init(&s, st, query, NS_REGISTER, NULL, &why) < 0)
        return reply_error(h, st, SD_ERR_BAD_REQUEST, why);

    char buf[300];
    const char *user = sub_value(&s, "username");
    if (!filled(user))
        return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, "username: required");
    char *local = prepare_username(user, rh->name);
    if (local == NULL)
        return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, BAD_USERNAME);
    const char *pw = sub_value(&s, "password");
    const char *problem = password_problem(c, pw, local, buf, sizeof(buf));
    if (problem == NULL) {
        const char *email = sub_value(&s, "email");
        if (filled(email)) {
            if ((int64_t)strlen(email) > c->max_field_length)
                problem = "email: too long";
            else if (!email_ok(email))
                problem = "email: not a valid email address";
        } else if (rh->email_required) {
            problem = "email: required";
        }
    }
    for (size_t i = 0; problem == NULL && i < rh->n_extras; i++) {
        const struct extra_field *f = &rh->extras[i];
        const char *v = sub_value(&s, f->var);
        if (filled(v) && (int64_t)strlen(v) > c->max_field_length) {
            snprintf(buf, sizeof(buf), "%s: too long (at most %" PRId64 " bytes)", f->var,
                     c->max_field_length);
            problem = buf;
        } else if (!filled(v) && f->required) {
            snprintf(buf, sizeof(buf), "%s: required", f->var);
            problem = buf;
        }
    }
    const char *token = NULL;
    if (problem == NULL && c->mode == MODE_INVITE) {
        token = sub_value(&s, "invite");
        if (!filled(token))
            problem = "invite: an invitation token is required";
        else if (!token_known(c->invites, token))
            problem = "invite: unknown invitation token";
    }
    if (problem != NULL) {
        free(local);
        return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, problem);
    }

    struct reg_req *q = calloc(1, sizeof(*q));
    const char *peer = sd_hctx_peer(h);
    if (q == NULL || (q->host = strdup(rh->name)) == NULL || (q->password = strdup(pw)) == NULL ||
        (token && (q->invite = strdup(token)) == NULL) ||
        (q->peer = strdup(peer != NULL ? peer : "?")) == NULL || build_info(q, query) < 0) {
        free(local);
        if (q != NULL)
            req_free(q);
        return reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "out of memory");
    }
    q->username = local;
    if (c->max_per_address > 0 || c->min_interval_ms > 0) {
        char key[1200];
        rl_key(rh->name, peer, key, sizeof(key));
        if (rl_reserve(key, c, buf, sizeof(buf)) < 0) {
            sd_log(reg_mod, SD_LOG_INFO, "registration from %s refused: %s", q->peer, buf);
            req_free(q);
            return reply_error(h, st, SD_ERR_POLICY_VIOLATION, buf);
        }
        if ((q->rl_key = strdup(key)) == NULL) {
            rl_finish(key, 0);
            req_free(q);
            return reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "out of memory");
        }
    }
    q->p = sd_hctx_defer(h);
    if (q->invite != NULL) {
        const char *params[] = {q->host, q->invite};
        if (sd_db_exec(stmt_claim, params, 2, reg_claimed, q) < 0)
            req_end(q, 0, SD_ERR_INTERNAL_SERVER_ERROR, "the invitation could not be checked");
    } else {
        req_create(q);
    }
    return SD_LATER;
}

/* ---- after authentication: registered?, password change, cancellation ---- */

static sd_verdict auth_get(sd_hctx *h, sd_stanza *st, const char *local)
{
    sd_stanza *r = sd_stanza_result(st);
    if (r == NULL)
        return SD_DONE;
    sd_el *q = sd_el_add(r, sd_stanza_el(r), NS_REGISTER, "query");
    sd_el_add_text_child(r, q, NS_REGISTER, "instructions",
                         "You are registered. To change your password, send your username and a "
                         "new password; to delete your account, send <remove/>.");
    sd_el_add(r, q, NS_REGISTER, "registered");
    sd_el_add_text_child(r, q, NS_REGISTER, "username", local);
    sd_reply(h, &r);
    return SD_DONE;
}

struct pw_req {
    sd_pending *p;
    char *bare;
};

static void pw_changed(sd_account_status status, void *ud)
{
    struct pw_req *q = ud;
    switch (status) {
    case SD_ACCOUNT_OK:
        sd_log(reg_mod, SD_LOG_INFO, "password of %s changed in-band", q->bare);
        pending_result(&q->p);
        break;
    case SD_ACCOUNT_NOT_FOUND:
        pending_error(&q->p, SD_ERR_REGISTRATION_REQUIRED, "the account no longer exists");
        break;
    case SD_ACCOUNT_BAD_PASSWORD:
        pending_error(&q->p, SD_ERR_NOT_ACCEPTABLE,
                      "password: not acceptable text (control or unassigned characters)");
        break;
    case SD_ACCOUNT_UNAVAILABLE:
        pending_error(&q->p, SD_ERR_RESOURCE_CONSTRAINT,
                      "the account database is not available; try again later");
        break;
    default:
        pending_error(&q->p, SD_ERR_INTERNAL_SERVER_ERROR, "the password could not be changed");
        break;
    }
    free(q->bare);
    free(q);
}

static void account_deleted(sd_account_status status, void *ud)
{
    char *bare = ud;
    if (status == SD_ACCOUNT_OK)
        sd_log(reg_mod, SD_LOG_INFO, "account %s cancelled in-band", bare);
    else
        sd_log(reg_mod, SD_LOG_ERROR, "account %s could not be deleted (status %d)", bare,
               (int)status);
    free(bare);
}

/* Is `user` (a localpart, or a bare JID as the XEP's changepassword form example sends) the
 * session's account? */
static int same_account(const char *user, const char *bare, const char *host)
{
    size_t n = strlen(user) + strlen(host) + 2;
    char *s = malloc(n);
    if (s == NULL)
        return 0;
    if (strchr(user, '@') != NULL)
        snprintf(s, n, "%s", user);
    else
        snprintf(s, n, "%s@%s", user, host);
    sd_jid *j = sd_jid_new(s);
    free(s);
    int same = j != NULL && sd_jid_resource(j) == NULL && strcmp(sd_jid_bare(j), bare) == 0;
    sd_jid_free(&j);
    return same;
}

static sd_verdict auth_set(sd_hctx *h, sd_stanza *st, sd_el *query, const struct reg_host *rh,
                           const char *bare, const char *local)
{
    const struct reg_conf *c = rh->c;
    if (sd_el_child(query, NS_REGISTER, "remove") != NULL) {
        /* §3.2: <remove/> must be the only child. */
        if (sd_el_next(sd_el_child(query, NULL, NULL), NULL, NULL) != NULL)
            return reply_error(h, st, SD_ERR_BAD_REQUEST, "<remove/> must be the only child");
        if (!c->allow_cancel)
            return reply_error(h, st, SD_ERR_NOT_ALLOWED,
                               "accounts cannot be deleted in-band on this server");
        char *copy = strdup(bare);
        if (copy == NULL)
            return reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "out of memory");
        /* The result goes first: once the account is gone the core ends this session (with
         * <not-authorized/>, §3.2), and its output is written in order before that. */
        sd_reply_result(h, st);
        if (sd_account_delete(reg_mod, rh->name, local, account_deleted, copy) < 0) {
            sd_log(reg_mod, SD_LOG_ERROR, "account %s could not be deleted", copy);
            free(copy);
        }
        return SD_DONE;
    }

    struct sub s;
    const char *why = NULL;
    if (sub_init(&s, st, query, FORM_CHANGEPW, NS_REGISTER, &why) < 0)
        return reply_error(h, st, SD_ERR_BAD_REQUEST, why);
    const char *user = sub_value(&s, "username");
    const char *pw = sub_value(&s, "password");
    if (user == NULL && pw == NULL)
        return reply_error(h, st, SD_ERR_BAD_REQUEST,
                           "send <remove/>, or <username/> and <password/> to change the password");
    /* Only the password can change here; profile data is vCard's. */
    if (s.form != NULL) {
        for (sd_el *f = sd_el_child(s.form, NS_DATA, "field"); f != NULL;
             f = sd_el_next(f, NS_DATA, "field")) {
            const char *var = sd_el_attr(f, "var");
            if (var != NULL && strcmp(var, "FORM_TYPE") != 0 && strcmp(var, "username") != 0 &&
                strcmp(var, "password") != 0 && strcmp(var, "old_password") != 0 &&
                filled(sub_value(&s, var))) {
                char buf[200];
                snprintf(buf, sizeof(buf), "%.64s: only the password can be changed in-band", var);
                return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, buf);
            }
        }
    } else {
        for (sd_el *e = sd_el_child(query, NULL, NULL); e != NULL; e = sd_el_next(e, NULL, NULL)) {
            const char *name = sd_el_name(e), *ns = sd_el_ns(e);
            if (ns != NULL && strcmp(ns, NS_REGISTER) == 0 && strcmp(name, "username") != 0 &&
                strcmp(name, "password") != 0) {
                char buf[200];
                snprintf(buf, sizeof(buf), "%.64s: only the password can be changed in-band", name);
                return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, buf);
            }
        }
    }
    if (!c->allow_password_change)
        return reply_error(h, st, SD_ERR_NOT_ALLOWED,
                           "passwords cannot be changed in-band on this server");
    if (!c->allow_insecure && !sd_hctx_secure(h))
        return reply_error(h, st, SD_ERR_NOT_AUTHORIZED,
                           "password changes need an encrypted stream");
    if (!filled(user))
        return reply_error(h, st, SD_ERR_BAD_REQUEST, "username: required");
    if (!same_account(user, bare, rh->name))
        return reply_error(h, st, SD_ERR_FORBIDDEN,
                           "username: you can only change the password of your own account");
    char buf[300];
    const char *problem = password_problem(c, pw, local, buf, sizeof(buf));
    if (problem != NULL)
        return reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, problem);

    struct pw_req *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->bare = strdup(bare)) == NULL) {
        free(q);
        return reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "out of memory");
    }
    q->p = sd_hctx_defer(h);
    if (sd_account_set_password(reg_mod, rh->name, local, pw, pw_changed, q) < 0) {
        pending_error(&q->p, SD_ERR_INTERNAL_SERVER_ERROR, "the password could not be changed");
        free(q->bare);
        free(q);
    }
    return SD_LATER;
}

/* ---- dispatch ---- */

static sd_verdict reg_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    const struct reg_host *rh = host_of(sd_hctx_host(h));
    sd_el *query = sd_stanza_payload(st);
    if (rh == NULL || query == NULL)
        return SD_PASS;
    const char *type = sd_stanza_type(st);
    int get = type != NULL && strcmp(type, "get") == 0;
    sd_session *s = sd_hctx_session(h);

    if (s == NULL) {
        if (rh->c->mode == MODE_CLOSED)
            return reply_error(h, st, SD_ERR_SERVICE_UNAVAILABLE,
                               "registration is closed on this server");
        if (!rh->c->allow_insecure && !sd_hctx_secure(h))
            return reply_error(h, st, SD_ERR_NOT_AUTHORIZED,
                               "registration needs an encrypted stream: negotiate TLS first");
        return get ? preauth_get(h, st, rh) : preauth_set(h, st, query, rh);
    }

    /* Authenticated: only about the session's own account, on its own host. */
    if (strcmp(sd_session_host(s), rh->name) != 0)
        return reply_error(h, st, SD_ERR_NOT_ALLOWED,
                           "register with that host before logging in to it");
    sd_jid *j = sd_jid_new(sd_session_bare(s));
    if (j == NULL || sd_jid_local(j) == NULL) {
        sd_jid_free(&j);
        return reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    }
    sd_verdict v = get ? auth_get(h, st, sd_jid_local(j))
                       : auth_set(h, st, query, rh, sd_jid_bare(j), sd_jid_local(j));
    sd_jid_free(&j);
    return v;
}

/* The stream feature, where a registration could succeed on this stream. */
static void reg_features(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)ud;
    if (sd_event_authenticated(ev))
        return;
    const struct reg_host *rh = host_of(sd_hctx_host(h));
    if (rh == NULL || rh->c->mode == MODE_CLOSED || (!rh->c->allow_insecure && !sd_hctx_secure(h)))
        return;
    sd_el_add(sd_event_stanza(ev), sd_event_el(ev), NS_FEATURE, "register");
}

/* ---- loading ---- */

static int valid_var(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static void host_free(struct reg_host *rh)
{
    for (size_t i = 0; i < rh->n_extras; i++) {
        free(rh->extras[i].var);
        free(rh->extras[i].label);
    }
    free(rh->extras);
    free(rh->pw_rule);
}

static int host_parse(sd_module *m, struct reg_host *rh, const char **error_r)
{
    const struct reg_conf *c = rh->c;
    size_t n = 0;
    for (const char *const *f = c->fields; f != NULL && *f != NULL; f++)
        n++;
    rh->extras = calloc(n ? n : 1, sizeof(*rh->extras));
    if (rh->extras == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *entry = c->fields[i];
        const char *eq = strchr(entry, '=');
        size_t vl = eq != NULL ? (size_t)(eq - entry) : strlen(entry);
        struct extra_field *f = &rh->extras[rh->n_extras];
        if (!valid_var(entry, vl)) {
            sd_log(m, SD_LOG_ERROR,
                   "%s: fields: \"%s\": the var must be 1 to 64 of a-z A-Z 0-9 _ - . "
                   "(write \"var=Label\")",
                   rh->name, entry);
            *error_r = "bad entry in fields (see the line above)";
            return -1;
        }
        f->var = strndup(entry, vl);
        f->label = strdup(eq != NULL && eq[1] != '\0' ? eq + 1 : f->var ? f->var : "");
        if (f->var == NULL || f->label == NULL) {
            free(f->var);
            free(f->label);
            *error_r = "out of memory";
            return -1;
        }
        rh->n_extras++;
        if (in_list(reserved_vars, f->var)) {
            sd_log(m, SD_LOG_ERROR, "%s: fields: \"%s\" is one of the module's own fields",
                   rh->name, f->var);
            *error_r = "bad entry in fields (see the line above)";
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(rh->extras[k].var, f->var) == 0) {
                sd_log(m, SD_LOG_ERROR, "%s: fields: \"%s\" is listed twice", rh->name, f->var);
                *error_r = "bad entry in fields (see the line above)";
                return -1;
            }
    }
    rh->legacy_ok = c->mode != MODE_INVITE;
    for (const char *const *r = c->required_fields; r != NULL && *r != NULL; r++) {
        if (strcmp(*r, "email") == 0) {
            rh->email_required = 1;
            continue;
        }
        struct extra_field *f = NULL;
        for (size_t k = 0; k < rh->n_extras; k++)
            if (strcmp(rh->extras[k].var, *r) == 0)
                f = &rh->extras[k];
        if (f == NULL) {
            sd_log(m, SD_LOG_ERROR,
                   "%s: required_fields: \"%s\" is neither \"email\" nor a var of fields", rh->name,
                   *r);
            *error_r = "bad entry in required_fields (see the line above)";
            return -1;
        }
        f->required = 1;
        if (!in_list(legacy_names, f->var))
            rh->legacy_ok = 0;
    }
    char rule[300];
    int len = snprintf(rule, sizeof(rule), "At least %" PRId64 " characters", c->pw_min_length);
    if (c->pw_min_classes > 1)
        len += snprintf(rule + len, sizeof(rule) - (size_t)len,
                        ", mixing at least %" PRId64 " of: lower-case letters, upper-case "
                        "letters, digits, other characters",
                        c->pw_min_classes);
    if (c->pw_reject_username)
        snprintf(rule + len, sizeof(rule) - (size_t)len, "; not containing the username.");
    else
        snprintf(rule + len, sizeof(rule) - (size_t)len, ".");
    if ((rh->pw_rule = strdup(rule)) == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    if (c->mode == MODE_INVITE && (c->invites == NULL || c->invites[0] == NULL))
        sd_log(m, SD_LOG_WARN, "%s: registration is by invitation but no invites are configured",
               rh->name);
    for (const char *const *t = c->invites; t != NULL && *t != NULL; t++)
        if ((*t)[0] == '\0') {
            *error_r = "invites: an invitation token must not be empty";
            return -1;
        }
    return 0;
}

static void reg_unload(sd_module *m)
{
    (void)m;
    for (unsigned i = 0; i < reg_nhosts; i++)
        host_free(&reg_hosts[i]);
    free(reg_hosts);
    reg_hosts = NULL;
    reg_nhosts = 0;
    pthread_mutex_lock(&rl_lock);
    for (unsigned b = 0; b < RL_BUCKETS; b++)
        while (rl_table[b] != NULL) {
            struct rl_entry *e = rl_table[b];
            rl_table[b] = e->next;
            free(e->key);
            free(e);
        }
    pthread_mutex_unlock(&rl_lock);
}

static int reg_load(sd_module *m, const char **error_r)
{
    reg_mod = m;
    unsigned n = 0;
    while (sd_host_at(n) != NULL)
        n++;
    reg_hosts = calloc(n ? n : 1, sizeof(*reg_hosts));
    if (reg_hosts == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    reg_nhosts = n;
    for (unsigned i = 0; i < n; i++) {
        reg_hosts[i].name = sd_host_at(i);
        if (!sd_module_enabled(m, reg_hosts[i].name))
            continue;
        reg_hosts[i].c = sd_module_config(m, reg_hosts[i].name);
        if (reg_hosts[i].c == NULL) {
            *error_r = "no settings";
            reg_unload(m);
            return -1;
        }
        if (host_parse(m, &reg_hosts[i], error_r) < 0) {
            reg_unload(m);
            return -1;
        }
    }
    stmt_claim = sd_db_prepare(m,
                               "INSERT INTO register_invites_used (host, token_sha256) "
                               "VALUES ($1, " TOKEN_DIGEST ") "
                               "ON CONFLICT DO NOTHING RETURNING 1",
                               2);
    stmt_bind = sd_db_prepare(m,
                              "UPDATE register_invites_used SET account_id = "
                              "(SELECT a.id FROM accounts a WHERE a.host = $1 AND a.username = $3) "
                              "WHERE host = $1 AND token_sha256 = " TOKEN_DIGEST,
                              3);
    stmt_release =
        sd_db_prepare(m,
                      "DELETE FROM register_invites_used "
                      "WHERE host = $1 AND token_sha256 = " TOKEN_DIGEST " AND account_id IS NULL",
                      2);
    if (stmt_claim == NULL || stmt_bind == NULL || stmt_release == NULL) {
        *error_r = "cannot prepare the statements";
        reg_unload(m);
        return -1;
    }
    if (sd_add_feature(m, SD_DISCO_SERVER, NS_REGISTER) < 0 ||
        sd_hook_iq(m, SD_TO_PREAUTH | SD_TO_HOST | SD_TO_SELF, SD_IQ_GET | SD_IQ_SET, NS_REGISTER,
                   "query", 0, reg_iq, NULL) < 0 ||
        sd_hook_event(m, SD_EV_STREAM_FEATURES, 0, reg_features, NULL) < 0) {
        *error_r = "cannot register the handlers";
        reg_unload(m);
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "register", .version = SD_VERSION_STRING, .settings = reg_settings,
          .config_size = sizeof(struct reg_conf), .migrations = reg_migrations, .load = reg_load,
          .unload = reg_unload);
