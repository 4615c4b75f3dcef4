/*
 * vcard_text.c — the normalisation of searchable profile text (see vcard_text.h).
 */
#include "vcard_text.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

char *vc_clean_text(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    bool space = false;
    for (const char *p = s; p != NULL && *p != '\0'; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            space = o != out;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = false;
        *o++ = *p;
    }
    *o = '\0';
    size_t len = (size_t)(o - out);
    if (max > 0 && len > max) {
        len = max;
        while (len > 0 && ((unsigned char)out[len] & 0xc0) == 0x80)
            len--; /* not inside a UTF-8 sequence */
        out[len] = '\0';
    }
    return out;
}
