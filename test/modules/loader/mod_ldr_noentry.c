/*
 * mod_ldr_noentry — loader test: a shared object named like a module that is not one (it does
 * not export sd_module_v1).
 */
__attribute__((visibility("default"))) int ldr_noentry_something(void);

__attribute__((visibility("default"))) int ldr_noentry_something(void)
{
    return 42;
}
