/* error.c: the thread-local last-error message. Every module that refuses work sets it
 * through iq1m_fail (api.c's validation, ops.c's allocation and thread-start failures);
 * api.c's iq1m_last_error returns it. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char g_err[512];

int iq1m_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return code;
}

void iq1m_clear_error(void) { g_err[0] = '\0'; }

const char *iq1m_error_message(void) { return g_err; }
