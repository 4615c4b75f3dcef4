/*
 * unit.h — the unit-test harness: a list of test functions, each run in its own forked process
 * with a timeout, so that one crash or hang fails one test and not the whole file. Assertions
 * print both values and the source line, then fail the test.
 *
 *   static void test_something(void) { UNIT_ASSERT_INT_EQ(1 + 1, 2); }
 *   UNIT_MAIN(UNIT_TEST(test_something), UNIT_TEST(test_other))
 *
 * Run the executable with a test name as argument to run only that test (without forking, so
 * that gdb and sanitizers report directly).
 */
#ifndef STANZAD_TEST_UNIT_H
#define STANZAD_TEST_UNIT_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct unit_test {
    const char *name;
    void (*fn)(void);
};

#define UNIT_TEST(f)                                                                               \
    {                                                                                              \
#f, f                                                                                      \
    }

#define UNIT_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

#define UNIT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            UNIT_FAIL("assertion failed: %s", #cond);                                              \
    } while (0)

#define UNIT_ASSERT_INT_EQ(a, b)                                                                   \
    do {                                                                                           \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                              \
        if (unit_a_ != unit_b_)                                                                    \
            UNIT_FAIL("%s == %s: %lld != %lld", #a, #b, unit_a_, unit_b_);                         \
    } while (0)

#define UNIT_ASSERT_STR_EQ(a, b)                                                                   \
    do {                                                                                           \
        const char *unit_a_ = (a), *unit_b_ = (b);                                                 \
        if (unit_a_ == NULL || unit_b_ == NULL || strcmp(unit_a_, unit_b_) != 0)                   \
            UNIT_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, unit_a_ ? unit_a_ : "(null)",          \
                      unit_b_ ? unit_b_ : "(null)");                                               \
    } while (0)

#define UNIT_ASSERT_MEM_EQ(a, b, n)                                                                \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            UNIT_FAIL("%s == %s: %zu bytes differ", #a, #b, (size_t)(n));                          \
    } while (0)

#define UNIT_TIMEOUT_SECONDS 60

static inline int unit_run(const struct unit_test *tests, size_t n, int argc, char **argv)
{
    if (argc > 1) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(tests[i].name, argv[1]) == 0) {
                tests[i].fn();
                printf("ok %s\n", tests[i].name);
                return 0;
            }
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(UNIT_TIMEOUT_SECONDS);
            tests[i].fn();
            exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("ok   %s\n", tests[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                printf("FAIL %s (signal %d%s)\n", tests[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ", timeout" : "");
            else
                printf("FAIL %s\n", tests[i].name);
        }
    }
    printf("%zu passed, %zu failed\n", n - failed, failed);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct unit_test unit_tests_[] = {__VA_ARGS__};                               \
        return unit_run(unit_tests_, sizeof unit_tests_ / sizeof unit_tests_[0], argc, argv);      \
    }

#endif
