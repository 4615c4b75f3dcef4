/*
 * mod_ldr_smalldesc — loader test: right magic and ABI numbers, but a descriptor size smaller
 * than ABI 1.0's: the loader must not read the fields the module did not provide.
 */
#include <stanzad/stanzad.h>

SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void);
SD_MODULE_EXPORT const sd_module_desc *sd_module_v1(void)
{
    static const sd_module_desc d = {
        .magic = SD_MODULE_MAGIC,
        .abi_major = SD_ABI_MAJOR,
        .abi_minor = SD_ABI_MINOR,
        .desc_size = 16,
        .setting_size = sizeof(sd_setting),
        .name = "ldr_smalldesc",
    };
    return &d;
}
