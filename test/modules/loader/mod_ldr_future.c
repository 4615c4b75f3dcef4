/*
 * mod_ldr_future — loader test: a module of the next ABI minor that calls a function this core
 * does not have. dlopen(RTLD_NOW) fails with "undefined symbol"; the loader opens it again
 * lazily only to read the descriptor, and says which ABI the module needs.
 */
#include <stanzad/stanzad.h>

/* What a later minor could add; deliberately absent from this core. */
int sd_future_function(sd_module *m);

static int future_load(sd_module *m, const char **error_r)
{
    return sd_future_function(m);
}

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = SD_MODULE_MAGIC,
        .abi_major = SD_ABI_MAJOR,
        .abi_minor = SD_ABI_MINOR + 1,
        .desc_size = sizeof(sd_module_desc),
        .setting_size = sizeof(sd_setting),
        .name = "ldr_future",
        .load = future_load,
    };
    return &d;
}
