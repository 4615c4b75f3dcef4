/*
 * vcard_util.h — small helpers of mod_vcard: SHA-1 (for the XEP-0153 photo hash), base64
 * decoding (PHOTO/BINVAL) and reading back the XML text that sd_el_to_string() wrote.
 *
 * The public ABI has a serializer (sd_el_to_string) but no parser, so a vCard stored as text is
 * turned back into elements here. The reader accepts well-formed XML elements as the serializer
 * writes them (and a little more: any quoting, comments, CDATA, character references); it is not
 * a general XML parser (no DTD, no entity declarations) and never sees client input, only what
 * this module stored.
 */
#ifndef VCARD_UTIL_H
#define VCARD_UTIL_H

#include <stddef.h>

#include <stanzad/stanza.h>

/* SHA-1 (RFC 3174) of data as 40 lower-case hex digits and a NUL. */
void vc_sha1_hex(const void *data, size_t len, char out[41]);

/* Decodes base64 (RFC 4648 alphabet; whitespace anywhere is ignored, '=' padding optional).
 * Returns a malloc'd buffer (free it) with the length in *len_r, or NULL when the text is not
 * base64 (or out of memory). An empty text decodes to a non-NULL buffer of length 0. */
unsigned char *vc_base64_decode(const char *s, size_t *len_r);

/* Parses one XML element from text (len bytes) and adds it, with its subtree, as the last child
 * of parent in st. Attributes in a namespace (xml:lang, prefixed ones) are dropped: the ABI can
 * only set unqualified attributes. Returns the new element, or NULL when the text is not one
 * well-formed element (nothing is added then... except what was built before the error, which
 * stays in st: callers discard st on failure). */
sd_el *vc_xml_parse_into(sd_stanza *st, sd_el *parent, const char *text, size_t len);

#endif
