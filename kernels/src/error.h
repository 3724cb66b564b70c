/* error.h: the thread-local last-error message (defined in api.c). */
#ifndef IQ1M_ERROR_H
#define IQ1M_ERROR_H

/* Sets the calling thread's message and returns code (for `return iq1m_fail(...)`). */
int iq1m_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void iq1m_clear_error(void);

#endif /* IQ1M_ERROR_H */
