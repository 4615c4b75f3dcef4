/*
 * mod_ldr_badorder — loader test: schema steps out of order (a bug of the module's author,
 * found before any database is touched, so --check-config reports it too).
 */
#include <stanzad/stanzad.h>

static const sd_migration badorder_migrations[] = {
    {2, "CREATE TABLE ldr_badorder_b (id integer)"},
    {1, "CREATE TABLE ldr_badorder_a (id integer)"},
    SD_MIGRATIONS_END,
};

SD_MODULE(.name = "ldr_badorder", .version = "test", .migrations = badorder_migrations);
