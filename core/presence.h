/*
 * presence.h — the presence state the core itself must keep (RFC 6121 §4): whether a session is
 * available and at which priority (bare-JID message routing depends on it), reflection of a
 * session's presence to the account's own resources, directed presence, and the unavailable
 * presence sent on its behalf when the session ends, cleanly or not. Subscriptions and roster
 * broadcast belong to the roster module.
 */
#ifndef STANZAD_PRESENCE_H
#define STANZAD_PRESENCE_H

#include "stanza.h"

struct session;

/* A presence stanza sent by the client of session s ('from' already stamped); consumes st. */
void presence_from_session(struct session *s, struct stanza *st);
/* s is ending: broadcast unavailable where its presence went. Runs on s's worker. */
void presence_session_ended(struct session *s);

#endif
