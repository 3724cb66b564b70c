/* error.h: the thread-local last-error message (error.c), set by every module that refuses
 * work and read by the public iq1m_last_error (api.c). */
#ifndef IQ1M_ERROR_H
#define IQ1M_ERROR_H

/* Sets the calling thread's message and returns code (for `return iq1m_fail(...)`). */
int iq1m_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void iq1m_clear_error(void);
/* The calling thread's message ("" if none since the last clear). */
const char *iq1m_error_message(void);

#endif /* IQ1M_ERROR_H */
