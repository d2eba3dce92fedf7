/*
 * pmutex: a mutex that lives in memory several processes map.
 *
 * pmutex_init() makes it process-shared and robust; pmutex_lock() takes it,
 * and when the process that held it died holding it, marks it consistent
 * again and goes on (what that process was writing is at worst one update
 * short, which the counters and health readings it guards can bear).
 *
 * Memory: the mutex is the caller's, in the caller's shared mapping.
 */
#ifndef FLA_PMUTEX_H
#define FLA_PMUTEX_H

#include <pthread.h>

/* 0, or -1 when the system has no process-shared robust mutexes. */
int pmutex_init(pthread_mutex_t *m);
void pmutex_lock(pthread_mutex_t *m);

#endif
