/*
 * mod_ldr_newminor — loader test: a module built for the next ABI minor (as if against newer
 * headers). This core is older than the module, so the loader refuses it by its numbers.
 */
#include <stanzad/stanzad.h>

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = SD_MODULE_MAGIC,
        .abi_major = SD_ABI_MAJOR,
        .abi_minor = SD_ABI_MINOR + 1,
        .desc_size = sizeof(sd_module_desc),
        .setting_size = sizeof(sd_setting),
        .name = "ldr_newminor",
    };
    return &d;
}
