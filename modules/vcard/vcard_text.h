/*
 * vcard_text.h — how searchable profile text is normalised. mod_vcard stores its search columns
 * this way and mod_search cleans a query the same way (it compiles this file too), so that what
 * is looked for and what is stored always agree.
 */
#ifndef VCARD_TEXT_H
#define VCARD_TEXT_H

#include <stddef.h>

/* s with white space (space, tab, CR, LF) trimmed and each run of it made one space, cut at max
 * bytes on a UTF-8 character boundary (max 0: no cut). malloc'd ("" for NULL); NULL only when
 * out of memory. */
char *vc_clean_text(const char *s, size_t max);

#endif
