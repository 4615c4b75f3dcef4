/*
 * mod_ldr_wrongname — loader test: the descriptor names another module than the file does.
 */
#include <stanzad/stanzad.h>

SD_MODULE(.name = "ldr_othername", .version = "test");
